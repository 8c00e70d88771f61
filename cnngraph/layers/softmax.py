"""Softmax over the channel (feature) axis."""

from __future__ import annotations

import numpy as np

from .base import Fusion, Layer, Lowered, fc_csr, fc_point
from .lowering import ChannelReduction, ChannelStat


class Softmax(Layer):
    """`softmax`: exp(x - max) / sum over channels, at every spatial position."""

    kind = "softmax"
    category = Fusion.OPAQUE

    def lower(self, in_shapes, params):
        """max over channels, then the sum of exp(x - max); y = exp(x - max) / sum."""
        return ChannelReduction(self, (ChannelStat("max", lambda m, x, s: x),
                                       ChannelStat("sum", lambda m, x, s: m.exp(m.sub(x, s[0])))),
                                lambda m, x, s: m.div(m.exp(m.sub(x, s[0])), s[1]))

    def reference(self, xs, params):
        x = xs[0]
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # ---- FC view: not linear; the local Jacobian at the input, dense over channels ----
    def fc_connections(self, in_shapes) -> int:
        c = in_shapes[0][0]
        return c * int(np.prod(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The tangent at `xs` (mode 'local'): J[(c, p), (c', p)] = s_c (delta_cc' - s_c')."""
        (x,) = fc_point(self, in_shapes, xs)
        c = x.shape[0]
        xf = x.reshape(c, -1)
        n = xf.shape[1]
        s = self.reference([xf[None]], params)[0]  # (C, S)
        jac = s[:, :, None] * (np.eye(c)[:, None, :] - s.T[None, :, :])  # (C, S, C')
        cols = np.arange(c)[None, None, :] * n + np.arange(n)[None, :, None]
        m = fc_csr(jac.ravel(), np.broadcast_to(cols, jac.shape).ravel(), np.arange(c * n + 1) * c, (c * n, c * n))
        return Lowered(m, s.ravel() - m @ x.ravel(), np.full(m.nnz, -1, np.int32), None, "local")
