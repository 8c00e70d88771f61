"""Fully-connected (linear) layer on a flat input."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, boolean, fan_in_bound, fc_csr, fc_index_dtype, pos_int, uniform
from .lowering import Dense


class Linear(Layer):
    """`linear: {out: 10, bias: true}`: y = x W^T + b, W of shape (out, in)."""

    kind = "linear"
    category = Fusion.ANCHOR
    attrs = (Attr("out", pos_int, doc="output features"), Attr("bias", boolean, True))

    def infer_shape(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 1:
            raise LayerError(f"expected a flat input (features,), got shape {tuple(shape)}",
                             hint="add a 'flatten' (or a global pool and a flatten) before it")
        return (self.out,)

    def param_shapes(self, in_shapes):
        shapes = {"weight": (self.out, in_shapes[0][0])}
        if self.bias:
            shapes["bias"] = (self.out,)
        return shapes

    def macs(self, in_shapes, out_shape):
        return in_shapes[0][0] * self.out

    def receptive_field(self, in_shapes, rfs):
        return None

    def init_params(self, in_shapes, rng):
        bound = fan_in_bound(in_shapes[0][0])
        return {n: uniform(rng, bound, s) for n, s in self.param_shapes(in_shapes).items()}

    def lower(self, in_shapes, params):
        return Dense(params["weight"], params.get("bias"))

    def reference(self, xs, params):
        x = xs[0]
        y = x @ params["weight"].astype(x.dtype).T
        if self.bias:
            y = y + params["bias"].astype(x.dtype)
        return np.ascontiguousarray(y)

    # ---- FC view: the one layer that is fully connected, nothing shared ----
    def fc_connections(self, in_shapes) -> int:
        return in_shapes[0][0] * self.out

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """M = weight (dense, stored as CSR), tie = arange: every connection its own parameter."""
        n_in, n = in_shapes[0][0], in_shapes[0][0] * self.out
        m = fc_csr(np.asarray(params["weight"], np.float64).ravel(), np.tile(np.arange(n_in), self.out),
                   np.arange(self.out + 1) * n_in, (self.out, n_in))
        bias = np.asarray(params["bias"], np.float64).copy() if self.bias else np.zeros(self.out)
        return Lowered(m, bias, np.arange(n, dtype=fc_index_dtype(n)), "weight", "linear")
