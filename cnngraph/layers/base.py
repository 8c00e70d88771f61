"""The layer protocol: declarative attributes, fusion categories, and the facets
every layer kind provides (shape, parameters, MACs, receptive field, numpy
reference, FC-matrix lowering).

Shapes never include the batch: `(C, *spatial)` or `(features,)`.
Reference functions take and return batched arrays `(N, C, *spatial)`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import LayerError, did_you_mean
from ..shapes import out_size, same_pads, unseen

Shape = tuple  # (C, *spatial) without batch
# One spatial dim of a receptive field: window size, jump (input pixels between
# adjacent outputs) and the input coordinate of the first output's window centre.
RFDim = tuple  # (size, jump, start)

MAX_SIZE = 1 << 20  # per attribute value: larger is not a sane network
MAX_ELEMENTS = 1 << 32  # per tensor without the batch


class Fusion(enum.Enum):
    """How the fusion planner may treat a layer (declared by each layer kind)."""

    ANCHOR = "anchor"  # owns a loop nest (conv, linear); epilogues fuse into it
    ELEMWISE = "elemwise"  # per-element map: joins the producer's epilogue
    POOL = "pool"  # windowed reduction: joins a conv's epilogue, else its own kernel
    FOLD = "fold"  # affine per channel (batchnorm): folded into the preceding anchor
    MERGE = "merge"  # elementwise add of branches: fused into one operand's producer
    CONCAT = "concat"  # written in place: each input writes its own channel slice
    FREE = "free"  # no code at all (flatten, dropout)
    OPAQUE = "opaque"  # its own kernel, nothing fuses into it (LRN, softmax, pad)


REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """A declared attribute: name, converter (raises LayerError), default, one-line doc."""

    name: str
    convert: Callable[[Any], Any]
    default: Any = REQUIRED
    doc: str = ""


# ---- attribute converters: each says "expected X, got Y" -------------------

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _show(v) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def pos_int(v, what="a positive integer", lo=1):
    if not _is_int(v):
        raise LayerError(f"expected {what}, got {_show(v)}")
    if v < lo:
        raise LayerError(f"expected {what}, got {v}")
    if v > MAX_SIZE:
        raise LayerError(f"expected {what} of at most {MAX_SIZE}, got {v} (too large to be sane)")
    return int(v)


def nonneg_int(v):
    return pos_int(v, "a non-negative integer", lo=0)


def ints(lo: int = 1):
    """An int, or a list of ints (one per spatial dim)."""
    what = "a positive integer" if lo == 1 else "a non-negative integer"

    def conv(v):
        if isinstance(v, (list, tuple)):
            if not v:
                raise LayerError(f"expected {what} or a list of them, got []")
            return tuple(pos_int(x, what, lo) for x in v)
        return pos_int(v, f"{what} or a list of them", lo)

    return conv


def padding(v):
    """int | [per dim] | [[lo, hi] per dim] | 'same' | 'valid'."""
    if isinstance(v, str):
        if v in ("same", "valid"):
            return v
        raise LayerError(f"expected an integer, a list, 'same' or 'valid', got {_show(v)}")
    if isinstance(v, (list, tuple)):
        if not v:
            raise LayerError("expected an integer, a list, 'same' or 'valid', got []")
        out = []
        for x in v:
            if isinstance(x, (list, tuple)):
                if len(x) != 2:
                    raise LayerError(f"expected a [lo, hi] pair of non-negative integers, got {list(x)}")
                out.append((nonneg_int(x[0]), nonneg_int(x[1])))
            else:
                out.append(nonneg_int(x))
        return tuple(out)
    return nonneg_int(v)


def boolean(v):
    if not isinstance(v, bool):
        raise LayerError(f"expected true or false, got {_show(v)}")
    return v


def number(lo=None, hi=None, lo_open=False):
    def conv(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise LayerError(f"expected a number, got {_show(v)}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise LayerError(f"expected a number {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None and v > hi:
            raise LayerError(f"expected a number <= {hi}, got {v}")
        return float(v)

    return conv


def choice(*options):
    def conv(v):
        if v not in options:
            hint = did_you_mean(v, options) if isinstance(v, str) else None
            raise LayerError(f"expected one of {', '.join(map(str, options))}, got {_show(v)}", hint=hint)
        return v

    return conv


# ---- the layer base class ---------------------------------------------------

class Layer:
    """Base of every layer kind. Subclasses set the class variables and override facets.

    >>> from cnngraph.layers import make
    >>> conv = make("conv", {"out": 8, "kernel": 3, "padding": 1})
    >>> conv.infer_shape([(3, 32, 32)])
    (8, 32, 32)
    """

    kind: ClassVar[str]
    attrs: ClassVar[tuple[Attr, ...]] = ()
    category: ClassVar[Fusion] = Fusion.OPAQUE
    n_inputs: ClassVar[int | None] = 1  # None: two or more (concat, add)
    doc: ClassVar[str] = ""

    def __init__(self, **values):
        for a in self.attrs:
            object.__setattr__(self, a.name, values[a.name])

    def __setattr__(self, key, value):
        raise AttributeError("layers are immutable")

    @classmethod
    def from_attrs(cls, raw: dict) -> "Layer":
        """Validate and default the attributes of a spec entry."""
        known = {a.name: a for a in cls.attrs}
        for key in raw:
            if key not in known:
                hint = did_you_mean(key, known)
                exp = ", ".join(known) or "no attributes"
                raise LayerError(f"unknown attribute '{key}' (expected {exp})", attr=key, hint=hint)
        values = {}
        for a in cls.attrs:
            if a.name in raw and raw[a.name] is not None:
                try:
                    values[a.name] = a.convert(raw[a.name])
                except LayerError as e:
                    raise LayerError(f"attribute '{a.name}': {e.msg}", attr=a.name, hint=e.hint) from None
            elif a.default is REQUIRED:
                raise LayerError(f"missing required attribute '{a.name}' ({a.doc})", attr=a.name)
            else:
                values[a.name] = a.default
        layer = cls(**values)
        layer.validate()
        return layer

    def validate(self) -> None:
        """Cross-attribute checks that need no input shape."""

    def values(self) -> dict:
        return {a.name: getattr(self, a.name) for a in self.attrs}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.values().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.values() == other.values()

    def __hash__(self):
        return hash((self.kind, tuple(self.values().items())))

    # ---- facets (shapes exclude the batch) ----
    def op_name(self, in_shapes) -> str:
        """Display name, e.g. 'conv2d' for a conv on a 2D input."""
        return self.kind

    def infer_shape(self, in_shapes: list[Shape]) -> Shape:
        return tuple(in_shapes[0])

    def param_shapes(self, in_shapes) -> dict[str, Shape]:
        """Trainable parameters, PyTorch names and layouts."""
        return {}

    def buffer_shapes(self, in_shapes) -> dict[str, Shape]:
        """Non-trainable state (batchnorm running statistics)."""
        return {}

    def macs(self, in_shapes, out_shape) -> int:
        """Multiply-accumulates per sample (conv and linear only, bias excluded)."""
        return 0

    def receptive_field(self, in_shapes, rfs: list):
        """Map the inputs' receptive fields (tuples of RFDim, or None) to the output's."""
        return rfs[0]

    def init_params(self, in_shapes, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's default initialisation for this layer's parameters and buffers."""
        return {}

    def reference(self, xs: list[np.ndarray], params: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def warnings(self, in_shapes) -> list[str]:
        """Non-fatal remarks (e.g. border pixels no window sees)."""
        return []


# ---- shared helpers for windowed layers (conv, pools, pad) -----------------

def per_dim(layer: Layer, name: str, nd: int) -> tuple:
    """Expand an int-or-list attribute to one value per spatial dim."""
    v = getattr(layer, name)
    if isinstance(v, tuple):
        if len(v) != nd:
            raise LayerError(f"attribute '{name}': expected 1 or {nd} values for a {nd}D input, "
                             f"got {len(v)}", attr=name)
        return v
    return (v,) * nd


def resolve_pads(layer: Layer, spatial, kernel, stride, dilation) -> tuple[tuple[int, int], ...]:
    """The `padding` attribute as (lo, hi) per spatial dim for this input."""
    p, nd = layer.padding, len(spatial)
    if p == "valid":
        return ((0, 0),) * nd
    if p == "same":
        return tuple(same_pads(n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation))
    if isinstance(p, tuple):
        if len(p) == 2 * nd and nd > 1 and all(_is_int(x) for x in p):
            # ONNX order: all begins then all ends
            return tuple((p[i], p[i + nd]) for i in range(nd))
        if len(p) != nd:
            raise LayerError(f"attribute 'padding': expected 1 or {nd} entries for a {nd}D input, "
                             f"got {len(p)}", attr="padding")
        return tuple(x if isinstance(x, tuple) else (x, x) for x in p)
    return ((p, p),) * nd


def spatial_input(layer: Layer, in_shape, lo=1, hi=3) -> int:
    """Number of spatial dims, checking the input is (C, *spatial) with lo..hi spatial dims."""
    nd = len(in_shape) - 1
    if not lo <= nd <= hi:
        raise LayerError(f"expected an input with {lo} to {hi} spatial dims (C, *spatial), "
                         f"got shape {tuple(in_shape)}",
                         hint="add a flatten only before linear layers" if nd == 0 else None) from None
    return nd


def window_rf(rf, kernel, stride, dilation, pads):
    """Receptive field through a windowed op (conv, pool)."""
    if rf is None:
        return None
    out = []
    for (size, jump, start), k, s, d, (lo, _) in zip(rf, kernel, stride, dilation, pads):
        out.append((size + (k - 1) * d * jump, jump * s, start + ((k - 1) * d / 2 - lo) * jump))
    return tuple(out)


def windows(xp: np.ndarray, kernel, stride, dilation, out_spatial):
    """Yield, per kernel offset, the strided view of padded `xp` (N, C, *sp) under that tap."""
    for offs in np.ndindex(*kernel):
        idx = [slice(None), slice(None)]
        for o, s, d, n in zip(offs, stride, dilation, out_spatial):
            idx.append(slice(o * d, o * d + s * (n - 1) + 1, s))
        yield offs, xp[tuple(idx)]


def check_windows(spatial, kernel, stride, dilation, pads, ceil_mode=False) -> tuple[int, ...]:
    """Output spatial dims; raise a clear error where the kernel does not fit."""
    out = []
    for i, (n, k, s, d, (lo, hi)) in enumerate(zip(spatial, kernel, stride, dilation, pads)):
        o = out_size(n, k, s, lo, hi, d, ceil_mode)
        if o < 1:
            raise LayerError(f"kernel {k} (dilation {d}, extent {d * (k - 1) + 1}) is larger than the "
                             f"padded input {n + lo + hi} along spatial dim {i}",
                             attr="kernel", hint="reduce the kernel or add padding")
        out.append(o)
    return tuple(out)


def uniform(rng, bound, shape):
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def fan_in_bound(fan_in: int) -> float:
    """PyTorch's default (kaiming_uniform with a=sqrt(5)) bound for weights and biases."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def unseen_warnings(layer, in_shape, geometry, out_shape) -> list[str]:
    """Warn where the stride leaves border rows/cols that no window ever sees."""
    nd, k, s, d, pads = geometry
    lost = [unseen(n, kk, ss, lo, hi, dd, o)
            for n, kk, ss, dd, (lo, hi), o in zip(in_shape[1:], k, s, d, pads, out_shape[1:])]
    if not any(lost):
        return []
    where = ", ".join(f"{n} along spatial dim {i}" for i, n in enumerate(lost) if n)
    return [f"stride {'x'.join(map(str, s))} does not tile the {'x'.join(map(str, in_shape[1:]))} input: "
            f"no window sees the last {where} ({sum(lost)} row(s)/col(s) lost)"]
