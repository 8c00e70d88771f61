"""The schedule pass: how each kernel is tiled, chosen once for the plan's target and
stored in the kernel descriptor (so it is part of the plan, the cache key and the
weight packing); emitters only read it.

>>> from cnngraph.compiler.kernels import ConvKernel
>>> from cnngraph.compiler.target import AVX2
>>> k = ConvKernel(2, 64, (1, 56, 56), False, 64, 1, (1, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 56, 56))
>>> conv_schedule(k, 24), conv_schedule(k, AVX2.accumulators())
(ConvSchedule(v=4, tp=6, budget=24), ConvSchedule(v=2, tp=3, budget=6))
"""

from __future__ import annotations

from dataclasses import replace

from .kernels import ConvKernel, ConvSchedule
from .plan import Plan


def conv_schedule(k: ConvKernel, budget: int) -> ConvSchedule:
    """(V, Tp): output-channel vectors and pooled output pixels per register tile.

    At most `budget` accumulators, T conv pixels x V vectors: with the weights and the
    broadcast input that leaves room in the vector registers for the loads LLVM
    schedules early. The cost is the FMAs per output (conv pixels an overlapping pool
    window makes neighbouring tiles compute twice) times a load term, (T + V) / (T * V)
    loads per FMA, that picks V = 4 over V = 2 on 56x56 and 224x224 layers as measured
    with 32 registers; times the input blocks each output vector reads (grouped convs read a band
    of blocks that widens with V).
    """
    probe = replace(k, schedule=ConvSchedule(1, 1, budget))
    lo, hi = probe.fast_range()
    width = max(hi - lo, 1)
    if probe.depthwise:
        return ConvSchedule(1, max(tp for tp in range(1, min(width, budget) + 1)
                                   if probe.tile_pixels(tp) <= budget or tp == 1), budget)
    best = None
    for v in (4, 3, 2, 1):
        if probe.ob_per_group % v or v > budget:
            continue
        tp = max(tp for tp in range(1, min(width, budget) + 1) if probe.tile_pixels(tp) * v <= budget or tp == 1)
        t = probe.tile_pixels(tp)
        stride = probe.pool.stride[2] if probe.pool else 1
        recompute = max(t / (tp * stride), 1.0)
        # input blocks an output vector reads: the same for every V without groups; with unaligned groups
        # the band of blocks V output blocks' groups read, which grows with V
        band = replace(k, schedule=ConvSchedule(v, tp, budget)).icb_per_group
        cost = recompute * (1 + 0.5 * (t + v) / (t * v)) * band
        if best is None or cost < best[0]:
            best = (cost, v, tp)
    return ConvSchedule(best[1], best[2], budget)


def schedule(plan: Plan) -> Plan:
    """Plan whose conv kernels carry their schedule for `plan.target`."""
    budget = plan.target.accumulators()
    steps = []
    for s in plan.steps:
        if isinstance(s.kernel, ConvKernel):
            s = replace(s, kernel=replace(s.kernel, schedule=conv_schedule(s.kernel, budget)))
        elif hasattr(s.kernel, "conv") and isinstance(s.kernel.conv, ConvKernel):  # a step packing for a conv
            conv = s.kernel.conv
            s = replace(s, kernel=replace(s.kernel, conv=replace(conv, schedule=conv_schedule(conv, budget))))
        steps.append(s)
    return replace(plan, steps=tuple(steps))
