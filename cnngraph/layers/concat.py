"""Concatenation along channels (Inception's branch merge)."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Fusion, Layer, Lowered, fc_identity
from .lowering import Concat as ConcatLowering


class Concat(Layer):
    """`concat: {from: [b1, b2, b3]}`: inputs must agree on every dim but the channels."""

    kind = "concat"
    category = Fusion.CONCAT
    n_inputs = None
    onnx_imports = ("Concat",)
    examples = (({}, [(16, 7), (5, 7)]), ({}, [(3, 4, 5), (16, 4, 5), (3, 4, 5)]), ({}, [(2, 2, 3, 4), (3, 2, 3, 4)]),
                ({}, [(20,), (7,)]))

    def to_onnx(self, b, node, ins, weights):
        return b.node("Concat", ins, node.name, node.name, axis=1)

    def torch_fn(self, torch, in_shapes, params):
        return lambda *xs: torch.cat(xs, 1)

    @classmethod
    def from_onnx(cls, imp, node):
        ins = [n for n in node.input if n]
        xs = [imp.x(node, i) for i, n in enumerate(node.input) if n]
        r = len(xs[0].shape) + 1
        axis = imp.attr(node, "axis")
        if axis is None or (axis + r if axis < 0 else axis) != 1:
            raise imp.fail(node, f"concatenates along axis {axis} of rank-{r} tensors; cnngraph concatenates "
                                 "channels (axis 1) only")
        if len(ins) == 1:
            return imp.alias(node, xs[0])
        imp.add_layer(node, "concat", {}, [x.layer for x in xs])
        return None

    def infer_shape(self, in_shapes):
        first = in_shapes[0]
        for s in in_shapes[1:]:
            if len(s) != len(first) or tuple(s[1:]) != tuple(first[1:]):
                raise LayerError(f"expected inputs that differ only in channels, got shapes "
                                 f"{', '.join(str(tuple(x)) for x in in_shapes)}")
        return (sum(s[0] for s in in_shapes), *first[1:])

    def receptive_field(self, in_shapes, rfs):
        return largest_rf(rfs)

    def lower(self, in_shapes, params):
        return ConcatLowering()

    def reference(self, xs, params):
        return np.concatenate(xs, axis=1)

    # ---- FC view: channel-major flattening makes the block matrix [[I, 0], [0, I]] = I ----
    def fc_connections(self, in_shapes) -> int:
        return sum(int(np.prod(s)) for s in in_shapes)

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        return fc_identity(sum(int(np.prod(s)) for s in in_shapes))


def largest_rf(rfs):
    """Over several paths, each spatial dim keeps the largest window (the DAG rule)."""
    known = [r for r in rfs if r is not None]
    if not known:
        return None
    return tuple(max(dims, key=lambda t: t[0]) for dims in zip(*known))
