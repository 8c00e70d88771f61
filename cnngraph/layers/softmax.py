"""Softmax and log-softmax over the channel (feature) axis."""

from __future__ import annotations

import math

import numpy as np

from .base import Fusion, Layer, Lowered, fc_csr, fc_point
from .lowering import ChannelReduction, ChannelStat


class Softmax(Layer):
    """`softmax`: exp(x - max) / sum over channels, at every spatial position."""

    kind = "softmax"
    category = Fusion.OPAQUE
    onnx_imports = ("Softmax",)
    examples = (({}, [(20,)]), ({}, [(5, 7)]), ({}, [(17, 3, 4)]), ({}, [(3, 2, 3, 4)]))

    def to_onnx(self, b, node, ins, weights):
        return b.node("Softmax", ins, node.name, node.name, axis=1)

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        r = len(x.shape) + 1
        default = -1 if imp.opset >= 13 else 1
        axis = imp.attr(node, "axis", default)
        axis = axis + r if axis < 0 else axis
        if imp.opset >= 13:
            ok = axis == 1
        else:  # before opset 13: softmax over the flattened dims from `axis` on
            ok = axis == 1 and math.prod(x.shape[1:]) == 1 or r == 2 and axis == 1
        if not ok:
            raise imp.fail(node, f"{cls.kind} over axis {imp.attr(node, 'axis', default)} of a rank-{r} input "
                                 f"(opset {imp.opset}): cnngraph's {cls.kind} is over the channel axis 1 only")
        imp.add_layer(node, cls.kind, {}, [x.layer])
        return None

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: torch.nn.functional.softmax(x, 1)

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


class LogSoftmax(Softmax):
    """`log_softmax`: x - max - log(sum of exp(x - max)) over channels, at every spatial position.

    The log of softmax without its underflow (PyTorch's F.log_softmax(x, 1))."""

    kind = "log_softmax"
    onnx_imports = ("LogSoftmax",)

    def to_onnx(self, b, node, ins, weights):
        return b.node("LogSoftmax", ins, node.name, node.name, axis=1)

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: torch.nn.functional.log_softmax(x, 1)

    def lower(self, in_shapes, params):
        """max over channels, then the sum of exp(x - max); y = x - max - log(sum)."""
        return ChannelReduction(self, (ChannelStat("max", lambda m, x, s: x),
                                       ChannelStat("sum", lambda m, x, s: m.exp(m.sub(x, s[0])))),
                                lambda m, x, s: m.sub(m.sub(x, s[0]), m.log(s[1])))

    def reference(self, xs, params):
        x = xs[0]
        xf = np.asarray(x, np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, as in PyTorch
            z = xf - xf.max(axis=1, keepdims=True)
            return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(x.dtype, copy=False)

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The tangent at `xs` (mode 'local'): J[(c, p), (c', p)] = delta_cc' - softmax_c'."""
        (x,) = fc_point(self, in_shapes, xs)
        c = x.shape[0]
        xf = x.reshape(c, -1)
        n = xf.shape[1]
        s = Softmax().reference([xf[None]], params)[0]  # (C, S)
        y = self.reference([xf[None]], params)[0]
        jac = np.broadcast_to(np.eye(c)[:, None, :] - s.T[None, :, :], (c, n, c))  # (C, S, C')
        cols = np.arange(c)[None, None, :] * n + np.arange(n)[None, :, None]
        m = fc_csr(jac.ravel(), np.broadcast_to(cols, jac.shape).ravel(), np.arange(c * n + 1) * c, (c * n, c * n))
        return Lowered(m, y.ravel() - m @ x.ravel(), np.full(m.nnz, -1, np.int32), None, "local")
