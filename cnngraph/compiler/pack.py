"""Weight packing (once, at compile time) and layout conversions used by tests.

Packed layouts match the emitters' loads exactly:

* conv: [oc group][input block][kd][kh][kw][input channel][V][16], zeros where
  a (group-unaligned) channel pair is not connected or is padding; a bf16 conv reads
  [input channel pair][V][16] words of two bf16 (`_pairs`);
* depthwise: [channel block][kd][kh][kw][16];
* linear: see `pack_linear`.
"""

from __future__ import annotations

import numpy as np

from dataclasses import replace

from .kernels import VL, ConvKernel, cblocks
from .plan import Plan, WeightArg, aligned


def as3d(shape_tail: tuple) -> tuple:
    """Spatial dims padded in front with ones to (D, H, W)."""
    return (1,) * (3 - len(shape_tail)) + tuple(shape_tail)


def pad_channels(v: np.ndarray | None, c: int) -> np.ndarray:
    """A per-channel vector zero-padded to whole blocks (zeros when v is None)."""
    out = np.zeros(cblocks(c) * VL, np.float32)
    if v is not None:
        out[:c] = v
    return out


def bf16_bits(a) -> np.ndarray:
    """float32 values rounded to bf16 (round to nearest even; NaN stays a quiet NaN), as uint16 bits.
    Done in chunks, so the temporaries stay small next to a large weight.

    >>> bf16_bits(np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.5, np.inf], np.float32)).tolist()
    [16256, 16256, 16258, 49184, 32640]
    """
    a = np.ascontiguousarray(a, np.float32)
    flat, out = a.reshape(-1), np.empty(a.size, np.uint16)
    for i in range(0, flat.size, 1 << 22):
        x = flat[i:i + (1 << 22)]
        u = x.view(np.uint32)
        r = (u >> 16) & 1
        r += 0x7FFF
        r += u  # wraps around only for NaNs, which are replaced below
        r >>= 16
        o = out[i:i + (1 << 22)]
        o[...] = r
        nan = np.isnan(x)
        o[nan] = (u[nan] >> 16) | 0x40
    return out.reshape(a.shape)


def bf16_round(a) -> np.ndarray:
    """float32 values rounded to bf16 and back (what a bf16 tensor holds).

    >>> bf16_round(np.array([1 + 2**-9, 3.14159], np.float32)).tolist()
    [1.0, 3.140625]
    """
    return (bf16_bits(a).astype(np.uint32) << 16).view(np.float32).reshape(np.shape(a))


