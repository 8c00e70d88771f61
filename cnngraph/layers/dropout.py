"""Dropout: the identity at inference."""

from __future__ import annotations

import math

from .base import Attr, Fusion, Layer, Lowered, fc_identity, number
from .lowering import Identity


class Dropout(Layer):
    """`dropout: {p: 0.5}`: kept in the spec for fidelity, no code at inference."""

    kind = "dropout"
    category = Fusion.FREE
    attrs = (Attr("p", number(0.0, 1.0), 0.5, "drop probability during training"),)

    def lower(self, in_shapes, params):
        return Identity()

    def reference(self, xs, params):
        return xs[0]

    def fc_connections(self, in_shapes) -> int:
        return math.prod(in_shapes[0])

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The identity (inference)."""
        return fc_identity(math.prod(in_shapes[0]))
