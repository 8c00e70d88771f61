"""Mean and max over chosen axes (ONNX ReduceMean / ReduceMax, torch's x.mean(dims) / x.amax(dims)):
over spatial axes a window covering them (the global pools where it is all of them), over the
channels a channel reduction, over both the one then the other."""

from __future__ import annotations

import math

import numpy as np

from ..errors import LayerError
from ..shapes import Window
from .base import (
    Attr,
    Fusion,
    Layer,
    Lowered,
    _is_int,
    _show,
    boolean,
    fc_counts_indptr,
    fc_csr,
    fc_point,
    fc_selection,
)
from .lowering import Chain, ChannelReduction, ChannelStat, WindowReduce


def axes_list(v):
    """An axis or a list of distinct axes, numbered as in PyTorch with the batch as axis 0: 1 is the
    channels, 2, 3, ... the spatial dims, negative ones count from the end.

    >>> axes_list([2, 3]), axes_list(-1)
    ((2, 3), (-1,))
    """
    items = list(v) if isinstance(v, (list, tuple)) else [v]
    if not items:
        raise LayerError("expected an axis or a list of axes, got []")
    for a in items:
        if not _is_int(a):
            raise LayerError(f"expected an axis or a list of axes (integers: 1 the channels, 2... the spatial dims), "
                             f"got {_show(a)}")
        if a == 0:
            raise LayerError("axis 0 is the batch: a layer reduces within each sample (1 is the channels, 2... the "
                             "spatial dims)")
        if abs(a) > 4:
            raise LayerError(f"expected an axis between -4 and 4 (inputs have at most 3 spatial dims), got {a}")
    if len(set(items)) != len(items):
        raise LayerError(f"expected distinct axes, got {list(items)}")
    return tuple(int(a) for a in items)