def _pairs(packed: np.ndarray) -> np.ndarray:
    """A packed conv weight (..., ici, V, 16) as bf16 pairs of input channels (..., ici/2, V, 16) in
    float32 words: the even channel in the low half, as `vdpbf16ps` reads a pair; an odd channel count
    gets a zero weight for the padding lane it pairs with."""
    *lead, ici, v, lanes = packed.shape
    if ici % 2:
        packed = np.concatenate([packed, np.zeros((*lead, 1, v, lanes), packed.dtype)], axis=-3)
        ici += 1
    p = np.moveaxis(packed.reshape(*lead, ici // 2, 2, v, lanes), -3, -1)
    return np.ascontiguousarray(bf16_bits(p)).view(np.uint32).view(np.float32).reshape(*lead, ici // 2, v, lanes)


def pack_linear(k, packed: np.ndarray) -> np.ndarray:
    """A linear layer's weights, packed [output block][fin][16] when lowered, in bf16 pairs
    [output block][fin / 2][16] for a bf16 kernel."""
    if k.dtype != "bf16":
        return packed
    ob, fin, lanes = packed.shape
    return _pairs(packed.reshape(ob, fin, 1, lanes)).reshape(ob, -1, lanes)


def pack_conv(k: ConvKernel, weight: np.ndarray) -> np.ndarray:
    """Pack a (Cout, Cin/groups, *kernel) weight for kernel `k` (in bf16 pairs for a bf16 conv)."""
    packed = _pack_conv(k, weight)
    return _pairs(packed) if k.dtype == "bf16" else packed


def _pack_conv(k: ConvKernel, weight: np.ndarray) -> np.ndarray:
    kd, kh, kw = k.kernel
    cout, cin, g = k.cout, k.cin, k.groups
    w = np.asarray(weight, np.float32).reshape(cout, cin // g, kd, kh, kw)
    ob = k.ob
    if k.depthwise:
        out = np.zeros((ob * VL, kd, kh, kw), np.float32)
        out[:cout] = w[:, 0]
        return np.ascontiguousarray(out.reshape(ob, VL, kd, kh, kw).transpose(0, 2, 3, 4, 1))
    ici = k.ic_inner
    cpad = cin if k.in_plain else cblocks(cin) * VL
    dense = np.zeros((ob * VL, cpad, kd, kh, kw), np.float32)
    cin_g, cout_g = cin // g, cout // g
    if g == 1:
        dense[:cout, :cin] = w
    else:
        rows = np.arange(cout)[:, None]
        cols = (np.arange(cout) // cout_g * cin_g)[:, None] + np.arange(cin_g)[None, :]
        dense[rows, cols] = w
    V = k.schedule.v
    icb = k.icb_per_group
    og = ob // V
    if g == 1 or k.in_plain:  # every output group reads all input blocks
        sub = dense[:, :icb * ici].reshape(og, V, VL, icb, ici, kd, kh, kw)
        return np.ascontiguousarray(sub.transpose(0, 3, 5, 6, 7, 4, 1, 2))
    groups = []
    for o in range(og):  # each output group reads its band of input blocks
        icb0 = k.first_icb(o)
        sub = dense[o * V * VL:(o + 1) * V * VL, icb0 * ici:(icb0 + icb) * ici]
        groups.append(sub.reshape(V, VL, icb, ici, kd, kh, kw).transpose(2, 4, 5, 6, 3, 0, 1))
    return np.ascontiguousarray(np.stack(groups))


def packed_bytes(k, name: str, array) -> int:
    """Bytes packing argument `name` of kernel `k` allocates (its dense intermediate included; in bf16
    also the f32 copy of the pairs and their 16-bit result)."""
    if isinstance(k, ConvKernel) and name == "weights" and not k.depthwise:
        cpad = k.cin if k.in_plain else cblocks(k.cin) * VL
        elements = k.ob * VL * cpad * k.kernel[0] * k.kernel[1] * k.kernel[2]
    else:
        elements = np.asarray(array).size
    pairs = name == "weights" and getattr(k, "dtype", "f32") == "bf16"
    return (2 * 4 + (4 + 2 if pairs else 0)) * elements


def pack(plan: Plan) -> Plan:
    """Plan whose weights are packed for the scheduled kernels that read them, 64-byte aligned;
    refused, naming the bytes, before anything is allocated where that would not fit."""
    from .runtime import CompileError, format_bytes, memory_limit
    need = 0
    for s in plan.steps:
        for name, a in s.args:
            if isinstance(a, WeightArg):
                need += packed_bytes(s.kernel, name, plan.weights[a.index].array)
    if need > memory_limit():
        raise CompileError(f"packing the weights of '{plan.graph.name}' needs {format_bytes(need)} ({need:,} bytes), "
                           f"more than the {format_bytes(memory_limit())} this machine allows (CNNGRAPH_MAX_BYTES)")
    packed = list(plan.weights)
    for s in plan.steps:
        for _, a in s.args:
            if isinstance(a, WeightArg) and packed[a.index].packer is not None:
                packed[a.index] = replace(packed[a.index], array=packed[a.index].packer(s.kernel, packed[a.index].array),
                                          packer=None)
    return replace(plan, weights=tuple(aligned(w.array) for w in packed))


def to_blocked(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N, C/16, D, H, W, 16), zero-padded channels.

    >>> x = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    >>> to_blocked(x).shape, bool((from_blocked(to_blocked(x), 3, (5,)) == x).all())
    ((2, 1, 1, 1, 5, 16), True)
    """
    n, c = x.shape[:2]
    d, h, w = as3d(x.shape[2:])
    cb = cblocks(c)
    out = np.zeros((n, cb * VL, d, h, w), np.float32)
    out[:, :c] = x.reshape(n, c, d, h, w)
    return np.ascontiguousarray(out.reshape(n, cb, VL, d, h, w).transpose(0, 1, 3, 4, 5, 2))


def from_blocked(xb: np.ndarray, c: int, spatial: tuple) -> np.ndarray:
    """Inverse of `to_blocked` for a tensor of c channels and the given spatial dims."""
    n, cb, d, h, w, _ = xb.shape
    x = xb.transpose(0, 1, 5, 2, 3, 4).reshape(n, cb * VL, d, h, w)[:, :c]
    return np.ascontiguousarray(x.reshape(n, c, *spatial))
