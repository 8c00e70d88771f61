"""Flatten (C, *spatial) to (C * prod(spatial),), channel-major like PyTorch."""

from __future__ import annotations

import math

from .base import Fusion, Layer


class Flatten(Layer):
    """`flatten`: no code, just a new view of the same memory."""

    kind = "flatten"
    category = Fusion.FREE

    def infer_shape(self, in_shapes):
        return (math.prod(in_shapes[0]),)

    def receptive_field(self, in_shapes, rfs):
        return None

    def reference(self, xs, params):
        return xs[0].reshape(xs[0].shape[0], -1)
