"""Batch normalisation at inference: a per-channel affine map from running statistics."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, boolean, fc_diagonal, number
from .lowering import ChannelAffine


class BatchNorm(Layer):
    """`batchnorm: {eps: 1e-5, affine: true}`: (x - mean) / sqrt(var + eps) * weight + bias.

    `running_mean`/`running_var` are buffers (not trainable), as in PyTorch.
    """

    kind = "batchnorm"
    category = Fusion.FOLD
    attrs = (Attr("eps", number(0.0, lo_open=True), 1e-5), Attr("affine", boolean, True))

    def op_name(self, in_shapes):
        return f"batchnorm{max(len(in_shapes[0]) - 1, 1)}d"

    def infer_shape(self, in_shapes):
        if len(in_shapes[0]) < 1:
            raise LayerError(f"expected a (C, ...) input, got shape {tuple(in_shapes[0])}")
        return tuple(in_shapes[0])

    def param_shapes(self, in_shapes):
        c = in_shapes[0][0]
        return {"weight": (c,), "bias": (c,)} if self.affine else {}

    def buffer_shapes(self, in_shapes):
        c = in_shapes[0][0]
        return {"running_mean": (c,), "running_var": (c,)}

    def init_params(self, in_shapes, rng):
        c = in_shapes[0][0]
        p = {"running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
        if self.affine:
            p.update(weight=np.ones(c, np.float32), bias=np.zeros(c, np.float32))
        return p

    def scale_shift(self, params, dtype=np.float64):
        """Per-channel (scale, shift) with y = x * scale + shift; used by folding and FC view."""
        inv = 1.0 / np.sqrt(params["running_var"].astype(dtype) + dtype(self.eps))
        scale = inv * (params["weight"].astype(dtype) if self.affine else 1.0)
        shift = -params["running_mean"].astype(dtype) * scale
        if self.affine:
            shift = shift + params["bias"].astype(dtype)
        return scale, shift

    def lower(self, in_shapes, params):
        return ChannelAffine(*self.scale_shift(params))

    def reference(self, xs, params):
        x = xs[0]
        scale, shift = self.scale_shift(params, np.float64)
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        return (x * scale.reshape(bshape) + shift.reshape(bshape)).astype(x.dtype)

    # ---- FC view: a diagonal matrix, one coefficient per channel ----
    def fc_connections(self, in_shapes) -> int:
        return int(np.prod(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """diag(scale[c]) + shift[c] repeated over each channel's positions; each coefficient
        is derived from `weight[c]` (affine) and the running statistics."""
        c, n = in_shapes[0][0], int(np.prod(in_shapes[0][1:]))
        scale, shift = self.scale_shift(params, np.float64)
        tie = np.repeat(np.arange(c, dtype=np.int32), n) if self.affine else None
        return fc_diagonal(np.repeat(scale, n), np.repeat(shift, n), tie, "weight" if self.affine else None,
                           "linear", keep_zeros=True)
