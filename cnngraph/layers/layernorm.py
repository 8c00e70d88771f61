"""Layer normalisation over the channels at every position (ConvNeXt's LayerNorm2d; nn.LayerNorm on flat
features), and the ONNX forms exporters write for it."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, boolean, fc_csr, fc_point, number
from .lowering import ChannelReduction, ChannelStat

CHANNELS_LAST = "channels-last"  # a pending importer value: the (N, *spatial, C) transpose of a live tensor


def channels_last_perm(rank: int) -> list[int]:
    """The Transpose permutation that moves the channels of a rank-`rank` tensor last.

    >>> channels_last_perm(4), channels_first_perm(4)
    ([0, 2, 3, 1], [0, 3, 1, 2])
    """
    return [0, *range(2, rank), 1]


def channels_first_perm(rank: int) -> list[int]:
    """The Transpose permutation that moves the channels of a channels-last tensor back to axis 1.

    >>> channels_first_perm(5)
    [0, 4, 1, 2, 3]
    """
    return [0, rank - 1, *range(1, rank - 1)]


class LayerNorm(Layer):
    """`layer_norm: {eps: 1.0e-6, affine: true}`: (x - mean) / sqrt(var + eps) * weight[c] + bias[c] over channels.

    At every position the channels are normalised to mean 0 and variance 1 (the biased variance,
    as PyTorch). On (C, *spatial) inputs this is ConvNeXt's LayerNorm2d (nn.LayerNorm applied
    channels-last); on flat inputs, nn.LayerNorm over the features. Write small epsilons with a
    decimal point (1.0e-6): YAML reads 1e-6 as text."""

    kind = "layer_norm"
    category = Fusion.OPAQUE
    attrs = (Attr("eps", number(0.0, lo_open=True), 1e-5), Attr("affine", boolean, True))
    examples = (({}, [(20, 7)]), ({"eps": 1e-6}, [(5, 6, 7)]), ({"affine": False}, [(3, 2, 3, 4)]), ({}, [(9,)]),
                ({"eps": 0.1}, [(40, 3, 3)]))
    onnx_imports = ("LayerNormalization",)
    onnx_patterns = ("onnx_channels_last", "onnx_decomposition")
    onnx_channels_last_ops = ("LayerNormalization",)

    def op_name(self, in_shapes):
        return f"layer_norm{len(in_shapes[0]) - 1}d" if len(in_shapes[0]) > 1 else "layer_norm"

    def infer_shape(self, in_shapes):
        if len(in_shapes[0]) < 1:
            raise LayerError(f"expected a (C, ...) input, got shape {tuple(in_shapes[0])}")
        return tuple(in_shapes[0])

    def param_shapes(self, in_shapes):
        c = in_shapes[0][0]
        return {"weight": (c,), "bias": (c,)} if self.affine else {}

    def init_params(self, in_shapes, rng):
        c = in_shapes[0][0]
        return {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)} if self.affine else {}

    def reference(self, xs, params):
        """In the input's precision, as PyTorch (a float32 sum of huge values overflows, as there)."""
        x = xs[0]
        with np.errstate(over="ignore", invalid="ignore"):
            mean = x.mean(axis=1, keepdims=True)
            d = x - mean
            y = d / np.sqrt((d * d).mean(axis=1, keepdims=True) + x.dtype.type(self.eps))
        if self.affine:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            y = y * np.asarray(params["weight"]).astype(x.dtype).reshape(shape) + \
                np.asarray(params["bias"]).astype(x.dtype).reshape(shape)
        return y.astype(x.dtype, copy=False)

    def lower(self, in_shapes, params):
        """The mean over channels, then the mean square of x - mean (two passes: no cancellation);
        y = (x - mean) / sqrt(var + eps), times weight[c] plus bias[c]."""
        c = in_shapes[0][0]
        stats = (ChannelStat("sum", lambda m, x, s: x, scale=1.0 / c),
                 ChannelStat("sum", lambda m, x, s: m.mul(m.sub(x, s[0]), m.sub(x, s[0])), scale=1.0 / c))

        def normalised(m, x, s):
            return m.div(m.sub(x, s[0]), m.sqrt(m.add(s[1], self.eps)))

        if not self.affine:
            return ChannelReduction(self, stats, normalised)
        vec = {k: None if k not in params else np.asarray(params[k], np.float32) for k in ("weight", "bias")}
        return ChannelReduction(self, stats, lambda m, x, s, p: m.fma(normalised(m, x, s), p["weight"], p["bias"]),
                                params=tuple(vec.items()))

    def torch_fn(self, torch, in_shapes, params):
        c = in_shapes[0][0]
        f = torch.nn.functional.layer_norm
        w, b = params.get("weight"), params.get("bias")
        return lambda x: f(x.movedim(1, -1), (c,), w, b, self.eps).movedim(-1, 1)

    # ---- FC view: not linear; the local Jacobian at the input, dense over the channels of a position ----
    def fc_connections(self, in_shapes) -> int:
        return in_shapes[0][0] * int(np.prod(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The tangent at `xs` (mode 'local'): with xhat = (x - mean) / sigma at a position,
        dy_c/dx_c' = weight[c] / sigma * (delta_cc' - 1/C - xhat_c xhat_c' / C); row c's coefficients
        derive from weight[c] (tied to it)."""
        (x,) = fc_point(self, in_shapes, xs)
        c = x.shape[0]
        xf = x.reshape(c, -1)
        n = xf.shape[1]
        mean = xf.mean(0)
        sigma = np.sqrt(((xf - mean) ** 2).mean(0) + self.eps)
        xhat = (xf - mean) / sigma  # (C, S)
        w = np.asarray(params["weight"], np.float64) if self.affine else np.ones(c)
        jac = (np.eye(c)[:, None, :] - 1.0 / c - xhat[:, :, None] * xhat.T[None, :, :] / c) / sigma[None, :, None]
        jac = jac * w[:, None, None]  # (C, S, C')
        cols = np.arange(c)[None, None, :] * n + np.arange(n)[None, :, None]
        m = fc_csr(jac.ravel(), np.broadcast_to(cols, jac.shape).ravel(), np.arange(c * n + 1) * c, (c * n, c * n))
        y = self.reference([x[None]], params)[0]
        tie = np.repeat(np.arange(c, dtype=np.int32), n * c) if self.affine else np.full(m.nnz, -1, np.int32)
        return Lowered(m, y.ravel() - m @ x.ravel(), tie, "weight" if self.affine else None, "local")

    # ---- ONNX ----
    def to_onnx(self, b, node, ins, weights):
        """LayerNormalization (opset 17) over the last axis: on (C, *spatial) inputs between a Transpose
        to channels-last and one back, as PyTorch writes LayerNorm2d; before opset 17, the decomposition
        over the channel axis: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div (then Mul, Add)."""
        n, x = node.name, ins[0]
        shape = node.in_shapes[0]
        rank, c = len(shape) + 1, shape[0]
        if self.affine:
            w, bias = weights[f"{n}.weight"], weights[f"{n}.bias"]
            names = (f"{n}.weight", f"{n}.bias")
        else:  # not parameters of the layer: names the importer recognises as constants
            w, bias = np.ones(c, np.float32), np.zeros(c, np.float32)
            names = (f"{n}.const_scale", f"{n}.const_bias")
        if b.opset >= 17:
            wn, bn = b.init(names[0], np.asarray(w, np.float32)), b.init(names[1], np.asarray(bias, np.float32))
            if rank == 2:
                return b.node("LayerNormalization", [x, wn, bn], n, n, axis=-1, epsilon=float(self.eps))
            t = b.node("Transpose", [x], f"{n}/channels_last", f"{n}/channels_last", perm=channels_last_perm(rank))
            y = b.node("LayerNormalization", [t, wn, bn], f"{n}/norm", f"{n}/norm", axis=-1, epsilon=float(self.eps))
            return b.node("Transpose", [y], n, n, perm=channels_first_perm(rank))
        mean = b.node("ReduceMean", [x], f"{n}/mean", f"{n}/mean", axes=[1], keepdims=1)
        d = b.node("Sub", [x, mean], f"{n}/centred", f"{n}/centred")
        sq = b.node("Pow", [d, b.scalar(f"{n}.two", 2.0)], f"{n}/square", f"{n}/square")
        var = b.node("ReduceMean", [sq], f"{n}/variance", f"{n}/variance", axes=[1], keepdims=1)
        dev = b.node("Sqrt", [b.node("Add", [var, b.scalar(f"{n}.eps", self.eps)], f"{n}/variance_eps",
                                     f"{n}/variance_eps")], f"{n}/deviation", f"{n}/deviation")
        if not self.affine:
            return b.node("Div", [d, dev], n, n)
        y = b.node("Div", [d, dev], f"{n}/normalised", f"{n}/normalised")
        shaped = (c,) + (1,) * (rank - 2)
        y = b.node("Mul", [y, b.init(names[0], np.asarray(w, np.float32).reshape(shaped))], f"{n}/scaled",
                   f"{n}/scaled")
        return b.node("Add", [y, b.init(names[1], np.asarray(bias, np.float32).reshape(shaped))], n, n)

    @classmethod
    def from_onnx(cls, imp, node):
        """LayerNormalization over the channels of a (N, C) tensor (or of (N, C, 1, ...)); over the
        channel axis of a transposed tensor, see onnx_channels_last."""
        x = imp.x(node)
        rank = len(x.shape) + 1
        axis = imp.attr(node, "axis", -1)
        axis = axis + rank if axis < 0 else axis
        if axis != 1 or (rank > 2 and np.prod(x.shape[1:]) != 1):
            raise imp.fail(node, f"normalises over axes {axis}..{rank - 1} of (N, {', '.join(map(str, x.shape))}); "
                                 f"cnngraph's layer_norm normalises over the channels (axis 1) at each position")
        attrs, params = cls._attrs(imp, node, x.shape[0], 1)
        imp.add_layer(node, cls.kind, attrs, [x.layer], params, **cls._named(imp, node))
        return None

    @classmethod
    def _attrs(cls, imp, node, c, first):
        """(attributes, params) of a LayerNormalization node over c channels; `first`: Scale's input index."""
        imp.only_output(node)
        scale = np.asarray(imp.c(node, first, "Scale"), np.float32)
        bias = imp.c(node, first + 1, "B", required=False)
        bias = np.zeros(c, np.float32) if bias is None else np.asarray(bias, np.float32)
        for arr, what in ((scale, "Scale"), (bias, "B")):
            if arr.size != c:
                raise imp.fail(node, f"expected {what} of {c} values (one per channel), got shape {arr.shape}")
        eps = imp.attr(node, "epsilon", 1e-5)
        if not eps > 0:
            raise imp.fail(node, f"expected a positive epsilon, got {eps}")
        return cls._layer(imp, eps, scale.reshape(-1), bias.reshape(-1), node.input[first])

    @staticmethod
    def _layer(imp, eps, w, bias, scale_name):
        """attributes and params; the affine part is left out where it is the identity and the weight is no
        parameter of the model (cnngraph's own export of affine: false names it .const_scale)."""
        affine = w is not None and not (np.all(w == 1) and np.all(bias == 0) and not scale_name.endswith(".weight"))
        params = {"weight": np.asarray(w, np.float32), "bias": np.asarray(bias, np.float32)} if affine else {}
        return {"eps": imp.f32(eps), "affine": bool(affine)}, params

    @staticmethod
    def _named(imp, node):
        """The layer's name from its Scale initializer (`ln.weight` -> `ln`, `x.const_scale` -> `x`)."""
        scale = node.input[1] if len(node.input) > 1 else ""
        arr = imp.const.get(scale)
        hint = imp.weight_hint(node, arr) if arr is not None else None
        if hint is None and scale.endswith(".const_scale"):
            hint = imp.clean_name(scale[: -len(".const_scale")])
        return {"hint": hint} if hint else {}

    # ---- the channels-last form: Transpose -> LayerNormalization(axis=-1) or its decomposition -> Transpose ----
    @classmethod
    def onnx_channels_last(cls, imp, node) -> bool:
        """PyTorch's LayerNorm2d: a Transpose moving the channels last that only layer norms over the
        last axis read, those layer norms, and the Transpose back. The transposed tensors are pending
        values (channels-last views of live tensors); True when `node` was one of these steps."""
        op, ins = node.op_type, [i for i in node.input if i]
        if op == "Transpose" and len(ins) == 1 and ins[0] in imp.live:
            x = imp.live[ins[0]]
            rank = len(x.shape) + 1
            if rank < 3 or list(imp.attr(node, "perm", []) or []) != channels_last_perm(rank):
                return False
            out = node.output[0]
            readers = imp.readers_of(out)
            taken = {id(n) for n in readers if n.op_type == "LayerNormalization" and cls._last_axis(imp, n, rank)}
            for n in readers:
                if n.op_type == "ReduceMean":
                    taken.update(id(m) for m in cls._decomposition(imp, n) or ())
            if not readers or any(id(n) not in taken for n in readers):
                return False  # another use of the transposed tensor (a channels-last MLP is not imported)
            imp.pending[out] = (CHANNELS_LAST, ins[0], ins[0])
            return True
        if op == "LayerNormalization" and ins and imp.pending.get(ins[0], ("",))[0] == CHANNELS_LAST:
            live = imp.pending[ins[0]][2]
            x = imp.live[live]
            if not cls._last_axis(imp, node, len(x.shape) + 1):
                raise imp.fail(node, "normalises a channels-last tensor over other axes than the channels")
            attrs, params = cls._attrs(imp, node, x.shape[0], 1)
            cls._add_channels_last(imp, node, x, attrs, params, cls._named(imp, node))
            return True
        if op == "Transpose" and len(ins) == 1 and imp.pending.get(ins[0], ("",))[0] == CHANNELS_LAST:
            x = imp.live[imp.pending[ins[0]][2]]
            if list(imp.attr(node, "perm", []) or []) != channels_first_perm(len(x.shape) + 1):
                raise imp.fail(node, "transposes a channels-last tensor otherwise than back to channels-first")
            imp.alias(node, x)
            return True
        return False

    @classmethod
    def onnx_from_channels_last(cls, imp, node, rank):
        """LayerNormalization over the last axis of a view inside a longer channels-last island (ConvNeXt's
        block: norm, then its MLP): the twin moved channels-last again around it, Transpose ->
        LayerNormalization -> Transpose, which onnx_channels_last imports as one layer (no copy)."""
        used = {i for n in imp.nodes for i in n.input}
        if not cls._last_axis(imp, node, rank) or any(o in used for o in node.output[1:]):
            return None
        h, out = imp.onnx.helper, node.output[0]
        there = h.make_node("Transpose", [imp.cf(node.input[0])], [f"{out}#in"], name=f"{node.name}#channels_last",
                            perm=channels_last_perm(rank))
        norm = imp.onnx.NodeProto()
        norm.CopyFrom(node)
        norm.input[0], norm.output[0] = there.output[0], f"{out}#out"
        del norm.output[1:]
        back = h.make_node("Transpose", [norm.output[0]], [imp.cf(out)], name=f"{node.name}#channels_first",
                           perm=channels_first_perm(rank))
        return [there, norm, back]

    @staticmethod
    def _last_axis(imp, node, rank) -> bool:
        axis = imp.attr(node, "axis", -1)
        return (axis + rank if axis < 0 else axis) == rank - 1

    @classmethod
    def _add_channels_last(cls, imp, node, x, attrs, params, named):
        """The layer on live x; node's output becomes the channels-last view of the layer's output."""
        imp.add_layer(node, cls.kind, attrs, [x.layer], params, **named)
        out = node.output[0]
        private = f"{out}#channels_first"  # the layer's (channels-first) value, under a name no node uses
        imp.live[private] = imp.live.pop(out)
        imp.pending[out] = (CHANNELS_LAST, out, private)

    # ---- the decomposition: mean, centre, mean square, add eps, sqrt, divide (then scale and shift) ----
    @classmethod
    def _decomposition(cls, imp, mean) -> list | None:
        """The nodes of a layer norm decomposition starting at ReduceMean `mean` (ReduceMean, Sub, Pow or
        Mul, ReduceMean, Add, Sqrt, and Div or Reciprocal + Mul), matched on their wiring only; None
        when it is not one."""
        r = imp.readers_of
        src, m = mean.input[0], mean.output[0]

        def only(name, *ops):
            rs = r(name)
            return rs[0] if len(rs) == 1 and rs[0].op_type in ops else None

        sub = only(m, "Sub")
        if sub is None or list(sub.input) != [src, m]:
            return None
        centred = sub.output[0]
        users = r(centred)
        sq = [n for n in users if (n.op_type == "Pow" and n.input[0] == centred) or
              (n.op_type == "Mul" and list(n.input) == [centred, centred])]
        rest = [n for n in users if all(n is not s for s in sq)]
        if len(sq) != 1 or len(rest) != 1:
            return None
        var = only(sq[0].output[0], "ReduceMean")
        add = var and only(var.output[0], "Add")
        sqrt = add and only(add.output[0], "Sqrt")
        if sqrt is None:
            return None
        nodes = [mean, sub, sq[0], var, add, sqrt]
        last = rest[0]
        if last.op_type == "Div" and list(last.input) == [centred, sqrt.output[0]]:
            return nodes + [last]
        recip = only(sqrt.output[0], "Reciprocal")
        if recip is not None and last.op_type == "Mul" and sorted(last.input) == sorted([centred, recip.output[0]]):
            return nodes + [recip, last]
        return None

    @classmethod
    def onnx_decomposition(cls, imp, node) -> bool:
        """A layer norm written out over the channel axis of a live tensor (the original ConvNeXt's
        channels-first LayerNorm, cnngraph's export before opset 17) or over the last axis of a
        channels-last view (PyTorch's F.layer_norm before opset 17). Each step is a pending value; the
        layer is added at the last step (the division, or the scale and shift that follow it)."""
        op, ins = node.op_type, [i for i in node.input if i]
        pending = imp.pending
        state = [pending.get(i, ("",)) for i in ins]
        steps = [s[0] for s in state]
        out = node.output[0] if node.output else ""
        if op == "ReduceMean" and ins and (ins[0] in imp.live or steps[0] == CHANNELS_LAST):
            src = ins[0]
            c, rank = cls._source(imp, src)
            if cls._decomposition(imp, node) is None or not cls._axis_is(imp, node, src, rank):
                return False
            pending[out] = ("layer norm mean", src)
        elif op == "Sub" and len(ins) == 2 and steps[1] == "layer norm mean" and state[1][1] == ins[0]:
            pending[out] = ("layer norm centred value", ins[0])
        elif op in ("Pow", "Mul") and steps[0] == "layer norm centred value" and \
                (op == "Mul" and ins == [ins[0], ins[0]] or op == "Pow" and len(ins) == 2 and ins[1] not in pending):
            if op == "Pow" and float(np.reshape(imp.c(node, 1, "exponent"), -1)[0]) != 2.0 or \
                    op == "Pow" and np.size(imp.c(node, 1, "exponent")) != 1:
                raise imp.fail(node, "raises a layer norm's centred value to another power than 2")
            pending[out] = ("layer norm square", state[0][1], ins[0])
        elif op == "ReduceMean" and steps[0] == "layer norm square":
            src = state[0][1]
            if not cls._axis_is(imp, node, src, cls._source(imp, src)[1]):
                raise imp.fail(node, "averages a layer norm's squares over other axes than its mean")
            pending[out] = ("layer norm variance", src, state[0][2])
        elif op == "Add" and len(ins) == 2 and "layer norm variance" in steps:
            i = steps.index("layer norm variance")
            eps = imp.c(node, 1 - i, "epsilon")
            if np.size(eps) != 1 or not float(np.reshape(eps, -1)[0]) > 0:
                raise imp.fail(node, f"adds {np.reshape(eps, -1)[:4]} to a layer norm's variance: expected one "
                                     f"positive epsilon")
            pending[out] = ("layer norm variance + eps", state[i][1], state[i][2], float(np.reshape(eps, -1)[0]))
        elif op == "Sqrt" and steps[0] == "layer norm variance + eps":
            pending[out] = ("layer norm deviation", *state[0][1:])
        elif op == "Reciprocal" and steps[0] == "layer norm deviation":
            pending[out] = ("layer norm inverse deviation", *state[0][1:])
        elif op == "Div" and len(ins) == 2 and steps[1] == "layer norm deviation" and state[1][2] == ins[0] or \
                op == "Mul" and len(ins) == 2 and "layer norm inverse deviation" in steps and \
                state[steps.index("layer norm inverse deviation")][2] == ins[1 - steps.index(
                    "layer norm inverse deviation")]:
            st = state[1] if op == "Div" else state[steps.index("layer norm inverse deviation")]
            cls._normalised(imp, node, st[1], st[3], None)
        elif op == "Mul" and len(ins) == 2 and "layer norm normalised" in steps:
            i = steps.index("layer norm normalised")
            src, eps = state[i][1], state[i][2]
            w = cls._channel_vector(imp, node, 1 - i, src)
            if w is None:
                cls._flush(imp, ins[i])
                return False
            cls._normalised(imp, node, src, eps, w)
        elif op == "Add" and len(ins) == 2 and ("layer norm normalised" in steps or "layer norm scaled" in steps):
            i = next(j for j, s in enumerate(steps) if s in ("layer norm normalised", "layer norm scaled"))
            src, eps, w = state[i][1], state[i][2], state[i][3] if steps[i] == "layer norm scaled" else None
            b = cls._channel_vector(imp, node, 1 - i, src)
            if b is None:
                cls._flush(imp, ins[i])
                return False
            c = cls._source(imp, src)[0]
            cls._finish(imp, node, src, eps, np.ones(c, np.float32) if w is None else w, b)
        else:
            for i, s in zip(ins, steps):  # any other reader of a finished layer norm: the layer first
                if s in ("layer norm normalised", "layer norm scaled"):
                    cls._flush(imp, i)
            return False
        return True

    @staticmethod
    def _source(imp, src) -> tuple[int, int]:
        """(channels, rank with the batch) of a decomposition's input: a live tensor or a channels-last view."""
        st = imp.pending.get(src)
        x = imp.live[st[2]] if st is not None and st[0] == CHANNELS_LAST else imp.live[src]
        return x.shape[0], len(x.shape) + 1

    @staticmethod
    def _axis_is(imp, node, src, rank) -> bool:
        """Does ReduceMean `node` average its input over the channels alone, keeping the dims?"""
        axes = imp.attr(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            if node.input[1] not in imp.const:
                return False
            axes = [int(a) for a in np.reshape(imp.const[node.input[1]], -1)]
        if axes is None or len(axes) != 1 or not imp.attr(node, "keepdims", 1):
            return False
        axis = axes[0] + rank if axes[0] < 0 else axes[0]
        channels_last = imp.pending.get(src, ("",))[0] == CHANNELS_LAST
        return axis == (rank - 1 if channels_last else 1)

    @classmethod
    def _channel_vector(cls, imp, node, i, src):
        """Input i of node as one value per channel of the decomposition's input, or None."""
        name = node.input[i]
        if name in imp.live or name in imp.pending or name not in imp.const or name in imp.batch_dep:
            return None
        arr = np.asarray(imp.const[name], np.float64)
        c, rank = cls._source(imp, src)
        if imp.pending.get(src, ("",))[0] == CHANNELS_LAST:  # broadcast along the last axis
            if arr.ndim > rank or arr.size not in (1, c) or (arr.size > 1 and arr.shape[-1] != c):
                return None
            per = np.broadcast_to(arr.reshape(-1), (c,))
        else:
            x = imp.live[src]
            per = imp.per_channel(arr, x.shape)
        return None if per is None or not np.all(np.isfinite(per)) else np.asarray(per, np.float32)

    @classmethod
    def _normalised(cls, imp, node, src, eps, w):
        """After the division (w None) or the scale: the layer now, unless one reader may continue it."""
        out = node.output[0]
        readers = imp.readers_of(out)
        step = "layer norm normalised" if w is None else "layer norm scaled"
        nxt = ("Mul", "Add") if w is None else ("Add",)
        if len(readers) == 1 and readers[0].op_type in nxt and out not in {o.name for o in imp.g.output}:
            imp.pending[out] = (step, src, eps) if w is None else (step, src, eps, w)
            return
        c = cls._source(imp, src)[0]
        cls._finish(imp, node, src, eps, w, np.zeros(c, np.float32) if w is not None else None)

    @classmethod
    def _flush(cls, imp, name):
        """Add the layer a pending normalised (or scaled) value stands for, at the node that made it."""
        st = imp.pending.pop(name)
        node = imp.pending_node.pop(name)
        c = cls._source(imp, st[1])[0]
        w = st[3] if st[0] == "layer norm scaled" else None
        cls._finish(imp, node, st[1], st[2], w, np.zeros(c, np.float32) if w is not None else None)

    @classmethod
    def _finish(cls, imp, node, src, eps, w, bias):
        attrs, params = cls._layer(imp, eps, w, bias, ".weight")
        st = imp.pending.get(src)
        if st is not None and st[0] == CHANNELS_LAST:
            cls._add_channels_last(imp, node, imp.live[st[2]], attrs, params, {})
        else:
            imp.add_layer(node, cls.kind, attrs, [imp.live[src].layer], params)
