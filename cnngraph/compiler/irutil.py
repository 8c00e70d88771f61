"""Small `llvmlite.ir` helpers shared by the emitters: types, loops, vector maths.

Everything here builds IR only; nothing touches `llvmlite.binding`.
"""

from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

VL = 16  # floats per vector: one AVX-512 register, and the channel block of the blocked layout
F32 = ir.FloatType()
I64 = ir.IntType(64)
I32 = ir.IntType(32)
I1 = ir.IntType(1)
VEC = ir.VectorType(F32, VL)
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
        return self.select(self.fcmp_ordered(">", a, b), a, b)

    def vmin(self, a, b):
        return self.select(self.fcmp_ordered("<", a, b), a, b)

    def vabs(self, a):
        return self.call(self._intr("llvm.fabs", 1), [a])

    def vexp(self, x):
        """exp(x) for a vector, Cephes-style: 2^n * p(r), relative error ~1e-7."""
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

    def activation(self, x, kind: str, alpha: float = 0.0):
        """Apply one elementwise activation to a vector."""
        if kind == "relu":
            return self.vmax(x, splat(0.0))
        if kind == "relu6":
            return self.vmin(self.vmax(x, splat(0.0)), splat(6.0))
        if kind == "leaky_relu":
            return self.select(self.fcmp_ordered(">", x, splat(0.0)), x, self.fmul(x, splat(alpha)))
        if kind == "sigmoid":
            e = self.vexp(self.fsub(splat(0.0), self.vabs(x)))  # never overflows
            d = self.fdiv(splat(1.0), self.fadd(splat(1.0), e))
            return self.select(self.fcmp_ordered(">=", x, splat(0.0)), d, self.fmul(e, d))
        if kind == "tanh":
            a = self.vabs(x)
            e = self.vexp(self.fmul(a, splat(-2.0)))
            big = self.fdiv(self.fsub(splat(1.0), e), self.fadd(splat(1.0), e))
            z = self.fmul(x, x)  # small |x|: odd polynomial avoids the cancellation in 1 - e
            p = splat(-5.70498872745e-3)
            for c in (2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1):
                p = self.fma(p, z, splat(c))
            small = self.fma(self.fmul(p, z), x, x)
            signed = self.call(self._intr("llvm.copysign", 2), [big, x])
            return self.select(self.fcmp_ordered("<", a, splat(0.625)), small, signed)
        raise ValueError(f"unknown activation {kind!r}")

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
