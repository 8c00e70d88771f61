"""IR for one fused convolution (`ConvKernel`): direct convolution on the blocked
layout with a register tile of T output pixels x V output-channel vectors,
accumulated with `llvm.fma.v16f32` over (input block, kd, kh, kw, 16 input
channels), or in bf16 with `vdpbf16ps` over 8 channel pairs (a broadcast pair of
inputs times 16 packed weight pairs); the epilogue (bias, activations, residual,
pooling) runs on the f32 accumulators before anything is stored (as bf16 where the
output tensor is bf16).

Pooling is computed per pooled output row: for each conv row under the pool
window, tiles of conv pixels are reduced along W in registers and combined into
the (L1-resident) pooled row; the pre-pool tensor never exists in memory.

Along W, the interior of a row runs a loop of identical unchecked tiles. The
row's edges sit at compile-time positions, so they get tiles of their own in
which every tap that would read padding is simply not emitted (short rows are
all such tiles). Only very wide edge regions fall back to a per-pixel loop with
runtime bounds. Along D and H the valid tap range is computed per row.
"""

from __future__ import annotations

import functools
import itertools

from llvmlite import ir

from .irutil import F32, I64, VEC, VL, VecMath, apply_ops, i64, kernel_args, new_kernel, splat, tap_range
from .kernels import ConvKernel, act_param_count, cblocks

NEG_INF = float("-inf")
IC_UNROLL = 4
# bf16 pairs per unrolled step: 4 pairs let LLVM hoist 24 broadcasts ahead of their dot products and
# spill them (resnet50 b1 68 ms against 43 ms with 2 pairs, one thread)
PAIR_UNROLL = 2


def k_avg(k: ConvKernel) -> bool:
    return k.pool is not None and k.pool.kind == "avg"


def first_icb(b, k: ConvKernel, og):
    """The first input block output group `og` reads: `ConvKernel.first_icb` at run time."""
    if k.groups == 1 or k.in_plain:
        return i64(0)
    cin_g, cout_g = k.cin // k.groups, k.cout // k.groups
    lo = b.sdiv(b.imul(b.sdiv(b.imul(og, k.schedule.v * VL), i64(cout_g)), i64(cin_g)), i64(VL))
    return b.imin(lo, i64(cblocks(k.cin) - k.icb_per_group))


