"""Kernel descriptors: frozen, hashable values that say exactly what one native
function computes. The lowering pass builds them, the schedule pass fills in their
schedule, the emitters turn them into IR, the packer lays out their weights, the
verifier checks them against the plan's tensors, and the object cache keys on them.

Every descriptor declares its native arguments by name (`ARGS`, with a role each:
a tensor it reads or writes, a packed weight, the batch size) and what it expects
of each tensor argument (`expects()`), so the plan's arguments are named and typed
and the verifier can compare them with the tensors they point to.

Tensors inside a net are blocked: (N, ceil(C/16), D, H, W, 16), channels padded to
a multiple of 16 (the padding lanes hold finite values that no kernel lets leak
into real channels); 1D/2D tensors are 3D with D = H = 1 (or D = 1), and flat
vectors are blocked tensors with D = H = W = 1. Only the user's input and output
arrays are plain (N, C, *spatial).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from .target import BLOCK as VL

Dims = tuple  # (D, H, W)

IN, OUT, WEIGHT, BATCH, CONST = "in", "out", "weight", "batch", "const"  # argument roles


def cblocks(c: int) -> int:
    """Channel blocks of 16 holding c channels.

    >>> cblocks(3), cblocks(16), cblocks(17)
    (1, 1, 2)
    """
    return -(-c // VL)


@dataclass(frozen=True)
class Expect:
    """What a kernel reads or writes through one tensor argument: `c` channels over `spatial`
    positions per sample, in `layout`; for blocked tensors, a slice of `cb_total` channel
    blocks starting at block `cb_off` (0: the whole tensor); elements of `dtype`."""

    c: int
    spatial: int
    layout: str = "blocked"
    cb_total: int = 0
    cb_off: int = 0
    dtype: str = "f32"


class Kernel:
    """Base of the descriptors: the argument list and what is written where."""

    ARGS: ClassVar[tuple[tuple[str, str], ...]] = ()  # (name, role) in native order

    @property
    def args(self) -> tuple[tuple[str, str], ...]:
        return self.ARGS

    def expects(self, consts: dict) -> dict[str, Expect]:
        """Per tensor argument, what the kernel reads or writes there (`consts`: the step's run-time
        integer arguments)."""
        return {}

    def items(self) -> int:
        """Work items per sample (per `unit` samples)."""
        raise NotImplementedError

    def required(self) -> tuple[str, ...]:
        """Arguments the native code reads that may not be absent: the per-channel parameters of the
        pointwise layers it applies (a prelu's slopes), where it has any."""
        ep = getattr(self, "epilogue", None)
        ops = ep.ops if ep is not None else getattr(self, "acts", ())
        takes = any(n == "act_params" for n, _ in self.args)
        return ("act_params",) if takes and act_param_count(ops) else ()

    def code_key(self) -> Kernel:
        """The descriptor that determines the native code: steps whose kernels have the same key share
        one function (sizes the kernel takes at run time are left out of it)."""
        return self

    unit: ClassVar[int] = 1  # samples that share one group of work items


# ---- epilogue operations, applied in registers in order ----------------------

@dataclass(frozen=True)
class Act:
    """A pointwise layer: x = layer.vector(m, x); with per-channel `params` (their names, in the
    lowering's order), x = layer.vector(m, x, p), p[name] read from vector `slot + i` of the
    kernel's `act_params` argument (each vector padded to whole channel blocks)."""

    layer: Any
    params: tuple[str, ...] = ()
    slot: int = 0

    @property
    def label(self) -> str:
        return self.layer.kind


def act_param_count(ops) -> int:
    """Per-channel parameter vectors the pointwise ops read from `act_params`.

    >>> from cnngraph.layers import make
    >>> act_param_count([Act(make("relu")), Act(make("prelu"), ("weight",), 0)])
    1
    """
    return sum(len(o.params) for o in ops if isinstance(o, Act))


@dataclass(frozen=True)
class Residual:
    """x = layer.combine(m, x, r) with r read from the residual tensor at the same position
    (`swapped`: combine(m, r, x), the accumulator being the second operand of a non-commutative merge)."""

    layer: Any
    swapped: bool = False

    @property
    def label(self) -> str:
        return self.layer.kind


@dataclass(frozen=True)
class ScaleShift:
    """x = x * scale[c] + shift[c] (a batchnorm that could not fold), from the affine argument;
    `kind` names the layer it came from (for the kernel's name)."""

    kind: str

    @property
    def label(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Epilogue:
    """What happens to a conv/linear result in registers: bias, then `ops` in order
    (at most one Residual and one ScaleShift)."""

    bias: bool = True
    ops: tuple = ()

    @property
    def residual(self) -> Residual | None:
        return next((o for o in self.ops if isinstance(o, Residual)), None)

    @property
    def affine(self) -> bool:
        return any(isinstance(o, ScaleShift) for o in self.ops)

    def name_parts(self) -> list[str]:
        return [o.label for o in self.ops]


# ---- pooling geometry (fused into a conv, or run alone) ----------------------

@dataclass(frozen=True)
class Pool:
    """A pooling window on (D, H, W)."""

    kind: str  # "max" | "avg"
    kernel: Dims
    stride: Dims
    dilation: Dims
    pad_lo: Dims
    pad_hi: Dims
    out: Dims  # pooled spatial size, ceil_mode already resolved
    counts: tuple = ()  # avg: per dim (D, H, W), the divisor of each output position (the layer's rule)

    @classmethod
    def of(cls, lowering) -> Pool:
        """From a layer's WindowReduce lowering."""
        w = lowering.window.as3d()
        counts = ()
        if lowering.reduce == "avg":
            counts = ((1,),) * (3 - lowering.window.nd) + tuple(lowering.divisors)
        return cls(lowering.reduce, w.kernel, w.stride, w.dilation, w.pad_lo, w.pad_hi, w.out, counts)

    def divisors(self) -> list[list[float]]:
        """Per dim, 1/count for each output position (avg pool)."""
        return [[1.0 / c for c in t] for t in self.counts]


# ---- schedules: how a kernel is tiled, chosen once per kernel for a target ------

@dataclass(frozen=True)
class ConvSchedule:
    """V output-channel vectors x Tp pooled pixels per register tile, within `budget`
    accumulator vectors (the target's registers)."""

    v: int
    tp: int
    budget: int


@dataclass(frozen=True)
class ConvKernel(Kernel):
    """One fused convolution: conv + epilogue + optional pool, writing a channel
    slice of a blocked output tensor (or the user's plain output).
    Work items: (oc group, n, pooled d, pooled h)."""

    nd: int  # spatial dims of the original layer (1, 2 or 3), for the name only
    cin: int
    in_dims: Dims
    in_plain: bool  # input in the user's NCDHW layout (first layer), else blocked
    cout: int
    groups: int
    kernel: Dims
    stride: Dims
    dilation: Dims
    pad_lo: Dims
    out_dims: Dims  # conv output, before the pool
    epilogue: Epilogue = field(default_factory=Epilogue)
    pool: Pool | None = None
    out_plain: bool = False  # write the user's (N, C, *spatial) output directly (no pool allowed)
    schedule: ConvSchedule | None = None
    # one phase of a transposed convolution: output pixel q goes to out_first + out_step * q of a tensor of
    # out_full pixels (no pool, residual or plain output then)
    out_step: Dims = (1, 1, 1)
    out_first: Dims = (0, 0, 0)
    out_full: Dims | None = None
    # the kind of a gate scaling the input channels per sample: the weights are read per sample from
    # `sample_weights` (written by a GateWeights step), not from `weights`
    gated: str = ""
    # the number of input blocks is a run-time argument (`in_icb`), so convs that differ only in their
    # input channels share one function (DenseNet's 1x1 convs over a growing concat)
    icb_at_run: bool = False
    # precision (compiler/precision.py): "bf16" reads a bf16 input and bf16 weight pairs (`vdpbf16ps` into
    # f32 accumulators); the output and the residual may be bf16 tensors whatever the compute precision
    dtype: str = "f32"
    out_dtype: str = "f32"
    res_dtype: str = "f32"

    # the destination's channel blocks and this conv's first block in it are run-time arguments,
    # so the branches of a concat written in place share one kernel
    # so is the input's (a channel slice of a larger tensor is read where it is)
    ARGS = (("input", IN), ("weights", WEIGHT), ("bias", WEIGHT), ("residual", IN), ("output", OUT),
            ("affine", WEIGHT), ("batch", BATCH), ("out_blocks", CONST), ("out_offset", CONST),
            ("act_params", WEIGHT), ("in_blocks", CONST), ("in_offset", CONST), ("sample_weights", IN),
            ("in_icb", CONST))

    @property
    def shares_cin(self) -> bool:
        """Whether the input channels can be a run-time size: whole blocks, no groups, no gate."""
        return self.groups == 1 and not self.in_plain and self.cin % VL == 0 and not self.gated

    def code_key(self) -> ConvKernel:
        return replace(self, cin=0) if self.icb_at_run else self

    def expects(self, consts):
        if self.icb_at_run and consts["in_icb"] != self.icb_per_group:
            raise ValueError(f"in_icb is {consts['in_icb']}, not the {self.icb_per_group} input blocks")
        sp = math.prod(self.in_dims)
        out_sp = math.prod(self.out_full or self.pooled)
        out = {"input": (Expect(self.cin, sp, "plain") if self.in_plain else
                         Expect(self.cin, sp, "blocked", consts["in_blocks"], consts["in_offset"], self.dtype)),
               "output": (Expect(self.cout, out_sp, "plain") if self.out_plain else
                          Expect(self.cout, out_sp, "blocked", consts["out_blocks"], consts["out_offset"],
                                 self.out_dtype))}
        if self.epilogue.residual:
            out["residual"] = Expect(self.cout, math.prod(self.out_dims), "blocked", self.ob, dtype=self.res_dtype)
        if self.gated:
            out["sample_weights"] = Expect(self.packed_floats, 1, "plain")
        return out

    @property
    def packed_floats(self) -> int:
        """Floats of the packed weights (groups == 1; see pack.pack_conv): the same for every schedule."""
        return self.ob * VL * self.icb_per_group * self.ic_inner * math.prod(self.kernel)

    # ---- precision ----
    @property
    def computes_bf16(self) -> bool:
        """Whether the conv can reduce in bf16: a blocked input read in channel pairs (an odd
        channel count pairs its last channel with a padding lane, +0 in a bf16 tensor), weights
        packed per conv (no per-sample gate, no depthwise, no transposed phases)."""
        return not self.in_plain and not self.depthwise and not self.gated and self.out_full is None

    @property
    def stores_bf16(self) -> bool:
        """Whether the conv can store a bf16 output: not the user's plain output, no transposed phases,
        no average pool (it sums rows in memory and scales them after; a max pool combining rows
        in memory is exact in bf16: the max of rounded values is the rounded max)."""
        return not self.out_plain and self.out_full is None and not (self.pool and self.pool.kind == "avg")

    # ---- derived geometry ----
    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.cin == self.cout and not self.in_plain

    @property
    def ob(self) -> int:
        return cblocks(self.cout)

    @property
    def aligned_groups(self) -> bool:
        """Each group owns whole channel blocks, so blocks need no masking."""
        return self.groups == 1 or (not self.in_plain and (self.cin // self.groups) % VL == 0
                                    and (self.cout // self.groups) % VL == 0)

    @property
    def icb_per_group(self) -> int:
        """Input channel blocks one group of V output blocks reads: all of them without groups;
        with groups, the band of blocks holding its groups' input channels (the same count for
        every output group: `first_icb` keeps the band inside the tensor)."""
        if self.in_plain:
            return 1
        if self.groups == 1:
            return cblocks(self.cin)
        if self.aligned_groups:
            return (self.cin // self.groups) // VL
        return max(self._band(o)[1] - self._band(o)[0] for o in range(self.ob // self._v))

    @property
    def _v(self) -> int:
        return self.schedule.v if self.schedule else 1

    def _band(self, o: int) -> tuple[int, int]:
        """Input blocks [lo, hi) read by the channel groups of output group o."""
        cin_g, cout_g = self.cin // self.groups, self.cout // self.groups
        first = o * self._v * VL
        last = min((o + 1) * self._v * VL, self.cout) - 1
        return (first // cout_g) * cin_g // VL, -(-(last // cout_g + 1) * cin_g // VL)

    def first_icb(self, o: int) -> int:
        """The first input block output group o reads (`emit_conv.first_icb` computes it at run time)."""
        if self.groups == 1 or self.in_plain:
            return 0
        return min((o * self._v * VL) // (self.cout // self.groups) * (self.cin // self.groups) // VL,
                   cblocks(self.cin) - self.icb_per_group)

    @property
    def ic_inner(self) -> int:
        """Input channels per block (the innermost reduction); a single partly used
        block (cin < 16) reduces over its real channels only."""
        return self.cin if self.in_plain or self.cin < VL else VL

    @property
    def ob_per_group(self) -> int:
        return (self.cout // self.groups) // VL if self.aligned_groups and self.groups > 1 else self.ob

    @property
    def pooled(self) -> Dims:
        return self.pool.out if self.pool else self.out_dims


    @property
    def name(self) -> str:
        """Deterministic kernel name from what is fused.

        >>> p = Pool("max", (1, 2, 2), (1, 2, 2), (1, 1, 1), (0, 0, 0), (0, 0, 0), (1, 14, 14))
        >>> from cnngraph.layers import make
        >>> ConvKernel(2, 1, (1, 32, 32), True, 6, 1, (1, 5, 5), (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 28, 28),
        ...            Epilogue(ops=(Act(make("relu")),)), p).name
        'fused_conv2d_relu_maxpool2d'
        """
        conv = f"{'dwconv' if self.depthwise else 'conv'}{self.nd}d"
        if self.out_full is not None:
            conv = f"conv_transpose{self.nd}d"
        parts = ["fused", *([self.gated] if self.gated else []), conv, *self.epilogue.name_parts()]
        if self.pool:
            parts.append(f"{self.pool.kind}pool{self.nd}d")
        if self.dtype != "f32":
            parts.append(self.dtype)
        return "_".join(parts)

    def items(self) -> int:
        return (self.ob // self.schedule.v) * self.pooled[0] * self.pooled[1]

    def fast_range(self) -> tuple[int, int]:
        """Pooled W positions whose whole window reads only in-bounds input (no checks needed)."""
        iw, ow, qw = self.in_dims[2], self.out_dims[2], self.pooled[2]
        kw, sw, dw, pw = self.kernel[2], self.stride[2], self.dilation[2], self.pad_lo[2]
        if self.pool:
            pk, ps, pd, pp = self.pool.kernel[2], self.pool.stride[2], self.pool.dilation[2], self.pool.pad_lo[2]
        else:
            pk, ps, pd, pp = 1, 1, 1, 0
        of_lo = min(-(-pw // sw), ow)
        of_hi = max(min((iw - 1 + pw - (kw - 1) * dw) // sw + 1, ow), 0)
        lo = min(max(-(-(of_lo + pp) // ps), 0), qw)
        hi = min((of_hi - 1 - (pk - 1) * pd + pp) // ps + 1, qw)
        return lo, max(hi, lo)

    def max_tile(self, v: int) -> int:
        """Most pooled pixels a tile of v vectors can hold."""
        budget = self.schedule.budget
        return max([tp for tp in range(1, budget + 1) if self.tile_pixels(tp) * v <= budget] or [1])

    def tile_pixels(self, tp: int) -> int:
        """Distinct conv pixels along W under tp adjacent pooled pixels."""
        if not self.pool:
            return tp
        s, k, d = self.pool.stride[2], self.pool.kernel[2], self.pool.dilation[2]
        return len({i * s + j * d for i in range(tp) for j in range(k)})

    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        return math.prod(self.out_dims) * self.cout * (self.cin // self.groups) * math.prod(self.kernel)


# ---- the other kernels: simple loops, vectorised over the 16-channel block ----

@dataclass(frozen=True)
class Reorder(Kernel):
    """Layout change of a (C, D, H, W) tensor: "to_blocked" (plain -> blocked), "from_blocked"
    (blocked -> the user's plain output) or "to_flat" (blocked -> blocked flat vector, PyTorch's
    channel-major order). Work items: (n, channel block), for flatten (n, output block)."""

    kind: str
    c: int
    dims: Dims

    ARGS = (("input", IN), ("output", OUT))

    @property
    def name(self) -> str:
        return self.kind

    def expects(self, consts):
        sp = math.prod(self.dims)
        if self.kind == "to_blocked":
            return {"input": Expect(self.c, sp, "plain"), "output": Expect(self.c, sp)}
        if self.kind == "from_blocked":
            return {"input": Expect(self.c, sp), "output": Expect(self.c, sp, "plain")}
        return {"input": Expect(self.c, sp), "output": Expect(self.c * sp, 1)}

    def items(self) -> int:
        if self.kind == "to_flat":
            return cblocks(self.c * math.prod(self.dims))
        return cblocks(self.c)


@dataclass(frozen=True)
class Cast(Kernel):
    """A blocked f32 tensor (or a channel slice of one) rounded to a blocked bf16 tensor (round to
    nearest even), for a conv that reads bf16; padding lanes become +0. Work items: (n, channel block)."""

    c: int
    spatial: int

    ARGS = (("input", IN), ("output", OUT), ("in_blocks", CONST), ("in_offset", CONST))

    @property
    def name(self) -> str:
        return "to_bf16"

    def expects(self, consts):
        return {"input": Expect(self.c, self.spatial, "blocked", consts["in_blocks"], consts["in_offset"]),
                "output": Expect(self.c, self.spatial, dtype="bf16")}

    def items(self) -> int:
        return cblocks(self.c)


@dataclass(frozen=True)
class PoolOp(Kernel):
    """Standalone max/avg pooling (also global pools) on a blocked tensor.
    Work items: (n, channel block, pooled d, pooled h)."""

    c: int
    in_dims: Dims
    pool: Pool
    in_dtype: str = "f32"  # either may be bf16 (compiler/precision.py): the arithmetic is f32
    out_dtype: str = "f32"

    # the input may be a channel slice of a larger tensor (U-Net's skip, written in its concat's slice)
    ARGS = (("input", IN), ("output", OUT), ("in_blocks", CONST), ("in_offset", CONST))

    @property
    def name(self) -> str:
        dt = sorted({self.in_dtype, self.out_dtype} - {"f32"})
        return "_".join([f"{self.pool.kind}pool", *dt])

    def expects(self, consts):
        return {"input": Expect(self.c, math.prod(self.in_dims), "blocked", consts["in_blocks"], consts["in_offset"],
                                self.in_dtype),
                "output": Expect(self.c, math.prod(self.pool.out), dtype=self.out_dtype)}

    def items(self) -> int:
        return cblocks(self.c) * self.pool.out[0] * self.pool.out[1]


@dataclass(frozen=True)
class Eltwise(Kernel):
    """y = acts(combine(x0, x1, ...)) over `c` channels x `spatial` positions of blocked tensors
    (whole blocks, padding lanes included). Work items: (n, chunk of CHUNK floats); with per-channel
    parameters (`act_params`), (n, channel block), so each item loads its parameters once."""

    n_inputs: int
    c: int
    spatial: int
    acts: tuple = ()  # Act, in order
    merge: Any = None  # the layer whose `combine` joins the inputs (n_inputs > 1)

    CHUNK = 4096

    @property
    def args(self):
        extra = (("act_params", WEIGHT),) if self.per_block else ()
        return (("output", OUT),) + tuple((f"input{i}", IN) for i in range(self.n_inputs)) + extra

    @property
    def per_block(self) -> bool:
        return act_param_count(self.acts) > 0

    @property
    def size(self) -> int:
        return cblocks(self.c) * VL * self.spatial

    @property
    def name(self) -> str:
        parts = ([self.merge.kind] if self.merge is not None else []) + [a.label for a in self.acts]
        return "_".join(parts) or "copy"

    def expects(self, consts):
        e = Expect(self.c, self.spatial)
        return {name: e for name, _ in self.args}

    def items(self) -> int:
        return cblocks(self.c) if self.per_block else -(-self.size // self.CHUNK)


@dataclass(frozen=True)
class Affine(Kernel):
    """y = x * scale[c] + shift[c] on a blocked tensor (a batchnorm nothing folded).
    Work items: (n, channel block)."""

    c: int
    spatial: int
    kind: str = "affine"  # the layer it came from, for the name
    acts: tuple = ()  # Act: pointwise layers that follow, applied in registers

    # the input may be a channel slice of a larger tensor: its blocks per sample and first block at run time;
    # so is the number of channel blocks, so batchnorms differing only in their channels share one function
    ARGS = (("input", IN), ("output", OUT), ("affine", WEIGHT), ("in_blocks", CONST), ("in_offset", CONST),
            ("blocks", CONST), ("act_params", WEIGHT))

    def code_key(self) -> Affine:
        return replace(self, c=0)

    @property
    def name(self) -> str:
        return "_".join([self.kind] + [a.label for a in self.acts])

    def expects(self, consts):
        if consts["blocks"] != cblocks(self.c):
            raise ValueError(f"blocks is {consts['blocks']}, not the {cblocks(self.c)} blocks of {self.c} channels")
        return {"input": Expect(self.c, self.spatial, "blocked", consts["in_blocks"], consts["in_offset"]),
                "output": Expect(self.c, self.spatial)}

    def items(self) -> int:
        return cblocks(self.c)


@dataclass(frozen=True)
class LinearKernel(Kernel):
    """y = epilogue(W x + b), x a stored (blocked) vector of `fin` floats, weights
    packed [output block][fin][16]. Up to NB samples share each weight load.
    Work items: (group of NB samples, output block)."""

    fin: int
    cout: int
    epilogue: Epilogue = field(default_factory=Epilogue)
    in_c: int = 0  # the input tensor's channels (fin rounds them up to whole blocks)
    in_spatial: int = 1
    dtype: str = "f32"  # "bf16": a bf16 input and weight pairs [output block][fin / 2][16] (compiler/precision.py)

    NB = 4
    unit = NB
    ARGS = (("input", IN), ("weights", WEIGHT), ("bias", WEIGHT), ("output", OUT), ("batch", BATCH),
            ("act_params", WEIGHT))

    @property
    def name(self) -> str:
        return "_".join(["fused_linear"] + self.epilogue.name_parts() + ([self.dtype] if self.dtype != "f32" else []))

    def expects(self, consts):
        return {"input": Expect(self.in_c, self.in_spatial, dtype=self.dtype), "output": Expect(self.cout, 1)}

    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        return self.cout * self.in_c * self.in_spatial

    def items(self) -> int:
        return cblocks(self.cout)


@dataclass(frozen=True)
class ChannelOp(Kernel):
    """Per-position statistics across channels, then a per-channel result (the layer's
    ChannelReduction: softmax, LRN, layer norm, ...) on a blocked tensor; with `collapse`, one
    output channel (a reduction over the channels). `params`: the per-channel parameter vectors
    (padded to whole blocks, one after the other). Work items: (n, spatial position)."""

    layer: Any
    c: int
    spatial: int
    collapse: bool = False
    in_shape: tuple = ()  # the layer's input shape (C, *spatial): the emitter asks the layer for its lowering

    ARGS = (("input", IN), ("output", OUT), ("params", WEIGHT))

    @property
    def name(self) -> str:
        return self.layer.kind

    def expects(self, consts):
        return {"input": Expect(self.c, self.spatial), "output": Expect(1 if self.collapse else self.c, self.spatial)}

    def items(self) -> int:
        return self.spatial


@dataclass(frozen=True)
class PadOp(Kernel):
    """Constant spatial padding of a blocked tensor. Work items: (n, channel block, output d, output h)."""

    c: int
    in_dims: Dims
    pad_lo: Dims
    out_dims: Dims
    value: float

    ARGS = (("input", IN), ("output", OUT))

    @property
    def name(self) -> str:
        return "pad"

    def expects(self, consts):
        return {"input": Expect(self.c, math.prod(self.in_dims)), "output": Expect(self.c, math.prod(self.out_dims))}

    def items(self) -> int:
        return cblocks(self.c) * self.out_dims[0] * self.out_dims[1]


@dataclass(frozen=True)
class ConcatCopy(Kernel):
    """Copy a blocked tensor's channels into channels [offset, offset + c) of a blocked tensor
    of `total` channels; `zero_tail` also clears the destination's padding lanes.
    Work items: (n, channel)."""

    c: int
    total: int
    spatial: int

    # where the copy lands and whether it clears the padding lanes are run-time arguments: the
    # copies into one concat share one kernel; so is where the input is (a channel slice of a larger tensor)
    ARGS = (("input", IN), ("output", OUT), ("offset", CONST), ("zero_tail", CONST), ("in_blocks", CONST),
            ("in_offset", CONST))

    @property
    def name(self) -> str:
        return "concat"

    def expects(self, consts):
        return {"input": Expect(self.c, self.spatial, "blocked", consts["in_blocks"], consts["in_offset"]),
                "output": Expect(self.total, self.spatial)}

    def items(self) -> int:
        return self.c + 1  # the last item clears the padding lanes where zero_tail asks


@dataclass(frozen=True)
class PlainDWConv(Kernel):
    """A depthwise conv (groups == cin == cout) reading the user's plain (N, C, *spatial)
    input and writing the user's plain output: vectorised along W, 16 output pixels
    per vector, one channel at a time, so neither layout pass is needed.
    Weights (C, KD*KH*KW), bias (C), affine (scale C | shift C).
    Work items: (n, channel, output d, output h)."""

    nd: int
    c: int
    in_dims: Dims
    kernel: Dims
    stride: Dims
    dilation: Dims
    pad_lo: Dims
    out_dims: Dims
    epilogue: Epilogue = field(default_factory=Epilogue)

    ARGS = (("input", IN), ("weights", WEIGHT), ("bias", WEIGHT), ("output", OUT), ("affine", WEIGHT),
            ("batch", BATCH), ("act_params", WEIGHT))

    @property
    def name(self) -> str:
        return "_".join(["fused", f"dwconv{self.nd}d_plain", *self.epilogue.name_parts()])

    def expects(self, consts):
        return {"input": Expect(self.c, math.prod(self.in_dims), "plain"),
                "output": Expect(self.c, math.prod(self.out_dims), "plain")}

    def items(self) -> int:
        return self.c * self.out_dims[0] * self.out_dims[1]

    def macs(self) -> int:
        return math.prod(self.out_dims) * self.c * math.prod(self.kernel)

    def fast_chunks(self) -> tuple[int, int]:
        """[lo, hi) of 16-pixel chunks along W whose every tap is in bounds."""
        iw, ow = self.in_dims[2], self.out_dims[2]
        kw, sw, dw, pw = self.kernel[2], self.stride[2], self.dilation[2], self.pad_lo[2]
        n = -(-ow // VL)
        ok = [j for j in range(n) if j * VL * sw - pw >= 0 and (j * VL + VL - 1) < ow
              and (j * VL + VL - 1) * sw - pw + (kw - 1) * dw < iw]
        if not ok:
            return 0, 0
        return ok[0], ok[-1] + 1
