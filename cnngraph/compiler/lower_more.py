"""Lowering of the mechanisms beyond convolutions, pools and same-shape merges: merges whose operands
broadcast, channel selections (slices as views or copies, shuffles), resampling and transposed
convolutions. A mixin of the lowering pass (`lower._Lowerer`): the same bookkeeping (`new_tensor`,
`step`, `weight`, `blocked`, `whole`), one method per mechanism.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from ..layers.lowering import ChannelSelect, Concat, Resample, TransposedConvolution
from .emit_broadcast import Broadcast, GateWeights, pack_for_gate
from .emit_channels import ChannelGather
from .emit_resample import ResampleOp
from .kernels import VL, ConvKernel, Epilogue
from .pack import as3d, pack_conv, pad_channels
from .plan import BatchArg, ConstArg, TensorArg


@dataclass(frozen=True)
class Gate:
    """A merge folded into the conv that reads its result (a fusion group's prologue): `node` the merge,
    `source` the operand the conv reads, `gate` the per-channel operand, `layer` the merge's layer,
    `position` the gate's operand position."""

    node: str
    source: str
    gate: str
    layer: object
    position: int


class MoreLowerings:
    """Handlers for `lower._Lowerer` (which provides the bookkeeping they call)."""

    def broadcast(self, group, node, low):
        """A merge whose operands broadcast (or whose result needs its padding lanes cleared)."""
        ins = [self.whole(self.blocked(i), node.name) for i in node.inputs]
        acts = self.acts_of(group.nodes[1:])
        c, dims = node.out_shape[0], as3d(node.out_shape[1:])
        shapes = tuple((s[0], as3d(s[1:])) for s in node.in_shapes)
        out = self.new_tensor(c, dims)
        kern = Broadcast(low.layer, c, dims, shapes, acts, mask=not low.finite)
        self.step(kern, group.nodes, output=TensorArg(out), **{f"input{i}": TensorArg(t) for i, t in enumerate(ins)},
                  act_params=self.act_params(group.nodes[1:], c))
        self.values[group.out] = out

    # ---- squeeze-and-excitation: a gate folded into the weights of the conv that reads the gated tensor ----
    def gate_of(self, group) -> Gate | None:
        if not group.prologue:
            return None
        (name,) = group.prologue
        node = self.g.node(name)
        j = next(i for i, s in enumerate(node.in_shapes) if s != node.out_shape)
        return Gate(name, node.inputs[1 - j], node.inputs[j], node.layer, j)

    def gated_weights(self, kern: ConvKernel, gate: Gate, w) -> tuple:
        """(the conv reading per-sample weights, the argument of those weights): a GateWeights step scales
        this sample's copy of the packed weights by the gate's factor per input channel."""
        kern = replace(kern, gated=gate.layer.kind)
        sw = self.new_tensor(kern.packed_floats, (1, 1, 1), layout="plain")
        g = self.whole(self.blocked(gate.gate), gate.gate)
        self.step(GateWeights(kern, (gate.layer, gate.position)), [gate.node], weights=self.weight(w, pack_for_gate),
                  gate=TensorArg(g), output=TensorArg(sw))
        return kern, TensorArg(sw)

    # ---- transposed convolutions: one stride-1 convolution per output phase ----
    def conv_transpose(self, group, node, low: TransposedConvolution):
        """Output pixels o = first + stride * q of one phase (per dim) are a stride-1 convolution over the
        input with the taps t*d = o + lo (mod stride) in reverse order (`TransposedWindow.phases`): one
        ConvKernel each, writing every stride-th pixel of the one output tensor. A phase with no tap
        along some dim receives no input: its kernel reads nothing (bias and epilogue only)."""
        w = np.asarray(low.weight, np.float32)
        b = np.zeros(low.cout, np.float32) if low.bias is None else np.asarray(low.bias, np.float32)
        folds, ops, _, _, affine = self.epilogue_of(group, False)  # the fusion rule gives it no residual or pool
        cin, cout, g = low.cin, low.cout, low.groups
        # as a gather convolution: weight (cout, cin / g, *kernel)
        k = low.window.kernel
        wc = w.reshape(g, cin // g, cout // g, *k).swapaxes(1, 2).reshape(cout, cin // g, *k)
        for f in folds:
            wc = wc * f.scale.astype(np.float32).reshape(-1, *([1] * (wc.ndim - 1)))
            b = (b * f.scale + f.shift).astype(np.float32)
        epilogue = Epilogue(bias=low.bias is not None or bool(folds), ops=ops)
        nd, lead = low.window.nd, 3 - low.window.nd
        src = self.values[node.inputs[0]]
        plain = self.tensors[src].layout == "plain" and cin <= VL and g == 1
        if not plain:
            src = self.blocked(node.inputs[0])
            if self.tensors[src].flat_of:
                src = self.whole(src, node.name)
        t = self.tensors[src]
        out_full = as3d(low.window.out)
        out = self.output_for(group.out, cout, out_full)
        bias = self.weight(pad_channels(b, cout))
        aff = (self.weight(np.concatenate([pad_channels(affine.scale, cout), pad_channels(affine.shift, cout)]))
               if affine is not None else None)
        act_params = self.act_params(group.nodes[1:], cout)  # a prelu's slopes, for every phase
        n_in = low.window.input
        for phase in itertools.product(*low.window.phases()):
            taps = [p.taps or (0,) for p in phase]  # no tap: one that reads nothing (pad past the input)
            pads = [p.pad if p.taps else -n - 1 for p, n in zip(phase, n_in)]
            wp = wc[np.ix_(range(cout), range(cin // g), *taps)]
            if not all(p.taps for p in phase):
                wp = np.zeros_like(wp)
            one = (1,) * lead
            kern = ConvKernel(nd, cin, t.dims, plain, cout, g, one + tuple(len(tp) for tp in taps), (1, 1, 1),
                              one + tuple(p.dilation for p in phase), (0,) * lead + tuple(pads),
                              one + tuple(p.count for p in phase), epilogue,
                              out_step=one + low.window.stride, out_first=(0,) * lead + tuple(p.first for p in phase),
                              out_full=out_full)
            self.step(kern, group.nodes, input=TensorArg(src), weights=self.weight(wp, pack_conv), bias=bias,
                      output=TensorArg(out), affine=aff, batch=BatchArg(),
                      out_blocks=ConstArg(self.tensors[out].total_blocks), out_offset=ConstArg(self.tensors[out].cb_off),
                      in_blocks=ConstArg(t.total_blocks if not plain else 0), in_offset=ConstArg(t.cb_off),
                      in_icb=ConstArg(0), act_params=act_params)
        self.macs += node.macs
        self.values[group.out] = out

    # ---- resampling ----
    def resample(self, group, node, low: Resample):
        src = self.whole(self.blocked(node.inputs[0]), node.name)
        t = self.tensors[src]
        lead = ((((0,), (1.0,)),),) * (3 - len(low.taps))
        dims = as3d(node.out_shape[1:])
        out = self.new_tensor(t.c, dims)
        self.step(ResampleOp(t.c, t.dims, dims, lead + low.taps), group.nodes, input=TensorArg(src),
                  output=TensorArg(out))
        self.values[group.out] = out

    # ---- channel selections: lazy, gathered once where a kernel needs them ----
    # A slice or shuffle, and a concat read only by them, is a virtual value: per channel the stored
    # tensor (a root) and lane it lives in. Nothing is copied until a kernel reads it; then it is a view
    # where the channels are one aligned run of one tensor, else one gather from all its sources (so a
    # ShuffleNet unit's concat, shuffle and split cost one gather of the half its branch reads).
    def plan_virtual(self) -> set:
        """The values that start virtual: every channel selection, and concats read only by selections."""
        virtual = set()
        for g in self.plan.groups:
            for name in g.nodes:
                node = self.g.node(name)
                low = self.lowering(node)
                readers = self.readers.get(name, [])
                if isinstance(low, ChannelSelect) or isinstance(low, Concat) and readers and name != self.g.output and all(
                        isinstance(self.lowering(self.g.node(r)), ChannelSelect) for r in readers):
                    virtual.add(name)
        return virtual

    def channels_of(self, name: str) -> tuple:
        """Value `name` as (root tensor, lane) per channel, without copying anything."""
        if name in self.virtual:
            return self.virtual[name]
        tid = self.blocked(name)
        t = self.tensors[tid]
        if t.flat_of:
            tid = self.whole(tid, name)
            t = self.tensors[tid]
        root, first = (t.root, t.cb_off * VL) if t.root is not None else (tid, 0)
        return tuple((root, first + c) for c in range(t.c))

    def select(self, group, node, low: ChannelSelect):
        chans = self.channels_of(node.inputs[0])
        self.virtual[node.name] = tuple(chans[c] for c in low.sources)

    def concat_virtual(self, group, node) -> bool:
        """A concat that is (or reads) a virtual value: one more virtual value, or one gather. True when
        handled (else the concat is written in place and by copies)."""
        if node.name not in self.virtual_names and not any(i in self.virtual_names for i in node.inputs):
            return False
        chans = tuple(c for i in node.inputs for c in self.channels_of(i))
        if node.name in self.virtual_names:
            self.virtual[node.name] = chans
        else:
            self.values[node.name] = self.realize(chans, [node.name])
        return True

    def realize(self, chans: tuple, nodes) -> int:
        """A stored tensor with these channels: a root itself, a view of one (consecutive lanes from a block
        boundary to a block's end or the root's last channel: its padding lanes are the root's, finite),
        else a gather from every root they come from."""
        roots = list(dict.fromkeys(r for r, _ in chans))
        lanes = [lane for _, lane in chans]
        consecutive = all(b == a + 1 for a, b in itertools.pairwise(lanes))
        if len(roots) == 1 and consecutive:
            t = self.tensors[roots[0]]
            if lanes[0] == 0 and len(lanes) == t.c:
                return t.id
            if lanes[0] % VL == 0 and (len(lanes) % VL == 0 or lanes[-1] == t.c - 1):
                return self.new_tensor(len(lanes), t.dims, root=t.id, cb_off=lanes[0] // VL,
                                       cb_total=t.total_blocks)
        dims = self.tensors[roots[0]].dims
        out = self.new_tensor(len(chans), dims)
        index = {r: k for k, r in enumerate(roots)}
        args = {}
        for k, r in enumerate(roots):
            args.update({f"input{k}": TensorArg(r), f"in_blocks{k}": ConstArg(self.tensors[r].total_blocks),
                         f"in_offset{k}": ConstArg(0)})
        kern = ChannelGather(tuple((index[r], lane) for r, lane in chans),
                             tuple(self.tensors[r].c for r in roots), math.prod(dims))
        self.step(kern, nodes, output=TensorArg(out), **args)
        return out

    def materialize(self, tid: int) -> int:
        """A whole copy of channel view `tid`, made once, for kernels that read whole tensors."""
        done = self.__dict__.setdefault("_materialized", {})
        if tid not in done:
            t = self.tensors[tid]
            out = self.new_tensor(t.c, t.dims)
            who = [n for n, v in self.values.items() if v == tid][:1] or ["view"]
            self.step(ChannelGather(tuple((0, c) for c in range(t.c)), (t.c,), t.spatial), who,
                      input0=TensorArg(tid), output=TensorArg(out), in_blocks0=ConstArg(t.total_blocks),
                      in_offset0=ConstArg(t.cb_off))
            done[tid] = out
        return done[tid]


class Values(dict):
    """The lowering's value -> tensor map: reading a virtual value (a lazy channel selection) realizes it
    there and then, once (the gather is emitted just before the step that needs it)."""

    def __init__(self, lowerer, *args):
        super().__init__(*args)
        self.lowerer = lowerer

    def __missing__(self, name):
        lw = self.lowerer
        if name not in lw.virtual:
            raise KeyError(name)
        tid = lw.realize(lw.virtual[name], [name])
        self[name] = tid
        return tid


__all__ = ["MoreLowerings", "Values"]
