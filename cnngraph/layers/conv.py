"""Convolution, 1D/2D/3D, with stride, padding, dilation, groups (incl. depthwise) and bias."""

from __future__ import annotations

import math

import numpy as np

from ..errors import LayerError
from .base import (
    Attr,
    Fusion,
    Layer,
    Lowered,
    boolean,
    check_windows,
    fan_in_bound,
    ints,
    padding,
    per_dim,
    pos_int,
    resolve_pads,
    spatial_input,
    uniform,
    unseen_warnings,
    window_count,
    window_matrix,
    window_rf,
    window_taps,
    windows,
    compact_list,
    flat_pads,
    onnx_auto_pads,
    onnx_ints,
    onnx_padding,
)
from .lowering import Convolution
from ..shapes import Window


def _groups(v):
    if v == "depthwise":
        return v
    return pos_int(v, "a positive integer or 'depthwise'")


class Conv(Layer):
    """`conv: {out: 64, kernel: 3, stride: 1, padding: 1, dilation: 1, groups: 1, bias: true}`"""

    kind = "conv"
    category = Fusion.ANCHOR
    attrs = (
        Attr("out", pos_int, None, "output channels (default: input channels)"),
        Attr("kernel", ints(), doc="kernel size, an int or one per spatial dim"),
        Attr("stride", ints(), 1),
        Attr("padding", padding, 0),
        Attr("dilation", ints(), 1),
        Attr("groups", _groups, 1, "channel groups; 'depthwise' = one per input channel"),
        Attr("bias", boolean, True),
    )

    onnx_imports = ("Conv",)
    onnx_channels_last_ops = ("MatMul",)
    onnx_hint = True
    examples = (({"out": 5, "kernel": 3, "padding": 1}, [(3, 11)]),
                ({"out": 20, "kernel": 3, "stride": 2, "padding": [[0, 1], [1, 2]]}, [(17, 9, 10)]),
                ({"out": 6, "kernel": [1, 3], "dilation": 2, "groups": 2, "padding": "same"}, [(4, 7, 9)]),
                ({"kernel": 3, "groups": "depthwise", "padding": 1, "bias": False}, [(18, 6, 7)]),
                ({"out": 4, "kernel": 2, "stride": [1, 2, 1]}, [(3, 4, 5, 6)]))

    # ---- geometry, shared by every facet ----
    def geometry(self, in_shape):
        """(nd, kernel, stride, dilation, pads) for this input."""
        nd = spatial_input(self, in_shape)
        k, s, d = (per_dim(self, n, nd) for n in ("kernel", "stride", "dilation"))
        return nd, k, s, d, resolve_pads(self, in_shape[1:], k, s, d)

    def window(self, in_shape) -> Window:
        """The shared window geometry for this input."""
        _, k, s, d, pads = self.geometry(in_shape)
        return Window.of(in_shape[1:], k, s, d, pads)

    def lower(self, in_shapes, params):
        cin, cout, g = self.channels(in_shapes[0])
        return Convolution(self.window(in_shapes[0]), cin, cout, g, params["weight"], params.get("bias"))

    def same_function(self, other, in_shape) -> bool:
        """Do these attributes compute the same function as `other`'s on this input?"""
        return (self.infer_shape([in_shape]) == other.infer_shape([in_shape])
                and self.geometry(in_shape) == other.geometry(in_shape)
                and self.channels(in_shape) == other.channels(in_shape) and self.bias == other.bias)

    # ---- interop ----
    def to_onnx(self, b, node, ins, weights):
        _, k, s, d, pads = self.geometry(node.in_shapes[0])
        _, _, groups = self.channels(node.in_shapes[0])
        args = [ins[0], b.init(f"{node.name}.weight", weights[f"{node.name}.weight"])]
        if self.bias:
            args.append(b.init(f"{node.name}.bias", weights[f"{node.name}.bias"]))
        return b.node("Conv", args, node.name, node.name, kernel_shape=list(k), strides=list(s),
                      pads=flat_pads(pads), dilations=list(d), group=int(groups))

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        w = imp.c(node, 1, "weight").astype(np.float32)
        b = imp.c(node, 2, "bias", required=False)
        nd = len(x.shape) - 1
        if nd < 1 or w.ndim != nd + 2:
            raise imp.fail(node, f"expected a weight of rank {nd + 2} for input shape {x.shape}, got {w.shape}")
        k = onnx_ints(imp, node, "kernel_shape", w.shape[2:], nd)
        s = onnx_ints(imp, node, "strides", [1] * nd, nd)
        d = onnx_ints(imp, node, "dilations", [1] * nd, nd)
        groups = int(imp.attr(node, "group", 1))
        if tuple(k) != tuple(w.shape[2:]):
            raise imp.fail(node, f"kernel_shape {k} differs from the weight's {list(w.shape[2:])}")
        if groups < 1:
            raise imp.fail(node, f"expected a positive group count, got {groups}")
        pads, same = onnx_auto_pads(imp, node, x.shape[1:], k, s, d)
        cin = x.shape[0]
        attrs = {"out": int(w.shape[0]), "kernel": compact_list(k), "stride": compact_list(s),
                 "padding": "same" if same else onnx_padding(pads), "dilation": compact_list(d),
                 "groups": "depthwise" if groups == cin and groups > 1 and w.shape[0] % cin == 0 else groups,
                 "bias": b is not None}
        params = {"weight": w}
        if b is not None:
            params["bias"] = np.asarray(b, np.float32).reshape(-1)
        attrs = imp.simplest("conv", attrs, [imp.hint(node, "conv")], x.shape)
        imp.add_layer(node, "conv", attrs, [x.layer], params, hint=imp.weight_hint(node, w))
        return None

    @classmethod
    def onnx_from_channels_last(cls, imp, node, rank):
        """MatMul(view, W), W a constant (C, C'): a Linear over the channels of every position (torchvision
        ConvNeXt's MLP, written channels-last), which is a 1x1 convolution of the channels-first twin."""
        w = imp.const.get(node.input[1])
        if node.input[0] not in imp.views or w is None or node.input[1] in imp.batch_dep or np.ndim(w) != 2:
            return None
        name = f"{node.input[1]}#conv1x1"
        imp.const[name] = np.ascontiguousarray(np.asarray(w).T.reshape(w.shape[1], w.shape[0], *[1] * (rank - 2)))
        return [imp.channels_first_node(node, "Conv", [imp.cf(node.input[0]), name], kernel_shape=[1] * (rank - 2))]

    def torch_fn(self, torch, in_shapes, params):
        F = torch.nn.functional
        nd, k, s, d, pads = self.geometry(in_shapes[0])
        _, _, g = self.channels(in_shapes[0])
        conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        w, b = params["weight"], params.get("bias")
        if all(lo == hi for lo, hi in pads):
            return lambda x: conv(x, w, b, stride=s, dilation=d, groups=g, padding=[lo for lo, _ in pads])
        sides = [p for lo_hi in reversed(pads) for p in lo_hi]
        return lambda x: conv(F.pad(x, sides), w, b, stride=s, dilation=d, groups=g)

    def channels(self, in_shape) -> tuple[int, int, int]:
        """(in, out, groups) with 'depthwise' and the default `out` resolved, checked."""
        cin = in_shape[0]
        groups = cin if self.groups == "depthwise" else self.groups
        cout = self.out if self.out is not None else cin
        if cin % groups:
            raise LayerError(f"groups={groups} does not divide the {cin} input channels", attr="groups")
        if cout % groups:
            raise LayerError(f"groups={groups} does not divide the {cout} output channels", attr="groups")
        return cin, cout, groups

    def op_name(self, in_shapes):
        return f"conv{spatial_input(self, in_shapes[0])}d"  # raises on a flat input: op = kind

    def infer_shape(self, in_shapes):
        nd, k, s, d, pads = self.geometry(in_shapes[0])
        _, cout, _ = self.channels(in_shapes[0])
        return (cout, *check_windows(in_shapes[0][1:], k, s, d, pads))

    def param_shapes(self, in_shapes):
        _, k, *_ = self.geometry(in_shapes[0])
        cin, cout, g = self.channels(in_shapes[0])
        shapes = {"weight": (cout, cin // g, *k)}
        if self.bias:
            shapes["bias"] = (cout,)
        return shapes

    def macs(self, in_shapes, out_shape):
        _, k, *_ = self.geometry(in_shapes[0])
        cin, _, g = self.channels(in_shapes[0])
        return math.prod(out_shape) * (cin // g) * math.prod(k)

    def receptive_field(self, in_shapes, rfs):
        _, k, s, d, pads = self.geometry(in_shapes[0])
        return window_rf(rfs[0], k, s, d, pads)

    def warnings(self, in_shapes):
        return unseen_warnings(self, in_shapes[0], self.geometry(in_shapes[0]), self.infer_shape(in_shapes))

    def init_params(self, in_shapes, rng):
        shapes = self.param_shapes(in_shapes)
        w = shapes["weight"]
        bound = fan_in_bound(math.prod(w[1:]))
        return {name: uniform(rng, bound, shape) for name, shape in shapes.items()}

    def reference(self, xs, params):
        x = xs[0]
        nd, k, s, d, pads = self.geometry(x.shape[1:])
        cin, cout, g = self.channels(x.shape[1:])
        out_sp = check_windows(x.shape[2:], k, s, d, pads)
        w = params["weight"].astype(x.dtype)
        xp = np.pad(x, [(0, 0), (0, 0), *pads])
        n = x.shape[0]
        xg = xp.reshape(n, g, cin // g, *xp.shape[2:])
        wg = w.reshape(g, cout // g, cin // g, *k)
        y = np.zeros((n, g, cout // g, *out_sp), dtype=x.dtype)
        for offs, view in windows(xg.reshape(n, g * (cin // g), *xp.shape[2:]), k, s, d, out_sp):
            v = view.reshape(n, g, cin // g, *out_sp)
            tap = wg[(slice(None), slice(None), slice(None), *offs)]  # (g, og, ig)
            y += np.einsum("ngi...,goi->ngo...", v, tap)
        y = y.reshape(n, cout, *out_sp)
        if self.bias:
            y += params["bias"].astype(x.dtype).reshape(1, cout, *([1] * nd))
        return y

    # ---- FC view: a partially connected FC layer whose connections share weights ----
    def fc_connections(self, in_shapes) -> int:
        """Non-zeros of `to_matrix`, counted per dim without building it (padding taps excluded)."""
        _, k, s, d, pads = self.geometry(in_shapes[0])
        cin, cout, g = self.channels(in_shapes[0])
        out = self.infer_shape(in_shapes)
        return cout * (cin // g) * window_count(in_shapes[0][1:], k, s, d, pads, out[1:])

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """y = M x + b; M[(co, o), (ci, i)] = weight[co, ci, tap] where tap reads pixel i.

        >>> import numpy as np
        >>> conv = Conv.from_attrs({"out": 2, "kernel": 3, "padding": 1, "groups": 2})
        >>> p = conv.init_params([(2, 5, 5)], np.random.default_rng(0))
        >>> lo = conv.to_matrix([(2, 5, 5)], p)
        >>> x = np.random.default_rng(1).standard_normal((1, 2, 5, 5))
        >>> bool(np.allclose(lo.matrix @ x.ravel() + lo.bias, conv.reference([x], p).ravel()))
        True
        """
        _, k, s, d, pads = self.geometry(in_shapes[0])
        _, cout, g = self.channels(in_shapes[0])
        out = self.infer_shape(in_shapes)
        taps = window_taps(in_shapes[0][1:], k, s, d, pads, out[1:])
        m, tie = window_matrix(in_shapes[0], cout, g, taps, weight=params["weight"])
        n_o = m.shape[0] // cout
        bias = (np.repeat(np.asarray(params["bias"], np.float64), n_o) if self.bias
                else np.zeros(m.shape[0]))
        return Lowered(m, bias, tie, "weight", "linear")

    def fc_rows(self, in_shapes, params, xs, g):
        """g @ M as a transposed convolution: every tap scatters g times its weight back onto the
        input pixels it read (the same `windows` geometry as `reference`), g @ b per row."""
        nd, k, s, d, pads = self.geometry(in_shapes[0])
        cin, cout, grp = self.channels(in_shapes[0])
        out = self.infer_shape(in_shapes)
        n = g.shape[0]
        gy = g.reshape(n, grp, cout // grp, *out[1:])
        w = np.asarray(params["weight"], np.float64).reshape(grp, cout // grp, cin // grp, *k)
        spatial = in_shapes[0][1:]
        gx = np.zeros((n, cin, *(m + lo + hi for m, (lo, hi) in zip(spatial, pads))))
        for offs, view in windows(gx, k, s, d, out[1:]):
            tap = w[(slice(None), slice(None), slice(None), *offs)]  # (g, og, ig)
            view.reshape(n, grp, cin // grp, *out[1:])[...] += np.einsum("ngo...,goi->ngi...", gy, tap)
        gx = gx[(slice(None), slice(None), *(slice(lo, lo + m) for m, (lo, _) in zip(spatial, pads)))]
        const = gy.sum(axis=tuple(range(3, 3 + nd))).reshape(n, cout) @ np.asarray(params["bias"], np.float64) \
            if self.bias else np.zeros(n)
        return gx.reshape(n, -1), const, "linear"
