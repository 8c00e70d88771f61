"""Batch normalisation at inference: a per-channel affine map from running statistics."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, boolean, fc_diagonal, number
from .lowering import ChannelAffine


class BatchNorm(Layer):
    """`batchnorm: {eps: 1e-5, affine: true}`: (x - mean) / sqrt(var + eps) * weight + bias.

    `running_mean`/`running_var` are buffers (not trainable), as in PyTorch.
    """

    kind = "batchnorm"
    category = Fusion.FOLD
    attrs = (Attr("eps", number(0.0, lo_open=True), 1e-5), Attr("affine", boolean, True))
    onnx_imports = ("BatchNormalization", "Add", "Sub", "Mul", "Div")
    examples = (({}, [(20, 7)]), ({"eps": 0.1}, [(5, 6, 7)]), ({"affine": False}, [(3, 2, 3, 4)]), ({}, [(9,)]))

    def to_onnx(self, b, node, ins, weights):
        n, c = node.name, node.in_shapes[0][0]
        if self.affine:
            scale, bias = b.init(f"{n}.weight", weights[f"{n}.weight"]), b.init(f"{n}.bias", weights[f"{n}.bias"])
        else:  # not parameters of the layer: names the importer recognises as constants
            scale = b.init(f"{n}.const_scale", np.ones(c, np.float32))
            bias = b.init(f"{n}.const_bias", np.zeros(c, np.float32))
        mean = b.init(f"{n}.running_mean", weights[f"{n}.running_mean"])
        var = b.init(f"{n}.running_var", weights[f"{n}.running_var"])
        return b.node("BatchNormalization", [ins[0], scale, bias, mean, var], n, n, epsilon=float(self.eps))

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: torch.nn.functional.batch_norm(x, params["running_mean"], params["running_var"],
                                                        params.get("weight"), params.get("bias"), False, 0.0,
                                                        self.eps)

    @classmethod
    def from_onnx(cls, imp, node):
        """BatchNormalization; an activation plus, minus, times or over a per-channel constant is an
        affine map too: folded into the conv/linear/batchnorm that produced it, else a batchnorm."""
        if node.op_type != "BatchNormalization":
            return cls._constant_affine(imp, node)
        x = imp.x(node)
        if imp.attr(node, "training_mode", 0):
            raise imp.fail(node, "training_mode=1; cnngraph runs inference only")
        imp.only_output(node)
        if imp.attr(node, "spatial", 1) == 0:
            raise imp.fail(node, "spatial=0 (per-element statistics) is not cnngraph's batchnorm")
        scale, bias, mean, var = (np.asarray(imp.c(node, i, w), np.float32).reshape(-1)
                                  for i, w in enumerate(("scale", "B", "mean", "var"), 1))
        c = x.shape[0]
        for arr, what in ((scale, "scale"), (bias, "B"), (mean, "mean"), (var, "var")):
            if arr.shape != (c,):
                raise imp.fail(node, f"expected {what} of shape ({c},), got {arr.shape}")
        eps = imp.attr(node, "epsilon", 1e-5)
        if not eps > 0:
            raise imp.fail(node, f"expected a positive epsilon, got {eps}")
        scale_name = imp.init_names.get(id(imp.c(node, 1, "scale")), "")
        affine = not (np.all(scale == 1) and np.all(bias == 0) and not scale_name.endswith(".weight"))
        params = {"running_mean": mean, "running_var": var}
        if affine:
            params.update(weight=scale, bias=bias)
        hint = imp.weight_hint(node, imp.c(node, 1, "scale"))
        if hint is None and scale_name.endswith(".const_scale"):
            hint = imp.clean_name(scale_name[: -len(".const_scale")])
        imp.add_layer(node, "batchnorm", {"eps": imp.f32(eps), "affine": affine}, [x.layer], params, hint=hint)
        return None

    @classmethod
    def _constant_affine(cls, imp, node):
        a, b = node.input[0], node.input[1] if len(node.input) > 1 else ""
        op = node.op_type
        if a in imp.live and b in imp.live:
            return f"{op} of two activations"
        if a not in imp.live and op in ("Sub", "Div"):
            imp.x(node, 0)  # raises: constant - activation is no layer
        x, c = (imp.live[a], imp.c(node, 1, "operand")) if a in imp.live else (imp.live[b], imp.c(node, 0, "operand"))
        verb = {"Add": "adds", "Sub": "subtracts", "Mul": "multiplies by", "Div": "divides by"}[op]
        per = imp.per_channel(c, x.shape)
        if per is None:
            raise imp.fail(node, f"{verb} a constant of shape {np.shape(c)} that is not one value per channel "
                                 f"of the (N, {', '.join(map(str, x.shape))}) activation")
        if not np.all(np.isfinite(per)):
            raise imp.fail(node, f"{verb} a constant that is not finite")
        if op == "Div" and np.any(per == 0):
            raise imp.fail(node, "divides by a constant with zeros")
        scale, shift = {"Add": (None, per), "Sub": (None, -per), "Mul": (per, None)}.get(op) or (1.0 / per, None)
        imp.affine(node, x, scale, shift)
        return None

    def op_name(self, in_shapes):
        return f"batchnorm{max(len(in_shapes[0]) - 1, 1)}d"

    def infer_shape(self, in_shapes):
        if len(in_shapes[0]) < 1:
            raise LayerError(f"expected a (C, ...) input, got shape {tuple(in_shapes[0])}")
        return tuple(in_shapes[0])

    def param_shapes(self, in_shapes):
        c = in_shapes[0][0]
        return {"weight": (c,), "bias": (c,)} if self.affine else {}

    def buffer_shapes(self, in_shapes):
        c = in_shapes[0][0]
        return {"running_mean": (c,), "running_var": (c,)}

    def init_params(self, in_shapes, rng):
        c = in_shapes[0][0]
        p = {"running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
        if self.affine:
            p.update(weight=np.ones(c, np.float32), bias=np.zeros(c, np.float32))
        return p

    def scale_shift(self, params, dtype=np.float64):
        """Per-channel (scale, shift) with y = x * scale + shift; used by folding and FC view."""
        inv = 1.0 / np.sqrt(params["running_var"].astype(dtype) + dtype(self.eps))
        scale = inv * (params["weight"].astype(dtype) if self.affine else 1.0)
        shift = -params["running_mean"].astype(dtype) * scale
        if self.affine:
            shift = shift + params["bias"].astype(dtype)
        return scale, shift

    def lower(self, in_shapes, params):
        return ChannelAffine(*self.scale_shift(params))

    def reference(self, xs, params):
        x = xs[0]
        scale, shift = self.scale_shift(params, np.float64)
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        return (x * scale.reshape(bshape) + shift.reshape(bshape)).astype(x.dtype)

    # ---- FC view: a diagonal matrix, one coefficient per channel ----
    def fc_connections(self, in_shapes) -> int:
        return int(np.prod(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """diag(scale[c]) + shift[c] repeated over each channel's positions; each coefficient
        is derived from `weight[c]` (affine) and the running statistics."""
        c, n = in_shapes[0][0], int(np.prod(in_shapes[0][1:]))
        scale, shift = self.scale_shift(params, np.float64)
        tie = np.repeat(np.arange(c, dtype=np.int32), n) if self.affine else None
        return fc_diagonal(np.repeat(scale, n), np.repeat(shift, n), tie, "weight" if self.affine else None,
                           "linear", keep_zeros=True)
