"""Elementwise activations: relu, relu6, leaky_relu, sigmoid, tanh, hardswish, hardsigmoid, silu, gelu,
mish, elu, selu, softplus, clip, and prelu (learned slopes per channel)."""

from __future__ import annotations

import math

import numpy as np

from .base import Attr, Fusion, Layer, Lowered, boolean, choice, fc_diagonal, fc_point, number
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
        if attrs["alpha"] == imp.f32(1 / 6):  # PyTorch's 1/6 as ONNX's float32 attribute stores it
            attrs["alpha"] = 1 / 6
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


# ---- the smooth and saturating activations of modern CNNs --------------------

def _log1p(m, u):
    """log(1 + u) for u >= 0 without losing small u: log(w) * u / (w - 1), w = 1 + u rounded (Goldberg);
    u itself where w rounds to 1. NaN stays NaN."""
    w = m.add(u, 1.0)
    d = m.sub(w, 1.0)
    return m.select(m.gt(d, 0.0), m.mul(m.log(w), m.div(u, d)), u)


def _softplus(m, x):
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)), the exp term exactly 0 where it
    underflows (so softplus(-inf) is 0 and mish(-inf) NaN, as in PyTorch)."""
    a = m.neg(m.abs(x))
    return m.add(m.max(x, 0.0), _log1p(m, m.select(m.lt(a, -87.0), 0.0, m.exp(a))))


def _expm1(m, x):
    """exp(x) - 1 without cancellation near 0: a Taylor polynomial of degree 9 for |x| < 0.5
    (relative error < 1e-8 there), exp(x) - 1 elsewhere. NaN stays NaN."""
    p = m.fma(x, 1 / 9, 1.0)
    for k in (8, 7, 6, 5, 4, 3, 2):
        p = m.fma(m.mul(x, 1 / k), p, 1.0)
    return m.select(m.lt(m.abs(x), 0.5), m.mul(x, p), m.sub(m.exp(x), 1.0))


def _sigmoid64(x):
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(x, np.float64)))


class Mish(_Elementwise):
    """`mish`: x * tanh(softplus(x)) (YOLOv4, some EfficientNet variants)."""

    kind = "mish"
    torch_name = "mish"
    onnx_imports = ("Mish",)

    def apply(self, x):
        xf = np.asarray(x, np.float64)
        with np.errstate(invalid="ignore"):  # NaN in, NaN out
            return (xf * np.tanh(np.logaddexp(0.0, xf))).astype(np.asarray(x).dtype, copy=False)

    def vector(self, m, x):
        return m.mul(x, m.tanh(_softplus(m, x)))

    def slope(self, x):
        with np.errstate(invalid="ignore"):
            t = np.tanh(np.logaddexp(0.0, x))
        return t + x * (1 - t * t) * _sigmoid64(x)

    def to_onnx(self, b, node, ins, weights):
        """ONNX's Mish from opset 18; before, x * tanh(softplus(x)) as PyTorch writes it."""
        n = node.name
        if b.opset >= 18:
            return b.node("Mish", ins, n, n)
        sp = b.node("Softplus", ins, f"{n}/softplus", f"{n}/softplus")
        return b.node("Mul", [ins[0], b.node("Tanh", [sp], f"{n}/tanh", f"{n}/tanh")], n, n)


class Elu(_Elementwise):
    """`elu: {alpha: 1.0}`: x if x > 0 else alpha * (exp(x) - 1)."""

    kind = "elu"
    attrs = (Attr("alpha", number(0.0), 1.0, "the value approached as x -> -inf is -alpha"),)
    examples = (({}, [(20, 7)]), ({"alpha": 0.5}, [(5, 6, 7)]), ({"alpha": 2.0}, [(3, 2, 3, 4)]), ({}, [(9,)]))
    onnx_op = "Elu"
    onnx_imports = ("Elu",)
    onnx_attr_names = {"alpha": "alpha"}
    torch_name = "elu"

    @classmethod
    def from_onnx(cls, imp, node):
        imp.add_layer(node, "elu", {"alpha": imp.f32(imp.attr(node, "alpha", 1.0))}, [imp.x(node).layer])
        return None

    def apply(self, x):
        xf = np.asarray(x, np.float64)
        with np.errstate(over="ignore"):  # expm1 of the positive side, not taken
            return np.where(xf > 0, xf, self.alpha * np.expm1(xf)).astype(np.asarray(x).dtype, copy=False)

    def vector(self, m, x):
        return m.select(m.gt(x, 0.0), x, m.mul(_expm1(m, x), self.alpha))

    def slope(self, x):
        return np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0.0)))


