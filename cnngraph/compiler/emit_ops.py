"""IR for the kernels that are not convolutions: layout changes, standalone
pooling, elementwise maps, affine (unfolded batchnorm), linear layers, softmax,
LRN, padding and concat copies. Plain loops over the blocked layout, vectorised
across the 16 lanes of a channel block; they carry a small share of the work.
"""

from __future__ import annotations

from llvmlite import ir

from ..layers.lowering import channel_reduction
from .irutil import (
    F32,
    I32,
    I64,
    VEC,
    VL,
    Builder,
    VecMath,
    apply_ops,
    as_value,
    block_rows,
    i64,
    kernel_args,
    new_kernel,
    splat,
    tap_range,
)
from .kernels import (
    Affine,
    Cast,
    ChannelOp,
    ConcatCopy,
    Eltwise,
    LinearKernel,
    PadOp,
    PlainDWConv,
    PoolOp,
    Reorder,
    act_param_count,
    cblocks,
)
from .plan import CompilerBug

NEG_INF = float("-inf")


def _items(b: Builder, fn, per_sample, body):
    """for item in [start, end): body(n, r) with r the item within its sample (per_sample: an int or
    a run-time i64)."""
    _, start, end = fn.args
    with b.loop(start, end, name="item") as item:
        body(b.sdiv(item, as_value(per_sample)), b.srem(item, as_value(per_sample)))


def _reduce(b: Builder, op: str, v):
    name = f"llvm.vector.reduce.{op}.v{VL}f32"
    fn = b.module.globals.get(name)
    if fn is None:
        args = [F32, VEC] if op == "fadd" else [VEC]
        fn = ir.Function(b.module, ir.FunctionType(F32, args), name=name)
    return b.call(fn, [ir.Constant(F32, 0.0), v] if op == "fadd" else [v], fastmath=("reassoc",) if op == "fadd" else ())


def _transpose16(b: Builder, rows):
    """The 16x16 transpose of 16 vectors: four butterfly rounds of two-input shuffles."""
    r = list(rows)
    for s in (8, 4, 2, 1):
        lo = ir.Constant(ir.VectorType(I32, VL), [lane if not lane & s else VL + lane - s for lane in range(VL)])
        hi = ir.Constant(ir.VectorType(I32, VL), [lane + s if not lane & s else VL + lane for lane in range(VL)])
        for i in range(VL):
            if not i & s:
                j = i + s
                r[i], r[j] = b.shuffle_vector(r[i], r[j], lo), b.shuffle_vector(r[i], r[j], hi)
    return r


