"""The compiler: Graph -> plan (a flat list of passes, see plan.py) -> LLVM IR per
kernel -> native objects (cached per kernel) -> CompiledNet.

    plan = build_plan(graph, weights, target)   # fuse, lower, schedule, pack, allocate, verify
    objs = kernel objects                       # from the cache, or emitted (llvmlite.ir), verified,
                                                # O3 for the target, in parallel worker processes
    net  = CompiledNet(...)                     # + the generic table-driven runner

The compiler takes a Graph: turning paths, YAML and ONNX files into graphs is
the package facade's job. DEBUG=2 prints the plan, 3 also the LLVM IR, 4 also
the assembly (on stderr).

>>> import numpy as np, cnngraph
>>> net = compile(cnngraph.load("input: [1, 8, 8]\\nlayers: [{conv: {out: 4, kernel: 3}}, {relu: {}}]"))
>>> net(np.ones((2, 1, 8, 8), np.float32)).shape
(2, 4, 6, 6)
"""

from __future__ import annotations

import functools
import hashlib
import math
import os

import numpy as np

from .. import debug, report
from . import jit
from .plan import CompilerBug
from .plan import Plan, build_plan
from .runner import NET_RUN, emit_kernel, emit_runner
from .runtime import CompiledNet, CompileError, check_threads, format_bytes, memory_limit
from .target import Target, select

__all__ = ["CompileError", "CompiledNet", "CompilerBug", "Plan", "Target", "assembly", "build_plan", "compile",
           "kernel_symbols", "llvm_ir", "smoke_check"]


def kernel_symbols(plan: Plan) -> dict:
    """Native symbol of every kernel: its display name and a digest of the descriptor of its code
    (`Kernel.code_key`: kernels differing only in run-time sizes share a symbol)."""
    out = {}
    for s in plan.steps:
        if s.kernel not in out:
            digest = hashlib.sha256(repr(s.kernel.code_key()).encode()).hexdigest()[:12]
            out[s.kernel] = f"{s.kernel.name}_{digest}"
    return out


def distinct_kernels(plan: Plan) -> dict:
    """symbol -> one kernel of that code (the first step's), in step order."""
    out = {}
    for k, sym in kernel_symbols(plan).items():
        out.setdefault(sym, k)
    return out


def _check_size(graph, packed_copy: bool = True):
    """Refuse, naming the bytes, a net whose weights (as given and as packed) or activations
    cannot fit in memory: checked before anything is allocated."""
    limit = memory_limit()
    params = sum(n.n_params + n.n_buffers for n in graph.nodes)
    need = 4 * params * (2 if packed_copy else 1)
    if need > limit:
        raise CompileError(f"'{graph.name}' has {params:,} parameters: with their packed copy that is "
                           f"{format_bytes(need)} ({need:,} bytes), more than the {format_bytes(limit)} this "
                           f"machine allows (CNNGRAPH_MAX_BYTES)")
    act = max((math.prod(n.out_shape) for n in graph.nodes), default=0)
    act = max(act, math.prod(graph.input_shape))
    if 4 * act * 2 > limit:
        raise CompileError(f"'{graph.name}' has a {act:,}-element tensor per sample ({format_bytes(4 * act)}, "
                           f"twice that with its neighbour), more than the {format_bytes(limit)} this machine "
                           f"allows (CNNGRAPH_MAX_BYTES)")


