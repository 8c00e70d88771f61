"""The compiler: Graph -> fusion plan -> LLVM IR -> native code -> CompiledNet.

    plan = build_plan(graph, weights)       # fuse, pack weights, lay out buffers
    key  = hash(plan.key(), host)           # kernels, buffers, CPU, llvmlite, this code
    lib  = jit.load_or_build(key, ...)      # cached objects, or: emit IR (llvmlite.ir),
                                            # verify, O3 for this CPU, in parallel parts
    net  = CompiledNet(graph, weights, plan, lib)

DEBUG=2 prints the plan, 3 also the LLVM IR, 4 also the assembly (on stderr).

>>> import numpy as np
>>> from cnngraph.compiler import compile
>>> net = compile("input: [1, 8, 8]\\nlayers: [{conv: {out: 4, kernel: 3}}, {relu: {}}]")
>>> net(np.ones((2, 1, 8, 8), np.float32)).shape
(2, 4, 6, 6)
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os

import numpy as np

from .. import debug, report
from . import jit
from .emit_net import emit_kernels, emit_runner, kernel_list
from .kernels import ConvKernel
from .plan import Plan, build_plan
from .runtime import CompiledNet, check_threads

__all__ = ["CompiledNet", "Plan", "assembly", "build_plan", "compile", "emit_kernels", "emit_runner", "llvm_ir",
           "smoke_check"]


def compile(spec_or_path, threads: int | None = None, weights=None, seed: int = 0) -> CompiledNet:
    """Compile a network (spec path, YAML text, NetSpec or Graph) to a native callable.

    `weights`: None (seeded PyTorch-style init with `seed`), a .npz/.safetensors
    path, or a name -> array mapping. `threads`: native threads per call
    (default: all cores; small batches use fewer). The object code is cached on
    disk (see `jit.cache_dir`), so compiling the same net again is fast.
    """
    from .. import load
    from ..weights import resolve

    check_threads(threads)
    graph = load(spec_or_path)                   # spec -> inferred graph
    debug.log(debug.REPORT, "report", lambda: report.to_text(graph))
    w = resolve(graph, weights, seed)            # weights, checked against the graph
    plan = build_plan(graph, w)                  # fuse, pack weights, plan buffers
    debug.log(debug.PLAN, "fusion plan", plan.describe)
    debug.log(debug.IR, "LLVM IR", lambda: llvm_ir(plan))
    debug.log(debug.ASM, "assembly", lambda: assembly(plan))
    key = hashlib.sha256((plan.key() + jit.host_key()).encode()).hexdigest()
    lib, cached = jit.load_or_build(key, lambda: _build_objects(plan))  # cache, or emit + LLVM
    return CompiledNet(graph, w, plan, lib, threads, cached)


def smoke_check(net: CompiledNet, batch: int = 2, seed: int = 0) -> float:
    """Max relative error of the compiled net against the numpy reference on a random batch.

    >>> net = compile("input: [2, 6]\\nlayers: [{conv: {out: 3, kernel: 3}}, {relu: {}}]")
    >>> smoke_check(net) < 1e-4
    True
    """
    from ..oracle import run as reference_run
    x = np.random.default_rng(seed).standard_normal((batch, *net.input_shape)).astype(np.float32)
    y, want = net(x), reference_run(net.graph, x, net.weights)
    return float(np.max(np.abs(y - want)) / max(float(np.max(np.abs(want))), 1e-30))


def llvm_ir(plan: Plan) -> str:
    """The plan's LLVM IR as text: the kernels module, then the runner module."""
    return (f"; ---- module: kernels ----\n{emit_kernels(kernel_list(plan))}\n"
            f"; ---- module: runner ----\n{emit_runner(plan)}")


def assembly(plan: Plan) -> str:
    """The optimised host assembly of both modules."""
    return (f"# ---- module: kernels ----\n{jit.assembly(emit_kernels(kernel_list(plan)))}\n"
            f"# ---- module: runner ----\n{jit.assembly(emit_runner(plan))}")


def _compile_kernels(kernels) -> bytes:
    return jit.compile_ir(emit_kernels(kernels))


def _build_objects(plan: Plan) -> list[bytes]:
    """Object files for the plan: kernels split over worker processes (emission and
    LLVM both hold the GIL or llvmlite's lock), the runner compiled meanwhile."""
    kernels = kernel_list(plan)
    parts = min(os.cpu_count() or 1, 4)
    convs = sum(isinstance(k, ConvKernel) for _, k in kernels)
    if parts < 2 or convs < 4:
        return [_compile_kernels(kernels), jit.compile_ir(emit_runner(plan))]
    # more groups than workers: the pool evens out what the cost guess gets wrong
    groups, load = [[] for _ in range(3 * parts)], [0] * (3 * parts)
    for sym, k in sorted(kernels, key=lambda sk: -_cost(sk[1])):
        i = load.index(min(load))
        groups[i].append((sym, k))
        load[i] += _cost(k)
    runner = None
    try:
        ctx = multiprocessing.get_context("fork")  # workers inherit the initialised LLVM
        with concurrent.futures.ProcessPoolExecutor(parts, mp_context=ctx) as pool:
            futures = [pool.submit(_compile_kernels, g) for g in groups if g]
            runner = jit.compile_ir(emit_runner(plan))
            return [f.result() for f in futures] + [runner]
    except (OSError, concurrent.futures.process.BrokenProcessPool):  # no processes here: do it serially
        return [_compile_kernels(kernels), runner or jit.compile_ir(emit_runner(plan))]


def _cost(k) -> int:
    """Rough compile cost: unrolled conv tiles dominate."""
    if isinstance(k, ConvKernel):
        v, tp = k.tiling()
        return 10 + k.tile_pixels(tp) * v
    return 2
