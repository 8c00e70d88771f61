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
    onnx_imports = ("LRN",)
    examples = (({"size": 3, "alpha": 0.1}, [(20, 7)]), ({"size": 4, "alpha": 0.5, "k": 2.0}, [(17, 3, 4)]),
                ({"size": 5}, [(6, 2, 3, 4)]), ({"size": 2, "alpha": 0.3}, [(9,)]))
    onnx_patterns = ("onnx_band_pattern",)
    onnx_hint = True

    def torch_fn(self, torch, in_shapes, params):
        if len(in_shapes[0]) < 2:
            return None  # PyTorch's takes (N, C, *spatial) only
        return lambda x: torch.nn.functional.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def to_onnx(self, b, node, ins, weights):
        """ONNX's LRN where it means the same and runs (an odd size on a 2D input: ONNX Runtime
        takes rank 4 only); otherwise PyTorch's window exactly: x / (k + band(x * x))^beta, the
        band a 1x1 conv (a Gemm on flat inputs)."""
        n = node.name
        rank = len(node.in_shapes[0]) + 1
        if self.size % 2 == 1 and rank == 4:
            return b.node("LRN", ins, n, n, size=int(self.size), alpha=float(self.alpha), beta=float(self.beta),
                          bias=float(self.k))
        c = node.in_shapes[0][0]
        o, i = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
        band = ((i >= o - self.size // 2) & (i <= o + (self.size - 1) // 2)).astype(np.float32)
        band *= np.float32(self.alpha / self.size)
        sq = b.node("Mul", [ins[0], ins[0]], f"{n}/square", f"{n}/square")
        kname = b.init(f"{n}.k", np.full(c, self.k, np.float32))
        if rank >= 3:
            wname = b.init(f"{n}.window", band.reshape(c, c, *([1] * (rank - 2))))
            acc = b.node("Conv", [sq, wname, kname], f"{n}/window_sum", f"{n}/window_sum", kernel_shape=[1] * (rank - 2))
        else:
            wname = b.init(f"{n}.window", band.T.copy())
            acc = b.node("Gemm", [sq, wname, kname], f"{n}/window_sum", f"{n}/window_sum")
        beta = b.init(f"{n}.beta", np.array(self.beta, np.float32))
        den = b.node("Pow", [acc, beta], f"{n}/denominator", f"{n}/denominator")
        return b.node("Div", [ins[0], den], n, n)

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        size = imp.attr(node, "size")
        if not isinstance(size, int) or size < 1:
            raise imp.fail(node, f"expected a positive integer size, got {size}")
        if size % 2 == 0:
            raise imp.fail(node, f"size={size} is even: ONNX puts the extra channel after, cnngraph (PyTorch) "
                                 "before; only odd sizes mean the same")
        imp.add_layer(node, "lrn", {"size": size, "alpha": imp.f32(imp.attr(node, "alpha", 1e-4)),
                                    "beta": imp.f32(imp.attr(node, "beta", 0.75)),
                                    "k": imp.f32(imp.attr(node, "bias", 1.0))}, [x.layer])
        return None

    @classmethod
    def onnx_band_pattern(cls, imp, node) -> bool:
        """cnngraph's own export of an even-size LRN: Mul(x, x) -> Conv/Gemm(band, k) -> Pow(beta) -> Div.
        Tracks the four steps as pending values; True when `node` was one of them."""
        op, ins = node.op_type, list(node.input)
        pending = imp.pending
        if op == "Mul" and len(ins) == 2 and ins[0] == ins[1] and ins[0] in imp.live:
            readers = imp.readers_of(node.output[0])
            if len(readers) != 1 or readers[0].op_type not in ("Conv", "Gemm"):
                return False  # a square that is not an LRN window's
            pending[node.output[0]] = ("square", ins[0])
        elif op in ("Conv", "Gemm") and ins and pending.get(ins[0], ("",))[0] == "square":
            x = imp.live[pending[ins[0]][1]]
            w = imp.c(node, 1, "band")
            k = imp.c(node, 2, "k", required=False)
            c = x.shape[0]
            plain = all(imp.attr(node, a, 0) in (0, None) for a in ("transA", "transB")) if op == "Gemm" else \
                all(v == 1 for v in imp.attr(node, "strides", [1])) and not any(imp.attr(node, "pads", [0])) \
                and imp.attr(node, "group", 1) == 1 and imp.attr(node, "auto_pad", "NOTSET") == "NOTSET"
            if op == "Gemm" and w.ndim == 2:
                w = w.T
            window = plain and w.shape[:2] == (c, c) and np.size(w) == c * c and k is not None and np.size(k) == c \
                and np.all(np.asarray(k) == np.asarray(k).reshape(-1)[0]) and cls._is_band(w.reshape(c, c)) \
                and (op != "Gemm" or (float(imp.attr(node, "alpha", 1.0)) == 1 and float(imp.attr(node, "beta", 1.0)) == 1))
            if not window:  # x * x read by an ordinary conv or linear layer: the square is a mul
                square = imp.pending_node.pop(ins[0])
                del pending[ins[0]]
                imp.add_layer(square, "mul", {}, [x.layer, x.layer])
                return False
            pending[node.output[0]] = ("window sum", pending[ins[0]][1], w.reshape(c, c),
                                       float(np.asarray(k).reshape(-1)[0]))
        elif op == "Pow" and ins and pending.get(ins[0], ("",))[0] == "window sum":
            beta = imp.c(node, 1, "exponent")
            if np.size(beta) != 1:
                raise imp.fail(node, "raises an LRN window sum to a non-scalar power")
            pending[node.output[0]] = ("denominator", *pending[ins[0]][1:], float(np.reshape(beta, -1)[0]))
        elif op == "Div" and len(ins) == 2 and pending.get(ins[1], ("",))[0] == "denominator":
            _, xname, band, k, beta = pending[ins[1]]
            if ins[0] != xname:
                raise imp.fail(node, "divides by an LRN denominator computed from another tensor")
            attrs = cls._from_band(imp, node, band, k, beta)
            hint = imp.hint(node, "lrn")
            if hint and hint.get("size") == attrs["size"] and \
                    np.float32(np.float32(hint.get("alpha", 0)) / np.float32(attrs["size"])) == np.float32(
                        band[band != 0][0]) and np.float32(hint.get("beta")) == np.float32(beta) and \
                    np.float32(hint.get("k")) == np.float32(k):
                attrs = hint  # the exporter's exact decimals
            imp.add_layer(node, "lrn", attrs, [imp.live[xname].layer])
        else:
            return False
        return True

    @staticmethod
    def _is_band(band) -> bool:
        """Is this channel mix an LRN window: one value on a band around the diagonal, zeros elsewhere?"""
        nz = band != 0
        if not nz.any() or len(np.unique(band[nz])) != 1:
            return False
        o, i = np.nonzero(nz)
        before, after = int(np.max(o - i)), int(np.max(i - o))
        oo, ii = np.meshgrid(np.arange(band.shape[0]), np.arange(band.shape[0]), indexing="ij")
        return bool(np.array_equal(nz, (ii >= oo - before) & (ii <= oo + after)))

    @staticmethod
    def _from_band(imp, node, band, k, beta) -> dict:
        c = band.shape[0]
        nz = band != 0
        if not nz.any():
            raise imp.fail(node, "an LRN window with no channels")
        o, i = np.nonzero(nz)
        before, after = int(np.max(o - i)), int(np.max(i - o))
        size = before + after + 1
        value = float(band[nz][0])
        attrs = {"size": size, "alpha": imp.f32(value * size), "beta": imp.f32(beta), "k": imp.f32(k)}
        oo, ii = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
        want = ((ii >= oo - size // 2) & (ii <= oo + (size - 1) // 2)).astype(np.float32) * np.float32(value)
        if before != size // 2 or after != (size - 1) // 2 or not np.array_equal(band.astype(np.float32), want):
            raise imp.fail(node, "x / (k + mix(x*x))^beta whose channel mix is not an LRN window")
        return attrs
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
