"""The generic runner and the kernels module builder.

`net_run(ctx, n, tid, nthreads)` is one small function for every net: it walks
the step table the context points to (layout in `abi.py`), resolves each step's
arguments to pointers for this batch, and calls the step's kernel through its
address. Its size does not grow with the net, so LLVM's time does not either
(kernels are compiled, and cached, one by one).

With several threads each calls net_run; they share every step's work items
through atomic counters (see `_shared_step`) and wait for the step to finish
before the next, so one native call per thread runs the whole network. Thread 0
bumps the context's run sequence word, which idle helper threads spin on.
"""

from __future__ import annotations

from llvmlite import ir

from .abi import ARG, CONTEXT, STEP, ArgKind
from .emit_broadcast import EMITTERS as BROADCAST_EMITTERS
from .emit_channels import EMITTERS as CHANNEL_EMITTERS
from .emit_conv import emit_conv
from .emit_ops import EMITTERS
from .emit_resample import EMITTERS as RESAMPLE_EMITTERS
from .irutil import I64, KERNEL_TYPE, PTR, VOID, Builder, i64
from .kernels import ConvKernel

NET_RUN = "net_run"
SPIN_WAIT = "spin_wait"
CHUNKS_PER_SHARE = 8  # each thread's share of a step is handed out in about this many pieces
COUNTER_WORDS = 8  # each atomic counter on a 64-byte cache line of its own (no false sharing between threads)
NET_TYPE = ir.FunctionType(VOID, [PTR, I64, I64, I64])
MAX_ARGS_ALLOCA = 256  # the argument array on the runner's stack, in pointers


def _pause(b: Builder):
    pause = b.module.globals.get("llvm.x86.sse2.pause") or ir.Function(
        b.module, ir.FunctionType(VOID, []), name="llvm.x86.sse2.pause")
    b.call(pause, [])


def _shared_step(b: Builder, kernel, argv, items, counters, tid, nthreads):
    """Run work items [0, items) of `kernel` on nthreads threads: thread u starts on the u-th
    contiguous share of the work items (so consecutive steps touch the same data on the same
    core) and takes chunks of it from its own atomic counter; when its share is gone it takes
    chunks from the others' shares. Then it waits until every item is done. A thread that is
    descheduled or starts late costs nothing: the others finish its share.

    counters: [items done, next chunk of share 0, ..., next chunk of share nthreads-1], each
    COUNTER_WORDS apart.
    """
    done_ptr = counters
    share = b.sdiv(b.add(items, b.sub(nthreads, i64(1))), nthreads)
    chunk = b.imax(b.sdiv(share, i64(CHUNKS_PER_SHARE)), i64(1))
    with b.loop(0, nthreads, name="victim") as k:
        u = b.srem(b.add(tid, k), nthreads)
        next_ptr = b.gep(counters, [b.mul(b.add(u, i64(1)), i64(COUNTER_WORDS))], inbounds=True, source_etype=I64)
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
    with b.if_then(b.not_(finished)):
        _pause(b)
    b.cbranch(finished, done, spin)
    b.position_at_end(done)


