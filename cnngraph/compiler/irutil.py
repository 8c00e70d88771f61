"""Small `llvmlite.ir` helpers shared by the emitters: types, loops, vector maths.

Everything here builds IR only; nothing touches `llvmlite.binding`.
"""

from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from .target import BLOCK as VL  # floats per vector in the IR: the channel block of the blocked layout
F32 = ir.FloatType()
I64 = ir.IntType(64)
I32 = ir.IntType(32)
I1 = ir.IntType(1)
VEC = ir.VectorType(F32, VL)
I16 = ir.IntType(16)


class _BFloat(ir.Type):
    """LLVM's `bfloat` (llvmlite.ir has no such type): only ever the element of a vector that is
    bitcast from and to f32 / i16 vectors around the AVX512-BF16 intrinsics."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash("bfloat")


BF16_PAIRS = ir.VectorType(_BFloat(), 2 * VL)  # 16 lanes of bf16 pairs: one zmm
BF16_VEC = ir.VectorType(_BFloat(), VL)
H16 = ir.VectorType(I16, VL)
PTR = ir.PointerType()
VOID = ir.VoidType()

# Every kernel has this signature: an array of buffer pointers and a work range.
KERNEL_TYPE = ir.FunctionType(VOID, [PTR, I64, I64])


def i64(v: int) -> ir.Constant:
    return ir.Constant(I64, int(v))


def splat(v: float) -> ir.Constant:
    return ir.Constant(VEC, [float(v)] * VL)


def as_value(v):
    return i64(v) if isinstance(v, int) else v


class Builder(ir.IRBuilder):
    """IRBuilder with loops, vector loads/stores and the few intrinsics we use."""

    def __init__(self, fn: ir.Function):
        super().__init__(fn.append_basic_block("entry"))
        self.fn = fn
        self._entry = self.block

    # ---- integers ----
    def iadd(self, a, b):
        a, b = as_value(a), as_value(b)
        if isinstance(b, ir.Constant) and b.constant == 0:
            return a
        return self.add(a, b)

    def imul(self, a, b):
        a, b = as_value(a), as_value(b)
        if isinstance(b, ir.Constant) and b.constant == 1:
            return a
        return self.mul(a, b)

    def imax(self, a, b):
        a, b = as_value(a), as_value(b)
        return self.select(self.icmp_signed(">", a, b), a, b)

    def imin(self, a, b):
        a, b = as_value(a), as_value(b)
        return self.select(self.icmp_signed("<", a, b), a, b)

    def in_range(self, v, lo, hi):
        """lo <= v < hi, as one unsigned compare of v - lo."""
        return self.icmp_unsigned("<", self.sub(as_value(v), as_value(lo)), self.sub(as_value(hi), as_value(lo)))

    # ---- memory ----
    def fptr(self, base, offset):
        """Address of float number `offset` (int or i64 value) after `base`."""
        if isinstance(offset, int) and offset == 0:
            return base
        return self.gep(base, [as_value(offset)], inbounds=True, source_etype=F32)

    def vload(self, base, offset=0):
        return self.load(self.fptr(base, offset), typ=VEC, align=4)

    def vstore(self, val, base, offset=0):
        self.store(val, self.fptr(base, offset), align=4)

    def prefetch(self, base, offset=0):
        """Ask for the cache line of float `offset` after `base` (a read, kept in every cache level)."""
        fn = self.module.globals.get("llvm.prefetch.p0") or ir.Function(
            self.module, ir.FunctionType(VOID, [PTR, I32, I32, I32]), name="llvm.prefetch.p0")
        # not `inbounds`: the line may lie past the tensor (a prefetch never faults)
        at = self.gep(base, [as_value(offset)], source_etype=F32)
        self.call(fn, [at, ir.Constant(I32, 0), ir.Constant(I32, 3), ir.Constant(I32, 1)])

    # ---- bf16 (AVX512-BF16): tensors of 16-bit elements, f32 arithmetic ----
    def hptr(self, base, offset):
        """Address of 16-bit element number `offset` after `base`."""
        if isinstance(offset, int) and offset == 0:
            return base
        return self.gep(base, [as_value(offset)], inbounds=True, source_etype=I16)

    def load_bf16(self, base, offset=0):
        """16 bf16 values at element `offset`, widened exactly to f32."""
        h = self.load(self.hptr(base, offset), typ=H16, align=2)
        vi = ir.VectorType(I32, VL)
        return self.bitcast(self.shl(self.zext(h, vi), ir.Constant(vi, [16] * VL)), VEC)

    def store_bf16(self, val, base, offset=0):
        """Store 16 floats as bf16 at element `offset` (round to nearest even, `vcvtneps2bf16`)."""
        fn = self._decl("llvm.x86.avx512bf16.cvtneps2bf16.512", BF16_VEC, [VEC])
        self.store(self.bitcast(self.call(fn, [val]), H16), self.hptr(base, offset), align=2)

    def eptr(self, dtype, base, offset):
        """Address of element `offset` after `base` in a tensor of `dtype` ('f32' or 'bf16')."""
        return (self.hptr if dtype == "bf16" else self.fptr)(base, offset)

    def vload_as(self, dtype, base, offset=0):
        """16 values of a tensor of `dtype` at element `offset`, as f32."""
        return self.load_bf16(base, offset) if dtype == "bf16" else self.vload(base, offset)

    def vstore_as(self, dtype, val, base, offset=0, real=None):
        """Store 16 f32 values into a tensor of `dtype`; into bf16, lanes outside the mask `real` (None:
        all are real) become +0, as a bf16 tensor's padding lanes must (see compiler/precision.py)."""
        if dtype != "bf16":
            self.vstore(val, base, offset)
            return
        self.store_bf16(val if real is None else self.select(real, val, splat(0.0)), base, offset)

    def pair_bcast(self, base, offset):
        """The bf16 pair at (even) element `offset` in all 16 lanes, as a dot-product operand."""
        return self.bitcast(self.bcast_i32(self.load(self.hptr(base, offset), typ=I32, align=4)), BF16_PAIRS)

    def dot_bf16(self, acc, x, w):
        """acc + x.even * w.even + x.odd * w.odd per lane (`vdpbf16ps`); w: 16 packed pairs loaded as f32 bits."""
        fn = self._decl("llvm.x86.avx512bf16.dpbf16ps.512", VEC, [VEC, BF16_PAIRS, BF16_PAIRS])
        # the broadcast pair last: the operand vdpbf16ps can read from memory as {1to16}
        return self.call(fn, [acc, self.bitcast(w, BF16_PAIRS), x])

    def sload(self, base, offset=0):
        return self.load(self.fptr(base, offset), typ=F32, align=4)

    def bcast(self, scalar):
        v = self.insert_element(ir.Constant(VEC, ir.Undefined), scalar, ir.Constant(I32, 0))
        return self.shuffle_vector(v, ir.Constant(VEC, ir.Undefined), ir.Constant(ir.VectorType(I32, VL), [0] * VL))

    def arg_ptr(self, args, i):
        """The i-th pointer of a kernel's argument array."""
        return self.load(self.gep(args, [i64(i)], inbounds=True, source_etype=PTR), typ=PTR, align=8)

    def vslot(self, typ=VEC):
        """A stack slot in the entry block (promoted to a register by mem2reg)."""
        with self.goto_block(self._entry):
            self.position_at_start(self._entry)
            return self.alloca(typ)

    def bcast_i32(self, x):
        vt = ir.VectorType(I32, VL)
        v = self.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(I32, 0))
        return self.shuffle_vector(v, ir.Constant(vt, ir.Undefined), ir.Constant(vt, [0] * VL))

    def bcast_i1(self, flag):
        """<16 x i1>: an i1 value in every lane."""
        vt = ir.VectorType(ir.IntType(1), VL)
        v = self.insert_element(ir.Constant(vt, ir.Undefined), flag, ir.Constant(I32, 0))
        return self.shuffle_vector(v, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(I32, VL), [0] * VL))

    def lane_mask(self, valid):
        """<16 x i1>: lane < valid (an i64 value)."""
        lanes = ir.Constant(ir.VectorType(I32, VL), list(range(VL)))
        return self.icmp_signed("<", lanes, self.bcast_i32(self.trunc(valid, I32)))

    def _lane_ptrs(self, base, offsets):
        """<16 x ptr>: base + offsets[lane] floats (offsets: <16 x i64>)."""
        v64 = ir.VectorType(I64, VL)
        addr = self.ptrtoint(base, I64)
        splat_addr = self.shuffle_vector(self.insert_element(ir.Constant(v64, ir.Undefined), addr, ir.Constant(I32, 0)),
                                         ir.Constant(v64, ir.Undefined), ir.Constant(ir.VectorType(I32, VL), [0] * VL))
        return self.inttoptr(self.add(splat_addr, self.mul(offsets, ir.Constant(v64, [4] * VL))),
                             ir.VectorType(PTR, VL))

    def _decl(self, name, ret, args):
        return self.module.globals.get(name) or ir.Function(self.module, ir.FunctionType(ret, args), name=name)

    def gather(self, base, offsets, mask):
        """Masked gather of 16 floats at base + offsets[lane]; 0 where masked off."""
        fn = self._decl(f"llvm.masked.gather.v{VL}f32.v{VL}p0", VEC,
                        [ir.VectorType(PTR, VL), I32, ir.VectorType(I1, VL), VEC])
        return self.call(fn, [self._lane_ptrs(base, offsets), ir.Constant(I32, 4), mask, splat(0.0)])

    def scatter(self, val, base, offsets, mask):
        """Masked scatter of 16 floats to base + offsets[lane]."""
        fn = self._decl(f"llvm.masked.scatter.v{VL}f32.v{VL}p0", VOID,
                        [VEC, ir.VectorType(PTR, VL), I32, ir.VectorType(I1, VL)])
        self.call(fn, [val, self._lane_ptrs(base, offsets), ir.Constant(I32, 4), mask])

    def masked_load(self, ptr, mask):
        """Masked load of 16 consecutive floats at ptr; 0 where masked off (those lanes are not read)."""
        fn = self._decl(f"llvm.masked.load.v{VL}f32.p0", VEC, [PTR, I32, ir.VectorType(I1, VL), VEC])
        return self.call(fn, [ptr, ir.Constant(I32, 4), mask, splat(0.0)])

    def masked_store(self, val, ptr, mask):
        fn = self._decl(f"llvm.masked.store.v{VL}f32.p0", VOID, [VEC, PTR, I32, ir.VectorType(I1, VL)])
        self.call(fn, [val, ptr, ir.Constant(I32, 4), mask])

    # ---- vector maths ----
    def _intr(self, name: str, nargs: int):
        """A <16 x float> intrinsic such as llvm.fma.v16f32, declared once per module."""
        full = f"{name}.v{VL}f32"
        fn = self.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(VEC, [VEC] * nargs), name=full)
        return fn

    def fma(self, a, b, c):
        return self.call(self._intr("llvm.fma", 3), [a, b, c])

    def vmax(self, a, b):
        """max(a, b), NaN if either is NaN (PyTorch's max-pool and relu propagate NaN)."""
        r = self.select(self.fcmp_ordered("<", a, b), b, a)  # a if a is NaN
        return r if _never_nan(b) else self.select(self.fcmp_unordered("uno", b, b), b, r)

    def vmin(self, a, b):
        """min(a, b), NaN if either is NaN."""
        r = self.select(self.fcmp_ordered(">", a, b), b, a)
        return r if _never_nan(b) else self.select(self.fcmp_unordered("uno", b, b), b, r)

    def vabs(self, a):
        return self.call(self._intr("llvm.fabs", 1), [a])

    def vexp(self, x):
        """exp(x) for a vector, Cephes-style: 2^n * p(r), relative error ~1e-7; NaN stays NaN."""
        x = self.vmin(self.vmax(x, splat(-87.3)), splat(88.7))
        n = self.call(self._intr("llvm.floor", 1), [self.fadd(self.fmul(x, splat(1.44269504088896341)), splat(0.5))])
        r = self.fma(n, splat(-0.693359375), x)
        r = self.fma(n, splat(2.12194440e-4), r)
        p = splat(1.9875691500e-4)
        for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
            p = self.fma(p, r, splat(c))
        r2 = self.fmul(r, r)
        p = self.fadd(self.fma(p, r2, r), splat(1.0))
        ni = self.fptosi(n, ir.VectorType(I32, VL))
        bits = self.shl(self.add(ni, ir.Constant(ir.VectorType(I32, VL), [127] * VL)),
                        ir.Constant(ir.VectorType(I32, VL), [23] * VL))
        return self.fmul(p, self.bitcast(bits, VEC))

    def vtanh(self, x):
        """tanh(x): (1 - e) / (1 + e) with e = exp(-2|x|), an odd polynomial near 0 (no cancellation)."""
        a = self.vabs(x)
        e = self.vexp(self.fmul(a, splat(-2.0)))
        big = self.fdiv(self.fsub(splat(1.0), e), self.fadd(splat(1.0), e))
        z = self.fmul(x, x)
        p = splat(-5.70498872745e-3)
        for c in (2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1):
            p = self.fma(p, z, splat(c))
        small = self.fma(self.fmul(p, z), x, x)
        signed = self.call(self._intr("llvm.copysign", 2), [big, x])
        return self.select(self.fcmp_ordered("<", a, splat(0.625)), small, signed)

    def vlog(self, x):
        """log(x) for x > 0 (Cephes logf: mantissa in [sqrt(1/2), sqrt(2)), a degree-8 polynomial);
        NaN for x < 0 or NaN, -inf at 0, inf at inf."""
        vi = ir.VectorType(I32, VL)
        bits = self.bitcast(x, vi)
        e = self.sub(self.lshr(bits, ir.Constant(vi, [23] * VL)), ir.Constant(vi, [127] * VL))
        m = self.bitcast(self.or_(self.and_(bits, ir.Constant(vi, [0x007FFFFF] * VL)),
                                  ir.Constant(vi, [0x3F800000] * VL)), VEC)  # in [1, 2)
        big = self.fcmp_ordered(">", m, splat(1.41421356237))
        m = self.select(big, self.fmul(m, splat(0.5)), m)
        ef = self.fadd(self.sitofp(e, VEC), self.select(big, splat(1.0), splat(0.0)))
        f = self.fsub(m, splat(1.0))
        p = splat(7.0376836292e-2)
        for c in (-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
                  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1):
            p = self.fma(p, f, splat(c))
        f2 = self.fmul(f, f)
        y = self.fmul(self.fmul(p, f2), f)
        y = self.fma(ef, splat(-2.12194440e-4), y)
        y = self.fadd(y, self.fma(f2, splat(-0.5), f))
        y = self.fma(ef, splat(0.693359375), y)
        # special values: 0 -> -inf, inf -> inf, negative or NaN -> NaN, denormals as 0
        y = self.select(self.fcmp_ordered("<", x, splat(1.17549435e-38)), splat(float("-inf")), y)
        y = self.select(self.fcmp_ordered("==", x, splat(float("inf"))), x, y)
        return self.select(self.fcmp_unordered("<", x, splat(0.0)), splat(float("nan")), y)

    # ---- control flow ----
    @contextmanager
    def loop(self, lo, hi, step=1, name="i"):
        """for (i = lo; i < hi; i += step): yields i (an i64 value)."""
        lo, hi = as_value(lo), as_value(hi)
        pre = self.block
        cond = self.append_basic_block(f"{name}.cond")
        body = self.append_basic_block(f"{name}.body")
        end = self.append_basic_block(f"{name}.end")
        self.branch(cond)
        self.position_at_end(cond)
        i = self.phi(I64, name=name)
        i.add_incoming(lo, pre)
        self.cbranch(self.icmp_signed("<", i, hi), body, end)
        self.position_at_end(body)
        yield i
        nxt = self.add(i, as_value(step))
        i.add_incoming(nxt, self.block)
        self.branch(cond)
        self.position_at_end(end)