class Selu(_Elementwise):
    """`selu`: scale * elu(x, alpha), the self-normalising constants alpha 1.6732632, scale 1.0507010.

    PyTorch's constants; ONNX's Selu defaults are the same in float32."""

    kind = "selu"
    torch_name = "selu"
    onnx_imports = ("Selu",)
    ALPHA = 1.6732632423543772848170429916717
    SCALE = 1.0507009873554804934193349852946

    def to_onnx(self, b, node, ins, weights):
        return b.node("Selu", ins, node.name, node.name)

    @classmethod
    def from_onnx(cls, imp, node):
        alpha, gamma = imp.attr(node, "alpha", cls.ALPHA), imp.attr(node, "gamma", cls.SCALE)
        if np.float32(alpha) != np.float32(cls.ALPHA) or np.float32(gamma) != np.float32(cls.SCALE):
            return f"Selu with alpha={alpha:g}, gamma={gamma:g} is not selu (alpha 1.67326, gamma 1.05070)"
        imp.add_layer(node, "selu", {}, [imp.x(node).layer])
        return None

    def apply(self, x):
        xf = np.asarray(x, np.float64)
        with np.errstate(over="ignore"):  # expm1 of the positive side, not taken; scale * huge is inf in float32
            y = self.SCALE * np.where(xf > 0, xf, self.ALPHA * np.expm1(xf))
            return y.astype(np.asarray(x).dtype, copy=False)

    def vector(self, m, x):
        return m.mul(m.select(m.gt(x, 0.0), x, m.mul(_expm1(m, x), self.ALPHA)), self.SCALE)

    def slope(self, x):
        return self.SCALE * np.where(x > 0, 1.0, self.ALPHA * np.exp(np.minimum(x, 0.0)))


class Softplus(_Elementwise):
    """`softplus: {beta: 1, threshold: 20}`: log(1 + exp(beta * x)) / beta; x where beta * x > threshold.

    PyTorch's definition (its defaults too); ONNX's Softplus is beta 1."""

    kind = "softplus"
    attrs = (Attr("beta", number(0.0, lo_open=True), 1.0, "sharpness: larger is closer to relu"),
             Attr("threshold", number(), 20.0, "beyond beta * x > threshold the result is x"))
    examples = (({}, [(20, 7)]), ({"beta": 2.0}, [(5, 6, 7)]), ({"beta": 0.5, "threshold": 1.0}, [(3, 2, 3, 4)]),
                ({"threshold": -1.0}, [(9,)]))
    onnx_imports = ("Softplus",)
    onnx_patterns = ("onnx_scaled_pattern",)
    onnx_hint = True  # the decomposition's attributes, read back by the importer's pointwise regions

    @classmethod
    def from_onnx(cls, imp, node):
        """ONNX's Softplus is PyTorch's with beta 1 (its threshold of 20 changes no float32 value)."""
        imp.add_layer(node, "softplus", {}, [imp.x(node).layer])
        return None

    @classmethod
    def onnx_scaled_pattern(cls, imp, node) -> bool:
        """PyTorch's export of softplus with beta != 1: Mul(x, beta) -> Softplus -> Div(beta) (its threshold
        is not exported: the default's, 20). Each step is a pending value; True when `node` was one."""
        op, ins, pending = node.op_type, list(node.input), imp.pending

        def scalar(name):
            v = imp.const.get(name) if name not in imp.batch_dep else None
            return float(np.reshape(v, -1)[0]) if v is not None and np.size(v) == 1 else None

        if op == "Mul" and len(ins) == 2 and sum(i in imp.live for i in ins) == 1:
            x, b = (ins[0], ins[1]) if ins[0] in imp.live else (ins[1], ins[0])
            beta = scalar(b)
            sp = imp.readers_of(node.output[0])
            if beta is None or not beta > 0 or len(sp) != 1 or sp[0].op_type != "Softplus":
                return False
            div = imp.readers_of(sp[0].output[0])
            if len(div) != 1 or div[0].op_type != "Div" or div[0].input[0] != sp[0].output[0] or \
                    scalar(div[0].input[1]) != beta:
                return False
            pending[node.output[0]] = ("softplus's scaled input", x, beta)
        elif op == "Softplus" and ins and pending.get(ins[0], ("",))[0] == "softplus's scaled input":
            pending[node.output[0]] = ("softplus of the scaled input", *pending[ins[0]][1:])
        elif op == "Div" and ins and pending.get(ins[0], ("",))[0] == "softplus of the scaled input":
            _, x, beta = pending[ins[0]]
            imp.add_layer(node, "softplus", {"beta": imp.f32(beta)}, [imp.live[x].layer])
        else:
            return False
        return True

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: torch.nn.functional.softplus(x, self.beta, self.threshold)

    def apply(self, x):
        xf = np.asarray(x, np.float64)
        bx = self.beta * xf
        with np.errstate(invalid="ignore"):  # NaN in, NaN out
            y = np.where(bx > self.threshold, xf, np.logaddexp(0.0, bx) / self.beta)
        return y.astype(np.asarray(x).dtype, copy=False)

    def vector(self, m, x):
        bx = m.mul(x, self.beta) if self.beta != 1 else x
        sp = _softplus(m, bx)
        return m.select(m.gt(bx, self.threshold), x, m.div(sp, self.beta) if self.beta != 1 else sp)

    def slope(self, x):
        bx = self.beta * np.asarray(x, np.float64)
        return np.where(bx > self.threshold, 1.0, _sigmoid64(bx))

    def to_onnx(self, b, node, ins, weights):
        """ONNX's Softplus where it is the same function in float32 (beta 1, threshold >= 20: past 20,
        log(1 + exp(x)) and x are the same float); else PyTorch's formula exactly:
        Where(beta x > threshold, x, Softplus(beta x) / beta)."""
        n, x = node.name, ins[0]
        if self.beta == 1 and self.threshold >= 20:
            return b.node("Softplus", ins, n, n)
        bx = x if self.beta == 1 else b.node("Mul", [x, b.scalar(f"{n}.beta", self.beta)], f"{n}/scaled", f"{n}/scaled")
        sp = b.node("Softplus", [bx], f"{n}/softplus", f"{n}/softplus")
        if self.beta != 1:
            sp = b.node("Div", [sp, b.scalar(f"{n}.beta_div", self.beta)], f"{n}/unscaled", f"{n}/unscaled")
        linear = b.node("Greater", [bx, b.scalar(f"{n}.threshold", self.threshold)], f"{n}/linear", f"{n}/linear")
        return b.node("Where", [linear, x, sp], n, n)


