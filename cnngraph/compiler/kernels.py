"""Kernel descriptors: frozen, hashable values that say exactly what one native
function computes. The planner builds them, the emitters turn them into IR, the
packer lays out their weights, and the object cache keys on them.

Tensors inside a net are blocked: (N, ceil(C/16), D, H, W, 16), channels
padded to a multiple of 16 (the padding lanes hold finite values that no
kernel lets leak into real channels); 1D/2D tensors are 3D with D = H = 1 (or
D = 1), and flat vectors are blocked tensors with D = H = W = 1. Only the
user's input and output arrays are plain (N, C, *spatial).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .irutil import VL

Dims = tuple  # (D, H, W)


def cblocks(c: int) -> int:
    """Channel blocks of 16 holding c channels.

    >>> cblocks(3), cblocks(16), cblocks(17)
    (1, 1, 2)
    """
    return -(-c // VL)


@dataclass(frozen=True)
class Pool:
    """A pooling window on a conv's output, fused into its epilogue (or run alone)."""

    kind: str  # "max" | "avg"
    kernel: Dims
    stride: Dims
    dilation: Dims
    pad_lo: Dims
    pad_hi: Dims
    out: Dims  # pooled spatial size, ceil_mode already resolved
    counts: tuple = ()  # avg: per dim (D, H, W), the divisor of each output position (the layer's rule)

    def divisors(self) -> list[list[float]]:
        """Per dim, 1/count for each output position (avg pool)."""
        return [[1.0 / c for c in t] for t in self.counts]


@dataclass(frozen=True)
class Epilogue:
    """What happens to a conv/linear result in registers, in order:
    bias, `pre` activations, + residual, `post` activations, per-channel affine."""

    bias: bool = True
    pre: tuple = ()  # ((kind, alpha), ...)
    residual: bool = False
    post: tuple = ()
    affine: bool = False  # y = y * scale[c] + shift[c] (a batchnorm that could not fold)

    def name_parts(self) -> list[str]:
        parts = [k for k, _ in self.pre]
        if self.residual:
            parts.append("add")
        parts += [k for k, _ in self.post]
        if self.affine:
            parts.append("batchnorm")
        return parts


