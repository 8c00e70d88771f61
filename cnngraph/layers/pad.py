"""Explicit constant padding of the spatial dims."""

from __future__ import annotations

import numpy as np

from .base import Attr, Fusion, Layer, number, padding, resolve_pads, spatial_input


class Pad(Layer):
    """`pad: {padding: [[0, 1], [0, 1]], value: 0}`: same padding forms as conv, except 'same'."""

    kind = "pad"
    category = Fusion.OPAQUE
    attrs = (Attr("padding", padding, doc="an int, one per dim, or [lo, hi] per dim"),
             Attr("value", number(), 0.0))

    def pads(self, in_shape):
        nd = spatial_input(self, in_shape)
        one = (1,) * nd
        return resolve_pads(self, in_shape[1:], one, one, one)

    def infer_shape(self, in_shapes):
        return (in_shapes[0][0], *(n + lo + hi for n, (lo, hi) in zip(in_shapes[0][1:], self.pads(in_shapes[0]))))

    def receptive_field(self, in_shapes, rfs):
        if rfs[0] is None:
            return None
        return tuple((size, jump, start - lo * jump) for (size, jump, start), (lo, _) in
                     zip(rfs[0], self.pads(in_shapes[0])))

    def reference(self, xs, params):
        x = xs[0]
        return np.pad(x, [(0, 0), (0, 0), *self.pads(x.shape[1:])], constant_values=self.value)
