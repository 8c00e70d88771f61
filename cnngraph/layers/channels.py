"""Channel structure: `slice` (a range of channels; the spec's `split` writes one per part) and
`shuffle` (ShuffleNet's channel shuffle). Both pick input channels: y[c] = x[sources[c]].

A slice whose first channel starts a 16-channel block is a view of its input in the compiled net
(no copy); a shuffle, and a slice elsewhere, is a copy that moves whole vectors through register
shuffles.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, fc_csr, pos_int
from .lowering import ChannelSelect


def _index(v):
    """An int, negative counting from the end (Python's rule)."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise LayerError(f"expected an integer, got {v!r}")
    if abs(v) > 1 << 20:
        raise LayerError(f"expected an integer of at most {1 << 20} in size, got {v}")
    return int(v)


def _nonneg(v):
    return pos_int(v, "a non-negative integer", lo=0)


class _Select(Layer):
    """y[c] = x[sources[c]] over the channel axis (every other dim kept)."""

    def sources(self, in_shape) -> np.ndarray:
        raise NotImplementedError

    def lower(self, in_shapes, params):
        return ChannelSelect(tuple(int(c) for c in self.sources(in_shapes[0])))

    def reference(self, xs, params):
        return xs[0][:, self.sources(xs[0].shape[1:])]

    def fc_connections(self, in_shapes) -> int:
        return math.prod(self.infer_shape(in_shapes))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """A 0/1 selection: output (c, p) copies input (sources[c], p).

        >>> Shuffle.from_attrs({"groups": 2}).to_matrix([(4,)], {}).matrix.toarray().astype(int)
        array([[1, 0, 0, 0],
               [0, 0, 1, 0],
               [0, 1, 0, 0],
               [0, 0, 0, 1]])
        """
        c_in, rest = in_shapes[0][0], math.prod(in_shapes[0][1:])
        src = self.sources(in_shapes[0])
        cols = (src[:, None] * rest + np.arange(rest)[None, :]).ravel()
        m = fc_csr(np.ones(cols.size), cols, np.arange(cols.size + 1), (cols.size, c_in * rest))
        return Lowered(m, np.zeros(cols.size), np.full(cols.size, -1, np.int32), None, "linear")


class Slice(_Select):
    """`slice: {start: 16, end: 48}` or `{part: 1, parts: 2}`: a range of channels (`split` writes one per part).

    `start` .. `end` - 1, negative values counting from the end (Python's rule), `end` by default the
    last channel; or part `part` of `parts` equal parts. One that starts on a multiple of 16 channels
    and ends on one (or at the last channel) is a view of its input in the compiled net."""

    kind = "slice"
    category = Fusion.FREE  # usually a view (no code); a copy where it starts inside a channel block
    attrs = (Attr("start", _index, None, "first channel (default 0)"),
             Attr("end", _index, None, "one past the last channel (default: all)"),
             Attr("part", _nonneg, None, "which of `parts` equal parts"),
             Attr("parts", pos_int, None, "the number of equal parts"))
    onnx_imports = ("Slice", "Split")
    examples = (({"start": 16, "end": 40}, [(48, 7)]), ({"start": 3, "end": 10}, [(17, 4, 5)]),
                ({"part": 1, "parts": 2}, [(32, 2, 3, 4)]), ({"start": -5}, [(20,)]), ({"end": 16}, [(20, 3, 3)]),
                ({"part": 2, "parts": 3}, [(6, 5, 5)]))

    def validate(self):
        if self.parts is not None or self.part is not None:
            if self.parts is None or self.part is None:
                raise LayerError("expected both 'part' and 'parts' (which part of how many)",
                                 attr="part" if self.part is None else "parts")
            if self.start is not None or self.end is not None:
                raise LayerError("expected either 'start'/'end' or 'part'/'parts', got both",
                                 attr="start" if self.start is not None else "end")
            if self.part >= self.parts:
                raise LayerError(f"expected a part from 0 to {self.parts - 1}, got {self.part}", attr="part")

    def bounds(self, in_shape) -> tuple[int, int]:
        """[lo, hi) of the channels kept, checked."""
        if len(in_shape) < 1:
            raise LayerError(f"expected a (C, ...) input, got shape {tuple(in_shape)}")
        c = in_shape[0]
        if self.parts is not None:
            if c % self.parts:
                raise LayerError(f"{c} channels do not split into {self.parts} equal parts", attr="parts",
                                 hint="give the channels with start/end (or a split's sizes)")
            size = c // self.parts
            return self.part * size, (self.part + 1) * size
        lo, hi, _ = slice(self.start, self.end).indices(c)
        if hi <= lo:
            raise LayerError(f"start {self.start}, end {self.end} keep no channel of {c}",
                             attr="start" if self.start is not None else "end")
        return lo, hi

    def sources(self, in_shape):
        lo, hi = self.bounds(in_shape)
        return np.arange(lo, hi)

    def infer_shape(self, in_shapes):
        lo, hi = self.bounds(in_shapes[0])
        return (hi - lo, *in_shapes[0][1:])

    def torch_fn(self, torch, in_shapes, params):
        lo, hi = self.bounds(in_shapes[0])
        return lambda x: x[:, lo:hi]

    def to_onnx(self, b, node, ins, weights):
        lo, hi = self.bounds(node.in_shapes[0])
        n = node.name
        starts = b.init(f"{n}.starts", np.array([lo], np.int64))
        ends = b.init(f"{n}.ends", np.array([hi], np.int64))
        axes = b.init(f"{n}.axes", np.array([1], np.int64))
        return b.node("Slice", [ins[0], starts, ends, axes], n, n)

    @classmethod
    def from_onnx(cls, imp, node):
        if node.op_type == "Split":
            return cls._from_split(imp, node)
        x = imp.x(node)
        full = [imp.BATCH, *x.shape]
        r = len(full)
        if imp.opset < 10:
            starts, ends = imp.attr(node, "starts"), imp.attr(node, "ends")
            axes, steps = imp.attr(node, "axes"), None
        else:
            starts = imp.c(node, 1, "starts").reshape(-1)
            ends = imp.c(node, 2, "ends").reshape(-1)
            axes = imp.c(node, 3, "axes", required=False)
            steps = imp.c(node, 4, "steps", required=False)
        starts, ends = [int(v) for v in np.reshape(starts, -1)], [int(v) for v in np.reshape(ends, -1)]
        axes = list(range(len(starts))) if axes is None else [int(a) for a in np.reshape(axes, -1)]
        steps = [1] * len(starts) if steps is None else [int(s) for s in np.reshape(steps, -1)]
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise imp.fail(node, f"expected as many starts, ends, axes and steps, got {len(starts)}, {len(ends)}, "
                                 f"{len(axes)}, {len(steps)}")
        lo, hi = 0, x.shape[0]
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis = axis + r if axis < 0 else axis
            if not 0 <= axis < r:
                raise imp.fail(node, f"axis {axis} is out of range for rank {r}")
            if step != 1:
                raise imp.fail(node, f"slices axis {axis} with step {step}; cnngraph slices channels with step 1")
            a, z, _ = slice(start, end).indices(full[axis])
            if axis == 1:
                lo, hi = a, z
            elif (a, z) != (0, full[axis]):
                raise imp.fail(node, f"slices axis {axis} to [{start}, {end}); cnngraph slices channels (axis 1) only")
        if (lo, hi) == (0, x.shape[0]):
            return imp.alias(node, x)
        if hi <= lo:
            raise imp.fail(node, f"keeps no channel of {x.shape[0]} (channels [{lo}, {hi}))")
        imp.add_layer(node, "slice", cls._attrs(lo, hi, x.shape[0]), [x.layer])
        return None

    @staticmethod
    def _attrs(lo, hi, c) -> dict:
        """The simplest attributes for channels [lo, hi) of c."""
        size = hi - lo
        if c % size == 0 and lo % size == 0 and size < c:
            return {"part": lo // size, "parts": c // size}
        return {"start": lo, "end": hi} if hi < c else {"start": lo}

    @classmethod
    def _from_split(cls, imp, node):
        x = imp.x(node)
        r = len(x.shape) + 1
        axis = imp.attr(node, "axis", 0)
        if (axis + r if axis < 0 else axis) != 1:
            raise imp.fail(node, f"splits axis {axis} of a rank-{r} tensor; cnngraph splits channels (axis 1) only")
        c = x.shape[0]
        outs = list(node.output)
        if imp.opset >= 13:
            sizes = imp.c(node, 1, "split", required=False)
        else:
            sizes = imp.attr(node, "split")
        if sizes is None or np.size(sizes) == 0:
            k = imp.attr(node, "num_outputs", len(outs))
            size = -(-c // k)  # the last part is smaller where the channels do not divide (ONNX's rule)
            sizes = [min(size, c - i * size) for i in range(k)]
        sizes = [int(v) for v in np.reshape(sizes, -1)]
        if len(sizes) != len(outs) or sum(sizes) != c or min(sizes) < 1:
            raise imp.fail(node, f"splits {c} channels into {sizes} for {len(outs)} outputs")
        base = imp.clean_name(node.name) or imp.clean_name(outs[0])
        lo = 0
        for i, size in enumerate(sizes):
            if outs[i]:
                hint = f"{base}.{i}" if base else None
                imp.add_layer(node, "slice", cls._attrs(lo, lo + size, c), [x.layer], out=i, hint=hint)
            lo += size
        return None


class Shuffle(_Select):
    """`shuffle: {groups: 2}`: ShuffleNet's channel shuffle, interleaving the groups' channels.

    The channels as a (groups, C / groups) matrix, transposed: y[c] = x[(c % groups) * (C / groups) + c // groups]."""

    kind = "shuffle"
    category = Fusion.OPAQUE
    attrs = (Attr("groups", pos_int, 2, "channel groups, as in the convolutions around it (ShuffleNetV2: 2)"),)
    onnx_patterns = ("onnx_reshape_transpose_pattern",)
    examples = (({"groups": 2}, [(40, 7)]), ({"groups": 3}, [(6, 4, 5)]), ({"groups": 2}, [(34, 2, 3, 4)]),
                ({"groups": 4}, [(32,)]), ({"groups": 2}, [(116, 3, 3)]))

    def sources(self, in_shape):
        c = in_shape[0]
        if c % self.groups:
            raise LayerError(f"groups={self.groups} does not divide the {c} channels", attr="groups")
        j = np.arange(c)
        return (j % self.groups) * (c // self.groups) + j // self.groups

    def infer_shape(self, in_shapes):
        if len(in_shapes[0]) < 1:
            raise LayerError(f"expected a (C, ...) input, got shape {tuple(in_shapes[0])}")
        self.sources(in_shapes[0])
        return tuple(in_shapes[0])

    def torch_fn(self, torch, in_shapes, params):
        c, sp = in_shapes[0][0], tuple(in_shapes[0][1:])
        g = self.groups
        return lambda x: x.reshape(x.shape[0], g, c // g, *sp).transpose(1, 2).reshape(x.shape[0], c, *sp)

    def to_onnx(self, b, node, ins, weights):
        """Reshape to (N, groups, C / groups, ...), swap those two axes, reshape back (as PyTorch writes it)."""
        n = node.name
        c, sp = node.in_shapes[0][0], list(node.in_shapes[0][1:])
        g = self.groups
        grouped = b.init(f"{n}.grouped", np.array([0, g, c // g, *sp], np.int64))
        flat = b.init(f"{n}.shape", np.array([0, c, *sp], np.int64))
        x = b.node("Reshape", [ins[0], grouped], f"{n}/grouped", f"{n}/grouped")
        x = b.node("Transpose", [x], f"{n}/transposed", f"{n}/transposed", perm=[0, 2, 1, *range(3, 3 + len(sp))])
        return b.node("Reshape", [x, flat], n, n)

    @classmethod
    def onnx_reshape_transpose_pattern(cls, imp, node) -> bool:
        """Reshape (N, C, ...) -> (N, g, C/g, ...), Transpose swapping axes 1 and 2, Reshape back to
        (N, C, ...): a channel shuffle. Tracks the steps as pending values; True when `node` was one."""
        op, ins = node.op_type, [i for i in node.input]
        if op == "Reshape" and len(ins) == 2 and ins[0] in imp.live:
            x = imp.live[ins[0]]
            readers = imp.readers_of(node.output[0])
            if len(readers) != 1 or readers[0].op_type != "Transpose" or ins[1] not in imp.const:
                return False
            perm = list(imp.attr(readers[0], "perm") or [])
            target = _reshaped(imp, node, [imp.BATCH, *x.shape])
            if target is None or len(target) != len(x.shape) + 2 or perm != [0, 2, 1, *range(3, len(target))]:
                return False
            g, cg = target[1], target[2]
            if target[0] != imp.BATCH or g * cg != x.shape[0] or list(target[3:]) != list(x.shape[1:]):
                return False
            imp.pending[node.output[0]] = ("channel groups", ins[0], g)
        elif op == "Transpose" and ins and imp.pending.get(ins[0], ("",))[0] == "channel groups":
            imp.pending[node.output[0]] = ("transposed groups", *imp.pending[ins[0]][1:])
        elif op == "Reshape" and ins and imp.pending.get(ins[0], ("",))[0] == "transposed groups":
            _, xname, g = imp.pending[ins[0]]
            x = imp.live[xname]
            c = x.shape[0]
            target = _reshaped(imp, node, [imp.BATCH, c // g, g, *x.shape[1:]])
            if target is None or list(target) != [imp.BATCH, c, *x.shape[1:]]:
                raise imp.fail(node, f"reshapes transposed channel groups to {target}, not back to "
                                     f"(N, {', '.join(map(str, x.shape))}): no channel shuffle")
            imp.add_layer(node, "shuffle", {"groups": int(g)}, [x.layer])
        else:
            return False
        return True


def _reshaped(imp, node, full) -> list | None:
    """The shape a Reshape node gives a tensor of shape `full` (batch first, as imp.BATCH), or None when
    its shape input is no constant. 0 copies the dim (unless allowzero), -1 is inferred, a model's
    fixed batch size stands for the batch."""
    name = node.input[1]
    if name not in imp.const:
        return None
    shape = [int(v) for v in imp.const[name].reshape(-1)]
    out = []
    for i, v in enumerate(shape):
        if v == 0 and not imp.attr(node, "allowzero", 0) and i < len(full):
            v = full[i]
        elif i == 0 and imp.static_batch is not None and v == imp.static_batch:
            v = imp.BATCH
        out.append(v)
    if out.count(-1) == 1:
        known = math.prod(v for v in out if v != -1)
        total = math.prod(full)
        if known <= 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    return out