def block_rows(b: Builder, fn, blocks: int, D: int, H: int, body):
    """for item in [start, end) of kernel `fn`, items (n, channel block, d, h) over `blocks` channel blocks
    of D x H rows: body(n, c, d, h, row), row = d * H + h the row within its channel block."""
    _, start, end = fn.args
    with b.loop(start, end, name="item") as item:
        per = blocks * D * H
        n, r = b.sdiv(item, i64(per)), b.srem(item, i64(per))
        c, row = b.sdiv(r, i64(D * H)), b.srem(r, i64(D * H))
        body(n, c, b.sdiv(row, i64(H)), b.srem(row, i64(H)), row)


def _never_nan(v) -> bool:
    """v is a constant vector without NaN lanes (so max/min need not test it)."""
    if not (isinstance(v, ir.Constant) and isinstance(v.type, ir.VectorType) and isinstance(v.constant, list)):
        return False
    vals = [c.constant if isinstance(c, ir.Constant) else c for c in v.constant]
    return all(isinstance(c, (int, float)) and c == c for c in vals)


def apply_ops(m: "VecMath", ops, x, residual=None, scale=None, shift=None, param=None):
    """An epilogue's operations on one vector x, in order (see kernels.Epilogue):
    pointwise layers, the residual operand (a thunk loading it), the per-channel affine.
    `param(slot)`: the per-channel parameter vector `slot` of x's channel block (Act.params)."""
    from .kernels import Act, Residual
    for op in ops:
        if isinstance(op, Act):
            if op.params:
                x = op.layer.vector(m, x, {name: param(op.slot + i) for i, name in enumerate(op.params)})
            else:
                x = op.layer.vector(m, x)
        elif isinstance(op, Residual):
            x = op.layer.combine(m, residual(), x) if op.swapped else op.layer.combine(m, x, residual())
        else:
            x = m.fma(x, scale, shift)
    return x