@dataclass(frozen=True)
class ConvKernel:
    """One fused convolution: conv + epilogue + optional pool, writing a channel
    slice of a blocked output tensor.

    Args of the native function: [input, packed weights, bias, residual, output,
    affine, batch size], unused ones null. Work items: (oc group, n, pooled d, pooled h).
    """

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
    out_cblocks: int = 0  # channel blocks of the destination tensor (0: this conv's own)
    out_cblock_offset: int = 0  # where this conv's channels start in it (concat in place)
    res_cblocks: int = 0  # channel blocks of the residual tensor (0: this conv's own)
    out_plain: bool = False  # write the user's (N, C, *spatial) output directly (no pool allowed)

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
        """Input channel blocks one output block reads."""
        if self.in_plain:
            return 1
        if self.aligned_groups and self.groups > 1:
            return (self.cin // self.groups) // VL
        return cblocks(self.cin)

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
    def dst_cblocks(self) -> int:
        return self.out_cblocks or self.ob

    @property
    def name(self) -> str:
        """Deterministic kernel name from what is fused.

        >>> p = Pool("max", (1, 2, 2), (1, 2, 2), (1, 1, 1), (0, 0, 0), (0, 0, 0), (1, 14, 14))
        >>> ConvKernel(2, 1, (1, 32, 32), True, 6, 1, (1, 5, 5), (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 28, 28),
        ...            Epilogue(pre=(("relu", 0.0),)), p).name
        'fused_conv2d_relu_maxpool2d'
        """
        parts = ["fused", f"{'dwconv' if self.depthwise else 'conv'}{self.nd}d", *self.epilogue.name_parts()]
        if self.pool:
            parts.append(f"{self.pool.kind}pool{self.nd}d")
        return "_".join(parts)

    def items(self) -> int:
        """Work items per sample."""
        return (self.ob // self.tiling()[0]) * self.pooled[0] * self.pooled[1]

    def tiling(self) -> tuple[int, int]:
        """(V, Tp): output-channel vectors and pooled output pixels per register tile.

        At most 24 accumulators, T conv pixels x V vectors: with the weights and the
        broadcast input that leaves room in the 32 zmm registers for the loads LLVM
        schedules early (28 spilled). The cost is the FMAs per output (conv pixels
        an overlapping pool window makes neighbouring tiles compute twice) times a
        load term, (T + V) / (T * V) loads per FMA, that picks V = 4 over V = 2 on
        56x56 and 224x224 layers as measured.
        """
        lo, hi = self.fast_range()
        width = max(hi - lo, 1)
        if self.depthwise:
            return 1, max(tp for tp in range(1, min(width, 24) + 1) if self.tile_pixels(tp) <= 24)
        best = None
        for v in (4, 3, 2, 1):
            if self.ob_per_group % v:
                continue
            tp = max(tp for tp in range(1, min(width, 24) + 1) if self.tile_pixels(tp) * v <= 24 or tp == 1)
            t = self.tile_pixels(tp)
            stride = self.pool.stride[2] if self.pool else 1
            recompute = max(t / (tp * stride), 1.0)
            cost = recompute * (1 + 0.5 * (t + v) / (t * v))
            if best is None or cost < best[0]:
                best = (cost, v, tp)
        return best[1], best[2]

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
        return max([tp for tp in range(1, 25) if self.tile_pixels(tp) * v <= 24] or [1])

    def tile_pixels(self, tp: int) -> int:
        """Distinct conv pixels along W under tp adjacent pooled pixels."""
        if not self.pool:
            return tp
        s, k, d = self.pool.stride[2], self.pool.kernel[2], self.pool.dilation[2]
        return len({i * s + j * d for i in range(tp) for j in range(k)})

    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        k = self.kernel[0] * self.kernel[1] * self.kernel[2]
        o = self.out_dims[0] * self.out_dims[1] * self.out_dims[2]
        return o * self.cout * (self.cin // self.groups) * k


# ---- the other kernels: simple loops, vectorised over the 16-channel block ----

@dataclass(frozen=True)
class Reorder:
    """Layout change of a (C, D, H, W) tensor: "to_blocked" (plain user input ->
    blocked), "from_blocked" (blocked -> the user's plain output) or "flatten"
    (blocked -> blocked flat vector, PyTorch's channel-major order).
    Args: [input, output]. Work items: (n, channel block), for flatten (n, output block)."""

    kind: str
    c: int
    dims: Dims

    @property
    def name(self) -> str:
        return self.kind

    def items(self) -> int:
        spatial = self.dims[0] * self.dims[1] * self.dims[2]
        if self.kind == "flatten":
            return cblocks(self.c * spatial)
        return cblocks(self.c)


@dataclass(frozen=True)
class PoolOp:
    """Standalone max/avg pooling (also global pools) on a blocked tensor.
    Args: [input, output]. Work items: (n, channel block, pooled d, pooled h)."""

    c: int
    in_dims: Dims
    pool: Pool

    @property
    def name(self) -> str:
        return f"{self.pool.kind}pool"

    def items(self) -> int:
        return cblocks(self.c) * self.pool.out[0] * self.pool.out[1]


@dataclass(frozen=True)
class Eltwise:
    """y = acts(x0 + x1 + ...) over `size` stored floats per sample (any layout).
    Args: [output, x0, x1, ...]. Work items: (n, chunk of CHUNK floats)."""

    n_inputs: int
    size: int
    acts: tuple = ()

    CHUNK = 4096

    @property
    def name(self) -> str:
        return "_".join((["add"] if self.n_inputs > 1 else []) + [k for k, _ in self.acts]) or "copy"

    def items(self) -> int:
        return -(-self.size // self.CHUNK)


@dataclass(frozen=True)
class Affine:
    """y = x * scale[c] + shift[c] on a blocked tensor (a batchnorm nothing folded).
    Args: [input, output, scale|shift]. Work items: (n, channel block)."""

    c: int
    spatial: int

    @property
    def name(self) -> str:
        return "batchnorm"

    def items(self) -> int:
        return cblocks(self.c)


@dataclass(frozen=True)
class LinearKernel:
    """y = epilogue(W x + b), x a stored (blocked) vector of `fin` floats, weights
    packed [output block][fin][16]. Up to NB samples share each weight load.
    Args: [input, weights, bias, output, batch size]. Work items: (group of NB samples, output block),
    so there are `items()` per NB samples, not per sample."""

    fin: int
    cout: int
    epilogue: Epilogue = field(default_factory=Epilogue)

    NB = 4

    @property
    def name(self) -> str:
        return "_".join(["fused_linear"] + self.epilogue.name_parts())

    def items(self) -> int:
        return cblocks(self.cout)


@dataclass(frozen=True)
class ChannelOp:
    """Per-position ops across channels on a blocked tensor: "softmax" or "lrn".
    Args: [input, output]. Work items: (n, spatial position)."""

    kind: str
    c: int
    spatial: int
    size: int = 0
    alpha: float = 0.0
    beta: float = 0.0
    k: float = 0.0

    @property
    def name(self) -> str:
        return self.kind

    def items(self) -> int:
        return self.spatial


@dataclass(frozen=True)
class PadOp:
    """Constant spatial padding of a blocked tensor. Args: [input, output].
    Work items: (n, channel block, output d, output h)."""

    c: int
    in_dims: Dims
    pad_lo: Dims
    out_dims: Dims
    value: float

    @property
    def name(self) -> str:
        return "pad"

    def items(self) -> int:
        return cblocks(self.c) * self.out_dims[0] * self.out_dims[1]


@dataclass(frozen=True)
class ConcatCopy:
    """Copy a blocked tensor's channels into channels [offset, offset + c) of a
    blocked tensor of `total` channels (concat that could not be done in place);
    `zero_tail` also clears the destination's padding lanes. Args: [input, output].
    Work items: (n, channel)."""

    c: int
    total: int
    offset: int
    spatial: int
    zero_tail: bool

    @property
    def name(self) -> str:
        return "concat"

    def items(self) -> int:
        return self.c + (1 if self.zero_tail else 0)


@dataclass(frozen=True)
class PlainDWConv:
    """A depthwise conv (groups == cin == cout) reading the user's plain (N, C, *spatial)
    input and writing the user's plain output: vectorised along W, 16 output pixels
    per vector, one channel at a time, so neither layout pass is needed.
    Args: [input, weights (C, KD*KH*KW), bias (C), output, affine (scale C | shift C), batch].
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

    @property
    def name(self) -> str:
        return "_".join(["fused", f"dwconv{self.nd}d_plain", *self.epilogue.name_parts()])

    def items(self) -> int:
        return self.c * self.out_dims[0] * self.out_dims[1]

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
