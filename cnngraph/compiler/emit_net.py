"""IR for a whole net: modules of kernels, plus `net_run(ctx, N, tid, nthreads)`
(in a module of its own, so kernels can be compiled in parallel) that runs the
steps in order. With several threads each calls net_run; they share every
step's work items through atomic counters (see `_shared_step`) and wait for the
step to finish before the next, so one native call per thread runs the whole
network.

ctx (an array of 64-bit words): [input, output, workspace, weight table, counters,
run sequence word], counters holding nthreads + 1 words per step, zeroed before
each run; thread 0 bumps the run sequence word that idle helpers spin on.
"""

from __future__ import annotations

from llvmlite import ir

from .emit_conv import emit_conv
from .emit_ops import EMITTERS
from .irutil import I64, KERNEL_TYPE, PTR, VOID, Builder, i64
from .kernels import ConvKernel, LinearKernel
from .plan import IN_BUF, OUT_BUF, Plan

NET_RUN = "net_run"
CHUNKS_PER_SHARE = 8  # each thread's share of a step is handed out in about this many pieces
NET_TYPE = ir.FunctionType(VOID, [PTR, I64, I64, I64])


def _shared_step(b: Builder, kernel, argv, items, counters, tid, nthreads):
    """Run one step on several threads. Thread u owns the u-th contiguous share of the
    work items (so consecutive steps touch the same data on the same core) and takes
    chunks of it from its own atomic counter; when its share is gone it takes chunks
    from the others' shares. Then it waits until every item is done. A thread that is
    descheduled or starts late costs nothing: the others finish its share.

    counters: [items done, next chunk of share 0, ..., next chunk of share nthreads-1].
    """
    done_ptr = counters
    share = b.sdiv(b.add(items, b.sub(nthreads, i64(1))), nthreads)
    chunk = b.imax(b.sdiv(share, i64(CHUNKS_PER_SHARE)), i64(1))
    with b.loop(0, nthreads, name="victim") as k:
        u = b.srem(b.add(tid, k), nthreads)
        next_ptr = b.gep(counters, [b.add(u, i64(1))], inbounds=True, source_etype=I64)
        lo_u = b.imin(b.mul(u, share), items)
        hi_u = b.imin(b.add(lo_u, share), items)
        grab = b.append_basic_block("grab")
        work = b.append_basic_block("work")
        out = b.append_basic_block("next_share")
        b.branch(grab)
        b.position_at_end(grab)
        lo = b.add(lo_u, b.atomic_rmw("add", next_ptr, chunk, "monotonic"))
        b.cbranch(b.icmp_signed("<", lo, hi_u), work, out)
        b.position_at_end(work)
        hi = b.imin(b.add(lo, chunk), hi_u)
        b.call(kernel, [argv, lo, hi])
        b.atomic_rmw("add", done_ptr, b.sub(hi, lo), "release")
        b.branch(grab)
        b.position_at_end(out)
    spin = b.append_basic_block("spin")
    done = b.append_basic_block("done")
    b.branch(spin)
    b.position_at_end(spin)
    finished = b.icmp_signed(">=", b.load_atomic(done_ptr, "acquire", 8, typ=I64), items)
    pause = b.module.globals.get("llvm.x86.sse2.pause") or ir.Function(
        b.module, ir.FunctionType(VOID, []), name="llvm.x86.sse2.pause")
    with b.if_then(b.not_(finished)):
        b.call(pause, [])
    b.cbranch(finished, done, spin)
    b.position_at_end(done)


SPIN_WAIT = "spin_wait"