def emit_runner() -> str:
    """LLVM IR text of the generic `net_run` (the same for every net)."""
    module = ir.Module(name="cnngraph_runner")
    fn = ir.Function(module, NET_TYPE, name=NET_RUN)
    fn.attributes.add("nounwind")
    ctx, n, tid, nthreads = fn.args
    b = Builder(fn)

    def word(base, index, typ=I64):
        return b.load(b.gep(base, [index if isinstance(index, ir.Value) else i64(index)], inbounds=True,
                            source_etype=I64), typ=typ, align=8)

    inp, out, ws, table, steps = (word(ctx, CONTEXT.index(f), PTR)
                                  for f in ("input", "output", "workspace", "weights", "steps"))
    nsteps, step_words = word(ctx, CONTEXT.index("nsteps")), word(ctx, CONTEXT.index("step_words"))
    step_counters, run_seq = word(ctx, CONTEXT.index("counters"), PTR), word(ctx, CONTEXT.index("run_seq"), PTR)
    with b.if_then(b.and_(b.icmp_signed("==", tid, i64(0)), b.icmp_signed(">", nthreads, i64(1)))):
        # wake the spinning helpers from here, where the caller no longer holds the GIL they need
        b.atomic_rmw("add", run_seq, i64(1), "release")
    argv = b.alloca(PTR, size=MAX_ARGS_ALLOCA)
    with b.loop(0, nsteps, name="step") as s:
        rec = b.gep(steps, [b.mul(s, step_words)], inbounds=True, source_etype=I64)
        kernel = word(rec, STEP.index("kernel"), ir.PointerType(KERNEL_TYPE))  # called through its address
        nargs = word(rec, STEP.index("nargs"))
        with b.loop(0, nargs, name="arg") as j:
            at = b.add(i64(STEP.words), b.mul(j, i64(ARG.words)))
            kind = word(rec, b.add(at, i64(ARG.index("kind"))))
            value = word(rec, b.add(at, i64(ARG.index("value"))))
            per_batch = b.mul(n, value)
            slot = b.gep(argv, [j], inbounds=True, source_etype=PTR)
            b.store(ir.Constant(PTR, None), slot, align=8)
            for k, base in ((ArgKind.INPUT, inp), (ArgKind.OUTPUT, out), (ArgKind.WORKSPACE, ws)):
                with b.if_then(b.icmp_signed("==", kind, i64(k))):
                    b.store(b.gep(base, [per_batch], inbounds=True, source_etype=ir.IntType(8)), slot, align=8)
            with b.if_then(b.icmp_signed("==", kind, i64(ArgKind.WEIGHT))):
                b.store(word(table, value, PTR), slot, align=8)
            with b.if_then(b.icmp_signed("==", kind, i64(ArgKind.BATCH))):
                b.store(b.inttoptr(n, PTR), slot, align=8)
            with b.if_then(b.icmp_signed("==", kind, i64(ArgKind.CONST))):
                b.store(b.inttoptr(value, PTR), slot, align=8)
        unit = word(rec, STEP.index("unit"))
        items = b.mul(b.sdiv(b.add(n, b.sub(unit, i64(1))), unit), word(rec, STEP.index("items")))
        with b.if_else(b.icmp_signed(">", nthreads, i64(1))) as (shared, alone):
            with shared:
                counters = b.gep(step_counters, [b.mul(s, b.mul(b.add(nthreads, i64(1)), i64(COUNTER_WORDS)))],
                                 inbounds=True, source_etype=I64)
                _shared_step(b, kernel, argv, items, counters, tid, nthreads)
            with alone:
                b.call(kernel, [argv, i64(0), items])
    b.ret_void()
    return str(module)


def emit_spin_wait() -> str:
    """IR of `i64 spin_wait(ptr word, i64 seen, i64 rounds)`: spin (pause) until *word != seen
    or `rounds` run out; returns the last value read. Idle helper threads wait here,
    outside the GIL, so a new run starts on them within microseconds."""
    module = ir.Module(name="cnngraph_spin")
    fn = ir.Function(module, ir.FunctionType(I64, [PTR, I64, I64]), name=SPIN_WAIT)
    word, seen, rounds = fn.args
    b = Builder(fn)
    result = b.vslot(I64)
    b.store(seen, result)
    with b.loop(0, rounds, name="round") as _:
        v = b.load_atomic(word, "acquire", 8, typ=I64)
        b.store(v, result)
        with b.if_then(b.icmp_signed("!=", v, seen)):
            b.ret(v)
        _pause(b)
    b.ret(b.load(result, typ=I64))
    return str(module)


def emit_kernel(kernel, symbol: str) -> str:
    """LLVM IR text of a module holding one kernel under the native name `symbol`."""
    module = ir.Module(name=symbol)
    if isinstance(kernel, ConvKernel):
        emit_conv(module, kernel, symbol)
    else:
        {**EMITTERS, **BROADCAST_EMITTERS, **CHANNEL_EMITTERS, **RESAMPLE_EMITTERS}[type(kernel)](module, kernel, symbol)
    return str(module)


__all__ = ["KERNEL_TYPE", "NET_RUN", "SPIN_WAIT", "emit_kernel", "emit_runner", "emit_spin_wait"]
