"""The precision pass: in a bf16 plan, which convolutions reduce in bf16 and which
tensors are stored as bf16.

What bf16 means here (the contract `tests/test_precision.py` checks):
- a bf16 conv reads its input and its weights as bf16 and multiplies them in pairs of input
  channels into float32 accumulators (`vdpbf16ps`); bias, batchnorm, activations, the residual
  add and the pool run on the float32 accumulators, as in an f32 plan;
- values are rounded to bf16 with round-to-nearest-even (weights once when packed, in numpy;
  activations by `vcvtneps2bf16` when a kernel stores them, which also flushes denormals to 0);
- a tensor is stored as bf16 when its one writer is a conv that can store bf16 or a pool, every
  reader is a bf16 conv or linear layer, a pool (as its input; a pool's arithmetic is f32 on either
  dtype, and a max pool commutes with rounding) or a conv epilogue (as its residual), and some
  reader gains from it (a bf16 kernel, or a pool whose output is bf16); any other tensor stays f32,
  and a bf16 conv reading one gets a `Cast` step (f32 -> bf16) before it, shared by the convs
  that read the same value;
- a linear layer reads a bf16 input and bf16 weight pairs the same way (its weights are half the
  bytes, which is what a batch-1 classifier head waits for);
- everything else computes and stores f32, as in an f32 plan:
  - the first conv on the user's input: the input is the one value nothing has rounded yet, and
    rounding it doubled the bf16 error of MobileNetV3-large with He-gain weights (2.3e-2 -> 4.6e-2
    of the output's scale) for 1-5% of speed (a blocked bf16 copy of the input, tried);
  - depthwise convs: reading a bf16 input measured no faster (MobileNetV2 and EfficientNet-B0 at
    batch 8 within 5%, batch 1 slower) and is less exact;
  - elementwise kernels, the user's output.

The padding lanes of a bf16 tensor hold +0 (writers mask them), so a conv that reduces over a
whole block of channel pairs never multiplies a zero weight by an infinity a rounding made.

>>> import cnngraph
>>> from cnngraph.weights import init
>>> from cnngraph.compiler.plan import build_plan
>>> from cnngraph.compiler.target import host
>>> g = cnngraph.load("input: [3, 16, 16]\\nlayers: [{conv: {out: 32, kernel: 3}}, relu, {conv: {out: 32, kernel: 3}}]")
>>> plan = build_plan(g, init(g), precision="bf16") if host().bf16_dot else None
>>> [s.name for s in plan.steps] if plan else ['fused_conv2d_relu', 'fused_conv2d_bf16']
['fused_conv2d_relu', 'fused_conv2d_bf16']
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from types import MappingProxyType

from .kernels import OUT, Cast, ConvKernel, LinearKernel, PoolOp, cblocks
from .plan import INPUT_T, OUTPUT_T, ConstArg, Plan, Step, Tensor, TensorArg, named


def _accesses(steps):
    """tensor id -> [(step index, argument name)] of its writers and of its readers."""
    writers, readers = defaultdict(list), defaultdict(list)
    for i, s in enumerate(steps):
        roles = dict(s.kernel.args)
        for n, a in s.args:
            if isinstance(a, TensorArg):
                (writers if roles[n] == OUT else readers)[a.tensor].append((i, n))
    return writers, readers


def _bf16_tensors(plan: Plan, bf: set[int]) -> set[int]:
    """The tensors stored as bf16 (see the module's rule). Later tensors are decided first, so a
    pool's output is known when its input is."""
    steps, tensors = plan.steps, plan.tensors
    writers, readers = _accesses(steps)
    viewed = {t.root for t in tensors.values() if t.root is not None}
    out: set[int] = set()
    candidates = sorted(((writers[tid][0][0], tid) for tid, t in tensors.items()
                         if tid not in (INPUT_T, OUTPUT_T) and t.root is None and tid not in viewed
                         and not t.flat_of and t.layout == "blocked" and len(writers[tid]) == 1), reverse=True)
    for w, tid in candidates:
        k = steps[w].kernel
        if not ((isinstance(k, ConvKernel) and k.stores_bf16) or isinstance(k, PoolOp)):
            continue

        def gains(i, n):  # a reader that multiplies in bf16, or a pool whose output is bf16
            if n != "input":
                return False
            return i in bf or (isinstance(steps[i].kernel, PoolOp) and steps[i].arg("output").tensor in out)

        def accepts(i, n):  # a pool reads either dtype; a conv epilogue reads its residual as either
            return gains(i, n) or (n == "input" and isinstance(steps[i].kernel, PoolOp)) or (
                n == "residual" and isinstance(steps[i].kernel, ConvKernel))

        reads = readers[tid]
        if any(gains(i, n) for i, n in reads) and all(accepts(i, n) for i, n in reads):
            out.add(tid)
    return out


def _reduces_bf16(k) -> bool:
    """Kernels that can multiply in bf16: convs (see `ConvKernel.computes_bf16`) and linear layers."""
    return (isinstance(k, ConvKernel) and k.computes_bf16) or isinstance(k, LinearKernel)


def _read_as(t: Tensor) -> tuple:
    """(channels, dims, blocks, first block) of what a kernel reading tensor or view `t` reads: a
    flattened relabelling is read as the (C, D, H, W) tensor it was."""
    if t.flat_of:
        return t.flat_of[0], tuple(t.flat_of[1]), cblocks(t.flat_of[0]), 0
    return t.c, t.dims, t.total_blocks, t.cb_off


def precision(plan: Plan) -> Plan:
    """The plan unchanged in f32; in bf16, its eligible convs reducing in bf16 over bf16 tensors."""
    if plan.precision == "f32":
        return plan
    steps = plan.steps
    bf = {i for i, s in enumerate(steps) if _reduces_bf16(s.kernel)}
    if not bf:
        return plan
    halves = _bf16_tensors(plan, bf)
    tensors = {tid: (replace(t, dtype="bf16") if tid in halves else t) for tid, t in plan.tensors.items()}
    next_id = max(tensors) + 1
    casts: dict[int, int] = {}  # f32 tensor -> its bf16 copy, while the tensor's root is not written again
    out = []
    for i, s in enumerate(steps):
        k, args = s.kernel, dict(s.args)
        if isinstance(k, PoolOp):  # f32 arithmetic between whatever its tensors hold
            k = replace(k, in_dtype=tensors[plan.root(args["input"].tensor).id].dtype,
                        out_dtype=tensors[args["output"].tensor].dtype)
        if isinstance(k, ConvKernel):
            res = args.get("residual")
            k = replace(k, out_dtype=tensors[args["output"].tensor].dtype,
                        res_dtype=tensors[res.tensor].dtype if res is not None else "f32")
        if i in bf:
            k = replace(k, dtype="bf16")
            src = args["input"].tensor
            if tensors[plan.root(src).id].dtype != "bf16":
                if src not in casts:  # a bf16 copy of what the kernel reads, made just before it
                    c, dims, blocks, first = _read_as(tensors[src])
                    casts[src] = next_id
                    tensors[next_id] = Tensor(next_id, c, dims, dtype="bf16")
                    out.append(Step(Cast(c, tensors[next_id].spatial), "to_bf16", (),
                                    (("input", TensorArg(src)), ("output", TensorArg(next_id)),
                                     ("in_blocks", ConstArg(blocks)), ("in_offset", ConstArg(first)))))
                    next_id += 1
                args["input"] = TensorArg(casts[src])
                if "in_blocks" in args:
                    args.update(in_blocks=ConstArg(cblocks(tensors[casts[src]].c)), in_offset=ConstArg(0))
        s = replace(s, kernel=k, args=tuple((n, args[n]) for n, _ in s.args))
        written = {plan.root(a.tensor).id for n, a in s.args
                   if isinstance(a, TensorArg) and dict(s.kernel.args)[n] == OUT}
        casts = {src: c for src, c in casts.items() if plan.root(src).id not in written}
        out.append(s)
    return replace(plan, steps=named(out), tensors=MappingProxyType(tensors))
