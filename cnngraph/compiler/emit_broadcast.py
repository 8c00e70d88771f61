"""Kernels for operands that broadcast: a merge whose inputs have different shapes (a (C, H, W)
tensor times a (C, 1, 1) gate, a (1, H, W) map, ...), and the per-sample weight scaling that folds a
squeeze-and-excitation gate into the convolution that reads the gated tensor.

In the blocked layout an operand that repeats along a spatial dim is read with stride 0 there, and an
operand with one channel is read from lane 0 of its one block and splatted: one loop nest serves every
combination. Division can turn finite padding lanes into NaN (0 / 0), so a non-finite merge writes its
last block's padding lanes as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llvmlite import ir

from .irutil import VL, VecMath, apply_ops, block_rows, i64, kernel_args, new_kernel, splat
from .kernels import IN, OUT, WEIGHT, ConvKernel, Dims, Expect, Kernel, act_param_count, cblocks
from .emit_conv import first_icb
from .pack import pack_conv


@dataclass(frozen=True)
class Broadcast(Kernel):
    """y = acts(combine(x0, x1, ...)) over blocked tensors whose shapes broadcast to (c, dims): input i
    has `inputs[i]` = (channels, (D, H, W)), each either the output's or 1. `mask`: write the padding
    lanes of the last channel block as 0. Work items: (n, channel block, d, h)."""

    merge: Any  # the layer whose `combine` joins the inputs, in order
    c: int
    dims: Dims
    inputs: tuple  # ((c_i, dims_i), ...)
    acts: tuple = ()  # Act, in order
    mask: bool = False

    @property
    def args(self):
        return ((("output", OUT),) + tuple((f"input{i}", IN) for i in range(len(self.inputs)))
                + (("act_params", WEIGHT),))

    @property
    def name(self) -> str:
        return "_".join(["broadcast", self.merge.kind] + [a.label for a in self.acts])

    def expects(self, consts):
        out = {"output": Expect(self.c, math.prod(self.dims))}
        for i, (c, dims) in enumerate(self.inputs):
            out[f"input{i}"] = Expect(c, math.prod(dims))
        return out

    def items(self) -> int:
        return cblocks(self.c) * self.dims[0] * self.dims[1]


def emit_broadcast(module, k: Broadcast, symbol: str):
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    out, ins = a["output"], [a[f"input{i}"] for i in range(len(k.inputs))]
    m = VecMath(b)
    D, H, W = k.dims
    cb = cblocks(k.c)

    def row(n, c, d, h, r2):
        dst = b.fptr(out, b.iadd(b.imul(b.iadd(b.imul(n, cb), c), D * H * W * VL), b.imul(r2, W * VL)))
        rows, splats = [], []
        for p, (ci, (di, hi, wi)) in zip(ins, k.inputs):
            blocks = cblocks(ci)
            off = b.imul(n, blocks * di * hi * wi * VL)
            if ci > 1:
                off = b.iadd(off, b.imul(c, di * hi * wi * VL))
            if di > 1:
                off = b.iadd(off, b.imul(d, hi * wi * VL))
            if hi > 1:
                off = b.iadd(off, b.imul(h, wi * VL))
            rows.append((b.fptr(p, off), wi > 1))
            splats.append(ci == 1 and k.c > 1)
        act = [b.vload(a["act_params"], b.imul(b.iadd(c, i * cb), VL)) for i in range(act_param_count(k.acts))]
        keep = b.lane_mask(b.sub(i64(k.c), b.imul(c, VL))) if k.mask and k.c % VL else None
        with b.loop(0, W, name="w") as w:
            vals = []
            for (row, along_w), one in zip(rows, splats):
                at = b.imul(w, VL) if along_w else i64(0)
                vals.append(b.bcast(b.sload(row, at)) if one else b.vload(row, at))
            y = vals[0]
            for v in vals[1:]:
                y = k.merge.combine(m, y, v)
            y = apply_ops(m, k.acts, y, param=act.__getitem__)
            if keep is not None:
                y = b.select(keep, y, splat(0.0))
            b.vstore(y, dst, b.imul(w, VL))

    block_rows(b, fn, cb, D, H, row)
    b.ret_void()


@dataclass(frozen=True)
class GateWeights(Kernel):
    """Per sample, the packed weights of convolution `conv` times a per-input-channel gate: conv(x * g) is
    conv'(x) with w'[o, i, ...] = w[o, i, ...] * f(g[i]), f the gating merge's channel_scale hook (`scale`:
    (layer, operand position)). The packed layout is [oc group][input block][taps][input channel][V][16]
    (groups == 1: `pack.pack_conv`); the gate's padding lanes give 0. Work items: (n, oc group)."""

    conv: ConvKernel
    scale: tuple  # (merge layer, operand position of the gate)

    ARGS = (("weights", WEIGHT), ("gate", IN), ("output", OUT))

    @property
    def name(self) -> str:
        return f"gate_weights_{self.scale[0].kind}"

    @property
    def v(self) -> int:
        return self.conv.schedule.v

    @property
    def og(self) -> int:
        return self.conv.ob // self.v

    @property
    def group_floats(self) -> int:
        return self.conv.packed_floats // self.og

    def expects(self, consts):
        return {"gate": Expect(self.conv.cin, 1), "output": Expect(self.conv.packed_floats, 1, "plain")}

    def items(self) -> int:
        return self.og


def pack_for_gate(k: GateWeights, weight):
    """The conv's packing (`pack.pack_conv`), for the step that reads the weights on the conv's behalf."""
    return pack_conv(k.conv, weight)


def emit_gate_weights(module, k: GateWeights, symbol: str):
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    w, gate, out = a["weights"], a["gate"], a["output"]
    m = VecMath(b)
    layer, position = k.scale
    hook = layer.lower([], {}).channel_scale[position]
    conv = k.conv
    icb, ici, v = conv.icb_per_group, conv.ic_inner, k.v
    taps = math.prod(conv.kernel)
    blk = taps * ici * v * VL  # floats of one input block of one oc group
    _, start, end = fn.args
    with b.loop(start, end, name="item") as item:
        n, og = b.sdiv(item, i64(k.og)), b.srem(item, i64(k.og))
        src = b.fptr(w, b.imul(og, k.group_floats))
        dst = b.fptr(out, b.iadd(b.imul(n, conv.packed_floats), b.imul(og, k.group_floats)))
        icb0 = first_icb(b, conv, og)  # this output group's band of input blocks
        g = b.fptr(gate, b.iadd(b.imul(n, cblocks(conv.cin) * VL), b.imul(icb0, VL)))
        with b.loop(0, icb, name="icb") as ib:
            # the factor of each of this block's channels (padding channels: 0)
            s = hook(m, b.vload(g, b.imul(ib, VL)))
            s = b.select(b.lane_mask(b.sub(i64(conv.cin), b.imul(b.iadd(icb0, ib), VL))), s, splat(0.0))
            bs, bd = b.fptr(src, b.imul(ib, blk)), b.fptr(dst, b.imul(ib, blk))
            with b.loop(0, taps, name="t") as t:
                base = b.imul(t, ici * v * VL)
                for ic in range(ici):
                    f = b.bcast(b.extract_element(s, ir.Constant(ir.IntType(32), ic)))
                    for j in range(v):
                        at = b.iadd(base, (ic * v + j) * VL)
                        b.vstore(b.fmul(b.vload(bs, at), f), bd, at)
    b.ret_void()


EMITTERS = {Broadcast: emit_broadcast, GateWeights: emit_gate_weights}
__all__ = ["EMITTERS", "Broadcast", "GateWeights", "pack_for_gate"]
