"""Elementwise activations: relu, relu6, leaky_relu, sigmoid, tanh, hardswish, hardsigmoid, silu, gelu."""

from __future__ import annotations

import math

import numpy as np

from .base import Attr, Fusion, Layer, Lowered, choice, fc_diagonal, fc_point, number
from .lowering import Pointwise


class _Elementwise(Layer):
    category = Fusion.ELEMWISE
    examples = (({}, [(20, 7)]), ({}, [(5, 6, 7)]), ({}, [(3, 2, 3, 4)]), ({}, [(9,)]))

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

    # ---- interop: one ONNX operator, one torch.nn.functional call (override where it differs) ----
    torch_name: str | None = None  # torch.nn.functional's (or torch's) function of the same meaning

    def torch_fn(self, torch, in_shapes, params):
        f = getattr(torch.nn.functional, self.torch_name, None) or getattr(torch, self.torch_name)
        args = {ours: getattr(self, ours) for ours in self.onnx_attr_names}
        return lambda x: f(x, *args.values())

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
    onnx_op = "Relu"
    onnx_imports = ("Relu", "Clip")
    torch_name = "relu"

    @classmethod
    def from_onnx(cls, imp, node):
        if node.op_type == "Clip":
            lo, hi = clip_bounds(imp, node)
            if (lo, hi) not in ((0.0, None), (0.0, math.inf)):
                return f"Clip to [{lo}, {hi}] is not relu (Clip to [0, inf])"
        imp.add_layer(node, "relu", {}, [imp.x(node).layer])
        return None

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
    onnx_imports = ("Clip",)
    torch_name = "relu6"

    def to_onnx(self, b, node, ins, weights):
        lo = b.init(f"{node.name}.min", np.array(0.0, np.float32))
        hi = b.init(f"{node.name}.max", np.array(6.0, np.float32))
        return b.node("Clip", [ins[0], lo, hi], node.name, node.name)

    @classmethod
    def from_onnx(cls, imp, node):
        lo, hi = clip_bounds(imp, node)
        if (lo, hi) != (0.0, 6.0):
            return f"Clip to [{lo}, {hi}] is not relu6 (Clip to [0, 6])"
        imp.add_layer(node, "relu6", {}, [imp.x(node).layer])
        return None

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
    examples = (({"alpha": 0.2}, [(20, 7)]), ({}, [(5, 6, 7)]), ({"alpha": 1.5}, [(3, 2, 3, 4)]),
                ({"alpha": 0.1}, [(9,)]))
    onnx_op = "LeakyRelu"
    onnx_imports = ("LeakyRelu",)
    onnx_attr_names = {"alpha": "alpha"}
    torch_name = "leaky_relu"

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
    onnx_op = "Sigmoid"
    onnx_imports = ("Sigmoid",)
    torch_name = "sigmoid"

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
    onnx_op = "Tanh"
    onnx_imports = ("Tanh",)
    torch_name = "tanh"

    def apply(self, x):
        return np.tanh(x)

    def vector(self, m, x):
        return m.tanh(x)

    def slope(self, x):
        return 1 - np.tanh(x) ** 2


def clip_bounds(imp, node) -> tuple[float | None, float | None]:
    """An ONNX Clip's (min, max), None where absent (inputs from opset 11, attributes before)."""
    if imp.opset >= 11:
        lo, hi = imp.c(node, 1, "min", required=False), imp.c(node, 2, "max", required=False)
    else:
        lo, hi = imp.attr(node, "min", None), imp.attr(node, "max", None)
    for v, what in ((lo, "min"), (hi, "max")):
        if v is not None and np.size(v) != 1:
            raise imp.fail(node, f"expected a scalar {what}, got shape {np.shape(v)}")
    return (None if lo is None else float(np.asarray(lo).reshape(-1)[0]),
            None if hi is None else float(np.asarray(hi).reshape(-1)[0]))


class HardSwish(_Elementwise):
    """`hardswish`: x * relu6(x + 3) / 6 (MobileNetV3)."""

    kind = "hardswish"
    torch_name = "hardswish"
    onnx_imports = ("HardSwish",)

    def apply(self, x):
        return x * np.clip(x + 3, 0, 6) / 6

    def vector(self, m, x):
        return m.mul(x, m.div(m.clamp(m.add(x, 3.0), 0.0, 6.0), 6.0))

    def slope(self, x):
        return np.where(x < -3, 0.0, np.where(x > 3, 1.0, (2 * x + 3) / 6))

    def to_onnx(self, b, node, ins, weights):
        if b.opset >= 14:
            return b.node("HardSwish", ins, node.name, node.name)
        gate = b.node("HardSigmoid", ins, f"{node.name}/gate", f"{node.name}/gate", alpha=1 / 6, beta=0.5)
        return b.node("Mul", [ins[0], gate], node.name, node.name)


