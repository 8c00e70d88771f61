"""The plan: an immutable value that a flat list of passes builds, each a function
from one plan to the next. The passes, in order (see `PASSES`):

    fuse       graph -> fusion groups (fuse.py: the fusion rule)
    lower      groups -> steps: kernel descriptors with named, typed arguments over
               planned tensors, each with a dtype and a layout (lower.py)
    precision  which convs reduce in bf16 and which tensors are stored as bf16 (precision.py)
    schedule   a tiling per kernel for the target, stored in its descriptor (schedule.py)
    pack       weights into the layouts the scheduled kernels read (pack.py)
    allocate   buffer liveness -> workspace offsets (memory.py)
    verify     every element a step reads was written, nothing live is overwritten,
               arguments match the tensors they point to (verify.py)

DEBUG=2 prints `Plan.describe()`.

>>> import cnngraph
>>> from cnngraph.weights import init
>>> g = cnngraph.load("input: [3, 8, 8]\\nlayers: [{conv: {out: 16, kernel: 3}}, {batchnorm: {}}, {relu: {}}]")
>>> print(build_plan(g, init(g)).describe())
  0 fused_conv2d_relu                        conv1, batchnorm1, relu1
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from ..errors import CnnGraphError
from .kernels import VL, cblocks
from .target import Target

INPUT_T, OUTPUT_T = 0, 1  # ids of the user's input and output arrays
ITEMSIZE = {"f32": 4, "bf16": 2}  # bytes per element of a planned tensor's dtype


class CompilerBug(CnnGraphError):
    """A plan the compiler should never have produced (please report it)."""


@dataclass(frozen=True)
class Tensor:
    """A planned tensor: `c` channels over (D, H, W) `dims` per sample, a dtype and a layout
    ("blocked": (C/16, D, H, W, 16); "plain": the user's (C, D, H, W)). A view (`root` set)
    lives inside another tensor's memory: a channel slice starting at block `cb_off` (a concat
    written in place), or a flattened relabelling (`flat_of` = the (C, dims) it was)."""

    id: int
    c: int
    dims: tuple
    layout: str = "blocked"
    dtype: str = "f32"
    root: int | None = None
    cb_off: int = 0
    cb_total: int = 0  # channel blocks of the root (views); 0: cblocks(c)
    flat_of: tuple | None = None

    @property
    def spatial(self) -> int:
        return math.prod(self.dims)

    @property
    def total_blocks(self) -> int:
        return self.cb_total or cblocks(self.c)

    @property
    def nbytes(self) -> int:
        """Bytes per sample of the tensor's own storage (a root)."""
        item = ITEMSIZE[self.dtype]
        if self.layout == "plain":
            return item * self.c * self.spatial
        return item * cblocks(self.c) * VL * self.spatial


@dataclass(frozen=True)
class TensorArg:
    tensor: int


@dataclass(frozen=True)
class WeightArg:
    index: int


@dataclass(frozen=True)
class BatchArg:
    pass


@dataclass(frozen=True)
class ConstArg:
    """An integer passed at run time (a channel offset, a flag): kernels differing only in it are one."""

    value: int


@dataclass(frozen=True)
class Step:
    """One native call: a kernel descriptor, its display name, the graph nodes it covers, and
    its arguments by name (in the kernel's declared order; None where unused)."""

    kernel: object
    name: str
    nodes: tuple
    args: tuple  # ((arg name, TensorArg | WeightArg | BatchArg | None), ...)

    def arg(self, name: str):
        return dict(self.args)[name]

    def consts(self) -> dict:
        """The run-time integer arguments by name."""
        return {n: a.value for n, a in self.args if isinstance(a, ConstArg)}

    def tensors(self, role: str) -> list[int]:
        """Tensor ids of the arguments with `role` ("in" or "out")."""
        roles = dict(self.kernel.args)
        return [a.tensor for n, a in self.args if isinstance(a, TensorArg) and roles[n] == role]

    def items(self) -> int:
        return self.kernel.items()


@dataclass(frozen=True)
class PendingWeight:
    """A weight before packing: the array, and how the scheduled kernel of `step` wants it laid out."""

    array: np.ndarray
    packer: object = None  # (kernel, array) -> packed array; None: as is


@dataclass(frozen=True)
class Group:
    """A fusion group: the graph nodes one step computes (or none, for layers that cost
    nothing), the node whose value it produces, and why the chain stopped. `prologue`: nodes
    computed on the first node's input inside the same step (a squeeze-and-excitation gate
    folded into the weights of the conv that reads the gated tensor)."""

    nodes: tuple
    out: str
    stop: str = ""
    prologue: tuple = ()

    @property
    def all_nodes(self) -> tuple:
        return (*self.prologue, *self.nodes)


