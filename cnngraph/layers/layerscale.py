"""Layer scale: a learned per-channel scale (ConvNeXt's gamma, CaiT's LayerScale)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, fc_diagonal, number
from .lowering import ChannelAffine


class LayerScale(Layer):
    """`layer_scale: {init: 1.0e-6}`: y = x * weight[c], a learned scale per channel (ConvNeXt's gamma).

    Per feature on flat inputs; every scale is `init` at initialisation (ConvNeXt's 1e-6). An affine
    map: folded into the convolution or linear layer that produces x, else applied in an epilogue
    or on its own."""

    kind = "layer_scale"
    category = Fusion.FOLD
    attrs = (Attr("init", number(), 1e-6, "the initial value of every scale"),)
    examples = (({}, [(20, 7)]), ({"init": 0.5}, [(5, 6, 7)]), ({"init": -2.0}, [(3, 2, 3, 4)]), ({}, [(9,)]))
    onnx_hint = True
    onnx_patterns = ("onnx_hinted_mul",)
    torch_bare_param = "weight"  # torchvision's CNBlock holds `layer_scale`, a (C, 1, 1) nn.Parameter

    def infer_shape(self, in_shapes):
        if len(in_shapes[0]) < 1:
            raise LayerError(f"expected a (C, ...) input, got shape {tuple(in_shapes[0])}")
        return tuple(in_shapes[0])

    def param_shapes(self, in_shapes):
        return {"weight": (in_shapes[0][0],)}

    def init_params(self, in_shapes, rng):
        return {"weight": np.full(in_shapes[0][0], self.init, np.float32)}

    def reference(self, xs, params):
        x = xs[0]
        return x * np.asarray(params["weight"]).astype(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))

    def lower(self, in_shapes, params):
        w = np.asarray(params["weight"], np.float64) if "weight" in params else np.ones(in_shapes[0][0])
        return ChannelAffine(w, np.zeros_like(w))

    def torch_fn(self, torch, in_shapes, params):
        w = params["weight"].reshape(-1, *([1] * (len(in_shapes[0]) - 1)))
        return lambda x: x * w

    # ---- FC view: the diagonal of the scales, each tied to its weight ----
    def fc_connections(self, in_shapes) -> int:
        return math.prod(in_shapes[0])

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        c, n = in_shapes[0][0], math.prod(in_shapes[0][1:])
        w = np.asarray(params["weight"], np.float64)
        return fc_diagonal(np.repeat(w, n), np.zeros(c * n), np.repeat(np.arange(c, dtype=np.int32), n), "weight",
                           "linear", keep_zeros=True)

    # ---- ONNX: Mul by the (C, 1, ..., 1) weight; a PyTorch model's such Mul folds into its producer ----
    def to_onnx(self, b, node, ins, weights):
        shape = node.in_shapes[0]
        w = np.asarray(weights[f"{node.name}.weight"], np.float32).reshape(-1, *([1] * (len(shape) - 1)))
        return b.node("Mul", [ins[0], b.init(f"{node.name}.weight", w)], node.name, node.name)

    @classmethod
    def onnx_hinted_mul(cls, imp, node) -> bool:
        """A Mul cnngraph's exporter wrote for a layer_scale. Any other Mul of an activation by a per-channel
        constant is batchnorm's affine import: folded into the conv or linear layer producing it."""
        if node.op_type != "Mul" or len(node.input) != 2 or node.input[0] not in imp.live:
            return False
        hint = imp.hint(node, cls.kind)
        if hint is None or node.input[1] not in imp.const:
            return False
        x = imp.live[node.input[0]]
        per = imp.per_channel(imp.c(node, 1, "scale"), x.shape)
        if per is None or not isinstance(hint.get("init"), (int, float)):
            return False
        imp.add_layer(node, cls.kind, {"init": hint["init"]}, [x.layer], {"weight": np.asarray(per, np.float32)})
        return True
