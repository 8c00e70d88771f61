"""Dropout: the identity at inference."""

from __future__ import annotations

from .base import Attr, Fusion, Layer, number


class Dropout(Layer):
    """`dropout: {p: 0.5}`: kept in the spec for fidelity, no code at inference."""

    kind = "dropout"
    category = Fusion.FREE
    attrs = (Attr("p", number(0.0, 1.0), 0.5, "drop probability during training"),)

    def reference(self, xs, params):
        return xs[0]
