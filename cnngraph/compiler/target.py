"""The machine code is generated for: instruction set, vector lanes per dtype,
vector registers, LLVM CPU name and features. Schedules are chosen for a Target,
the JIT compiles for it, and it is part of every cache key; nothing else in the
compiler asks the host.

The tensor layout is a separate choice: activations are blocked in 16 channels
whatever the target (`BLOCK`); on a target with 8-lane vectors a block is two
registers, which the schedule accounts for.

    CNNGRAPH_TARGET=avx2 python ...      # code for an AVX2-only CPU (it runs on AVX-512 CPUs too)

>>> t = AVX2
>>> t.lanes("f32"), t.vector_registers, t.accumulators()
(8, 16, 6)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

BLOCK = 16  # channels per block of the blocked activation layout (one AVX-512 f32 vector)


@dataclass(frozen=True)
class Target:
    """A code-generation target. `features` is LLVM's feature string."""

    name: str
    cpu: str
    features: str
    vector_bits: int
    vector_registers: int

    def lanes(self, dtype: str = "f32") -> int:
        """Elements of `dtype` per vector register."""
        return self.vector_bits // {"f32": 32, "bf16": 16, "i8": 8}[dtype]

    def accumulators(self) -> int:
        """Channel-block vectors (BLOCK floats each) a register tile may keep in registers:
        the registers minus those the weights and broadcast inputs need."""
        spare = 8 if self.vector_registers >= 32 else 4
        return (self.vector_registers - spare) * self.lanes() // BLOCK

    def has(self, feature: str) -> bool:
        return f"+{feature}" in self.features.split(",")

    @property
    def bf16_dot(self) -> bool:
        """Whether the target has bf16 dot products on 16 f32 lanes (`vdpbf16ps`, AVX512-BF16): twice
        the multiply-adds of an f32 FMA per instruction."""
        return self.vector_bits == 512 and self.has("avx512bf16")

    def key(self) -> str:
        return f"{self.name}|{self.cpu}|{self.features}|{self.vector_bits}|{self.vector_registers}"


# An AVX2 + FMA machine (Haswell and later): what any x86-64 server of the last decade runs.
AVX2 = Target("avx2", "haswell", "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt,+sse4.2,-avx512f", 256, 16)


def host() -> Target:
    """This machine: AVX-512 where it has it, else AVX2 (LLVM's name and features for the CPU)."""
    import llvmlite.binding as llvm

    from . import jit
    jit.init_llvm()
    features = llvm.get_host_cpu_features().flatten()
    if "+avx512f" in features.split(","):
        return Target("avx512", llvm.get_host_cpu_name(), features, 512, 32)
    if "+avx2" in features.split(",") and "+fma" in features.split(","):
        return Target("avx2", llvm.get_host_cpu_name(), features, 256, 16)
    from ..errors import CnnGraphError
    raise CnnGraphError("cnngraph's compiler needs an x86-64 CPU with AVX2 and FMA (or AVX-512); this one has "
                        "neither — use cnngraph.reference() instead")


TARGETS = {"avx2": lambda: AVX2}
PRECISIONS = ("f32", "bf16", "auto")


def resolve_precision(precision: str, target: Target) -> str:
    """The precision the convolutions compute in: 'f32', or 'bf16' (bf16 inputs and weights, f32
    accumulation and epilogue; see `compiler/precision.py`). 'auto' is bf16 where the target has bf16
    dot products, else f32; 'bf16' on a target without them is an error.

    >>> resolve_precision("auto", AVX2), resolve_precision("f32", AVX2)
    ('f32', 'f32')
    """
    if precision not in PRECISIONS:
        raise ValueError(f"expected a precision of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if target.bf16_dot else "f32"
    if precision == "bf16" and not target.bf16_dot:
        from ..errors import CnnGraphError
        raise CnnGraphError(f"precision 'bf16' needs a CPU with AVX512-BF16 (bf16 dot products); the target "
                            f"'{target.name}' ({target.cpu}) has none — use precision 'f32' (or 'auto')")
    return precision


def select(name: str | None = None) -> Target:
    """The target named `name` ('host', 'avx2'), else $CNNGRAPH_TARGET, else the host.

    >>> select("avx2").name
    'avx2'
    """
    name = name or os.environ.get("CNNGRAPH_TARGET") or "host"
    if name == "host":
        return host()
    if name not in TARGETS:
        raise ValueError(f"expected a target of host, {', '.join(TARGETS)}, got {name!r}")
    chosen = TARGETS[name]()
    h = host()
    if chosen.vector_bits > h.vector_bits:
        raise ValueError(f"target {name!r} needs {chosen.vector_bits}-bit vectors; this CPU has {h.vector_bits}")
    return chosen
