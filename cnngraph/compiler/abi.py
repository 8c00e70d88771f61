"""The native calling convention, defined once: the run context and the step table
that the generic runner (`runner.py`, LLVM side) reads and the runtime
(`runtime.py`, Python side) fills. Both sides are generated from the field lists
below, so there are no magic indices in two places.

A run context is an array of 64-bit words (`CONTEXT`). The step table is
`nsteps` records of `step_words` 64-bit words each: the `STEP` header, then
`nargs` (kind, value) pairs (`ARG`), one per kernel argument in the kernel's
declared order. An argument resolves to a pointer at run time:

    NULL       -> null
    INPUT      -> input     + n * value   (value: byte offset per sample)
    OUTPUT     -> output    + n * value
    WORKSPACE  -> workspace + n * value
    WEIGHT     -> weights[value]          (the packed weight table)
    BATCH      -> the batch size n itself, in a pointer slot
    CONST      -> `value` itself, in a pointer slot (a run-time parameter: kernels that differ only
                  in it are one kernel, compiled once)

>>> CONTEXT.index("workspace"), STEP.words, ARG.words
(2, 4, 2)
>>> ArgKind.WEIGHT.value
4
"""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Record:
    """A record of named 64-bit words."""

    fields: tuple[str, ...]

    @property
    def words(self) -> int:
        return len(self.fields)

    def index(self, name: str) -> int:
        return self.fields.index(name)

    def ctypes_struct(self, name: str) -> type:
        """The matching ctypes Structure (all fields 64-bit unsigned)."""
        return type(name, (ctypes.Structure,), {"_fields_": [(f, ctypes.c_uint64) for f in self.fields]})


# the run context: pointers and counts the runner needs for one call
CONTEXT = Record(("input", "output", "workspace", "weights", "steps", "nsteps", "step_words", "counters",
                  "run_seq"))
# one step of the table: the kernel's entry point, its work items per `unit` samples, and its arguments
STEP = Record(("kernel", "items", "unit", "nargs"))
ARG = Record(("kind", "value"))


class ArgKind(enum.IntEnum):
    NULL = 0
    INPUT = 1
    OUTPUT = 2
    WORKSPACE = 3
    WEIGHT = 4
    BATCH = 5
    CONST = 6


def step_words(max_args: int) -> int:
    """Words per step record for kernels of up to `max_args` arguments."""
    return STEP.words + ARG.words * max_args


def step_table(steps, max_args: int) -> np.ndarray:
    """The step table as an int64 array: `steps` are (kernel address, items, unit, [(ArgKind, value), ...]).

    >>> t = step_table([(4096, 3, 1, [(ArgKind.INPUT, 0), (ArgKind.WEIGHT, 2)])], 2)
    >>> t.tolist()
    [[4096, 3, 1, 2, 1, 0, 4, 2]]
    """
    table = np.zeros((len(steps), step_words(max_args)), np.int64)
    for i, (addr, items, unit, args) in enumerate(steps):
        table[i, :STEP.words] = (addr, items, unit, len(args))
        for j, (kind, value) in enumerate(args):
            at = STEP.words + ARG.words * j
            table[i, at + ARG.index("kind")] = int(kind)
            table[i, at + ARG.index("value")] = int(value)
    return table