class VecMath:
    """The vector math a layer's pointwise hooks are written in (see `cnngraph/layers/lowering.py`):
    Python numbers are splatted; min, max and clamp propagate NaN."""

    def __init__(self, b: Builder):
        self.b = b

    def v(self, x):
        return splat(x) if isinstance(x, (int, float)) else x

    def const(self, c):
        return splat(c)

    def add(self, a, c):
        return self.b.fadd(self.v(a), self.v(c))

    def sub(self, a, c):
        return self.b.fsub(self.v(a), self.v(c))

    def mul(self, a, c):
        return self.b.fmul(self.v(a), self.v(c))

    def div(self, a, c):
        return self.b.fdiv(self.v(a), self.v(c))

    def fma(self, a, c, d):
        return self.b.fma(self.v(a), self.v(c), self.v(d))

    def neg(self, a):
        return self.b.fneg(self.v(a))

    def abs(self, a):
        return self.b.vabs(self.v(a))

    def max(self, a, c):
        return self.b.vmax(self.v(a), self.v(c))

    def min(self, a, c):
        return self.b.vmin(self.v(a), self.v(c))

    def clamp(self, x, lo, hi):
        return self.min(self.max(x, lo), hi)

    def exp(self, a):
        return self.b.vexp(self.v(a))

    def log(self, a):
        return self.b.vlog(self.v(a))

    def tanh(self, a):
        return self.b.vtanh(self.v(a))

    def erf(self, a):
        """erf(x): Eigen's rational approximation on [-4, 4] (a few ulp in float32); NaN stays NaN."""
        x = self.clamp(a, -4.0, 4.0)
        x2 = self.mul(x, x)
        p = self.fma(x2, -2.72614225801306e-10, 2.77068142495902e-08)
        for c in (-2.10102402082508e-06, -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                  -1.60960333262415e-02):
            p = self.fma(x2, p, c)
        p = self.mul(x, p)
        q = self.fma(x2, -1.45660718464996e-05, -2.13374055278905e-04)
        for c in (-1.68282697438203e-03, -7.37332916720468e-03, -1.42647390514189e-02):
            q = self.fma(x2, q, c)
        return self.div(p, q)

    def sqrt(self, a):
        return self.b.call(self.b._intr("llvm.sqrt", 1), [self.v(a)])

    def floor(self, a):
        return self.b.call(self.b._intr("llvm.floor", 1), [self.v(a)])

    def copysign(self, a, c):
        return self.b.call(self.b._intr("llvm.copysign", 2), [self.v(a), self.v(c)])

    def pow(self, x, p: float):
        """x ** p for x >= 0 and a constant p (exp(p log x)); 0 ** p = 0 for p > 0."""
        y = self.exp(self.mul(self.log(x), float(p)))
        return self.b.select(self.b.fcmp_ordered("==", self.v(x), splat(0.0)), splat(0.0 if p > 0 else 1.0), y)

    def lt(self, a, c):
        return self.b.fcmp_ordered("<", self.v(a), self.v(c))

    def le(self, a, c):
        return self.b.fcmp_ordered("<=", self.v(a), self.v(c))

    def gt(self, a, c):
        return self.b.fcmp_ordered(">", self.v(a), self.v(c))

    def ge(self, a, c):
        return self.b.fcmp_ordered(">=", self.v(a), self.v(c))

    def isnan(self, a):
        return self.b.fcmp_unordered("uno", self.v(a), self.v(a))

    def select(self, mask, a, c):
        return self.b.select(mask, self.v(a), self.v(c))


