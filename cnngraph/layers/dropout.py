"""Dropout and drop path (stochastic depth): the identity at inference."""

from __future__ import annotations

import math

import numpy as np

from .base import Attr, Fusion, Layer, Lowered, fc_identity, number
from .lowering import Identity


class Dropout(Layer):
    """`dropout: {p: 0.5}`: kept in the spec for fidelity, no code at inference."""

    kind = "dropout"
    category = Fusion.FREE
    attrs = (Attr("p", number(0.0, 1.0), 0.5, "drop probability during training"),)
    onnx_imports = ("Dropout",)
    examples = (({}, [(20, 7)]), ({"p": 0.1}, [(5, 6, 7)]), ({}, [(9,)]))
    onnx_hint = True

    def to_onnx(self, b, node, ins, weights):
        import numpy as np
        args = list(ins)
        if self.p < 1.0:  # ONNX wants ratio in [0, 1); at inference it has no effect anyway
            args.append(b.init(f"{node.name}.ratio", np.array(self.p, np.float32)))
        return b.node("Dropout", args, node.name, node.name)

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: x

    @classmethod
    def from_onnx(cls, imp, node):
        imp.only_output(node)
        x = imp.x(node)
        ratio = imp.attr(node, "ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            r = imp.c(node, 1, "ratio")
            if r is not None and np.size(r) != 1:
                raise imp.fail(node, f"expected a scalar ratio, got shape {np.shape(r)}")
            ratio = float(np.asarray(r).reshape(-1)[0])
        hint = imp.hint(node, "dropout")  # p has no effect at inference: the exporter's value is safe to take
        if hint and isinstance(hint.get("p"), (int, float)) and 0 <= hint["p"] <= 1:
            ratio = hint["p"]
        if len(node.input) > 2 and node.input[2] and bool(np.asarray(imp.c(node, 2, "training_mode")).any()):
            raise imp.fail(node, "training_mode is true; cnngraph runs inference only")
        if not 0 <= ratio <= 1:
            raise imp.fail(node, f"expected a ratio in [0, 1], got {ratio}")
        imp.add_layer(node, "dropout", {"p": imp.f32(ratio)}, [x.layer])
        return None

    def lower(self, in_shapes, params):
        return Identity()

    def reference(self, xs, params):
        return xs[0]

    def fc_connections(self, in_shapes) -> int:
        return math.prod(in_shapes[0])

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The identity (inference)."""
        return fc_identity(math.prod(in_shapes[0]))


class DropPath(Layer):
    """`drop_path: {p: 0.1}`: stochastic depth, the identity at inference (kept in the spec for fidelity).

    In training a residual branch is dropped for a whole sample with probability p and kept ones
    are scaled by 1 / (1 - p) (torchvision's StochasticDepth in "row" mode, timm's DropPath)."""

    kind = "drop_path"
    category = Fusion.FREE
    attrs = (Attr("p", number(0.0, 1.0), 0.0, "probability of dropping the branch during training"),)
    examples = (({}, [(20, 7)]), ({"p": 0.1}, [(5, 6, 7)]), ({"p": 0.2}, [(3, 2, 3, 4)]), ({}, [(9,)]))
    onnx_hint = True
    onnx_patterns = ("onnx_hinted_identity",)

    def to_onnx(self, b, node, ins, weights):
        """An Identity node (what it is at inference); the importer recognises cnngraph's by its hint."""
        return b.node("Identity", ins, node.name, node.name)

    @classmethod
    def onnx_hinted_identity(cls, imp, node) -> bool:
        """An Identity cnngraph's exporter wrote for a drop_path (other Identity nodes are aliases)."""
        if node.op_type != "Identity" or not node.input or node.input[0] not in imp.live:
            return False
        hint = imp.hint(node, cls.kind)
        if hint is None or not isinstance(hint.get("p"), (int, float)) or not 0 <= hint["p"] <= 1:
            return False
        imp.add_layer(node, cls.kind, {"p": hint["p"]}, [imp.live[node.input[0]].layer])
        return True

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: x

    def lower(self, in_shapes, params):
        return Identity()

    def reference(self, xs, params):
        return xs[0]

    def fc_connections(self, in_shapes) -> int:
        return math.prod(in_shapes[0])

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The identity (inference)."""
        return fc_identity(math.prod(in_shapes[0]))
