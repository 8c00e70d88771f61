"""The verifier: checks a finished plan before any code is emitted, so a planning
mistake is a clear `CompilerBug`, never a wrong answer or a crash.

- every tensor argument matches the tensor it points to (channels, positions,
  layout, slice, element type), and weights and the batch are where the kernel wants them;
- every element a step reads was written by an earlier step (padding lanes of a
  channel block included: consumers read whole vectors), and the user's output
  is completely written;
- no step writes memory that holds a value something will still read (buffer
  sharing, concat slices and the workspace bounds), and nothing writes the user's
  input.
"""

from __future__ import annotations

import numpy as np

from .kernels import BATCH, CONST, IN, OUT, VL, WEIGHT, ConcatCopy, cblocks
from .plan import CompilerBug
from .memory import ALIGN, lifetimes, step_accesses
from .plan import INPUT_T, OUTPUT_T, BatchArg, ConstArg, Plan, TensorArg, WeightArg


def _fail(plan, i, msg):
    s = plan.steps[i]
    raise CompilerBug(f"plan verification failed at step {i} ({s.name}: {', '.join(s.nodes)}): {msg}")


def _check_args(plan: Plan, i: int):
    s = plan.steps[i]
    for name, role in s.kernel.args:
        if role == CONST and not isinstance(s.arg(name), ConstArg):
            _fail(plan, i, f"argument '{name}' must be a run-time integer")
    for name in s.kernel.required():
        if s.arg(name) is None:
            _fail(plan, i, f"argument '{name}' is missing")
    try:
        expects = s.kernel.expects(s.consts())
    except ValueError as e:  # run-time sizes that contradict the kernel's descriptor
        _fail(plan, i, str(e))
    for name, role in s.kernel.args:
        a = s.arg(name)
        if role in (IN, OUT):
            if a is None:
                if name in expects:
                    _fail(plan, i, f"tensor argument '{name}' is missing")
                continue
            if not isinstance(a, TensorArg) or a.tensor not in plan.tensors:
                _fail(plan, i, f"argument '{name}' is not a planned tensor: {a!r}")
            if name not in expects:
                _fail(plan, i, f"the kernel does not describe its tensor argument '{name}'")
            t, e = plan.tensors[a.tensor], expects[name]
            if t.flat_of:
                got = (t.flat_of[0], int(np.prod(t.flat_of[1])), "blocked", cblocks(t.flat_of[0]), 0)
                want = (e.c, e.spatial, e.layout, e.cb_total or cblocks(e.c), e.cb_off)
            elif t.layout == "plain":
                got, want = (t.c, t.spatial, "plain"), (e.c, e.spatial, e.layout)
            else:
                got = (t.c, t.spatial, "blocked", t.total_blocks, t.cb_off)
                want = (e.c, e.spatial, e.layout, e.cb_total or cblocks(e.c), e.cb_off)
            if plan.root(a.tensor).dtype != e.dtype:
                _fail(plan, i, f"argument '{name}' expects {e.dtype} elements, but tensor {a.tensor} holds "
                               f"{plan.root(a.tensor).dtype}")
            if got != want:
                _fail(plan, i, f"argument '{name}' expects (channels, positions, layout[, blocks, offset]) "
                               f"{want}, but tensor {a.tensor} is {got}")
        elif role == WEIGHT and a is not None and (not isinstance(a, WeightArg) or a.index >= len(plan.weights)):
            _fail(plan, i, f"argument '{name}' is not a packed weight: {a!r}")
        elif role == BATCH and not isinstance(a, BatchArg):
            _fail(plan, i, f"argument '{name}' must be the batch size")


def _lanes(plan: Plan, tid: int, name: str, step) -> tuple[int, int] | None:
    """The lane range [lo, hi) of its root that a step touches through tensor `tid`."""
    t = plan.tensors[tid]
    if t.layout == "plain":
        return 0, t.c
    if t.flat_of:
        return 0, cblocks(t.flat_of[0]) * VL
    return t.cb_off * VL, (t.cb_off + cblocks(t.c)) * VL


def verify(plan: Plan) -> Plan:
    """The plan unchanged, or a CompilerBug naming the step and what is wrong."""
    for i in range(len(plan.steps)):
        _check_args(plan, i)
    # written before read, lane by lane of each root (positions are whole per step: checked above)
    written = {INPUT_T: np.ones(plan.tensors[INPUT_T].c, bool)}
    for i, s in enumerate(plan.steps):
        for name, role in s.kernel.args:
            a = s.arg(name)
            if role != IN or a is None:
                continue
            root = plan.root(a.tensor)
            lo, hi = _lanes(plan, a.tensor, name, s)
            done = written.get(root.id)
            if done is None or not done[lo:hi].all():
                _fail(plan, i, f"reads tensor {a.tensor} ('{name}') before all of it was written")
        for name, role in s.kernel.args:
            a = s.arg(name)
            if role != OUT or a is None:
                continue
            root = plan.root(a.tensor)
            if root.id == INPUT_T:
                _fail(plan, i, "writes the user's input")
            lanes = root.c if root.layout == "plain" else root.total_blocks * VL
            done = written.setdefault(root.id, np.zeros(lanes, bool))
            if isinstance(s.kernel, ConcatCopy):
                k, c = s.kernel, s.consts()
                done[c["offset"]:c["offset"] + k.c] = True
                if c["zero_tail"]:
                    done[k.total:] = True
            else:
                lo, hi = _lanes(plan, a.tensor, name, s)
                done[lo:hi] = True
    out = plan.tensors.get(OUTPUT_T)
    if out is None or OUTPUT_T not in written or not written[OUTPUT_T][:out.c].all():
        raise CompilerBug("plan verification failed: the user's output is not completely written")
    # nothing live is overwritten
    span = lifetimes(step_accesses(plan), lambda t: plan.root(t).id)
    for r, (first, last) in span.items():
        if r in (INPUT_T, OUTPUT_T):
            continue
        if r not in plan.offsets:
            raise CompilerBug(f"plan verification failed: tensor {r} has no workspace offset")
        size = plan.tensors[r].nbytes
        if plan.offsets[r] % ALIGN or plan.offsets[r] + size > plan.workspace:
            raise CompilerBug(f"plan verification failed: tensor {r} at {plan.offsets[r]} (+{size} bytes) is "
                              f"misaligned or outside the {plan.workspace}-byte workspace")
    starts: dict[int, list[int]] = {}
    for r, (first, last) in span.items():
        if r not in (INPUT_T, OUTPUT_T):
            starts.setdefault(first, []).append(r)
    live: set[int] = set()
    for i in range(len(plan.steps)):
        live.update(starts.get(i, ()))
        live = {r for r in live if span[r][1] >= i}
        end, prev = -1, None
        for r in sorted(live, key=lambda r: plan.offsets[r]):
            if plan.offsets[r] < end:
                _fail(plan, i, f"tensors {prev} and {r} are both live here but share workspace bytes "
                               f"from {plan.offsets[r]}")
            if plan.offsets[r] + plan.tensors[r].nbytes > end:
                end, prev = plan.offsets[r] + plan.tensors[r].nbytes, r
    return plan