class _Reduce(Layer):
    category = Fusion.OPAQUE
    attrs = (Attr("axes", axes_list, None, "the axes reduced, PyTorch's numbering: 1 the channels, 2... the "
                                           "spatial dims, negative from the end (default: every spatial dim)"),
             Attr("keepdims", boolean, True, "keep each reduced axis with size 1 (false: drop it, which only "
                                             "spatial axes may be)"))
    examples = (({}, [(20, 6, 7)]), ({"axes": [2, 3], "keepdims": False}, [(5, 6, 7)]),
                ({"axes": -1}, [(3, 2, 3, 4)]), ({"axes": [1]}, [(17, 3, 4)]), ({"axes": 1}, [(9,)]),
                ({"axes": [1, 3]}, [(6, 5, 4)]), ({"axes": [2, 4], "keepdims": False}, [(18, 2, 3, 4)]),
                ({"axes": 2, "keepdims": False}, [(4, 9)]))
    reduce = "max"

    def resolved(self, in_shape) -> tuple[int, ...]:
        """The axes as sorted positive numbers (batch = 0) for this input, checked against its rank."""
        rank = len(in_shape) + 1
        if self.axes is None:
            if rank == 2:
                raise LayerError(f"a flat ({in_shape[0]},) input has no spatial dims to reduce by default",
                                 attr="axes", hint="name the axes: 1 is the features")
            return tuple(range(2, rank))
        out = []
        for a in self.axes:
            b = a + rank if a < 0 else a
            if not 1 <= b < rank:
                raise LayerError(f"axis {a} is out of range for a (N, {', '.join(map(str, in_shape))}) input "
                                 f"(axes 1..{rank - 1}, or -{rank - 1}..-1)", attr="axes")
            out.append(b)
        if len(set(out)) != len(out):
            raise LayerError(f"axes {list(self.axes)} name the same axis twice for a rank-{rank} input", attr="axes")
        return tuple(sorted(out))

    def infer_shape(self, in_shapes):
        shape = tuple(in_shapes[0])
        axes = self.resolved(shape)
        if 1 in axes and not self.keepdims:
            raise LayerError("keepdims: false would drop the channel axis (a spatial axis would become the "
                             "channels)", attr="keepdims", hint="keep it (keepdims: true) and flatten after")
        if self.keepdims:
            return tuple(1 if i + 1 in axes else n for i, n in enumerate(shape))
        return tuple(n for i, n in enumerate(shape) if i + 1 not in axes)

    def receptive_field(self, in_shapes, rfs):
        """A reduced spatial dim is seen whole (as by a global pool); kept ones are unchanged."""
        if rfs[0] is None:
            return None
        axes = self.resolved(in_shapes[0])
        out = []
        for i, ((size, jump, start), n) in enumerate(zip(rfs[0], in_shapes[0][1:])):
            if i + 2 in axes:
                if self.keepdims:
                    out.append((size + (n - 1) * jump, jump * n, start + (n - 1) / 2 * jump))
            else:
                out.append((size, jump, start))
        return tuple(out) or None

    def reference(self, xs, params):
        x = xs[0]
        axes = self.resolved(x.shape[1:])
        if self.reduce == "avg":  # in the input's precision, as PyTorch (a float32 sum of huge values overflows)
            with np.errstate(over="ignore"):
                return x.mean(axis=axes, keepdims=self.keepdims)
        return x.max(axis=axes, keepdims=self.keepdims)

    def torch_fn(self, torch, in_shapes, params):
        axes = self.resolved(in_shapes[0])
        if self.reduce == "avg":
            return lambda x: x.mean(dim=axes, keepdim=self.keepdims)
        return lambda x: x.amax(dim=axes, keepdim=self.keepdims)

    # ---- the compiler: a window over the reduced spatial axes, a channel reduction, or both ----
    def lower(self, in_shapes, params):
        shape = tuple(in_shapes[0])
        axes = self.resolved(shape)
        sp = shape[1:]
        steps = []
        if 1 in axes:
            c = shape[0]
            if self.reduce == "avg":
                stat = ChannelStat("sum", lambda m, x, s: x, scale=1.0 / c)
            else:
                stat = ChannelStat("max", lambda m, x, s: x)
            steps.append(ChannelReduction(self, (stat,), lambda m, x, s: s[0], collapse=True))
        if any(a >= 2 for a in axes):
            kernel = tuple(n if i + 2 in axes else 1 for i, n in enumerate(sp))
            out = tuple(1 if i + 2 in axes else n for i, n in enumerate(sp))
            w = Window(sp, kernel, kernel, (1,) * len(sp), ((0, 0),) * len(sp), out)
            div = tuple((n,) if i + 2 in axes else (1,) * n for i, n in enumerate(sp)) if self.reduce == "avg" else ()
            steps.append(WindowReduce(self.reduce, w, div))
        return steps[0] if len(steps) == 1 else Chain(tuple(steps))

    # ---- FC view ----
    def _groups(self, in_shape):
        """Per input element (C-order), the flat index of the output it is reduced into."""
        axes = self.resolved(in_shape)
        kept = tuple(1 if i + 1 in axes else n for i, n in enumerate(in_shape))
        coords = np.indices(in_shape).reshape(len(in_shape), -1)
        coords[[a - 1 for a in axes]] = 0
        return np.ravel_multi_index(coords, kept)

    def fc_connections(self, in_shapes) -> int:
        return math.prod(in_shapes[0] if self.reduce == "avg" else self.infer_shape(in_shapes))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """avg: row o averages the inputs reduced into it (1/count each, linear); max: row o selects
        the largest of them at `xs` (the first on ties; piecewise linear)."""
        shape = tuple(in_shapes[0])
        rows = self._groups(shape)
        n_out, n_in = math.prod(self.infer_shape(in_shapes)), math.prod(shape)
        order = np.argsort(rows, kind="stable")  # inputs grouped by output, ascending within each
        count = np.bincount(rows, minlength=n_out)
        if self.reduce == "avg":
            m = fc_csr(1.0 / count[rows[order]], order, fc_counts_indptr(count), (n_out, n_in))
            return Lowered(m, np.zeros(n_out), np.full(n_in, -1, np.int32), None, "linear")
        (x,) = fc_point(self, in_shapes, xs)
        vals = x.ravel()[order].reshape(n_out, -1)  # every output reduces the same number of inputs
        return fc_selection(order.reshape(n_out, -1)[np.arange(n_out), vals.argmax(1)], n_in)

    # ---- ONNX ----
    def to_onnx(self, b, node, ins, weights):
        """ReduceMean/ReduceMax with the axes numbered with the batch; an input from opset 18, an attribute
        before."""
        axes = [int(a) for a in self.resolved(node.in_shapes[0])]
        op, n = self.onnx_op_name, node.name
        if b.opset >= 18:
            return b.node(op, [ins[0], b.init(f"{n}.axes", np.array(axes, np.int64))], n, n,
                          keepdims=int(self.keepdims))
        return b.node(op, ins, n, n, axes=axes, keepdims=int(self.keepdims))

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        rank = len(x.shape) + 1
        if imp.opset >= 18 or (len(node.input) > 1 and node.input[1]):
            axes = imp.c(node, 1, "axes", required=False)
            axes = None if axes is None else [int(a) for a in np.reshape(axes, -1)]
        else:
            axes = imp.attr(node, "axes")
        if not axes:
            if imp.attr(node, "noop_with_empty_axes", 0):
                return imp.alias(node, x)
            raise imp.fail(node, "reduces over every axis, the batch included; cnngraph reduces within each "
                                 "sample (name the axes, 1 the channels, 2... the spatial dims)")
        pos = [a + rank if a < 0 else a for a in axes]
        if 0 in pos:
            raise imp.fail(node, f"axes {list(axes)} include the batch axis 0; cnngraph reduces within each sample")
        attrs = {"axes": pos[0] if len(pos) == 1 else sorted(pos), "keepdims": bool(imp.attr(node, "keepdims", 1))}
        imp.add_layer(node, cls.kind, attrs, [x.layer])
        return None


class ReduceMean(_Reduce):
    """`reduce_mean: {axes: [2, 3], keepdims: true}`: the mean over the axes, torch's x.mean((2, 3), keepdim=True).

    Axes are numbered as in PyTorch, the batch being axis 0: 1 is the channels, 2... the spatial dims.
    Over every spatial axis with keepdims it is global_avgpool (and compiles to the same kernel);
    over the channels (axis 1) it is a mean per position (CBAM's spatial attention); without
    keepdims the reduced spatial axes are dropped, so `{axes: [2, 3], keepdims: false}` then a
    linear layer is x.mean((2, 3)) and a classifier."""

    kind = "reduce_mean"
    reduce = "avg"
    onnx_op_name = "ReduceMean"
    onnx_imports = ("ReduceMean",)


class ReduceMax(_Reduce):
    """`reduce_max: {axes: 1, keepdims: true}`: the maximum over the axes, torch's x.amax(1, keepdim=True).

    Axes as for reduce_mean. NaN where any value reduced is NaN. Over every spatial axis with
    keepdims it is global_maxpool."""

    kind = "reduce_max"
    onnx_op_name = "ReduceMax"
    onnx_imports = ("ReduceMax",)
