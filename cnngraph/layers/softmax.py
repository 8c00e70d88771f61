"""Softmax over the channel (feature) axis."""

from __future__ import annotations

import numpy as np

from .base import Fusion, Layer


class Softmax(Layer):
    """`softmax`: exp(x - max) / sum over channels, at every spatial position."""

    kind = "softmax"
    category = Fusion.OPAQUE

    def reference(self, xs, params):
        x = xs[0]
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
