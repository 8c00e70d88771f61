"""Transposed convolution, 1D/2D/3D, with stride, padding, output_padding, dilation and groups:
the adjoint of the convolution with the same kernel, stride, dilation and padding.

In the FC view it is literally the transpose of that convolution's matrix, with the same weights:
where the conv's output pixel i reads input pixel o under tap t, this layer scatters its input
pixel i to output pixel o under tap t. The seeds' argument, run backwards: `Conv.fc_rows` (rows of a
conv's matrix) is a transposed convolution, and this layer's `fc_rows` is a convolution.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import LayerError
from ..shapes import TransposedWindow
from .base import (
    Attr,
    Fusion,
    Layer,
    Lowered,
    boolean,
    compact_list,
    fan_in_bound,
    flat_pads,
    ints,
    onnx_ints,
    onnx_padding,
    padding,
    per_dim,
    pos_int,
    resolve_pads,
    spatial_input,
    uniform,
    window_count,
    window_matrix,
    window_taps,
)
from .conv import Conv, _groups
from .lowering import TransposedConvolution


class ConvTranspose(Layer):
    """`conv_transpose: {out: 32, kernel: 2, stride: 2, padding: 0, output_padding: 0, dilation: 1, groups: 1}`

    Each input pixel i adds weight[ci, co, t] * x[ci, i] to output pixel i * stride - padding_lo + t * dilation;
    the output has (n - 1) * stride - padding_lo - padding_hi + dilation * (kernel - 1) + output_padding + 1
    pixels per dim (PyTorch's ConvTranspose). `padding: same` gives n * stride outputs (ONNX's SAME_UPPER).
    """

    kind = "conv_transpose"
    category = Fusion.ANCHOR
    attrs = (
        Attr("out", pos_int, None, "output channels (default: input channels)"),
        Attr("kernel", ints(), doc="kernel size, an int or one per spatial dim"),
        Attr("stride", ints(), 1),
        Attr("padding", padding, 0, "cropped from the output: an int, one per dim, [lo, hi] per dim, 'same', 'valid'"),
        Attr("output_padding", ints(0), 0, "extra outputs at the far end, each less than the stride or dilation"),
        Attr("dilation", ints(), 1),
        Attr("groups", _groups, 1, "channel groups; 'depthwise' = one per input channel"),
        Attr("bias", boolean, True),
    )
    onnx_imports = ("ConvTranspose",)
    examples = (({"out": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}, [(5, 7)]),
                ({"out": 8, "kernel": 2, "stride": 2}, [(20, 5, 6)]),
                ({"out": 6, "kernel": [3, 4], "stride": [2, 3], "padding": [[1, 0], [2, 1]], "dilation": [1, 2],
                  "groups": 2}, [(4, 4, 5)]),
                ({"kernel": 3, "stride": 1, "padding": 1, "groups": "depthwise", "bias": False}, [(17, 6, 5)]),
                ({"out": 3, "kernel": 2, "stride": [1, 2, 2]}, [(5, 2, 3, 4)]),
                ({"out": 16, "kernel": 1, "stride": 3}, [(3, 4, 4)]))

    # ---- geometry, shared by every facet ----
    def geometry(self, in_shape):
        """(nd, kernel, stride, dilation, pads, output_padding) for this input."""
        nd = spatial_input(self, in_shape)
        k, s, d, op = (per_dim(self, n, nd) for n in ("kernel", "stride", "dilation", "output_padding"))
        if self.padding == "same":  # n * stride outputs, the odd one cropped at the end (ONNX's SAME_UPPER)
            pads = []
            for n, kk, ss, dd, o in zip(in_shape[1:], k, s, d, op):
                total = (n - 1) * ss + (kk - 1) * dd + 1 + o - n * ss
                if total < 0:
                    raise LayerError(f"padding 'same' needs {-total} more outputs than kernel {kk} and stride {ss} "
                                     f"make", attr="padding", hint="use a kernel of at least the stride")
                pads.append((total // 2, total - total // 2))
            pads = tuple(pads)
        else:  # the explicit forms and 'valid' as every windowed layer reads them
            pads = resolve_pads(self, in_shape[1:], k, s, d)
        for i, (o, ss, dd) in enumerate(zip(op, s, d)):
            if o >= max(ss, dd):
                raise LayerError(f"output_padding {o} along spatial dim {i} must be less than the stride {ss} or the "
                                 f"dilation {dd}", attr="output_padding")
        return nd, k, s, d, pads, op

    def window(self, in_shape) -> TransposedWindow:
        _, k, s, d, pads, op = self.geometry(in_shape)
        return TransposedWindow.of(in_shape[1:], k, s, d, pads, op)

    channels = Conv.channels  # (in, out, groups): the same attributes, the same rule

    def op_name(self, in_shapes):
        return f"conv_transpose{spatial_input(self, in_shapes[0])}d"

    def infer_shape(self, in_shapes):
        w = self.window(in_shapes[0])
        _, cout, _ = self.channels(in_shapes[0])
        for i, o in enumerate(w.out):
            if o < 1:
                raise LayerError(f"padding {list(w.pads[i])} crops all {o + sum(w.pads[i])} outputs along spatial "
                                 f"dim {i}", attr="padding", hint="reduce the padding")
        return (cout, *w.out)

    def param_shapes(self, in_shapes):
        _, k, *_ = self.geometry(in_shapes[0])
        cin, cout, g = self.channels(in_shapes[0])
        shapes = {"weight": (cin, cout // g, *k)}  # PyTorch's layout: input channels first
        if self.bias:
            shapes["bias"] = (cout,)
        return shapes

    def macs(self, in_shapes, out_shape):
        """Every input pixel times every tap and output channel of its group (cropped ones included,
        the usual count for a transposed convolution)."""
        _, k, *_ = self.geometry(in_shapes[0])
        cin, cout, g = self.channels(in_shapes[0])
        return math.prod(in_shapes[0][1:]) * cin * (cout // g) * math.prod(k)

    def receptive_field(self, in_shapes, rfs):
        """Output pixel o reads the input pixels within (kernel - 1) * dilation / stride of (o + lo) / stride:
        the jump shrinks by the stride."""
        if rfs[0] is None:
            return None
        _, k, s, d, pads, _ = self.geometry(in_shapes[0])
        return tuple((size + (kk - 1) * dd / ss * jump, jump / ss, start + (lo - (kk - 1) * dd / 2) / ss * jump)
                     for (size, jump, start), kk, ss, dd, (lo, _) in zip(rfs[0], k, s, d, pads))

    def init_params(self, in_shapes, rng):
        """PyTorch's: kaiming_uniform(a=sqrt(5)) with fan_in = out/groups * kernel (the weight's dim 1)."""
        shapes = self.param_shapes(in_shapes)
        bound = fan_in_bound(math.prod(shapes["weight"][1:]))
        return {name: uniform(rng, bound, shape) for name, shape in shapes.items()}

    def reference(self, xs, params):
        """The scatter, as written: every input pixel adds its weighted taps to the uncropped output,
        which is then cropped by the padding."""
        x = xs[0]
        nd, k, s, d, pads, op = self.geometry(x.shape[1:])
        cin, cout, g = self.channels(x.shape[1:])
        n = x.shape[0]
        full = [(m - 1) * ss + dd * (kk - 1) + 1 + o for m, kk, ss, dd, o in zip(x.shape[2:], k, s, d, op)]
        w = params["weight"].astype(x.dtype).reshape(g, cin // g, cout // g, *k)
        xg = x.reshape(n, g, cin // g, *x.shape[2:])
        y = np.zeros((n, g, cout // g, *full), dtype=x.dtype)
        for offs in np.ndindex(*k):
            tap = w[(slice(None), slice(None), slice(None), *offs)]  # (g, ig, og)
            idx = (slice(None),) * 3 + tuple(slice(t * dd, t * dd + ss * (m - 1) + 1, ss)
                                              for t, dd, ss, m in zip(offs, d, s, x.shape[2:]))
            y[idx] += np.einsum("ngi...,gio->ngo...", xg, tap)
        y = y.reshape(n, cout, *full)
        y = y[(slice(None), slice(None), *(slice(lo, m - hi) for m, (lo, hi) in zip(full, pads)))]
        if self.bias:
            y = y + params["bias"].astype(x.dtype).reshape(1, cout, *([1] * nd))
        return np.ascontiguousarray(y)

    def lower(self, in_shapes, params):
        cin, cout, g = self.channels(in_shapes[0])
        return TransposedConvolution(self.window(in_shapes[0]), cin, cout, g, params["weight"], params.get("bias"))

    def same_function(self, other, in_shape) -> bool:
        return (self.infer_shape([in_shape]) == other.infer_shape([in_shape])
                and self.geometry(in_shape) == other.geometry(in_shape)
                and self.channels(in_shape) == other.channels(in_shape) and self.bias == other.bias)

    # ---- the matching convolution: this layer's adjoint ----
    def matching_conv(self, in_shape) -> tuple[Conv, tuple]:
        """(the Conv with the same kernel, stride, dilation, padding and groups and in/out channels
        swapped, its input shape = this layer's output shape): its matrix is this layer's transposed."""
        _, k, s, d, pads, _ = self.geometry(in_shape)
        cin, _, g = self.channels(in_shape)
        conv = Conv.from_attrs({"out": cin, "kernel": list(k), "stride": list(s), "dilation": list(d),
                                "padding": [list(p) for p in pads], "groups": g, "bias": False})
        return conv, self.infer_shape([in_shape])

    # ---- FC view: the transpose of the matching conv's matrix, the same weights ----
    def fc_connections(self, in_shapes) -> int:
        w = self.window(in_shapes[0])
        cin, cout, g = self.channels(in_shapes[0])
        return cin * (cout // g) * window_count(w.out, w.kernel, w.stride, w.dilation, w.pads, w.input)

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """M = C.T, C the matrix of the matching convolution (from this layer's output back to its input,
        the same weight array); ties transposed with it.

        >>> import numpy as np
        >>> ct = ConvTranspose.from_attrs({"out": 2, "kernel": 3, "stride": 2, "padding": 1})
        >>> p = ct.init_params([(3, 4)], np.random.default_rng(0))
        >>> lo = ct.to_matrix([(3, 4)], p)
        >>> x = np.random.default_rng(1).standard_normal((1, 3, 4))
        >>> bool(np.allclose(lo.matrix @ x.ravel() + lo.bias, ct.reference([x], p).ravel()))
        True
        """
        import scipy.sparse as sp

        w = self.window(in_shapes[0])
        cin, cout, g = self.channels(in_shapes[0])
        out_shape = (cout, *w.out)
        # the conv from this layer's output to its input: out pixel i reads o = i*s - lo + t*d
        taps = window_taps(w.out, w.kernel, w.stride, w.dilation, w.pads, w.input)
        conv_m, conv_tie = window_matrix(out_shape, cin, g, taps, weight=params["weight"])
        order = sp.csr_matrix((np.arange(conv_m.nnz, dtype=np.int64), conv_m.indices, conv_m.indptr),
                              shape=conv_m.shape).T.tocsr()
        order.sort_indices()
        perm = order.data
        from .base import fc_csr
        m = fc_csr(conv_m.data[perm], order.indices, order.indptr, order.shape)
        bias = (np.repeat(np.asarray(params["bias"], np.float64), math.prod(w.out)) if self.bias
                else np.zeros(m.shape[0]))
        return Lowered(m, bias, conv_tie[perm], "weight", "linear")

    def fc_rows(self, in_shapes, params, xs, g):
        """g @ M as the matching convolution of g (the seeds' argument backwards): each row of g, shaped as
        this layer's output, convolved with the same weights back to the input's shape; g @ b per row."""
        conv, out_shape = self.matching_conv(in_shapes[0])
        n = g.shape[0]
        w64 = np.asarray(params["weight"], np.float64)
        gx = conv.reference([np.asarray(g, np.float64).reshape(n, *out_shape)], {"weight": w64})
        spatial = in_shapes[0][1:]
        gx = gx[(slice(None), slice(None), *(slice(0, m) for m in spatial))]  # output_padding >= stride: one more
        const = (np.asarray(g, np.float64).reshape(n, out_shape[0], -1).sum(-1) @ np.asarray(params["bias"], np.float64)
                 if self.bias else np.zeros(n))
        return gx.reshape(n, -1), const, "linear"

    # ---- interop ----
    def torch_fn(self, torch, in_shapes, params):
        """F.conv_transpose without padding, then the crop (PyTorch's padding is symmetric)."""
        F = torch.nn.functional
        nd, _, s, d, pads, op = self.geometry(in_shapes[0])
        _, _, g = self.channels(in_shapes[0])
        f = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
        out = self.infer_shape(in_shapes)[1:]
        crop = (slice(None), slice(None), *(slice(lo, lo + o) for (lo, _), o in zip(pads, out)))
        w, b = params["weight"], params.get("bias")
        return lambda x: f(x, w, b, stride=s, output_padding=op, groups=g, dilation=d)[crop]

    def to_onnx(self, b, node, ins, weights):
        _, k, s, d, pads, op = self.geometry(node.in_shapes[0])
        _, _, g = self.channels(node.in_shapes[0])
        args = [ins[0], b.init(f"{node.name}.weight", weights[f"{node.name}.weight"])]
        if self.bias:
            args.append(b.init(f"{node.name}.bias", weights[f"{node.name}.bias"]))
        attrs = {"kernel_shape": list(k), "strides": list(s), "pads": flat_pads(pads), "dilations": list(d),
                 "group": int(g)}
        if any(op):
            attrs["output_padding"] = list(op)
        return b.node("ConvTranspose", args, node.name, node.name, **attrs)

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        w = imp.c(node, 1, "weight").astype(np.float32)
        bias = imp.c(node, 2, "bias", required=False)
        nd = len(x.shape) - 1
        if nd < 1 or w.ndim != nd + 2:
            raise imp.fail(node, f"expected a weight of rank {nd + 2} for input shape {x.shape}, got {w.shape}")
        k = onnx_ints(imp, node, "kernel_shape", w.shape[2:], nd)
        s = onnx_ints(imp, node, "strides", [1] * nd, nd)
        d = onnx_ints(imp, node, "dilations", [1] * nd, nd)
        groups = int(imp.attr(node, "group", 1))
        if tuple(k) != tuple(w.shape[2:]):
            raise imp.fail(node, f"kernel_shape {k} differs from the weight's {list(w.shape[2:])}")
        cin = x.shape[0]
        if groups < 1 or cin % groups or w.shape[0] != cin:
            raise imp.fail(node, f"expected a weight of {cin} input channels in {groups} groups, got {w.shape}")
        op = [int(v) for v in (imp.attr(node, "output_padding") or [0] * nd)]
        if len(op) != nd or min(op) < 0:
            raise imp.fail(node, f"expected {nd} non-negative output_padding values, got {op}")
        mode = imp.attr(node, "auto_pad", "NOTSET")
        shape = imp.attr(node, "output_shape")
        if shape is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
            # pads from the wanted output size (ONNX's rule: the odd one at the end for SAME_UPPER)
            want = [int(v) for v in shape][-nd:] if shape is not None else [n * ss for n, ss in zip(x.shape[1:], s)]
            pads = []
            for i, (n, kk, ss, dd, m) in enumerate(zip(x.shape[1:], k, s, d, want)):
                total = ss * (n - 1) + op[i] + (kk - 1) * dd + 1 - m
                lo = total // 2 if mode == "SAME_UPPER" else total - total // 2
                hi = total - lo
                if hi < 0:  # a larger output than the scatter makes: the extra pixels at the end are output padding
                    op[i], hi = op[i] - hi, 0
                if lo < 0 or op[i] >= max(ss, dd):
                    raise imp.fail(node, f"output_shape {want} needs {-total} more outputs than the transposed "
                                         f"convolution makes along spatial dim {i}")
                pads.append((lo, hi))
        elif mode in ("NOTSET", ""):
            p = [int(v) for v in (imp.attr(node, "pads") or [0] * (2 * nd))]
            if len(p) != 2 * nd or min(p) < 0:
                raise imp.fail(node, f"expected {2 * nd} non-negative pads, got {p}")
            pads = [(p[i], p[i + nd]) for i in range(nd)]
        elif mode == "VALID":
            pads = [(0, 0)] * nd
        else:
            raise imp.fail(node, f"unknown auto_pad '{mode}'")
        attrs = {"out": int(w.shape[1]) * groups, "kernel": compact_list(k), "stride": compact_list(s),
                 "padding": onnx_padding(pads), "output_padding": compact_list(op), "dilation": compact_list(d),
                 "groups": "depthwise" if groups == cin and groups > 1 and w.shape[1] == 1 else groups,
                 "bias": bias is not None}
        params = {"weight": w}
        if bias is not None:
            params["bias"] = np.asarray(bias, np.float32).reshape(-1)
        imp.add_layer(node, "conv_transpose", attrs, [x.layer], params, hint=imp.weight_hint(node, w))
        return None