class HardSigmoid(_Elementwise):
    """`hardsigmoid: {alpha: 0.1666667, beta: 0.5}`: clamp(alpha * x + beta, 0, 1); the defaults are
    PyTorch's (relu6(x + 3) / 6), ONNX's operator takes both."""

    kind = "hardsigmoid"
    attrs = (Attr("alpha", number(), 1 / 6, "slope"), Attr("beta", number(), 0.5, "value at 0"))
    examples = (({}, [(20, 7)]), ({"alpha": 0.2, "beta": 0.5}, [(5, 6, 7)]), ({"alpha": 0.5, "beta": 0.25},
                                                                              [(3, 2, 3, 4)]), ({}, [(9,)]))
    onnx_op = "HardSigmoid"
    onnx_imports = ("HardSigmoid",)
    onnx_attr_names = {"alpha": "alpha", "beta": "beta"}
    fc_mode = "piecewise"

    @classmethod
    def from_onnx(cls, imp, node):
        attrs = {"alpha": imp.f32(imp.attr(node, "alpha", 0.2)), "beta": imp.f32(imp.attr(node, "beta", 0.5))}
        imp.add_layer(node, "hardsigmoid", attrs, [imp.x(node).layer])
        return None

    def apply(self, x):
        return np.clip(x * x.dtype.type(self.alpha) + x.dtype.type(self.beta), 0, 1)

    def vector(self, m, x):
        return m.clamp(m.fma(x, self.alpha, self.beta), 0.0, 1.0)

    def slope(self, x):
        y = self.alpha * x + self.beta
        return np.where((y > 0) & (y < 1), self.alpha, 0.0)

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: torch.clamp(x * self.alpha + self.beta, 0, 1)


class Silu(_Elementwise):
    """`silu`: x * sigmoid(x) (swish; EfficientNet's activation)."""

    kind = "silu"
    torch_name = "silu"

    def apply(self, x):
        return x * Sigmoid().apply(x)

    def vector(self, m, x):
        return m.mul(x, Sigmoid().vector(m, x))

    def slope(self, x):
        s = Sigmoid().apply(x)
        return s + x * s * (1 - s)

    def to_onnx(self, b, node, ins, weights):
        gate = b.node("Sigmoid", ins, f"{node.name}/sigmoid", f"{node.name}/sigmoid")
        return b.node("Mul", [ins[0], gate], node.name, node.name)


class Gelu(_Elementwise):
    """`gelu: {approximate: none}`: x * Phi(x), Phi the normal CDF: 0.5 x (1 + erf(x / sqrt 2));
    with `approximate: tanh`, 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (PyTorch's two forms)."""

    kind = "gelu"
    attrs = (Attr("approximate", choice("none", "tanh"), "none", "'none' (exact, erf) or 'tanh'"),)
    examples = (({}, [(20, 7)]), ({"approximate": "tanh"}, [(5, 6, 7)]), ({}, [(3, 2, 3, 4)]),
                ({"approximate": "tanh"}, [(9,)]))
    onnx_imports = ("Gelu",)
    C = math.sqrt(2 / math.pi)

    def apply(self, x):
        xf = np.asarray(x, np.float64)
        if self.approximate == "tanh":
            y = 0.5 * xf * (1 + np.tanh(self.C * (xf + 0.044715 * xf ** 3)))
        else:
            from scipy.special import erf
            y = 0.5 * xf * (1 + erf(xf / math.sqrt(2)))
        return y.astype(np.asarray(x).dtype, copy=False)

    def vector(self, m, x):
        if self.approximate == "tanh":
            inner = m.mul(m.fma(m.mul(x, x), 0.044715 * self.C, self.C), x)
            return m.mul(m.mul(x, 0.5), m.add(m.tanh(inner), 1.0))
        return m.mul(m.mul(x, 0.5), m.add(m.erf(m.mul(x, 1 / math.sqrt(2))), 1.0))

    def slope(self, x):
        xf = np.asarray(x, np.float64)
        if self.approximate == "tanh":
            u = self.C * (xf + 0.044715 * xf ** 3)
            t = np.tanh(u)
            return 0.5 * (1 + t) + 0.5 * xf * (1 - t * t) * self.C * (1 + 3 * 0.044715 * xf * xf)
        from scipy.special import erf
        return 0.5 * (1 + erf(xf / math.sqrt(2))) + xf * np.exp(-xf * xf / 2) / math.sqrt(2 * math.pi)

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: torch.nn.functional.gelu(x, approximate=self.approximate)

    def to_onnx(self, b, node, ins, weights):
        """ONNX's Gelu from opset 20; before, the decomposition PyTorch's exporter writes."""
        n, x = node.name, ins[0]
        if b.opset >= 20:
            return b.node("Gelu", ins, n, n, approximate=self.approximate)
        if self.approximate == "tanh":
            cube = b.node("Mul", [b.node("Mul", [x, x], f"{n}/x2", f"{n}/x2"), x], f"{n}/x3", f"{n}/x3")
            inner = b.node("Add", [x, b.node("Mul", [cube, b.scalar(f"{n}.k", 0.044715)], f"{n}/kx3", f"{n}/kx3")],
                           f"{n}/poly", f"{n}/poly")
            core = b.node("Tanh", [b.node("Mul", [inner, b.scalar(f"{n}.c", self.C)], f"{n}/u", f"{n}/u")],
                          f"{n}/tanh", f"{n}/tanh")
        else:
            core = b.node("Erf", [b.node("Div", [x, b.scalar(f"{n}.sqrt2", math.sqrt(2))], f"{n}/scaled",
                                         f"{n}/scaled")], f"{n}/erf", f"{n}/erf")
        one = b.node("Add", [core, b.scalar(f"{n}.one", 1.0)], f"{n}/one_plus", f"{n}/one_plus")
        half = b.node("Mul", [x, b.scalar(f"{n}.half", 0.5)], f"{n}/half_x", f"{n}/half_x")
        return b.node("Mul", [half, one], n, n)

    @classmethod
    def from_onnx(cls, imp, node):
        approximate = imp.attr(node, "approximate", "none")
        if approximate not in ("none", "tanh"):
            raise imp.fail(node, f"approximate='{approximate}': expected 'none' or 'tanh'")
        imp.add_layer(node, "gelu", {"approximate": approximate}, [imp.x(node).layer])
        return None
