"""Local response normalisation across channels (AlexNet, GoogLeNet)."""

from __future__ import annotations

import numpy as np

from .base import Attr, Fusion, Layer, Lowered, fc_counts_indptr, fc_csr, fc_point, number, pos_int
from .lowering import ChannelReduction, ChannelStat


class LRN(Layer):
    """`lrn: {size: 5, alpha: 1e-4, beta: 0.75, k: 2}`

    y = x / (k + alpha / size * sum of x^2 over `size` neighbouring channels)^beta,
    the window spanning size//2 channels before and (size-1)//2 after (PyTorch).
    """

    kind = "lrn"
    category = Fusion.OPAQUE
    attrs = (
        Attr("size", pos_int, 5, "channels in the window"),
        Attr("alpha", number(0.0), 1e-4),
        Attr("beta", number(0.0), 0.75),
        Attr("k", number(0.0), 1.0),
    )

    def lower(self, in_shapes, params):
        """The windowed sum of squares over neighbouring channels, then x / (k + alpha/size * sum)^beta."""
        window = ChannelStat("sum", lambda m, x, s: m.mul(x, x), (self.size // 2, (self.size - 1) // 2),
                             self.alpha / self.size)
        return ChannelReduction(self, (window,), lambda m, x, s: m.div(x, m.pow(m.add(s[0], self.k), self.beta)))

    def reference(self, xs, params):
        x = xs[0]
        sq = (x.astype(np.float64)) ** 2
        c = x.shape[1]
        padded = np.pad(sq, [(0, 0), (self.size // 2, (self.size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
        acc = sum(padded[:, i:i + c] for i in range(self.size))
        return (x / (self.k + self.alpha / self.size * acc) ** self.beta).astype(x.dtype)

    # ---- FC view: not linear; the local Jacobian at the input, banded over channels ----
    def fc_connections(self, in_shapes) -> int:
        c, n = in_shapes[0][0], int(np.prod(in_shapes[0][1:]))
        j = np.arange(c)[:, None] - self.size // 2 + np.arange(self.size)[None, :]
        return n * int(((j >= 0) & (j < c)).sum())

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The tangent at `xs` (mode 'local'): with D = k + alpha/size * window sum of x^2,
        dy_c/dx_j = [c == j] D_c^-beta - 2 alpha beta / size * x_c x_j D_c^(-beta-1), j in c's window."""
        (x,) = fc_point(self, in_shapes, xs)
        c = x.shape[0]
        xf = x.reshape(c, -1)
        n = xf.shape[1]
        j = np.arange(c)[:, None] - self.size // 2 + np.arange(self.size)[None, :]  # (C, size)
        ok = (j >= 0) & (j < c)
        js = np.where(ok, j, 0)
        d = self.k + self.alpha / self.size * np.where(ok[:, None, :], xf[js].transpose(0, 2, 1) ** 2, 0).sum(-1)
        xj = xf[js].transpose(0, 2, 1)  # (C, S, size): x_j at the same position
        jac = (-2 * self.alpha * self.beta / self.size) * (xf * d ** (-self.beta - 1))[:, :, None] * xj
        jac = jac + (j == np.arange(c)[:, None])[:, None, :] * (d ** -self.beta)[:, :, None]
        cols = js[:, None, :] * n + np.arange(n)[None, :, None]
        mask = np.broadcast_to(ok[:, None, :], jac.shape)
        indptr = fc_counts_indptr(np.repeat(ok.sum(1), n))
        m = fc_csr(jac[mask], cols[mask], indptr, (c * n, c * n))
        y = xf * d ** -self.beta
        return Lowered(m, y.ravel() - m @ x.ravel(), np.full(m.nnz, -1, np.int32), None, "local")