def emit_reorder(module, k: Reorder, symbol: str):
    """Layout changes: 16x16 register transposes, gathers for the last partial chunk."""
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    src, dst = a["input"], a["output"]
    S = k.dims[0] * k.dims[1] * k.dims[2]
    cb = cblocks(k.c)
    v64 = ir.VectorType(I64, VL)
    full = S - S % VL

    def body(n, r):
        if k.kind in ("to_blocked", "from_blocked"):
            plain = b.fptr(src if k.kind == "to_blocked" else dst, b.imul(b.iadd(b.imul(n, k.c), b.imul(r, VL)), S))
            blocked = b.fptr(dst if k.kind == "to_blocked" else src, b.imul(b.iadd(b.imul(n, cb), r), S * VL))
            valid = b.sub(i64(k.c), b.imul(r, VL))  # real channels in this block
            real = [b.icmp_signed(">", valid, i64(c)) for c in range(VL)]
            if full:
                with b.loop(0, full, step=VL, name="s") as s:
                    if k.kind == "to_blocked":
                        # rows of absent channels read channel 0 and are zeroed: no read past the input
                        rows = [b.select(real[c], b.vload(plain, b.iadd(b.imul(b.select(real[c], i64(c), i64(0)), S), s)),
                                         splat(0.0)) for c in range(VL)]
                        for j, v in enumerate(_transpose16(b, rows)):
                            b.vstore(v, blocked, b.imul(b.iadd(s, j), VL))
                    else:
                        cols = _transpose16(b, [b.vload(blocked, b.imul(b.iadd(s, j), VL)) for j in range(VL)])
                        for c in range(VL):
                            with b.if_then(real[c]):
                                b.vstore(cols[c], plain, b.iadd(i64(c * S), s))
            if full < S:  # the last partial chunk of positions, one gather per position or channel
                mask = b.lane_mask(valid)
                if k.kind == "to_blocked":
                    stride = ir.Constant(v64, [lane * S for lane in range(VL)])
                    for s in range(full, S):
                        b.vstore(b.gather(b.fptr(plain, s), stride, mask), blocked, s * VL)
                else:
                    tail = b.lane_mask(i64(S - full))
                    stride = ir.Constant(v64, [j * VL for j in range(VL)])
                    for c in range(VL):
                        with b.if_then(real[c]):
                            x = b.gather(b.fptr(blocked, full * VL + c), stride, tail)
                            b.masked_store(x, b.fptr(plain, c * S + full), tail)
        else:  # flatten; r: output block of the flat vector, f = c * S + s
            total = k.c * S
            inp = b.fptr(src, b.imul(n, cb * S * VL))
            out = b.fptr(dst, b.imul(b.iadd(b.imul(n, cblocks(total)), r), VL))
            for lane in range(VL):
                f = b.iadd(b.imul(r, VL), lane)
                c, s = b.sdiv(f, i64(S)), b.srem(f, i64(S))
                off = b.iadd(b.iadd(b.imul(b.sdiv(c, i64(VL)), S * VL), b.imul(s, VL)), b.srem(c, i64(VL)))
                real = b.icmp_signed("<", f, i64(total))
                x = b.select(real, b.sload(inp, b.select(real, off, i64(0))), ir.Constant(F32, 0.0))
                b.store(x, b.fptr(out, lane), align=4)

    _items(b, fn, k.items(), body)
    b.ret_void()