@dataclass(frozen=True)
class Plan:
    graph: object
    raw_weights: Mapping = field(repr=False)
    target: Target | None = None
    groups: tuple = ()
    tensors: Mapping = field(default_factory=lambda: MappingProxyType({}))
    values: Mapping = field(default_factory=lambda: MappingProxyType({}))  # graph value -> tensor id
    steps: tuple = ()
    weights: tuple = ()  # PendingWeight before `pack`, aligned arrays after
    offsets: Mapping = field(default_factory=lambda: MappingProxyType({}))  # root tensor -> bytes per sample
    workspace: int = 0  # bytes per sample
    macs: int = 0
    precision: str = "f32"  # what the convolutions compute in (target.resolve_precision)

    def describe(self) -> str:
        """One line per step: kernel name and the layers it covers (DEBUG level 2)."""
        return "\n".join(f"{i:3d} {s.name:40s} {', '.join(s.nodes)}" for i, s in enumerate(self.steps))

    def key(self) -> str:
        """What determines the generated code (the packed weights do not)."""
        return repr([(s.kernel, s.args) for s in self.steps]) + repr(sorted(self.offsets.items()))

    def root(self, tid: int) -> Tensor:
        t = self.tensors[tid]
        return self.tensors[t.root] if t.root is not None else t

    def fusion(self) -> list[tuple[str, tuple[str, ...]]]:
        """(kernel name, graph nodes) per step: what was fused into what."""
        names = {n.name for n in self.graph.nodes}
        return [(s.name, tuple(n for n in s.nodes if n in names)) for s in self.steps]

    def kernels(self) -> list[dict]:
        """One entry per distinct kernel, in first-use order: its name, how many steps run it,
        the layers of each of those steps, and whether it only changes the layout.

        >>> import cnngraph
        >>> from cnngraph.weights import init
        >>> g = cnngraph.load("input: [3, 8, 8]\\nlayers: [{conv: {out: 16, kernel: 3}}, relu, {conv: {kernel: 1}}]")
        >>> [(k["name"], k["count"]) for k in build_plan(g, init(g)).kernels()]
        [('fused_conv2d_relu', 1), ('fused_conv2d', 1)]
        """
        names = {n.name for n in self.graph.nodes}
        out: dict[str, dict] = {}
        for s in self.steps:
            layers = [n for n in s.nodes if n in names]
            k = out.setdefault(s.name, {"name": s.name, "count": 0, "steps": [], "layout": not layers})
            k["count"] += 1
            k["steps"].append(layers)
        return list(out.values())

    def unfused(self) -> list[tuple[str, str]]:
        """(layer, why) for each layer that runs as a kernel of its own after a fusable producer
        (a convolution or linear layer, or an elementwise chain) stopped before it."""
        from ..layers.base import Fusion
        stepped = {n for s in self.steps for n in s.nodes}
        starts = {g.nodes[0]: g for g in self.groups if g.nodes[0] in stepped}
        out = []
        for g in self.groups:
            if not g.stop:
                continue
            for reader in (n.name for n in self.graph.nodes if g.out in n.inputs):
                if reader in starts and self.graph.node(reader).layer.category is not Fusion.ANCHOR:
                    out.append((reader, g.stop))
        return out


def named(steps) -> tuple:
    """The steps with their display names: one per native function (steps whose kernels share code,
    `Kernel.code_key`, share it), the kernel's name, numbered from the second distinct code on, in
    first-use order.

    >>> from cnngraph.compiler.kernels import Reorder
    >>> [s.name for s in named([Step(Reorder("to_blocked", c, (1, 1, 4)), "", (), ()) for c in (3, 3, 5)])]
    ['to_blocked', 'to_blocked', 'to_blocked_1']
    """
    names, count, out = {}, {}, []
    for s in steps:
        key = s.kernel.code_key()
        if key not in names:
            base = s.kernel.name
            n = count.get(base, 0)
            names[key], count[base] = (base if n == 0 else f"{base}_{n}"), n + 1
        out.append(replace(s, name=names[key]))
    return tuple(out)


def aligned_empty(n: int, dtype=np.float32) -> np.ndarray:
    """n uninitialised elements starting on a 64-byte boundary: the kernels load whole zmm
    vectors, and a misaligned array splits every one of them across two cache lines."""
    item = np.dtype(dtype).itemsize
    raw = np.empty(n + 64 // item, dtype)
    skip = (-raw.ctypes.data % 64) // item
    return raw[skip:skip + n]  # a view: keeps `raw` alive


def aligned(arr) -> np.ndarray:
    """A 64-byte aligned float32 copy of arr (packed weights).

    >>> aligned(np.ones((3, 5))).ctypes.data % 64, aligned(np.ones(3)).dtype
    (0, dtype('float32'))
    """
    arr = np.asarray(arr, np.float32)
    out = aligned_empty(arr.size).reshape(arr.shape)
    out[...] = arr
    return out


def passes():
    from .fuse import fuse
    from .lower import lower
    from .memory import allocate
    from .pack import pack
    from .precision import precision
    from .schedule import schedule
    from .verify import verify
    return (fuse, lower, precision, schedule, pack, allocate, verify)


def build_plan(graph, weights, target: Target | None = None, precision: str = "f32") -> Plan:
    """Run the passes on `graph` with checked float32 `weights` (name -> array) for `target`
    (default: this machine), the convolutions computing in `precision` ('f32', 'bf16', 'auto')."""
    from .target import resolve_precision, select
    if target is None:
        target = select()
    plan = Plan(graph, MappingProxyType(dict(weights)), target, precision=resolve_precision(precision, target))
    for p in passes():
        plan = p(plan)
    return plan


__all__ = ["INPUT_T", "OUTPUT_T", "BatchArg", "CompilerBug", "ConstArg", "Group", "PendingWeight", "Plan", "Step", "Tensor", "TensorArg",
           "WeightArg", "aligned", "aligned_empty", "build_plan", "named", "replace"]
