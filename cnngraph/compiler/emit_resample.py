"""The resampling kernel (upsample: nearest and (bi/tri)linear): separable per-dim index and weight
tables built at compile time (constant arrays in the kernel), applied to whole channel blocks.

Per output row (n, channel block, d, h) the D and H taps pick at most four input rows with their weights
(splatted once per row); along W each output vector blends those rows at the one or two input columns
its table names: nearest is a copy of vectors, bilinear two vertical FMAs per column and one horizontal
blend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from .emit_ops import _transpose16
from .irutil import F32, I64, VL, block_rows, i64, kernel_args, new_kernel, splat
from .kernels import IN, OUT, Dims, Expect, Kernel, cblocks


@dataclass(frozen=True)
class ResampleOp(Kernel):
    """y[o] = sum over the taps of w[o] * x[index[o]], dim after dim, on blocked tensors. `taps` per dim
    (D, H, W): ((indices, weights), ...) over that dim's output pixels. Work items: (n, channel block, d, h)."""

    c: int
    in_dims: Dims
    out_dims: Dims
    taps: tuple
    out_plain: bool = False  # write the user's (N, C, *spatial) output (16 x 16 register transposes)

    writes_plain = True  # the lowering may ask for out_plain when this kernel writes the net's output
    ARGS = (("input", IN), ("output", OUT))

    @property
    def name(self) -> str:
        linear = any(len(t) > 1 for t in self.taps)
        return "upsample_linear" if linear else "upsample_nearest"

    def expects(self, consts):
        return {"input": Expect(self.c, math.prod(self.in_dims)),
                "output": Expect(self.c, math.prod(self.out_dims), "plain" if self.out_plain else "blocked")}

    def repeat_w(self) -> int:
        """s where the W taps are nearest with index o // s over a whole s-times upsampling (0 if not)."""
        if len(self.taps[2]) != 1:
            return 0
        ((idx, _),) = self.taps[2]
        iw, ow = self.in_dims[2], self.out_dims[2]
        s = ow // iw
        return s if s > 1 and ow == s * iw and list(idx) == [o // s for o in range(ow)] else 0

    def items(self) -> int:
        return cblocks(self.c) * self.out_dims[0] * self.out_dims[1]


def _table(module, name, ty, values):
    arr = ir.ArrayType(ty, len(values))
    g = ir.GlobalVariable(module, arr, name=name)
    g.global_constant, g.linkage = True, "internal"
    g.initializer = ir.Constant(arr, [int(v) if ty is I64 else float(v) for v in values])
    return g


def emit_resample(module, k: ResampleOp, symbol: str):
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    src, dst = a["input"], a["output"]
    ID, IH, IW = k.in_dims
    OD, OH, OW = k.out_dims
    cb = cblocks(k.c)
    # per dim and tap: the index table and, where it weighs (more than one tap), the weight table
    tables = [[(_table(module, f"{symbol}.i{d}{t}", I64, idx),
                _table(module, f"{symbol}.w{d}{t}", F32, w) if len(taps) > 1 else None)
               for t, (idx, w) in enumerate(taps)] for d, taps in enumerate(k.taps)]

    def at(table, i, ty):
        return b.load(b.gep(table, [i64(0), i], inbounds=True), typ=ty)

    def row(n, c, od, oh, r2):
        x_c = b.fptr(src, b.imul(b.iadd(b.imul(n, cb), c), ID * IH * IW * VL))
        if k.out_plain:  # channel c * 16's plane, this row
            plane = OD * OH * OW
            y_row = b.fptr(dst, b.iadd(b.imul(b.iadd(b.imul(n, k.c), b.imul(c, VL)), plane), b.imul(r2, OW)))
            real = [b.icmp_signed("<", b.iadd(b.imul(c, VL), j), i64(k.c)) for j in range(VL)]
        else:
            y_row = b.fptr(dst, b.iadd(b.imul(b.iadd(b.imul(n, cb), c), OD * OH * OW * VL), b.imul(r2, OW * VL)))
        # the input rows this output row reads, each with its weight (None: 1)
        rows = []
        for td, wd in tables[0]:
            for th, wh in tables[1]:
                row = b.fptr(x_c, b.imul(b.iadd(b.imul(at(td, od, I64), IH), at(th, oh, I64)), IW * VL))
                ws = [at(w, q, F32) for w, q in ((wd, od), (wh, oh)) if w is not None]
                weight = None
                if ws:
                    weight = ws[0] if len(ws) == 1 else b.fmul(ws[0], ws[1])
                    weight = b.bcast(weight)
                rows.append((row, weight))
        def pixel(ow):
            """The output vector (16 channels) at column ow."""
            y = None
            for tw, ww in tables[2]:
                col = b.imul(at(tw, ow, I64), VL)
                blend = None
                for row, weight in rows:  # the vertical blend at this column
                    x = b.vload(row, col)
                    if weight is None:
                        blend = x if blend is None else b.fadd(blend, x)
                    else:
                        blend = b.fmul(x, weight) if blend is None else b.fma(x, weight, blend)
                if ww is not None:
                    w = b.bcast(at(ww, ow, F32))
                    y = b.fmul(blend, w) if y is None else b.fma(blend, w, y)
                else:
                    y = blend if y is None else b.fadd(y, blend)
            return y

        s = k.repeat_w()
        if k.out_plain:
            # 16 pixels x 16 channels, transposed in registers: 16 channel rows of 16 pixels each
            def chunk(ow0, width):
                cols = _transpose16(b, [pixel(b.iadd(ow0, p)) if p < width else splat(0.0) for p in range(VL)])
                mask = b.lane_mask(i64(width)) if width < VL else None
                for j in range(VL):
                    with b.if_then(real[j]):
                        dst_j = b.fptr(y_row, b.iadd(ow0, j * plane))
                        if mask is None:
                            b.vstore(cols[j], dst_j)
                        else:
                            b.masked_store(cols[j], dst_j, mask)

            if OW // VL:
                with b.loop(0, OW // VL, name="chunk") as q:
                    chunk(b.imul(q, VL), VL)
            if OW % VL:
                chunk(i64(OW - OW % VL), OW % VL)
        elif s and len(rows) == 1 and rows[0][1] is None:
            # nearest by an integer factor along W: each input vector stored s times
            row = rows[0][0]
            with b.loop(0, IW, name="iw") as iw:
                x = b.vload(row, b.imul(iw, VL))
                for r in range(s):
                    b.vstore(x, y_row, b.imul(b.iadd(b.imul(iw, s), r), VL))
        else:
            with b.loop(0, OW, name="ow") as ow:
                b.vstore(pixel(ow), y_row, b.imul(ow, VL))

    block_rows(b, fn, cb, OD, OH, row)
    b.ret_void()


EMITTERS = {ResampleOp: emit_resample}
__all__ = ["EMITTERS", "ResampleOp"]
