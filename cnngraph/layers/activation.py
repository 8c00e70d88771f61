"""Elementwise activations: relu, relu6, leaky_relu, sigmoid, tanh."""

from __future__ import annotations

import numpy as np

from .base import Attr, Fusion, Layer, Lowered, fc_diagonal, fc_point, number
from .lowering import Pointwise


class _Elementwise(Layer):
    category = Fusion.ELEMWISE

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reference(self, xs, params):
        return self.apply(xs[0]).astype(xs[0].dtype, copy=False)

    # ---- compiled: the same function once more, in the emitters' vector math `m` ----
    def vector(self, m, x):
        """y = f(x) on a vector, written with `m` (see layers/lowering.py); NaN propagates."""
        raise NotImplementedError

    def lower(self, in_shapes, params):
        return Pointwise(self)

    # ---- FC view: a diagonal matrix, the slope at the given input ----
    fc_mode = "local"  # 'piecewise' where the slope is constant on regions (relu, leaky relu)

    def slope(self, x: np.ndarray) -> np.ndarray:
        """d apply / dx, elementwise."""
        raise NotImplementedError

    def fc_connections(self, in_shapes) -> int:
        """At most one per element (relu stores only the ones its input keeps)."""
        return int(np.prod(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """diag(slope(x)) and bias apply(x) - slope(x) * x: exact at `xs`, and on its whole
        linear region for the piecewise-linear kinds; the labelled tangent for the others.

        >>> import numpy as np
        >>> Relu().to_matrix([(3,)], {}, [np.array([-1.0, 2.0, 0.5])]).matrix.toarray()
        array([[0., 0., 0.],
               [0., 1., 0.],
               [0., 0., 1.]])
        """
        (x,) = fc_point(self, in_shapes, xs)
        x = x.ravel()
        k = self.slope(x)
        bias = self.apply(x) - k * x  # 0 for relu and leaky relu; 6 where relu6 saturates
        return fc_diagonal(k, bias, mode=self.fc_mode)


class Relu(_Elementwise):
    """`relu`: max(x, 0)."""

    kind = "relu"

    def apply(self, x):
        return np.maximum(x, 0)

    def vector(self, m, x):
        return m.max(x, 0.0)

    fc_mode = "piecewise"

    def slope(self, x):
        return (x > 0).astype(np.float64)


class Relu6(_Elementwise):
    """`relu6`: min(max(x, 0), 6), MobileNetV2's activation."""

    kind = "relu6"

    def apply(self, x):
        return np.clip(x, 0, 6)

    def vector(self, m, x):
        return m.clamp(x, 0.0, 6.0)

    fc_mode = "piecewise"

    def slope(self, x):
        return ((x > 0) & (x < 6)).astype(np.float64)


class LeakyRelu(_Elementwise):
    """`leaky_relu: {alpha: 0.01}`: x if x > 0 else alpha * x."""

    kind = "leaky_relu"
    attrs = (Attr("alpha", number(0.0), 0.01, "slope for x < 0"),)

    def apply(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.alpha))

    def vector(self, m, x):
        return m.select(m.gt(x, 0.0), x, m.mul(x, self.alpha))

    fc_mode = "piecewise"

    def slope(self, x):
        return np.where(x > 0, 1.0, self.alpha)


class Sigmoid(_Elementwise):
    """`sigmoid`: 1 / (1 + exp(-x)), computed without overflow."""

    kind = "sigmoid"

    def apply(self, x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def vector(self, m, x):
        e = m.exp(m.neg(m.abs(x)))  # never overflows
        d = m.div(1.0, m.add(e, 1.0))
        return m.select(m.ge(x, 0.0), d, m.mul(e, d))

    def slope(self, x):
        y = self.apply(x)
        return y * (1 - y)


class Tanh(_Elementwise):
    """`tanh`."""

    kind = "tanh"

    def apply(self, x):
        return np.tanh(x)

    def vector(self, m, x):
        return m.tanh(x)

    def slope(self, x):
        return 1 - np.tanh(x) ** 2
