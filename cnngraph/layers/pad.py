"""Explicit constant padding of the spatial dims."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, fc_selection, number, padding, resolve_pads, spatial_input
from .lowering import ConstantPad


class Pad(Layer):
    """`pad: {padding: [[0, 1], [0, 1]], value: 0}`: same padding forms as conv, except 'same'."""

    kind = "pad"
    category = Fusion.OPAQUE
    attrs = (Attr("padding", padding, doc="an int, one per dim, or [lo, hi] per dim"),
             Attr("value", number(), 0.0))

    def validate(self):
        if self.padding == "same":  # no window, so 'same' would silently mean no padding
            raise LayerError("attribute 'padding': expected an integer, a list or 'valid', got 'same'",
                             attr="padding", hint="'same' needs a kernel and stride; give the pads explicitly")

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

    def lower(self, in_shapes, params):
        return ConstantPad(self.pads(in_shapes[0]), float(self.value))

    def reference(self, xs, params):
        x = xs[0]
        return np.pad(x, [(0, 0), (0, 0), *self.pads(x.shape[1:])], constant_values=self.value)

    # ---- FC view: a 0/1 selection; padded rows are empty with bias `value` ----
    def fc_connections(self, in_shapes) -> int:
        return int(np.prod(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        shape = tuple(in_shapes[0])
        src = np.pad(np.arange(int(np.prod(shape))).reshape(shape), [(0, 0), *self.pads(shape)],
                     constant_values=-1)
        sel = fc_selection(src.ravel(), int(np.prod(shape)), bias_missing=self.value)
        return Lowered(sel.matrix, sel.bias, sel.tie, None, "linear")