def emit_plain_dwconv(module, k: PlainDWConv, symbol: str):
    """Depthwise conv on plain (N, C, D, H, W) input and output, one channel's output row per
    item: 16 output pixels per vector; each tap is a (shifted, for stride 1) load of 16 input
    pixels times the broadcast weight. Chunks whose taps all lie inside the row run in a loop
    of unmasked loads; edge chunks are emitted at their compile-time positions with constant
    lane masks (taps wholly in padding left out)."""
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    p_in, p_w, p_bias, p_out, p_aff = a["input"], a["weights"], a["bias"], a["output"], a["affine"]
    p_act = a["act_params"]
    m = VecMath(b)
    ID, IH, IW = k.in_dims
    OD, OH, OW = k.out_dims
    KD, KH, KW = k.kernel
    SD, SH, SW = k.stride
    DD, DH, DW = k.dilation
    PD, PH, PW = k.pad_lo
    ep = k.epilogue
    ntaps = KD * KH * KW
    in_plane, out_plane = ID * IH * IW, OD * OH * OW
    rows = OD * OH
    v64 = ir.VectorType(I64, VL)
    acc = b.vslot()

    def body(n, r):
        c = b.sdiv(r, i64(rows))
        rr = b.srem(r, i64(rows))
        od, oh = b.sdiv(rr, i64(OH)), b.srem(rr, i64(OH))
        nc = b.iadd(b.imul(n, k.c), c)
        in_c = b.fptr(p_in, b.imul(nc, in_plane))
        out_row = b.fptr(p_out, b.iadd(b.imul(nc, out_plane), b.imul(b.iadd(b.imul(od, OH), oh), OW)))
        w_c = b.fptr(p_w, b.imul(c, ntaps))
        bias = b.bcast(b.sload(p_bias, c)) if ep.bias else None
        if ep.affine:
            scale = b.bcast(b.sload(p_aff, c))
            shift = b.bcast(b.sload(p_aff, b.iadd(c, k.c)))
        # one channel per item: its per-channel parameters broadcast (vector i holds cblocks(c) * 16 values)
        act = [b.bcast(b.sload(p_act, b.iadd(c, i * cblocks(k.c) * VL))) for i in range(act_param_count(ep.ops))]
        kd_lo, kd_hi, id0 = tap_range(b, od, SD, PD, DD, KD, ID)
        kh_lo, kh_hi, ih0 = tap_range(b, oh, SH, PH, DH, KH, IH)
        in_row = b.gep(in_c, [b.iadd(b.imul(id0, IW * IH), b.imul(ih0, IW))], source_etype=F32)
        wtaps = [b.bcast(b.sload(w_c, t)) for t in range(ntaps)] if ntaps <= 27 else None

        def chunk(ow0, static):
            """16 output pixels from ow0 (i64 value, or an int when static)."""
            b.store(splat(0.0), acc)
            iw0 = b.sub(b.imul(as_value(ow0), SW), i64(PW))
            def row_taps(kd, kh, x_row, w_row, wvs):
                a = b.load(acc, typ=VEC)
                for kw in range(KW):
                    if static:
                        cols = [(ow0 + lane) * SW - PW + kw * DW for lane in range(VL)]
                        ok = [0 <= col < IW and ow0 + lane < OW for lane, col in enumerate(cols)]
                        if not any(ok):
                            continue
                        mask = ir.Constant(ir.VectorType(ir.IntType(1), VL), ok) if not all(ok) else None
                    else:
                        mask = None
                    wv = wvs[kw] if wvs else b.bcast(b.sload(w_row, kw))
                    base = b.gep(x_row, [b.iadd(iw0, kw * DW)], source_etype=F32)
                    if SW == 1:
                        x = b.load(base, typ=VEC, align=4) if mask is None else b.masked_load(base, mask)
                    else:
                        offs = ir.Constant(v64, [lane * SW for lane in range(VL)])
                        x = b.gather(base, offs, mask if mask is not None else b.lane_mask(i64(VL)))
                    a = b.fma(x, wv, a)
                b.store(a, acc)

            if wtaps:
                # taps unrolled with row-uniform guards: the broadcast weights stay in registers
                for kd in range(KD):
                    for kh in range(KH):
                        ok = b.and_(b.in_range(b.iadd(id0, kd * DD), 0, ID), b.in_range(b.iadd(ih0, kh * DH), 0, IH))
                        with b.if_then(ok):
                            x_row = b.gep(in_row, [i64(kd * DD * IW * IH + kh * DH * IW)], source_etype=F32)
                            row_taps(kd, kh, x_row, None, wtaps[(kd * KH + kh) * KW:(kd * KH + kh + 1) * KW])
            else:
                with b.loop(kd_lo, kd_hi, name="kd") as kd, b.loop(kh_lo, kh_hi, name="kh") as kh:
                    x_row = b.gep(in_row, [b.iadd(b.imul(kd, DD * IW * IH), b.imul(kh, DH * IW))], source_etype=F32)
                    row_taps(kd, kh, x_row, b.fptr(w_c, b.imul(b.iadd(b.imul(kd, KH), kh), KW)), None)
            x = b.load(acc, typ=VEC)
            if ep.bias:
                x = b.fadd(x, bias)
            x = apply_ops(m, ep.ops, x, None, scale if ep.affine else None, shift if ep.affine else None,
                          act.__getitem__)
            dst = b.fptr(out_row, ow0)
            if static and ow0 + VL > OW:
                b.masked_store(x, dst, b.lane_mask(i64(OW - ow0)))
            else:
                b.vstore(x, dst)

        lo, hi = k.fast_chunks()
        if hi > lo:
            with b.loop(lo, hi, name="chunk") as j:
                chunk(b.imul(j, VL), False)
        for j in [*range(lo), *range(hi, -(-OW // VL))]:
            chunk(j * VL, True)

    _items(b, fn, k.items(), body)
    b.ret_void()


def emit_pool(module, k: PoolOp, symbol: str):
    """Windowed max/avg over a blocked tensor, bounds-checked per tap (max propagates NaN)."""
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    src, dst = a["input"], a["output"]
    in_blocks, in_offset = b.ptrtoint(a["in_blocks"], I64), b.ptrtoint(a["in_offset"], I64)
    p = k.pool
    ID, IH, IW = k.in_dims
    QD, QH, QW = p.out
    cb = cblocks(k.c)
    acc = b.vslot()
    is_max = p.kind == "max"
    if not is_max:
        tables = []
        for d, t in enumerate(p.divisors()):
            ty = ir.ArrayType(F32, len(t))
            g = ir.GlobalVariable(module, ty, name=f"{symbol}.div{d}")
            g.global_constant, g.linkage, g.initializer = True, "internal", ir.Constant(ty, t)
            tables.append(g)

    def taps(q, d):
        """[lo, hi) of window taps inside the input along dim d."""
        base = b.sub(b.imul(q, p.stride[d]), i64(p.pad_lo[d]))
        dil, n = p.dilation[d], k.in_dims[d]
        neg = b.sub(i64(0), base)
        lo = b.select(b.icmp_signed("<=", neg, i64(0)), i64(0), b.sdiv(b.add(neg, i64(dil - 1)), i64(dil)))
        last = b.sub(i64(n - 1), base)
        hi = b.select(b.icmp_signed("<", last, i64(0)), i64(0), b.add(b.sdiv(last, i64(dil)), i64(1)))
        hi = b.imin(hi, p.kernel[d])
        return lo, b.imax(hi, lo), base

    def body(n, c, qd, qh, r2):
        inp = b.eptr(k.in_dtype, src, b.imul(b.iadd(b.iadd(b.imul(n, in_blocks), in_offset), c), ID * IH * IW * VL))
        out = b.eptr(k.out_dtype, dst, b.imul(b.iadd(b.imul(b.iadd(b.imul(n, cb), c), QD * QH), r2), QW * VL))
        # a bf16 output's padding lanes are zeroed (a window wholly in padding would leave -inf there)
        real = b.lane_mask(b.sub(i64(k.c), b.imul(c, VL))) if k.c % VL else None
        d_lo, d_hi, d0 = taps(qd, 0)
        h_lo, h_hi, h0 = taps(qh, 1)
        with b.loop(0, QW, name="qw") as qw:
            w_lo, w_hi, w0 = taps(qw, 2)
            b.store(splat(NEG_INF if is_max else 0.0), acc)
            with b.loop(d_lo, d_hi, name="pd") as i:
                dd = b.iadd(d0, b.imul(i, p.dilation[0]))
                with b.loop(h_lo, h_hi, name="ph") as j:
                    hh = b.iadd(h0, b.imul(j, p.dilation[1]))
                    row = b.imul(b.iadd(b.imul(dd, IH), hh), IW)
                    with b.loop(w_lo, w_hi, name="pw") as t:
                        ww = b.iadd(w0, b.imul(t, p.dilation[2]))
                        x = b.vload_as(k.in_dtype, inp, b.imul(b.iadd(row, ww), VL))
                        a = b.load(acc, typ=VEC)
                        b.store(b.vmax(a, x) if is_max else b.fadd(a, x), acc)
            y = b.load(acc, typ=VEC)
            if not is_max:
                f = b.fmul(b.fmul(b.load(b.gep(tables[0], [i64(0), qd], inbounds=True), typ=F32),
                                  b.load(b.gep(tables[1], [i64(0), qh], inbounds=True), typ=F32)),
                           b.load(b.gep(tables[2], [i64(0), qw], inbounds=True), typ=F32))
                y = b.fmul(y, b.bcast(f))
            b.vstore_as(k.out_dtype, y, out, b.imul(qw, VL), real)

    block_rows(b, fn, cb, QD, QH, body)
    b.ret_void()


def emit_eltwise(module, k: Eltwise, symbol: str):
    """y = acts(x0 (+) x1 (+) ...) over whole blocks, the inputs joined by the merge layer's combine."""
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    out, ins = a["output"], [a[f"input{i}"] for i in range(k.n_inputs)]
    m = VecMath(b)

    if k.per_block:  # per-channel parameters: one channel block per item, its parameters loaded once
        cb = cblocks(k.c)

        def block(n, r):
            act = [b.vload(a["act_params"], b.imul(b.iadd(r, i * cb), VL)) for i in range(act_param_count(k.acts))]
            base = b.iadd(b.imul(n, k.size), b.imul(r, k.spatial * VL))
            with b.loop(0, k.spatial, name="s") as s:
                off = b.iadd(base, b.imul(s, VL))
                x = b.vload(ins[0], off)
                for p in ins[1:]:
                    x = k.merge.combine(m, x, b.vload(p, off))
                b.vstore(apply_ops(m, k.acts, x, param=act.__getitem__), out, off)

        _items(b, fn, k.items(), block)
        b.ret_void()
        return

    def body(n, r):
        base = b.iadd(b.imul(n, k.size), b.imul(r, k.CHUNK))
        count = b.imin(i64(k.CHUNK), b.sub(i64(k.size), b.imul(r, k.CHUNK)))
        # sizes are whole blocks of 16 (the blocked layout), so vectors never straddle the end
        with b.loop(0, count, step=VL, name="e") as e:
            off = b.iadd(base, e)
            x = b.vload(ins[0], off)
            for p in ins[1:]:
                x = k.merge.combine(m, x, b.vload(p, off))
            x = apply_ops(m, k.acts, x)
            b.vstore(x, out, off)

    _items(b, fn, k.items(), body)
    b.ret_void()


def emit_affine(module, k: Affine, symbol: str):
    """y = acts(x * scale[c] + shift[c]) (a batchnorm and the activations that follow it)."""
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    src, dst, aff = a["input"], a["output"], a["affine"]
    in_blocks, in_offset = b.ptrtoint(a["in_blocks"], I64), b.ptrtoint(a["in_offset"], I64)
    cb = b.ptrtoint(a["blocks"], I64)  # run time: the channel blocks (see Affine.code_key)
    m = VecMath(b)

    def body(n, c):
        scale = b.vload(aff, b.imul(c, VL))
        shift = b.vload(aff, b.iadd(b.imul(c, VL), b.imul(cb, VL)))
        act = [b.vload(a["act_params"], b.imul(b.iadd(c, b.imul(cb, i)), VL)) for i in range(act_param_count(k.acts))]
        base = b.imul(b.iadd(b.imul(n, cb), c), k.spatial * VL)
        src_base = b.imul(b.iadd(b.iadd(b.imul(n, in_blocks), in_offset), c), k.spatial * VL)
        with b.loop(0, k.spatial, name="s") as s:
            off = b.iadd(base, b.imul(s, VL))
            x = b.vload(src, b.iadd(src_base, b.imul(s, VL)))
            b.vstore(apply_ops(m, k.acts, b.fma(x, scale, shift), param=act.__getitem__), dst, off)

    _items(b, fn, cb, body)
    b.ret_void()


def emit_linear(module, k: LinearKernel, symbol: str):
    """GEMV/GEMM on packed weights: NB samples share each weight vector load; a
    group with fewer than NB samples left runs them one by one."""
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    src, w, bias, dst = a["input"], a["weights"], a["bias"], a["output"]
    batch = b.ptrtoint(a["batch"], ir.IntType(64))
    m = VecMath(b)
    NB, U = k.NB, 4
    ob = cblocks(k.cout)
    acc = [[b.vslot() for _ in range(U)] for _ in range(NB)]
    ep = k.epilogue

    # the reduction runs over `rows` weight vectors: input features, or pairs of them in bf16
    bf16 = k.dtype == "bf16"
    steps = k.fin // 2 if bf16 else k.fin

    def mac(row, f, wv, slot):
        """slot += x[f] * wv (f32), or x[2f] * wv.even + x[2f + 1] * wv.odd (bf16)."""
        if bf16:
            y = b.dot_bf16(b.load(slot, typ=VEC), b.pair_bcast(row, b.imul(f, 2)), wv)
        else:
            y = b.fma(b.bcast(b.sload(row, f)), wv, b.load(slot, typ=VEC))
        b.store(y, slot)

    def samples(n0, nb, o):
        """out[n0 .. n0+nb) at output block o; U independent accumulators per sample hide FMA latency."""
        rows = [b.eptr(k.dtype, src, b.imul(b.iadd(n0, j), k.fin)) for j in range(nb)]
        wo = b.fptr(w, b.imul(o, steps * VL))
        for r in acc[:nb]:
            for s in r:
                b.store(splat(0.0), s)
        main = steps - steps % U
        if main:
            with b.loop(0, main, step=U, name="f") as f:
                wv = [b.vload(wo, b.imul(b.iadd(f, u), VL)) for u in range(U)]
                for j in range(nb):
                    for u in range(U):
                        mac(rows[j], b.iadd(f, u), wv[u], acc[j][u])
        for f in range(main, steps):
            wv = b.vload(wo, f * VL)
            for j in range(nb):
                mac(rows[j], i64(f), wv, acc[j][0])
        bv = b.vload(bias, b.imul(o, VL)) if ep.bias else None
        act = [b.vload(a["act_params"], b.imul(b.iadd(o, i * ob), VL)) for i in range(act_param_count(ep.ops))]
        for j in range(nb):
            y = b.load(acc[j][0], typ=VEC)
            for u in range(1, U):
                y = b.fadd(y, b.load(acc[j][u], typ=VEC))
            if bv is not None:
                y = b.fadd(y, bv)
            y = apply_ops(m, ep.ops, y, param=act.__getitem__)
            b.vstore(y, dst, b.imul(b.iadd(b.imul(b.iadd(n0, j), ob), o), VL))

    _, start, end = fn.args
    with b.loop(start, end, name="item") as item:
        n0 = b.imul(b.sdiv(item, i64(ob)), NB)
        o = b.srem(item, i64(ob))
        with b.if_else(b.icmp_signed(">=", b.sub(batch, n0), i64(NB))) as (full, rest):
            with full:
                samples(n0, NB, o)
            with rest, b.loop(n0, batch, name="n") as n:
                samples(n, 1, o)
    b.ret_void()


def emit_channel_op(module, k: ChannelOp, symbol: str):
    """The ChannelReduction mechanism at one spatial position: statistics over all channels
    (max or sum, horizontally reduced and broadcast), then per channel block the windowed
    statistics (lane shuffles of the neighbouring blocks' terms; masked gathers for windows
    wider than a block) and the result, with the block's
    per-channel parameters; a collapsing reduction writes its one channel instead. Padding
    lanes are written as 0 (finite, for consumers reading whole vectors)."""
    red = channel_reduction(k.layer.lower([k.in_shape or (k.c,)], {}))
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    src, dst = a["input"], a["output"]
    cb, S = cblocks(k.c), k.spatial
    names = [name for name, _ in red.params]
    if k.collapse and any(st.window is not None for st in red.stats):
        raise CompilerBug(f"{symbol}: a collapsing channel reduction has windowed statistics")
    m = VecMath(b)
    acc = b.vslot()

    def body(n, s):
        base = b.fptr(src, b.iadd(b.imul(n, cb * S * VL), b.imul(s, VL)))
        out = b.fptr(dst, b.iadd(b.imul(n, (1 if k.collapse else cb) * S * VL), b.imul(s, VL)))

        def at(c):  # offset of channel block c (i64) at this position
            return b.imul(c, S * VL)

        def real(c):
            return b.lane_mask(b.sub(i64(k.c), b.imul(c, VL)))

        stats = []
        for st in red.stats:
            if st.window is not None:
                stats.append(st)  # evaluated per block below
                continue
            ident = splat(NEG_INF if st.reduce == "max" else 0.0)
            b.store(ident, acc)
            with b.loop(0, cb, name="c") as c:
                t = b.select(real(c), st.term(m, b.vload(base, at(c)), stats), ident)
                prev = b.load(acc, typ=VEC)
                b.store(b.vmax(prev, t) if st.reduce == "max" else b.fadd(prev, t), acc)
            total = _reduce(b, "fmax" if st.reduce == "max" else "fadd", b.load(acc, typ=VEC))
            if st.reduce == "max":  # the reduction drops NaN; a NaN channel makes the statistic NaN
                v = b.load(acc, typ=VEC)
                total = b.fadd(total, _reduce(b, "fadd", b.select(b.fcmp_unordered("uno", v, v),
                                                                  splat(float("nan")), splat(0.0))))
            stats.append(b.fmul(b.bcast(total), splat(st.scale)) if st.scale != 1.0 else b.bcast(total))

        if k.collapse:  # one output channel: lane 0 of block 0
            b.vstore(b.select(b.lane_mask(i64(1)), red.result(m, None, stats), splat(0.0)), out)
            return

        with b.loop(0, cb, name="c") as c:
            vals = []
            for st in stats:
                if not hasattr(st, "window"):
                    vals.append(st)
                    continue
                before, after = st.window
                full = [v for v in vals]
                w = splat(0.0)
                if max(before, after) <= VL:
                    # the window's terms from this block and its neighbours, shifted into place with
                    # two-input lane shuffles (one instruction each); channels past the last are 0
                    def term_at(blk, ok):
                        safe = b.select(ok, blk, c)
                        t = st.term(m, b.vload(base, at(safe)), full)
                        return b.select(b.and_(real(safe), b.bcast_i1(ok)), t, splat(0.0))

                    prev = term_at(b.sub(c, i64(1)), b.icmp_signed(">", c, i64(0)))
                    cur = term_at(c, ir.Constant(ir.IntType(1), 1))
                    nxt = term_at(b.add(c, i64(1)), b.icmp_signed("<", b.add(c, i64(1)), i64(cb)))
                    for d in range(-before, after + 1):
                        if d == 0:
                            w = b.fadd(w, cur)
                        elif d > 0:
                            w = b.fadd(w, b.shuffle_vector(cur, nxt, ir.Constant(ir.VectorType(I32, VL),
                                                                                  [lane + d for lane in range(VL)])))
                        else:
                            w = b.fadd(w, b.shuffle_vector(prev, cur, ir.Constant(ir.VectorType(I32, VL),
                                                                                   [VL + lane + d for lane in range(VL)])))
                    vals.append(b.fmul(w, splat(st.scale)) if st.scale != 1.0 else w)
                    continue
                vals.append(b.fmul(w, splat(st.scale)) if st.scale != 1.0 else w)
            x = b.vload(base, at(c))
            if names:
                p = {name: b.vload(a["params"], b.imul(b.iadd(c, i * cb), VL)) for i, name in enumerate(names)}
                y = red.result(m, x, vals, p)
            else:
                y = red.result(m, x, vals)
            b.vstore(b.select(real(c), y, splat(0.0)), out, at(c))

    _items(b, fn, k.items(), body)
    b.ret_void()


def emit_pad(module, k: PadOp, symbol: str):
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    src, dst = a["input"], a["output"]
    cb = cblocks(k.c)
    ID, IH, IW = k.in_dims
    OD, OH, OW = k.out_dims
    fill = splat(k.value)

    def body(n, c, od, oh, r2):
        id_, ih = b.sub(od, i64(k.pad_lo[0])), b.sub(oh, i64(k.pad_lo[1]))
        row_ok = b.and_(b.in_range(id_, 0, ID), b.in_range(ih, 0, IH))
        inp = b.fptr(src, b.imul(b.iadd(b.imul(b.iadd(b.imul(n, cb), c), ID * IH), b.iadd(b.imul(id_, IH), ih)),
                                 IW * VL))
        out = b.fptr(dst, b.imul(b.iadd(b.imul(b.iadd(b.imul(n, cb), c), OD * OH), r2), OW * VL))
        with b.loop(0, OW, name="ow") as ow:
            iw = b.sub(ow, i64(k.pad_lo[2]))
            ok = b.and_(row_ok, b.in_range(iw, 0, IW))
            with b.if_else(ok) as (then, other):
                with then:
                    b.vstore(b.vload(inp, b.imul(iw, VL)), out, b.imul(ow, VL))
                with other:
                    b.vstore(fill, out, b.imul(ow, VL))

    block_rows(b, fn, cb, OD, OH, body)
    b.ret_void()


def emit_concat_copy(module, k: ConcatCopy, symbol: str):
    """Channel by channel into the destination's slice from the run-time `offset`; the last item
    clears the destination's padding lanes when the run-time `zero_tail` is set."""
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    src, dst = a["input"], a["output"]
    offset, zero_tail = b.ptrtoint(a["offset"], I64), b.ptrtoint(a["zero_tail"], I64)
    in_blocks, in_offset = b.ptrtoint(a["in_blocks"], I64), b.ptrtoint(a["in_offset"], I64)
    S = k.spatial
    cbo = cblocks(k.total)

    def body(n, c):
        def lane_off(ch, nblocks):
            return b.iadd(b.imul(b.iadd(b.imul(n, nblocks), b.sdiv(ch, i64(VL))), S * VL), b.srem(ch, i64(VL)))

        with b.if_else(b.icmp_signed("<", c, i64(k.c))) as (then, other):
            with then:
                si, so = lane_off(b.iadd(c, b.imul(in_offset, VL)), in_blocks), lane_off(b.iadd(c, offset), cbo)
                with b.loop(0, S, name="s") as s:
                    b.store(b.sload(src, b.iadd(si, b.imul(s, VL))), b.fptr(dst, b.iadd(so, b.imul(s, VL))), align=4)
            with other, b.if_then(b.icmp_signed("!=", zero_tail, i64(0))):
                with b.loop(k.total, cbo * VL, name="z") as ch:  # the extra item: padding lanes
                    so = lane_off(ch, cbo)
                    with b.loop(0, S, name="s") as s:
                        b.store(ir.Constant(F32, 0.0), b.fptr(dst, b.iadd(so, b.imul(s, VL))), align=4)

    _items(b, fn, k.items(), body)
    b.ret_void()


def emit_cast(module, k: Cast, symbol: str):
    """f32 -> bf16 of a blocked tensor or a channel slice of one; padding lanes become +0."""
    fn, b = new_kernel(module, symbol)
    a = kernel_args(b, fn, k)
    cb, S = cblocks(k.c), k.spatial
    in_blocks, in_offset = b.ptrtoint(a["in_blocks"], I64), b.ptrtoint(a["in_offset"], I64)

    def body(n, r):
        src = b.fptr(a["input"], b.imul(b.iadd(b.iadd(b.imul(n, in_blocks), in_offset), r), S * VL))
        dst = b.hptr(a["output"], b.imul(b.iadd(b.imul(n, cb), r), S * VL))
        real = b.lane_mask(b.sub(i64(k.c), b.imul(r, VL))) if k.c % VL else None
        with b.loop(0, S, name="s") as s:
            x = b.vload(src, b.imul(s, VL))
            b.vstore_as("bf16", x, dst, b.imul(s, VL), real)

    _items(b, fn, cb, body)
    b.ret_void()


EMITTERS = {Cast: emit_cast, PlainDWConv: emit_plain_dwconv, Reorder: emit_reorder, PoolOp: emit_pool, Eltwise: emit_eltwise, Affine: emit_affine,
            LinearKernel: emit_linear, ChannelOp: emit_channel_op, PadOp: emit_pad, ConcatCopy: emit_concat_copy}