class ConvEmitter:
    """Builds the native function for one `ConvKernel` into a module."""

    def __init__(self, module: ir.Module, k: ConvKernel, symbol: str):
        self.m, self.k, self.symbol = module, k, symbol
        self.V, self.Tp = k.schedule.v, k.schedule.tp
        self.ID, self.IH, self.IW = k.in_dims
        self.OD, self.OH, self.OW = k.out_dims
        self.QD, self.QH, self.QW = k.pooled
        self.KD, self.KH, self.KW = k.kernel
        self.SD, self.SH, self.SW = k.stride
        self.DD, self.DH, self.DW = k.dilation
        self.PD, self.PH, self.PW = k.pad_lo
        self.ICI = k.ic_inner
        self.ICB = k.icb_per_group
        # bf16 (compiler/precision.py): the input is read in channel pairs, the weights hold a pair per word
        self.bf16 = k.dtype == "bf16"
        self.ICW = -(-self.ICI // 2) if self.bf16 else self.ICI  # weight vectors per input block and tap
        plane = self.ID * self.IH * self.IW
        if k.in_plain:
            self.S_ic, self.S_w, self.S_h, self.S_d, self.S_icb = plane, 1, self.IW, self.IH * self.IW, 0
            self.in_sample = k.cin * plane
        else:
            self.S_ic, self.S_w, self.S_h, self.S_d = 1, VL, self.IW * VL, self.IH * self.IW * VL
            self.S_icb = plane * VL
            self.in_sample = -(-k.cin // VL) * self.S_icb
        self.OG = k.ob // self.V
        # where the outputs go: every out_step-th pixel of an out_full tensor from out_first (a transposed
        # conv's phase), else the pooled output itself
        self.step_d, self.step_h, self.step_w = k.out_step
        self.FD, self.FH, self.FW = k.out_full or k.pooled
        self.q_plane = self.FD * self.FH * self.FW * VL
        self.o_plane = self.OD * self.OH * self.OW * VL
        self.res_sample = k.ob * self.o_plane
        if k.depthwise:
            self.w_og = self.KD * self.KH * self.KW * VL
        else:
            self.w_og = self.ICB * self.KD * self.KH * self.KW * self.ICW * self.V * VL
        p = k.pool
        if p:
            self.pk, self.ps, self.pdil, self.ppl = p.kernel, p.stride, p.dilation, p.pad_lo
        else:
            self.pk = self.ps = self.pdil = (1, 1, 1)
            self.ppl = (0, 0, 0)
        # pooled rows combine several conv rows in memory when the window spans rows
        self.rmw = p is not None and (self.pk[0] > 1 or self.pk[1] > 1)
        self.fast_lo, self.fast_hi = k.fast_range()
        # a pointwise conv over a blocked input (a GEMM): each tile reads its pixels in every input block, a
        # stream per block the hardware does not follow; the next tile's are requested ahead
        self.prefetch_next = k.kernel == (1, 1, 1) and not k.in_plain and not k.depthwise

    # ---- geometry ----
    # ---- the function ----
    def emit(self) -> ir.Function:
        k, V = self.k, self.V
        fn, b = new_kernel(self.m, self.symbol)
        self.b = b
        self.math = VecMath(b)
        # element addresses of the input, the residual and the output, by their dtypes
        self.xptr = functools.partial(b.eptr, k.dtype)
        self.rptr = functools.partial(b.eptr, k.res_dtype)
        self.optr = functools.partial(b.eptr, k.out_dtype)
        _, start, end = fn.args
        a = kernel_args(b, fn, k)
        self.p_in, self.p_w, self.p_bias, self.p_res, self.p_out, self.p_aff = (
            a["input"], a["weights"], a["bias"], a["residual"], a["output"], a["affine"])
        self.p_act = a["act_params"]
        self.p_sw = a["sample_weights"]
        self.acc = [[b.vslot() for _ in range(V)] for _ in range(k.schedule.budget)]
        self.pool_acc = [b.vslot() for _ in range(V)]
        if k.pool and k.pool.kind == "avg":
            self.div = [self._table(f"{self.symbol}.div{d}", t)
                        for d, t in enumerate(k.pool.divisors())]
        batch = b.ptrtoint(a["batch"], I64)
        if k.icb_at_run:  # run time: the input blocks this conv reduces over (and so its weights' stride)
            self.ICB = b.ptrtoint(a["in_icb"], I64)
            self.w_og = b.mul(self.ICB, i64(self.KD * self.KH * self.KW * self.ICW * self.V * VL))
        if not k.in_plain:  # run time: the input may be a channel slice of a larger tensor
            self.in_sample = b.mul(b.ptrtoint(a["in_blocks"], I64), i64(self.S_icb))
            self.in_first = b.mul(b.ptrtoint(a["in_offset"], I64), i64(self.S_icb))
        else:
            self.in_first = i64(0)
        self.out_offset = b.ptrtoint(a["out_offset"], I64)  # run time: where the slice starts, its root's blocks
        self.out_sample = b.mul(b.ptrtoint(a["out_blocks"], I64), i64(self.q_plane))
        rows = self.QD * self.QH
        per_og = b.mul(batch, i64(rows))
        with b.loop(start, end, name="item") as item:
            # output-channel group outermost: its weights stay in cache across the batch
            og = b.sdiv(item, per_og)
            r = b.srem(item, per_og)
            n = b.sdiv(r, i64(rows))
            r = b.srem(r, i64(rows))
            qd, qh = b.sdiv(r, i64(self.QH)), b.srem(r, i64(self.QH))
            self._item(n, og, qd, qh)
        b.ret_void()
        return fn

    def _table(self, name, values):
        ty = ir.ArrayType(F32, len(values))
        g = ir.GlobalVariable(self.m, ty, name=name)
        g.global_constant = True
        g.linkage = "internal"
        g.initializer = ir.Constant(ty, values)
        return g

    def _item(self, n, og, qd, qh):
        b, k, V = self.b, self.k, self.V
        icb0 = og if k.depthwise else first_icb(b, k, og)
        self.in_n = self.xptr(self.p_in, b.iadd(b.iadd(b.imul(n, self.in_sample), self.in_first),
                                             b.imul(icb0, self.S_icb)))
        if k.gated:  # this sample's gated copy of the packed weights
            self.w = b.fptr(self.p_sw, b.iadd(b.imul(n, k.packed_floats), b.imul(og, self.w_og)))
        else:
            self.w = b.fptr(self.p_w, b.imul(og, self.w_og))
        ob0 = b.imul(og, V)
        self.bias = [b.vload(self.p_bias, b.imul(b.iadd(ob0, v), VL)) for v in range(V)] if k.epilogue.bias else None
        # per-channel parameters of the pointwise ops: vector i of block j at (i * ob + j) * 16
        self.act = [[b.vload(self.p_act, b.imul(b.iadd(ob0, i * k.ob + v), VL))
                     for i in range(act_param_count(k.epilogue.ops))] for v in range(V)]
        if k.epilogue.affine:
            half = k.ob * VL
            self.scale = [b.vload(self.p_aff, b.imul(b.iadd(ob0, v), VL)) for v in range(V)]
            self.shift = [b.vload(self.p_aff, b.iadd(b.imul(b.iadd(ob0, v), VL), half)) for v in range(V)]
        self.res_n = (self.rptr(self.p_res, b.iadd(b.imul(n, self.res_sample), b.imul(ob0, self.o_plane)))
                      if k.epilogue.residual else None)
        if k.out_plain:  # the net's output, (N, C, *spatial): lanes scatter to channel planes
            plane = self.q_plane // VL
            row = b.imul(b.iadd(b.imul(qd, self.QH), qh), self.QW)
            self.out_row = b.fptr(self.p_out, b.iadd(b.imul(n, k.cout * plane), b.iadd(b.imul(ob0, VL * plane), row)))
            self.lanes = ir.Constant(ir.VectorType(I64, VL), [lane * plane for lane in range(VL)])
            self.real = [b.lane_mask(b.sub(i64(k.cout), b.imul(b.iadd(ob0, v), VL))) for v in range(V)]
        else:
            fd, fh, fw = k.out_first
            row = b.iadd(b.imul(b.iadd(b.imul(b.iadd(b.imul(qd, self.step_d), fd), self.FH),
                                       b.iadd(b.imul(qh, self.step_h), fh)), self.FW * VL), fw * VL)
            chan = b.imul(b.iadd(ob0, self.out_offset), self.q_plane)
            self.out_row = self.optr(self.p_out, b.iadd(b.imul(n, self.out_sample), b.iadd(chan, row)))
            # a bf16 tensor's padding lanes hold +0 (see compiler/precision.py)
            self.zero_pad = ([b.lane_mask(b.sub(i64(k.cout), b.imul(b.iadd(ob0, v), VL))) for v in range(V)]
                             if k.out_dtype == "bf16" and k.cout % VL else None)
        if self.rmw:
            init = splat(NEG_INF if k.pool.kind == "max" else 0.0)
            with b.loop(0, self.QW, name="init") as qw:
                for v in range(V):
                    self._put(v, b.iadd(b.imul(qw, VL), v * self.q_plane), init)
        self._window_dim(qd, 0, lambda od: self._window_dim(qh, 1, lambda oh: self._conv_row(od, oh)))
        if k.pool and k.pool.kind == "avg":
            self._avg_scale(qd, qh)

    def _window_dim(self, q, d, body):
        """Run body(o) for each valid conv coordinate o under pooled coordinate q along dim d."""
        b = self.b
        if self.pk[d] == 1 and self.ps[d] == 1 and self.ppl[d] == 0:
            body(q)
            return
        n = self.k.out_dims[d]
        with b.loop(0, self.pk[d], name=f"pw{d}") as r:
            o = b.iadd(b.sub(b.imul(q, self.ps[d]), i64(self.ppl[d])), b.imul(r, self.pdil[d]))
            with b.if_then(b.in_range(o, 0, n)):
                body(o)

    def _avg_scale(self, qd, qh):
        b = self.b
        fd = b.load(b.gep(self.div[0], [i64(0), qd], inbounds=True), typ=F32)
        fh = b.load(b.gep(self.div[1], [i64(0), qh], inbounds=True), typ=F32)
        fdh = b.fmul(fd, fh)
        with b.loop(0, self.QW, name="avg") as qw:
            f = b.bcast(b.fmul(fdh, b.load(b.gep(self.div[2], [i64(0), qw], inbounds=True), typ=F32)))
            for v in range(self.V):
                off = b.iadd(b.imul(qw, VL), v * self.q_plane)
                b.vstore(b.fmul(b.vload(self.out_row, off), f), self.out_row, off)

    # ---- one conv row (od, oh) feeding the current pooled row ----
    def _conv_row(self, od, oh):
        bb = self.b
        self.kd_lo, self.kd_hi, id0 = tap_range(bb, od, self.SD, self.PD, self.DD, self.KD, self.ID)
        self.kh_lo, self.kh_hi, ih0 = tap_range(bb, oh, self.SH, self.PH, self.DH, self.KH, self.IH)
        self.in_row = self.xptr(self.in_n, bb.iadd(bb.imul(id0, self.S_d), bb.imul(ih0, self.S_h)))
        if self.res_n is not None:
            self.res_row = self.rptr(self.res_n, bb.imul(bb.iadd(bb.imul(od, self.OH), oh), self.OW * VL))
        lo, hi, tp = self.fast_lo, self.fast_hi, self.Tp
        wide = self.k.max_tile(self.V)
        if self.QW <= 3 * wide and lo > 0 and not self.k.depthwise:
            # a short row with edges: a few compile-time tiles cover all of it, edges included
            n = -(-self.QW // wide)
            cuts = [self.QW * i // n for i in range(n + 1)]
            for a, z in itertools.pairwise(cuts):
                self._static_tile(a, z - a)
            return
        full, rest = divmod(hi - lo, tp)
        if rest and not (self.rmw and k_avg(self.k)):
            # the last tile ends at hi, overlapping its neighbour: stores and max are idempotent,
            # and one tile shape in one loop keeps the code LLVM optimises small
            with bb.loop(0, full + 1, name="tile") as t:
                self._fast_tile(bb.imin(bb.iadd(bb.imul(t, tp), lo), hi - tp), tp)
        else:
            if full:
                with bb.loop(0, full, name="tile") as t:
                    self._fast_tile(bb.iadd(bb.imul(t, tp), lo), tp)
            if rest:
                self._fast_tile(i64(lo + full * tp), rest)
        for a, z in ((0, lo), (hi, self.QW)):
            if 0 < z - a <= 4 * tp:  # row edges sit at fixed positions: unchecked tiles with dead taps dropped
                for q in range(a, z, tp):
                    self._static_tile(q, min(tp, z - q))
            elif z > a:
                with bb.loop(a, z, name="edge") as qw:
                    self._edge_pixel(qw)

    def _epilogue(self, vals, ow):
        """bias, then the epilogue's operations in order, on V accumulators of conv pixel ow."""
        b, ep = self.b, self.k.epilogue
        out = []
        for v, x in enumerate(vals):
            if ep.bias:
                x = b.fadd(x, self.bias[v])
            res = (lambda v=v: b.vload_as(self.k.res_dtype, self.res_row, b.iadd(b.imul(ow, VL), v * self.o_plane))) \
                if ep.residual else None
            x = apply_ops(self.math, ep.ops, x, res, self.scale[v] if ep.affine else None,
                          self.shift[v] if ep.affine else None, self.act[v].__getitem__)
            out.append(x)
        return out

    def _combine(self, a, x):
        if self.k.pool.kind == "max":
            return self.b.vmax(a, x)
        return self.b.fadd(a, x)

    def _emit_pooled(self, qw, pooled):
        """Write V pooled vectors at pooled W position qw, combining with earlier rows if needed."""
        b = self.b
        for v in range(self.V):
            if self.k.out_plain:
                b.scatter(pooled[v], b.fptr(self.out_row, b.iadd(qw, v * self.q_plane)), self.lanes, self.real[v])
                continue
            off = b.iadd(b.imul(qw, self.step_w * VL), v * self.q_plane)
            x = pooled[v]
            if self.rmw:  # (in bf16 only a max pool: max of rounded values = the rounded max)
                x = self._combine(b.vload_as(self.k.out_dtype, self.out_row, off), x)
            self._put(v, off, x)

    def _put(self, v, off, x):
        """Store output vector v at element `off` of the output row, as the output's dtype."""
        self.b.vstore_as(self.k.out_dtype, x, self.out_row, off, self.zero_pad[v] if self.zero_pad else None)

    # ---- fast path: a register tile, no bounds checks along W ----
    def _fast_tile(self, qw0, tp):
        b, V = self.b, self.V
        ps, pdil = self.ps[2], self.pdil[2]
        offs = sorted({i * ps + j * pdil for i in range(tp) for j in range(self.pk[2])})
        ow0 = b.sub(b.imul(qw0, ps), i64(self.ppl[2]))
        iw0 = b.sub(b.imul(ow0, self.SW), i64(self.PW))
        acc = self.acc[:len(offs)]
        for row in acc:
            for slot in row[:V]:
                b.store(splat(0.0), slot)
        x_row = self.xptr(self.in_row, b.imul(iw0, self.S_w))

        def taps(x_base, w_base):
            if self.prefetch_next:  # the next tile's pixels of this input block, while this one computes
                for t in range(tp):
                    b.prefetch(x_base, (tp + t) * VL // (2 if self.bf16 else 1))
            # kw stays a loop: unrolled, LLVM reuses broadcasts across taps and spills them
            with b.loop(0, self.KW, name="kw") as kw:
                xb = self.xptr(x_base, b.imul(kw, self.DW * self.S_w))
                wb = b.fptr(w_base, b.imul(kw, self._w_kw()))
                self._taps_kw(acc, [(t, o * self.SW) for t, o in enumerate(offs)], xb, wb, 0)

        self._reduce_loops(x_row, taps)
        vals = [self._epilogue([b.load(s, typ=VEC) for s in acc[t][:V]], b.iadd(ow0, o))
                for t, o in enumerate(offs)]
        index = {o: t for t, o in enumerate(offs)}
        for i in range(tp):
            pooled = vals[index[i * ps]]
            for j in range(1, self.pk[2]):
                other = vals[index[i * ps + j * pdil]]
                pooled = [self._combine(p, x) for p, x in zip(pooled, other)]
            self._emit_pooled(b.iadd(qw0, i), pooled)

    def _static_tile(self, qw0: int, tp: int):
        """A tile at a compile-time W position (a row edge): conv pixels outside the conv
        output and taps outside the input are left out while emitting, so no checks run."""
        b, V = self.b, self.V
        ps, pdil, pk = self.ps[2], self.pdil[2], self.pk[2]
        ow0 = qw0 * ps - self.ppl[2]
        offs = sorted(o for o in {i * ps + j * pdil for i in range(tp) for j in range(pk)} if 0 <= ow0 + o < self.OW)
        iw0 = ow0 * self.SW - self.PW
        acc = self.acc[:len(offs)]
        for row in acc:
            for slot in row[:V]:
                b.store(splat(0.0), slot)

        def taps(x_base, w_base):
            for kw in range(self.KW):
                cols = [(t, iw0 + o * self.SW) for t, o in enumerate(offs)
                        if 0 <= iw0 + o * self.SW + kw * self.DW < self.IW]
                if cols:
                    self._taps_kw(acc, cols, x_base, w_base, kw)

        self._reduce_loops(self.in_row, taps)
        vals = {o: self._epilogue([b.load(s, typ=VEC) for s in acc[t][:V]], i64(ow0 + o)) for t, o in enumerate(offs)}
        for i in range(tp):
            # a dilated window can lie wholly in padding: it pools nothing (-inf, as the reference)
            window = [vals[i * ps + j * pdil] for j in range(pk) if i * ps + j * pdil in vals]
            pooled = window[0] if window else [splat(NEG_INF)] * V
            for other in window[1:]:
                pooled = [self._combine(p, x) for p, x in zip(pooled, other)]
            self._emit_pooled(i64(qw0 + i), pooled)

    def _w_kw(self) -> int:
        return VL if self.k.depthwise else self.ICW * self.V * VL

    def _reduce_loops(self, x_row, body):
        """Loop over input blocks and the valid (kd, kh) taps, calling body(x_base, w_base)."""
        b, k = self.b, self.k
        w_kh = self.KW * self._w_kw()

        def inner(x_blk, w_blk):
            with b.loop(self.kd_lo, self.kd_hi, name="kd") as kd, b.loop(self.kh_lo, self.kh_hi, name="kh") as kh:
                x = self.xptr(x_blk, b.iadd(b.imul(kd, self.DD * self.S_d), b.imul(kh, self.DH * self.S_h)))
                w = b.fptr(w_blk, b.imul(b.iadd(b.imul(kd, self.KH), kh), w_kh))
                body(x, w)

        if k.depthwise or (not k.icb_at_run and self.ICB == 1):
            inner(x_row, self.w)
        else:
            with b.loop(0, self.ICB, name="icb") as icb:
                inner(self.xptr(x_row, b.imul(icb, self.S_icb)),
                      b.fptr(self.w, b.imul(icb, self.KD * self.KH * w_kh)))

    def _taps_kw(self, slots, cols, x_base, w_base, kw):
        """FMAs of kernel column kw into the accumulator slots[t][v]; cols: (t, input column
        of pixel t relative to x_base, before the kw offset). Input channels run in a loop
        unrolled by IC_UNROLL: fully unrolled, the code (and LLVM's time) is 4x larger for
        no measurable speed."""
        b, V = self.b, self.V
        slots = [row[:V] for row in slots]
        if self.k.depthwise:
            a = [[b.load(s, typ=VEC) for s in row] for row in slots]
            wv = b.vload(w_base, kw * VL)
            for t, c in cols:
                x = b.vload(x_base, (c + kw * self.DW) * VL)
                a[t][0] = b.fma(x, wv, a[t][0])
            self._store(slots, a)
            return
        # the reduction runs over ICW weight rows: input channels, or channel pairs in bf16
        ICW, pair = self.ICW, 2 if self.bf16 else 1
        U = PAIR_UNROLL if self.bf16 else IC_UNROLL
        unroll = U if ICW % U == 0 and ICW > U else ICW

        def channels(ic0, xb, wb):
            a = [[b.load(s, typ=VEC) for s in row] for row in slots]
            for ic in range(unroll):
                wv = [b.vload(wb, ((kw * ICW + ic) * V + v) * VL) for v in range(V)]
                for t, c in cols:
                    at = (c + kw * self.DW) * self.S_w + ic * pair * self.S_ic
                    if self.bf16:
                        x = b.pair_bcast(xb, at)
                        for v in range(V):
                            a[t][v] = b.dot_bf16(a[t][v], x, wv[v])
                    else:
                        x = b.bcast(b.sload(xb, at))
                        for v in range(V):
                            a[t][v] = b.fma(x, wv[v], a[t][v])
            self._store(slots, a)

        if unroll == ICW:
            channels(0, x_base, w_base)
        else:
            with b.loop(0, ICW, step=unroll, name="ic") as ic:
                channels(ic, self.xptr(x_base, b.imul(ic, pair * self.S_ic)), b.fptr(w_base, b.imul(ic, V * VL)))

    def _store(self, slots, values):
        for row, vals in zip(slots, values):
            for s, x in zip(row, vals):
                self.b.store(x, s)

    # ---- edge path: one pooled pixel, bounds-checked taps ----
    def _edge_pixel(self, qw):
        b, k = self.b, self.k
        for s in self.pool_acc:
            b.store(splat(NEG_INF if k.pool and k.pool.kind == "max" else 0.0), s)
        for j in range(self.pk[2]):
            ow = b.iadd(b.sub(b.imul(qw, self.ps[2]), i64(self.ppl[2])), j * self.pdil[2])
            with b.if_then(b.in_range(ow, 0, self.OW)):
                vals = self._epilogue(self._conv_pixel(ow), ow)
                for s, x in zip(self.pool_acc, vals):
                    b.store(x if not k.pool else self._combine(b.load(s, typ=VEC), x), s)
        self._emit_pooled(qw, [b.load(s, typ=VEC) for s in self.pool_acc])

    def _conv_pixel(self, ow):
        """Accumulators of one conv pixel, with the kw range clipped to the input."""
        b, V = self.b, self.V
        kw_lo, kw_hi, iw0 = tap_range(b, ow, self.SW, self.PW, self.DW, self.KW, self.IW)
        acc = self.acc[0][:V]
        for s in acc:
            b.store(splat(0.0), s)
        x_row = self.xptr(self.in_row, b.imul(iw0, self.S_w))

        def taps(x_base, w_base):
            with b.loop(kw_lo, kw_hi, name="kwe") as kw:
                xb = self.xptr(x_base, b.imul(kw, self.DW * self.S_w))
                wb = b.fptr(w_base, b.imul(kw, self._w_kw()))
                self._taps_kw([acc], [(0, 0)], xb, wb, 0)

        self._reduce_loops(x_row, taps)
        return [b.load(s, typ=VEC) for s in acc]


def emit_conv(module: ir.Module, k: ConvKernel, symbol: str) -> ir.Function:
    """Emit the fused conv kernel `symbol` for descriptor `k` into `module`."""
    return ConvEmitter(module, k, symbol).emit()
