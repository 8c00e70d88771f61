"""Flatten (C, *spatial) to (C * prod(spatial),), channel-major like PyTorch."""

from __future__ import annotations

import math

from .base import Fusion, Layer, Lowered, fc_identity
from .lowering import Flatten as FlattenLowering


class Flatten(Layer):
    """`flatten`: no code, just a new view of the same memory."""

    kind = "flatten"
    category = Fusion.FREE

    def infer_shape(self, in_shapes):
        return (math.prod(in_shapes[0]),)

    def receptive_field(self, in_shapes, rfs):
        return None

    def lower(self, in_shapes, params):
        return FlattenLowering()

    def reference(self, xs, params):
        return xs[0].reshape(xs[0].shape[0], math.prod(xs[0].shape[1:]))  # -1 is ambiguous for a batch of 0

    def fc_connections(self, in_shapes) -> int:
        return math.prod(in_shapes[0])

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The identity: flattening is already how the FC view sees every tensor."""
        return fc_identity(math.prod(in_shapes[0]))
