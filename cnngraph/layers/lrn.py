"""Local response normalisation across channels (AlexNet, GoogLeNet)."""

from __future__ import annotations

import numpy as np

from .base import Attr, Fusion, Layer, number, pos_int


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

    def reference(self, xs, params):
        x = xs[0]
        sq = (x.astype(np.float64)) ** 2
        c = x.shape[1]
        padded = np.pad(sq, [(0, 0), (self.size // 2, (self.size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
        acc = sum(padded[:, i:i + c] for i in range(self.size))
        return (x / (self.k + self.alpha / self.size * acc) ** self.beta).astype(x.dtype)
