"""Elementwise activations: relu, leaky_relu, sigmoid, tanh."""

from __future__ import annotations

import numpy as np

from .base import Attr, Fusion, Layer, number


class _Elementwise(Layer):
    category = Fusion.ELEMWISE

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reference(self, xs, params):
        return self.apply(xs[0]).astype(xs[0].dtype, copy=False)


class Relu(_Elementwise):
    """`relu`: max(x, 0)."""

    kind = "relu"

    def apply(self, x):
        return np.maximum(x, 0)


class LeakyRelu(_Elementwise):
    """`leaky_relu: {alpha: 0.01}`: x if x > 0 else alpha * x."""

    kind = "leaky_relu"
    attrs = (Attr("alpha", number(0.0), 0.01, "slope for x < 0"),)

    def apply(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.alpha))


class Sigmoid(_Elementwise):
    """`sigmoid`: 1 / (1 + exp(-x)), computed without overflow."""

    kind = "sigmoid"

    def apply(self, x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Tanh(_Elementwise):
    """`tanh`."""

    kind = "tanh"

    def apply(self, x):
        return np.tanh(x)