def compile(graph, threads: int | None = None, weights=None, seed: int = 0, poison: bool = False,
            target: str | Target | None = None, precision: str = "f32") -> CompiledNet:
    """Compile a Graph to a native callable.

    `weights`: None (seeded PyTorch-style init with `seed`), a .npz/.safetensors path, or a
    name -> array mapping. `threads`: native threads per call (default: all cores; small
    batches use fewer; `net(x, threads=k)` overrides per call). `target`: 'host' (default,
    or $CNNGRAPH_TARGET), 'avx2', or a Target. `precision`: 'f32' (default), 'bf16' (convolutions
    read bf16 activations and weights and accumulate in f32, on CPUs with AVX512-BF16; see
    `compiler/precision.py`) or 'auto' (bf16 where the CPU has it, else f32). `poison`: fill buffers with NaN before every
    call, so an element no kernel writes shows up (for testing). The kernels' object code is
    cached on disk (see `jit.cache_dir`), so compiling again is fast.
    """
    from ..weights import resolve

    check_threads(threads)
    if not hasattr(graph, "nodes") or not hasattr(graph, "input_shape"):
        raise TypeError(f"expected a cnngraph Graph (see cnngraph.load), got {type(graph).__name__}")
    tgt = target if isinstance(target, Target) else select(target)
    debug.log(debug.REPORT, "report", lambda: report.to_text(graph))
    _check_size(graph)
    w = resolve(graph, weights, seed)
    plan = build_plan(graph, w, tgt, precision)
    if plan.workspace > memory_limit():
        raise CompileError(f"'{graph.name}' needs {format_bytes(plan.workspace)} of buffers per sample, more than "
                           f"the {format_bytes(memory_limit())} this machine allows")
    debug.log(debug.PLAN, "fusion plan", plan.describe)
    debug.log(debug.IR, "LLVM IR", lambda: llvm_ir(plan))
    debug.log(debug.ASM, "assembly", lambda: assembly(plan))
    lib, symbols, cached = _native(plan)
    return CompiledNet(graph, w, plan, lib, symbols, threads, cached, poison)


def _native(plan: Plan):
    """The plan's kernels and the runner, loaded (objects from the cache or built)."""
    symbols = kernel_symbols(plan)
    version, tkey = jit.code_version(), plan.target.key()
    jobs = {hashlib.sha256(f"{version}|{tkey}|{sym}|{k.code_key()!r}".encode()).hexdigest(): (sym, k)
            for sym, k in distinct_kernels(plan).items()}
    runner_key = hashlib.sha256(f"{version}|{tkey}|{NET_RUN}".encode()).hexdigest()
    jobs[runner_key] = (NET_RUN, None)
    target = plan.target
    objs, hits = jit.cached_objects(jobs, functools.partial(_build, target=target),
                                    workers=min(os.cpu_count() or 1, 4))
    try:
        lib = jit.NativeLib(list(objs.values()), target)
    except (ValueError, RuntimeError) as e:  # should not happen: entries are verified before loading
        raise CompilerBug(f"loading the compiled kernels failed: {e}") from None
    return lib, symbols, hits == len(jobs)


def _build(batch, target):
    """Object files for (symbol, kernel descriptor or None for the runner) pairs (in a worker process)."""
    return [jit.compile_ir(emit_runner() if k is None else emit_kernel(k, sym), target) for sym, k in batch]


def smoke_check(net: CompiledNet, batch: int = 2, seed: int = 0) -> float:
    """Max relative error of the compiled net against the numpy reference on a random batch.

    >>> import cnngraph
    >>> net = compile(cnngraph.load("input: [2, 6]\\nlayers: [{conv: {out: 3, kernel: 3}}, {relu: {}}]"))
    >>> smoke_check(net) < 1e-4
    True
    """
    from ..oracle import run as reference_run
    x = np.random.default_rng(seed).standard_normal((batch, *net.input_shape)).astype(np.float32)
    y, want = net(x), reference_run(net.graph, x, net.weights)
    return float(np.max(np.abs(y - want)) / max(float(np.max(np.abs(want))), 1e-30))


def llvm_ir(plan: Plan) -> str:
    """The LLVM IR of every distinct kernel of the plan, then the runner."""
    parts = [f"; ---- kernel {sym} ----\n{emit_kernel(k, sym)}" for sym, k in distinct_kernels(plan).items()]
    return "\n".join(parts + [f"; ---- runner ----\n{emit_runner()}"])


def assembly(plan: Plan) -> str:
    """The optimised assembly of every distinct kernel of the plan, then the runner."""
    parts = [f"# ---- kernel {sym} ----\n{jit.assembly(emit_kernel(k, sym), plan.target)}"
             for sym, k in distinct_kernels(plan).items()]
    return "\n".join(parts + [f"# ---- runner ----\n{jit.assembly(emit_runner(), plan.target)}"])

