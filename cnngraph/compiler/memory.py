"""Buffer liveness, in one place: every workspace tensor lives from the first step
that touches it (or any view of it) to the last; tensors whose lifetimes do not
overlap share memory (first fit, largest first among those born together).
Offsets are bytes per sample: a batch of n keeps tensor t at workspace + n * offset.

>>> lifetimes([((2,), ()), ((3,), (2,)), ((4,), (3, 2))], lambda t: t)
{2: (0, 2), 3: (1, 2), 4: (2, 2)}
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from .plan import INPUT_T, OUTPUT_T, Plan

ALIGN = 64  # bytes: every buffer starts on a cache line (and a zmm boundary)


def lifetimes(accesses, root_of) -> dict[int, tuple[int, int]]:
    """root tensor -> (first step, last step) over `accesses`: per step, (written ids, read ids)."""
    span: dict[int, tuple[int, int]] = {}
    for i, (writes, reads) in enumerate(accesses):
        for t in (*writes, *reads):
            r = root_of(t)
            first, _ = span.get(r, (i, i))
            span[r] = (first, i)
    return span


def step_accesses(plan: Plan):
    return [(tuple(s.tensors("out")), tuple(s.tensors("in"))) for s in plan.steps]


def allocate(plan: Plan) -> Plan:
    """Plan with workspace offsets for every root tensor the steps use."""
    span = lifetimes(step_accesses(plan), lambda t: plan.root(t).id)
    offsets = {}
    active: list[tuple[int, int, int]] = []  # (offset, size, last step) of placements still alive
    workspace = 0
    roots = [r for r in span if r not in (INPUT_T, OUTPUT_T)]
    for r in sorted(roots, key=lambda r: (span[r][0], -plan.tensors[r].nbytes, r)):
        size = -(-plan.tensors[r].nbytes // ALIGN) * ALIGN
        first, last = span[r]
        active = [a for a in active if a[2] >= first]  # what died before r is born frees its bytes
        off = 0
        for o, sz, _ in sorted(active):  # first fit among the live ones, by offset
            if off < o + sz and o < off + size:
                off = o + sz
        active.append((off, size, last))
        offsets[r] = off
        workspace = max(workspace, off + size)
    return replace(plan, offsets=MappingProxyType(offsets), workspace=workspace)
