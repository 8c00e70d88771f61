"""Kernel descriptors: frozen, hashable values that say exactly what one native
function computes. The planner builds them, the emitters turn them into IR, the
packer lays out their weights, and the object cache keys on them.

Tensors live in one of two layouts:

* blocked: (N, ceil(C/16), D, H, W, 16), channels padded with zeros to a
  multiple of 16; 1D/2D tensors are 3D with D = H = 1 (or D = 1).
* plain: the user's (N, C, D, H, W) or a flat (N, F) vector, padded to 16
  floats per sample for flat tensors inside the net.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .irutil import VL

Dims = tuple  # (D, H, W)


def cblocks(c: int) -> int:
    """Channel blocks of 16 holding c channels."""
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
    count_include_pad: bool = True

    def divisors(self, n: Dims) -> list[list[float]]:
        """Per dim, 1/count for each output position (avg pool; PyTorch's rule)."""
        tables = []
        for d in range(3):
            a, b = ((-self.pad_lo[d], n[d] + self.pad_hi[d]) if self.count_include_pad else (0, n[d]))
            row = []
            for p in range(self.out[d]):
                start = p * self.stride[d] - self.pad_lo[d]
                row.append(1.0 / (min(start + self.kernel[d], b) - max(start, a)))
            tables.append(row)
        return tables


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
    affine], any unused one may be null. Work items: (n, oc group, pooled d, pooled h).
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
        if self.aligned_groups:
            return (self.cin // self.groups) // VL
        return cblocks(self.cin)

    @property
    def ic_inner(self) -> int:
        """Input channels per block (the unrolled innermost reduction)."""
        return self.cin if self.in_plain else VL

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
        """Deterministic kernel name, e.g. fused_conv2d_relu_maxpool2d."""
        parts = ["fused", f"{'dwconv' if self.depthwise else 'conv'}{self.nd}d"]
        if self.epilogue.bias is False:
            parts.append("nobias")
        parts += self.epilogue.name_parts()
        if self.pool:
            parts.append(f"{self.pool.kind}pool{self.nd}d")
        return "_".join(parts)

    def tiling(self) -> tuple[int, int]:
        """(V, Tp): output-channel vectors and pooled output pixels per register tile.

        Minimises loads per FMA, (T + V) / (T * V) with T the conv pixels the
        tile computes, within 28 accumulators (of 32 zmm registers).
        """
        if self.depthwise:
            return 1, max(tp for tp in range(1, 25) if self.tile_pixels(tp) <= 24)
        best = None
        for v in (4, 3, 2, 1):
            if self.ob_per_group % v:
                continue
            for tp in range(1, 29):
                t = self.tile_pixels(tp)
                if t * v > 28:
                    break
                cost = (t + v) / (t * v)
                if best is None or cost < best[0]:
                    best = (cost, v, tp)
        return best[1], best[2]

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
