"""The channel gather: y[c] = x[sources[c]] on blocked tensors (a slice that cannot be a view, a
channel shuffle, a view made whole for a kernel that reads whole tensors).

Each output vector is built in registers from the input blocks its 16 channels come from: one load
per block, then two-input shuffles (vpermt2ps), so a contiguous copy aligned to a block is a plain
copy, an unaligned one two loads and one shuffle per vector, ShuffleNet's shuffle of two groups the
same. The output block's code is chosen by a switch (its shuffle masks are constants).
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .irutil import I1, I32, VL, i64, kernel_args, new_kernel, splat
from .kernels import CONST, IN, OUT, Expect, Kernel, cblocks


@dataclass(frozen=True)
class ChannelGather(Kernel):
    """y[c] = x_k[j] for sources[c] = (k, j) over `spatial` positions, from the inputs x_0, x_1, ... of
    `inputs[k]` channels each; an input may be a channel slice of a larger tensor (run-time
    `in_blocks{k}`: its root's blocks, `in_offset{k}`: its first block). The output's padding lanes are 0.
    Work items: (n, output block)."""

    sources: tuple  # per output channel: (input, channel)
    inputs: tuple  # per input: its channels
    spatial: int

    @property
    def args(self):
        return (("output", OUT),) + tuple(a for k in range(len(self.inputs)) for a in (
            (f"input{k}", IN), (f"in_blocks{k}", CONST), (f"in_offset{k}", CONST)))

    @property
    def c(self) -> int:
        return len(self.sources)

    @property
    def name(self) -> str:
        return "channel_gather"

    def expects(self, consts):
        out = {"output": Expect(self.c, self.spatial)}
        for k, c in enumerate(self.inputs):
            out[f"input{k}"] = Expect(c, self.spatial, "blocked", consts[f"in_blocks{k}"], consts[f"in_offset{k}"])
        return out

    def items(self) -> int:
        return cblocks(self.c)


def _mask(values):
    return ir.Constant(ir.VectorType(I32, VL), [int(v) for v in values])


def emit_channel_gather(module, k: ChannelGather, symbol: str):
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    dst = a["output"]
    I64 = i64(0).type
    S, cbo = k.spatial, cblocks(k.c)
    plane = S * VL
    _, start, end = fn.args
    with b.loop(start, end, name="item") as item:
        n, ob = b.sdiv(item, i64(cbo)), b.srem(item, i64(cbo))
        xs = [b.fptr(a[f"input{j}"], b.imul(b.iadd(b.imul(n, b.ptrtoint(a[f"in_blocks{j}"], I64)),
                                                   b.ptrtoint(a[f"in_offset{j}"], I64)), plane))
              for j in range(len(k.inputs))]
        y = b.fptr(dst, b.imul(b.iadd(b.imul(n, cbo), ob), plane))
        done = b.append_basic_block("done")
        switch = b.switch(ob, done)
        for o in range(cbo):
            block = b.append_basic_block(f"ob{o}")
            switch.add_case(i64(o), block)
            b.position_at_end(block)
            # (input, block) each output lane comes from, and its lane there
            lanes = [((j, c // VL), c % VL) for j, c in k.sources[o * VL:(o + 1) * VL]]
            blocks = sorted({blk for blk, _ in lanes})
            real = len(lanes)
            with b.loop(0, S, name="s") as s:
                at = b.imul(s, VL)
                vec = {(j, blk): b.vload(xs[j], b.iadd(at, blk * plane)) for j, blk in blocks}
                acc = vec[blocks[0]]
                first = [lane if blk == blocks[0] else 0 for blk, lane in lanes] + [0] * (VL - real)
                if first != list(range(VL)):
                    acc = b.shuffle_vector(acc, acc, _mask(first))
                for blk in blocks[1:]:
                    pick = [VL + lane if bb == blk else j for j, (bb, lane) in enumerate(lanes)]
                    acc = b.shuffle_vector(acc, vec[blk], _mask(pick + list(range(real, VL))))
                if real < VL:  # padding lanes: 0 (finite)
                    keep = ir.Constant(ir.VectorType(I1, VL), [j < real for j in range(VL)])
                    acc = b.select(keep, acc, splat(0.0))
                b.vstore(acc, y, at)
            b.branch(done)
        b.position_at_end(done)
    b.ret_void()


EMITTERS = {ChannelGather: emit_channel_gather}
__all__ = ["EMITTERS", "ChannelGather"]