class Clip(_Elementwise):
    """`clip: {min: -1, max: 1}`: x clamped to [min, max] (torch.clamp); NaN stays NaN.

    Either bound may be left out (without both it is the identity); min(max(x, min), max), so a min
    above the max gives the max everywhere, as in PyTorch and ONNX. ONNX Clip imports as relu or
    relu6 where its bounds are theirs, else as this."""

    kind = "clip"
    attrs = (Attr("min", number(allow_inf=True), None, "lower bound (default: none)"),
             Attr("max", number(allow_inf=True), None, "upper bound (default: none)"))
    examples = (({"min": -1.0, "max": 1.0}, [(20, 7)]), ({"min": 0.5}, [(5, 6, 7)]), ({"max": -0.25}, [(3, 2, 3, 4)]),
                ({"min": -2.0, "max": 3.0}, [(9,)]))
    onnx_imports = ("Clip",)
    fc_mode = "piecewise"

    @classmethod
    def from_onnx(cls, imp, node):
        lo, hi = clip_bounds(imp, node)
        lo = None if lo is None or lo == -math.inf else lo
        hi = None if hi is None or hi == math.inf else hi
        if lo is None and hi is None:
            return imp.alias(node, imp.x(node))  # no bounds: the identity
        attrs = {k: imp.f32(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
        imp.add_layer(node, "clip", attrs, [imp.x(node).layer])
        return None

    def to_onnx(self, b, node, ins, weights):
        n = node.name
        lo = b.scalar(f"{n}.min", self.min) if self.min is not None else ""
        hi = b.scalar(f"{n}.max", self.max) if self.max is not None else ""
        return b.node("Clip", [ins[0], lo, hi] if hi else [ins[0], lo], n, n)

    def torch_fn(self, torch, in_shapes, params):
        if self.min is None and self.max is None:
            return lambda x: x  # torch.clamp wants a bound
        return lambda x: torch.clamp(x, self.min, self.max)

    def apply(self, x):
        return np.clip(x, self.min, self.max)

    def vector(self, m, x):
        if self.min is not None:
            x = m.max(x, self.min)
        return x if self.max is None else m.min(x, self.max)

    def slope(self, x):
        lo = -np.inf if self.min is None else self.min
        hi = np.inf if self.max is None else self.max
        return ((x > lo) & (x < hi)).astype(np.float64)


class PRelu(Layer):
    """`prelu: {shared: false}`: x if x > 0 else weight[c] * x, a learned slope per channel.

    Per feature on flat inputs; with `shared: true` one slope for all (PyTorch's nn.PReLU() default,
    weight of shape (1,)). Initialised to 0.25, as PyTorch. Fused into a conv or linear epilogue like
    any activation: the slopes of the output channels are loaded with the bias."""

    kind = "prelu"
    category = Fusion.ELEMWISE
    attrs = (Attr("shared", boolean, False, "one slope for every channel instead of one per channel"),)
    examples = (({}, [(20, 7)]), ({"shared": True}, [(5, 6, 7)]), ({}, [(3, 2, 3, 4)]), ({}, [(9,)]),
                ({"shared": True}, [(17,)]))
    onnx_imports = ("PRelu",)

    def param_shapes(self, in_shapes):
        return {"weight": (1 if self.shared else in_shapes[0][0],)}

    def init_params(self, in_shapes, rng):
        return {"weight": np.full(self.param_shapes(in_shapes)["weight"], 0.25, np.float32)}

    def slopes(self, in_shapes, params) -> np.ndarray:
        """One slope per channel (the shared one repeated), float64."""
        return np.broadcast_to(np.asarray(params["weight"], np.float64).reshape(-1), (in_shapes[0][0],))

    def reference(self, xs, params):
        x = xs[0]
        w = np.asarray(params["weight"]).astype(x.dtype).reshape(-1)
        w = w.reshape(1, -1, *([1] * (x.ndim - 2))) if w.size > 1 else w.reshape(())
        return np.where(x > 0, x, x * w)

    def lower(self, in_shapes, params):
        w = self.slopes(in_shapes, params) if "weight" in params else None
        return Pointwise(self, (("weight", None if w is None else w.astype(np.float32)),))

    def vector(self, m, x, p):
        """The slope vector of x's channel block is p["weight"] (see layers/lowering.py)."""
        return m.select(m.gt(x, 0.0), x, m.mul(x, p["weight"]))

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: torch.nn.functional.prelu(x, params["weight"])

    def to_onnx(self, b, node, ins, weights):
        """PRelu with the slope shaped to broadcast over the channel axis: (C, 1, ..., 1), (1,) shared."""
        shape = node.in_shapes[0]
        w = np.asarray(weights[f"{node.name}.weight"], np.float32)
        if not self.shared:
            w = w.reshape(-1, *([1] * (len(shape) - 1)))
        return b.node("PRelu", [ins[0], b.init(f"{node.name}.weight", w)], node.name, node.name)

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        slope = imp.c(node, 1, "slope")
        if imp.opset < 7 and np.ndim(slope) == 1 and np.size(slope) == x.shape[0]:
            slope = np.reshape(slope, (-1, *([1] * (len(x.shape) - 1))))  # before broadcasting: one per channel
        per = imp.per_channel(slope, x.shape)
        if per is None:
            raise imp.fail(node, f"a slope of shape {np.shape(slope)} that is not one value per channel of the "
                                 f"(N, {', '.join(map(str, x.shape))}) activation")
        shared = np.size(slope) == 1 and x.shape[0] > 1
        w = np.asarray(per[:1] if shared else per, np.float32)
        imp.add_layer(node, "prelu", {"shared": bool(shared)}, [x.layer], {"weight": w},
                      hint=imp.weight_hint(node, slope))
        return None

    # ---- FC view: the diagonal the input realises: 1 where x > 0, else the channel's slope ----
    def fc_connections(self, in_shapes) -> int:
        return int(np.prod(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """diag(1 or weight[c]), exact on the input's sign pattern; a coefficient that is a slope is tied
        to its weight."""
        (x,) = fc_point(self, in_shapes, xs)
        c = in_shapes[0][0]
        n = x.size // c
        w = np.repeat(self.slopes(in_shapes, params), n)
        pos = x.ravel() > 0
        chan = np.repeat(np.arange(c), n) if not self.shared else np.zeros(x.size, np.int64)
        tie = np.where(pos, -1, chan)
        return fc_diagonal(np.where(pos, 1.0, w), np.zeros(x.size), tie, "weight", "piecewise", keep_zeros=True)