def kernel_args(b: Builder, fn: ir.Function, kernel) -> dict:
    """The kernel's native arguments by name (pointers loaded from the argument array)."""
    return {name: b.arg_ptr(fn.args[0], i) for i, (name, _) in enumerate(kernel.args)}


def new_kernel(module: ir.Module, name: str) -> tuple[ir.Function, Builder]:
    """Declare a kernel `void name(ptr args, i64 start, i64 end)` and a builder on its entry."""
    fn = ir.Function(module, KERNEL_TYPE, name=name)
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")  # keeps net_run small; each kernel is optimised on its own
    fn.args[0].add_attribute("noalias")
    return fn, Builder(fn)


def tap_range(b: Builder, o, stride, pad, dil, kmax, n):
    """[lo, hi) of kernel taps t with 0 <= o*stride - pad + t*dil < n (o: i64 value), and o*stride - pad."""
    base = b.sub(b.imul(o, stride), i64(pad))
    neg = b.sub(i64(0), base)
    lo = b.select(b.icmp_signed("<=", neg, i64(0)), i64(0), b.sdiv(b.add(neg, i64(dil - 1)), i64(dil)))
    last = b.sub(i64(n - 1), base)
    hi = b.select(b.icmp_signed("<", last, i64(0)), i64(0), b.add(b.sdiv(last, i64(dil)), i64(1)))
    hi = b.imin(hi, kmax)
    return lo, b.imax(hi, lo), base