def emit_spin_wait() -> str:
    """IR of `i64 spin_wait(ptr word, i64 seen, i64 rounds)`: spin (pause) until *word != seen
    or `rounds` run out; returns the last value read. Idle helper threads wait here,
    outside the GIL, so a new run starts on them within microseconds."""
    module = ir.Module(name="cnngraph_spin")
    fn = ir.Function(module, ir.FunctionType(I64, [PTR, I64, I64]), name=SPIN_WAIT)
    word, seen, rounds = fn.args
    b = Builder(fn)
    pause = ir.Function(module, ir.FunctionType(VOID, []), name="llvm.x86.sse2.pause")
    result = b.vslot(I64)
    b.store(seen, result)
    with b.loop(0, rounds, name="round") as _:
        v = b.load_atomic(word, "acquire", 8, typ=I64)
        b.store(v, result)
        changed = b.icmp_signed("!=", v, seen)
        with b.if_then(changed):
            b.ret(v)
        b.call(pause, [])
    b.ret(b.load(result, typ=I64))
    return str(module)


def kernel_list(plan: Plan) -> list[tuple[str, object]]:
    """(symbol, descriptor) of every distinct kernel, in first-use order."""
    seen = {}
    for s in plan.steps:
        seen.setdefault(s.symbol, s.kernel)
    return list(seen.items())


def emit_kernels(kernels: list[tuple[str, object]]) -> str:
    """LLVM IR text of a module holding the given kernels."""
    module = ir.Module(name="cnngraph_kernels")
    for symbol, k in kernels:
        if isinstance(k, ConvKernel):
            emit_conv(module, k, symbol)
        else:
            EMITTERS[type(k)](module, k, symbol)
    return str(module)


def emit_runner(plan: Plan) -> str:
    """LLVM IR text of `net_run`, calling the kernels (defined in other modules)."""
    module = ir.Module(name="cnngraph_net")
    for symbol, _ in kernel_list(plan):
        ir.Function(module, KERNEL_TYPE, name=symbol)
    fn = ir.Function(module, NET_TYPE, name=NET_RUN)
    fn.attributes.add("nounwind")
    ctx, n, tid, nthreads = fn.args
    b = Builder(fn)
    words = [b.load(b.gep(ctx, [i64(i)], inbounds=True, source_etype=PTR), typ=PTR, align=8) for i in range(6)]
    inp, out, ws, table, step_counters, run_seq = words
    with b.if_then(b.and_(b.icmp_signed("==", tid, i64(0)), b.icmp_signed(">", nthreads, i64(1)))):
        # wake the spinning helpers from here, where the caller no longer holds the GIL they need
        b.atomic_rmw("add", run_seq, i64(1), "release")
    argv = b.alloca(PTR, size=max(len(s.args) for s in plan.steps))
    for i, s in enumerate(plan.steps):
        for j, a in enumerate(s.args):
            if a is None:
                p = ir.Constant(PTR, None)
            elif a[0] == "buf":
                base = {IN_BUF: inp, OUT_BUF: out}.get(a[1])
                floats = b.mul(n, i64(a[2] + (plan.offsets[a[1]] if base is None else 0)))
                p = b.fptr(ws if base is None else base, floats)
            elif a[0] == "w":
                p = b.load(b.gep(table, [i64(a[1])], inbounds=True, source_etype=PTR), typ=PTR, align=8)
            else:  # the batch size, passed as an integer in a pointer slot
                p = b.inttoptr(n, PTR)
            b.store(p, b.gep(argv, [i64(j)], inbounds=True, source_etype=PTR), align=8)
        if isinstance(s.kernel, LinearKernel):  # items per group of NB samples
            items = b.mul(b.sdiv(b.add(n, i64(s.kernel.NB - 1)), i64(s.kernel.NB)), i64(s.items()))
        else:
            items = b.mul(n, i64(s.items()))
        kernel = module.globals[s.symbol]
        with b.if_else(b.icmp_signed(">", nthreads, i64(1))) as (shared, alone):
            with shared:
                counters = b.gep(step_counters, [b.mul(i64(i), b.add(nthreads, i64(1)))], inbounds=True,
                                 source_etype=I64)
                _shared_step(b, kernel, argv, items, counters, tid, nthreads)
            with alone:
                b.call(kernel, [argv, i64(0), items])
    b.ret_void()
    return str(module)
