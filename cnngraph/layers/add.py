"""Elementwise sum of branches (ResNet's shortcut merge)."""

from __future__ import annotations

from ..errors import LayerError
from .base import Fusion, Layer
from .concat import largest_rf


class Add(Layer):
    """`add: {from: [a, b]}`: all inputs must have the same shape."""

    kind = "add"
    category = Fusion.MERGE
    n_inputs = None

    def infer_shape(self, in_shapes):
        first = tuple(in_shapes[0])
        for s in in_shapes[1:]:
            if tuple(s) != first:
                hint = "the shortcut needs a 1x1 projection" if len(s) == len(first) else None
                raise LayerError(f"expected inputs of equal shape, got "
                                 f"{', '.join(str(tuple(x)) for x in in_shapes)}", hint=hint)
        return first

    def receptive_field(self, in_shapes, rfs):
        return largest_rf(rfs)

    def reference(self, xs, params):
        y = xs[0].copy()
        for x in xs[1:]:
            y += x
        return y
