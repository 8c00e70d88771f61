"""Pooling: max and average windows (1D/2D/3D, ceil_mode, count_include_pad) and global pools."""

from __future__ import annotations

import math

import numpy as np

from ..errors import LayerError
from .base import (
    Attr,
    Fusion,
    Layer,
    Lowered,
    boolean,
    check_windows,
    fc_csr,
    fc_point,
    fc_selection,
    ints,
    padding,
    per_dim,
    resolve_pads,
    spatial_input,
    unseen_warnings,
    window_argmax,
    window_count,
    window_matrix,
    window_rf,
    window_taps,
    windows,
    compact_list,
    flat_pads,
    onnx_auto_pads,
    onnx_ints,
    onnx_padding,
)
from ..shapes import Window
from .lowering import WindowReduce


class _Window(Layer):
    """Shared geometry of max and average pooling; `stride` defaults to the kernel."""

    category = Fusion.POOL
    attrs = (
        Attr("kernel", ints(), doc="window size, an int or one per spatial dim"),
        Attr("stride", ints(), None, "default: the kernel"),
        Attr("padding", padding, 0),
        Attr("ceil_mode", boolean, False),
    )

    def geometry(self, in_shape):
        nd = spatial_input(self, in_shape)
        k = per_dim(self, "kernel", nd)
        s = k if self.stride is None else per_dim(self, "stride", nd)
        d = per_dim(self, "dilation", nd) if hasattr(self, "dilation") else (1,) * nd
        return nd, k, s, d, resolve_pads(self, in_shape[1:], k, s, d)

    def out_spatial(self, in_shape):
        _, k, s, d, pads = self.geometry(in_shape)
        out = check_windows(in_shape[1:], k, s, d, pads, self.ceil_mode)
        for i, (n, kk, ss, dd, (lo, hi), o) in enumerate(zip(in_shape[1:], k, s, d, pads, out)):
            # a window of nothing but padding has no max and no average; per window, its first tap
            # at or after the input's start must exist and fall inside the input (O(windows) memory)
            start = np.arange(o, dtype=np.int64) * ss - lo
            first = np.where(start >= 0, 0, -(start // dd))  # ceil(-start / dd) for negative starts
            if not ((first < kk) & (start + first * dd < n)).all():
                raise LayerError(f"padding [{lo}, {hi}] leaves windows along spatial dim {i} that see only padding "
                                 f"(kernel {kk}, stride {ss}, input {n})", attr="padding",
                                 hint="use padding of at most half the kernel, as PyTorch requires")
        return out

    def op_name(self, in_shapes):
        return f"{self.kind}{spatial_input(self, in_shapes[0])}d"  # raises on a flat input: op = kind

    onnx_hint = True

    def same_function(self, other, in_shape) -> bool:
        """Same windows (size, step, dilation, first start, count) and, averaging, the same divisors."""
        if self.infer_shape([in_shape]) != other.infer_shape([in_shape]):
            return False
        _, ka, sa, da, pa = self.geometry(in_shape)
        _, kb, sb, db, pb = other.geometry(in_shape)
        if (ka, sa, da, [lo for lo, _ in pa]) != (kb, sb, db, [lo for lo, _ in pb]):
            return False
        return not hasattr(self, "divisor") or np.array_equal(self.divisor(in_shape), other.divisor(in_shape))

    def onnx_windows(self, node):
        """Per dim (n, k, s, d, lo, hi, need): `need` is the padded extent the windows touch."""
        shape = node.in_shapes[0]
        _, k, s, d, pads = self.geometry(shape)
        out = node.out_shape[1:]
        return [(n, kk, ss, dd, lo, hi, (o - 1) * ss + dd * (kk - 1) + 1)
                for n, kk, ss, dd, (lo, hi), o in zip(shape[1:], k, s, d, pads, out)]

    @classmethod
    def from_onnx(cls, imp, node):
        imp.only_output(node)  # MaxPool's Indices output (and so storage_order) is refused when used
        kind = cls.kind
        x = imp.x(node)
        nd = len(x.shape) - 1
        if nd < 1:
            raise imp.fail(node, f"expected an input with spatial dims, got shape {x.shape}")
        k = onnx_ints(imp, node, "kernel_shape", None, nd)
        s = onnx_ints(imp, node, "strides", [1] * nd, nd)
        d = onnx_ints(imp, node, "dilations", [1] * nd, nd)
        ceil = bool(imp.attr(node, "ceil_mode", 0))
        pads, same = onnx_auto_pads(imp, node, x.shape[1:], k, s, d)
        attrs = {"kernel": compact_list(k), "stride": compact_list(s),
                 "padding": "same" if same else onnx_padding(pads), "ceil_mode": ceil}
        if kind == "maxpool":
            attrs["dilation"] = compact_list(d)
        else:
            if any(v != 1 for v in d):
                raise imp.fail(node, f"dilations {d}: cnngraph's avgpool has no dilation")
            include = bool(imp.attr(node, "count_include_pad", 0))
            attrs["count_include_pad"] = include or not any(lo or hi for lo, hi in pads)
        if imp.attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "") and ceil:
            raise imp.fail(node, "ceil_mode together with auto_pad is ambiguous in ONNX; refused")
        candidates = [imp.hint(node, kind)]
        if not same and any(lo != hi for lo, hi in pads):  # asymmetric pads often mean ceil_mode or 'same'
            sym = compact_list([lo for lo, _ in pads])
            candidates += [{**attrs, "padding": sym, "ceil_mode": True}, {**attrs, "padding": sym},
                           {**attrs, "padding": "same", "ceil_mode": False}]
        imp.add_layer(node, kind, imp.simplest(kind, attrs, candidates, x.shape), [x.layer])
        return None

    def torch_fn(self, torch, in_shapes, params):
        """PyTorch's pools take symmetric padding of at most half the kernel; None otherwise."""
        F = torch.nn.functional
        nd, k, s, d, pads = self.geometry(in_shapes[0])
        if any(lo != hi or lo > kk // 2 for (lo, hi), kk in zip(pads, k)):
            return None
        sym = [lo for lo, _ in pads]
        if self.kind == "maxpool":
            f = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
            return lambda x: f(x, k, s, sym, d, ceil_mode=self.ceil_mode)
        f = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
        return lambda x: f(x, k, s, sym, ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)

    def window(self, in_shape) -> Window:
        """The shared window geometry for this input (ceil_mode resolved)."""
        _, k, s, d, pads = self.geometry(in_shape)
        return Window(tuple(in_shape[1:]), k, s, d, pads, self.out_spatial(in_shape))

    def infer_shape(self, in_shapes):
        return (in_shapes[0][0], *self.out_spatial(in_shapes[0]))

    def receptive_field(self, in_shapes, rfs):
        _, k, s, d, pads = self.geometry(in_shapes[0])
        return window_rf(rfs[0], k, s, d, pads)

    def warnings(self, in_shapes):
        return unseen_warnings(self, in_shapes[0], self.geometry(in_shapes[0]), self.infer_shape(in_shapes))

    def _padded(self, x, fill):
        """Pad with `fill`, plus extra high padding so ceil-mode windows stay in bounds."""
        _, k, s, d, pads = self.geometry(x.shape[1:])
        out_sp = self.out_spatial(x.shape[1:])
        widths = [(0, 0), (0, 0)]
        for n, kk, ss, dd, (lo, hi), o in zip(x.shape[2:], k, s, d, pads, out_sp):
            need = (o - 1) * ss + dd * (kk - 1) + 1  # padded extent the windows touch
            widths.append((lo, max(hi, need - n - lo)))
        return np.pad(x, widths, constant_values=fill), k, s, d, out_sp


class MaxPool(_Window):
    """`maxpool: {kernel: 3, stride: 2, padding: 0, dilation: 1, ceil_mode: false}`"""

    kind = "maxpool"
    attrs = _Window.attrs + (Attr("dilation", ints(), 1),)
    onnx_imports = ("MaxPool",)
    examples = (({"kernel": 2}, [(5, 9)]), ({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, [(18, 10, 9)]),
                ({"kernel": 2, "stride": 1, "dilation": 2, "padding": [[0, 1], [1, 1]]}, [(4, 7, 8)]),
                ({"kernel": 2, "stride": [1, 2, 2]}, [(3, 3, 6, 5)]),
                # windows that do not overlap: fused into the conv before it in 2D too
                ({"kernel": [2, 3], "stride": [2, 3], "padding": [[1, 0], [1, 1]], "ceil_mode": True}, [(6, 9, 10)]))

    def to_onnx(self, b, node, ins, weights):
        """ceil_mode never goes to ONNX: the padding is widened or cut to exactly these windows;
        pads ONNX Runtime refuses (not smaller than the kernel) become an explicit Pad node."""
        dims = self.onnx_windows(node)
        k = [kk for _, kk, *_ in dims]
        s = [ss for _, _, ss, *_ in dims]
        d = [dd for _, _, _, dd, *_ in dims]
        pads = [(lo, max(0, need - n - lo)) for n, _, _, _, lo, _, need in dims]  # exactly the windows
        x = ins[0]
        if any(lo >= kk or hi >= kk for (lo, hi), kk in zip(pads, k)):
            x, pads = b.explicit_pad(node.name, x, pads, -np.inf), [(0, 0)] * len(dims)
        return b.node("MaxPool", [x], node.name, node.name, kernel_shape=k, strides=s, pads=flat_pads(pads),
                      dilations=d)

    def lower(self, in_shapes, params):
        return WindowReduce("max", self.window(in_shapes[0]))

    def reference(self, xs, params):
        xp, k, s, d, out_sp = self._padded(xs[0], -np.inf)
        y = None
        for _, view in windows(xp, k, s, d, out_sp):
            y = view.copy() if y is None else np.maximum(y, view)
        return y

    # ---- FC view: piecewise linear, a 0/1 selection of each window's maximum ----
    def fc_connections(self, in_shapes) -> int:
        """One connection per output: the window's maximum."""
        return math.prod(self.infer_shape(in_shapes))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The selection matrix the input `xs` realises (exact on its linear region)."""
        (x,) = fc_point(self, in_shapes, xs)
        _, k, s, d, pads = self.geometry(in_shapes[0])
        taps = window_taps(in_shapes[0][1:], k, s, d, pads, self.out_spatial(in_shapes[0]))
        return fc_selection(window_argmax(x, taps), x.size)


class AvgPool(_Window):
    """`avgpool: {kernel: 2, stride: 2, padding: 0, ceil_mode: false, count_include_pad: true}`

    The divisor follows PyTorch: the window clipped to the padded input when
    `count_include_pad`, else clipped to the real input.
    """

    kind = "avgpool"
    attrs = _Window.attrs + (Attr("count_include_pad", boolean, True),)
    onnx_imports = ("AveragePool",)
    examples = (({"kernel": 2}, [(5, 9)]), ({"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, [(18, 10, 9)]),
                ({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}, [(4, 7, 8)]),
                ({"kernel": 2, "stride": [1, 2, 2]}, [(3, 3, 6, 5)]),
                ({"kernel": 2, "padding": 1, "count_include_pad": False, "ceil_mode": True}, [(6, 9, 7)]))

    def to_onnx(self, b, node, ins, weights):
        """count_include_pad with ceil-mode windows past the padding divides by the window clipped to
        the padded input (PyTorch): an explicit Pad, then count_include_pad=0."""
        dims = self.onnx_windows(node)
        k = [kk for _, kk, *_ in dims]
        s = [ss for _, _, ss, *_ in dims]
        x = ins[0]
        include = self.count_include_pad and any(lo or hi for *_, lo, hi, _ in dims)
        past = any(need > n + lo + hi for n, _, _, _, lo, hi, need in dims)
        if include and past:
            x = b.explicit_pad(node.name, x, [(lo, hi) for *_, lo, hi, _ in dims], 0.0)
            pads = [(0, max(0, need - n - lo - hi)) for n, _, _, _, lo, hi, need in dims]
            include = False
        else:
            pads = [(lo, max(0, need - n - lo)) for n, _, _, _, lo, _, need in dims]
        return b.node("AveragePool", [x], node.name, node.name, kernel_shape=k, strides=s, pads=flat_pads(pads),
                      count_include_pad=int(include))

    def divisor_counts(self, in_shape) -> list[np.ndarray]:
        """Per spatial dim, the divisor of each output position along it (PyTorch's rule);
        the divisor of a window is their product. The compiler emits these same tables."""
        _, k, s, _, pads = self.geometry(in_shape)
        counts = []
        for n, kk, ss, (lo, hi), o in zip(in_shape[1:], k, s, pads, self.out_spatial(in_shape)):
            start = np.arange(o) * ss - lo
            a, b = (-lo, n + hi) if self.count_include_pad else (0, n)
            counts.append(np.minimum(start + kk, b) - np.maximum(start, a))
        return counts

    def lower(self, in_shapes, params):
        counts = tuple(tuple(int(c) for c in t) for t in self.divisor_counts(in_shapes[0]))
        return WindowReduce("avg", self.window(in_shapes[0]), counts)

    def divisor(self, in_shape) -> np.ndarray:
        """Per-output-position divisor, shape (1, 1, *out_spatial)."""
        div = np.ones(())
        for c in self.divisor_counts(in_shape):
            div = np.multiply.outer(div, c)
        return div.reshape(1, 1, *div.shape)

    def reference(self, xs, params):
        xp, k, s, d, out_sp = self._padded(xs[0], 0.0)
        total = sum(v for _, v in windows(xp, k, s, d, out_sp))
        return (total / self.divisor(xs[0].shape[1:])).astype(xs[0].dtype)

    # ---- FC view: fixed coefficients 1/divisor, no parameters ----
    def fc_connections(self, in_shapes) -> int:
        """Non-zeros of `to_matrix`: real (non-padding) pixels under every window."""
        _, k, s, d, pads = self.geometry(in_shapes[0])
        return in_shapes[0][0] * window_count(in_shapes[0][1:], k, s, d, pads, self.out_spatial(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        _, k, s, d, pads = self.geometry(in_shapes[0])
        c = in_shapes[0][0]
        taps = window_taps(in_shapes[0][1:], k, s, d, pads, self.out_spatial(in_shapes[0]))
        m, tie = window_matrix(in_shapes[0], c, c, taps, row_scale=1.0 / self.divisor(in_shapes[0]).ravel())
        return Lowered(m, np.zeros(m.shape[0]), tie, None, "linear")


class _Global(Layer):
    category = Fusion.OPAQUE
    examples = (({}, [(5, 9)]), ({}, [(20, 6, 7)]), ({}, [(3, 2, 3, 4)]))

    def op_name(self, in_shapes):
        return self.kind

    def infer_shape(self, in_shapes):
        nd = spatial_input(self, in_shapes[0])
        return (in_shapes[0][0],) + (1,) * nd

    reduce = "max"

    def lower(self, in_shapes, params):
        """One window covering every position."""
        sp = tuple(in_shapes[0][1:])
        one = (1,) * len(sp)
        w = Window(sp, sp, sp, one, ((0, 0),) * len(sp), one)
        return WindowReduce(self.reduce, w, tuple((n,) for n in sp) if self.reduce == "avg" else ())

    def receptive_field(self, in_shapes, rfs):
        if rfs[0] is None:
            return None
        return tuple((size + (n - 1) * jump, jump * n, start + (n - 1) / 2 * jump)
                     for (size, jump, start), n in zip(rfs[0], in_shapes[0][1:]))


class GlobalAvgPool(_Global):
    """`global_avgpool`: mean over all spatial positions, keeps (C, 1, ...)."""

    kind = "global_avgpool"
    reduce = "avg"
    onnx_op = "GlobalAveragePool"
    onnx_imports = ("GlobalAveragePool",)

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)

    def reference(self, xs, params):
        x = xs[0]
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float64).astype(x.dtype)

    def fc_connections(self, in_shapes) -> int:
        return math.prod(in_shapes[0])

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """Row c averages channel c: 1/n at each of its n positions."""
        c, n = in_shapes[0][0], math.prod(in_shapes[0][1:])
        m = fc_csr(np.full(c * n, 1.0 / n), np.arange(c * n), np.arange(c + 1) * n, (c, c * n))
        return Lowered(m, np.zeros(c), np.full(c * n, -1, np.int32), None, "linear")


class GlobalMaxPool(_Global):
    """`global_maxpool`: max over all spatial positions, keeps (C, 1, ...)."""

    kind = "global_maxpool"
    onnx_op = "GlobalMaxPool"
    onnx_imports = ("GlobalMaxPool",)

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: x.amax(dim=tuple(range(2, x.ndim)), keepdim=True)

    def reference(self, xs, params):
        x = xs[0]
        return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)

    def fc_connections(self, in_shapes) -> int:
        return in_shapes[0][0]

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """Row c selects channel c's maximum at the input `xs` (piecewise linear)."""
        (x,) = fc_point(self, in_shapes, xs)
        c = x.shape[0]
        xf = x.reshape(c, -1)
        return fc_selection(xf.argmax(1) + np.arange(c) * xf.shape[1], x.size)
