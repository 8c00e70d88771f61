"""The compiler: Graph -> fusion plan -> LLVM IR -> native code -> CompiledNet.

    plan = build_plan(graph, weights)       # fuse, pack weights, lay out buffers
    key  = hash(plan.key(), host)           # kernels, buffers, CPU, llvmlite, this code
    lib  = jit.load_or_build(key, ...)      # cached objects, or: emit IR (llvmlite.ir),
                                            # verify, O3 for this CPU, in parallel parts
    net  = CompiledNet(graph, weights, plan, lib)

Set CNNGRAPH_DEBUG=2 to print the plan, 3 to also print the LLVM IR.

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

from . import jit
from .emit_net import emit_kernels, emit_runner, kernel_list
from .kernels import ConvKernel
from .plan import Plan, build_plan
from .runtime import CompiledNet

__all__ = ["CompiledNet", "Plan", "build_plan", "compile", "emit_kernels", "emit_runner"]


def compile(spec_or_path, threads: int | None = None, weights=None, seed: int = 0) -> CompiledNet:
    """Compile a network (spec path, YAML text, NetSpec or Graph) to a native callable.

    `weights`: None (seeded PyTorch-style init with `seed`), a .npz/.safetensors
    path, or a name -> array mapping. `threads`: native threads per call
    (default: all cores; small batches use fewer). The object code is cached on
    disk (see `jit.cache_dir`), so compiling the same net again is fast.
    """
    from .. import load
    from ..weights import resolve

    graph = load(spec_or_path)
    w = resolve(graph, weights, seed)
    plan = build_plan(graph, w)
    debug = int(os.environ.get("CNNGRAPH_DEBUG", "0") or 0)
    if debug >= 2:
        print(plan.describe())
    key = hashlib.sha256((plan.key() + jit.host_key()).encode()).hexdigest()
    lib, cached = jit.load_or_build(key, lambda: _build_objects(plan, debug))
    return CompiledNet(graph, w, plan, lib, threads, cached)


def _compile_kernels(kernels) -> bytes:
    return jit.compile_ir(emit_kernels(kernels))


def _build_objects(plan: Plan, debug: int = 0) -> list[bytes]:
    """Object files for the plan: kernels split over worker processes (emission and
    LLVM both hold the GIL or llvmlite's lock), the runner compiled meanwhile."""
    kernels = kernel_list(plan)
    if debug >= 3:
        print(emit_kernels(kernels), emit_runner(plan))
    parts = min(os.cpu_count() or 1, 4)
    convs = sum(isinstance(k, ConvKernel) for _, k in kernels)
    if parts < 2 or convs < 4:
        return [_compile_kernels(kernels), jit.compile_ir(emit_runner(plan))]
    groups, load = [[] for _ in range(parts)], [0] * parts
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
