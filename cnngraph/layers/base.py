"""The layer protocol: declarative attributes, fusion categories, and the facets
every layer kind provides (shape, parameters, MACs, receptive field, numpy
reference, FC-matrix lowering).

Shapes never include the batch: `(C, *spatial)` or `(features,)`.
Reference functions take and return batched arrays `(N, C, *spatial)`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

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


def number(lo=None, hi=None, lo_open=False, allow_inf=False):
    """A number in [lo, hi] (or (lo, hi] with lo_open); never NaN, infinite only with allow_inf."""
    def conv(v):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise LayerError(f"expected a number, got {_show(v)}")
        if math.isnan(v) or (math.isinf(v) and not allow_inf):
            raise LayerError(f"expected a finite number, got {v}")
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
    n_inputs: ClassVar[int | None] = 1  # None: two or more (concat, add); 2: exactly two (sub, div)
    doc: ClassVar[str] = ""
    # what the generic tests run this kind on (tests/test_registry.py): (attributes, input shapes
    # without the batch), 1D/2D/3D and flat where the kind applies; every facet is checked on each
    examples: ClassVar[tuple] = ()
    # the parameter PyTorch models keep as a bare nn.Parameter named after the module holding it, where
    # the layer is no module of its own (ConvNeXt's `<block>.layer_scale`): weights.check also takes it
    # under the layer's own name
    torch_bare_param: ClassVar[str | None] = None

    def __init__(self, **values):
        for a in self.attrs:
            object.__setattr__(self, a.name, values[a.name])

    def __setattr__(self, key, value):
        raise AttributeError("layers are immutable")

    @classmethod
    def from_attrs(cls, raw: dict) -> Layer:
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

    # ---- the compiler's facet: the computation as data (see layers/lowering.py) ----
    def lower(self, in_shapes, params: dict):
        """This layer as a lowering value the compiler evaluates (a mechanism, never a name)."""
        raise LayerError(f"layer kind '{self.kind}' has no native lowering")

    def same_function(self, other, in_shape) -> bool:
        """Do these attributes compute the same function as `other`'s on this input? (Exact.)"""
        return self == other

    # ---- ONNX: export, and the operators (and patterns) it imports from ----
    onnx_op: ClassVar[str | None] = None  # the one ONNX operator this kind exports to and imports from, if simple
    onnx_attr_names: ClassVar[dict] = {}  # layer attribute -> ONNX attribute (simple kinds)
    onnx_imports: ClassVar[tuple[str, ...]] = ()  # ONNX operators whose nodes `from_onnx` may import
    onnx_patterns: ClassVar[tuple[str, ...]] = ()  # classmethods run on every node first: multi-node patterns
    onnx_hint: ClassVar[bool] = False  # record the spec's own attributes on the node (read back on import)
    onnx_channels_last_ops: ClassVar[tuple[str, ...]] = ()  # operators `onnx_from_channels_last` rewrites

    def to_onnx(self, b, node, ins: list[str], weights) -> str:
        """Emit this layer's ONNX nodes with builder `b` (`b.node`, `b.init`); returns the output
        tensor's name. The default writes the one operator `onnx_op` with `onnx_attr_names`."""
        if self.onnx_op is None:
            raise LayerError(f"layer kind '{self.kind}' has no ONNX export")
        attrs = {onnx: _onnx_value(getattr(self, ours)) for ours, onnx in self.onnx_attr_names.items()}
        return b.node(self.onnx_op, ins, node.name, node.name, **attrs)

    @classmethod
    def from_onnx(cls, imp, node) -> str | None:
        """Import ONNX `node` (one of `onnx_imports`) through importer `imp` (`imp.x`, `imp.c`, `imp.attr`,
        `imp.add_layer`, ...). Returns None when done, else why this kind does not take the node
        (another kind may). The default reads `onnx_op` with `onnx_attr_names`."""
        attrs = {}
        for ours, onnx in cls.onnx_attr_names.items():
            value = imp.attr(node, onnx)
            if value is not None:
                attrs[ours] = imp.f32(value) if isinstance(value, float) else value
        imp.add_layer(node, cls.kind, attrs, [imp.x(node).layer])
        return None

    @classmethod
    def onnx_from_channels_last(cls, imp, node, rank: int) -> list | None:
        """`node` (one of `onnx_channels_last_ops`), reading channels-last views of rank `rank` (PyTorch's
        x.permute(0, 2, 3, 1)), as channels-first ONNX nodes the walk imports: `imp.cf(name)` is a view's
        channels-first twin, `imp.channels_first_node` makes the node standing for `node`. None where
        this kind has no such rewrite (the island is then left as written); see
        `_Importer.channels_first`."""
        return None

    # ---- PyTorch: the second oracle ----
    def torch_fn(self, torch, in_shapes, params: dict):
        """A function of torch tensors (one per input) computing this layer with `torch.nn.functional`
        (`params`: name -> tensor), or None where PyTorch has no equivalent for these attributes."""
        return None

    def fc_rows(self, in_shapes, params, xs, g):
        """Rows times the FC matrix without building it where a kind can: (g @ M, g @ b, mode) for
        g (k x output size). This default builds `to_matrix`; window kinds override it."""
        lo = self.to_matrix(in_shapes, params, xs)
        return (lo.matrix.T @ g.T).T, g @ np.nan_to_num(lo.bias, neginf=0.0), lo.mode


def _onnx_value(v):
    return float(v) if isinstance(v, float) else v


def onnx_auto_pads(imp, node, spatial, k, s, d):
    """An ONNX node's `auto_pad`/`pads` -> ([(lo, hi)] per dim, whether it is exactly 'same')."""
    mode = imp.attr(node, "auto_pad", "NOTSET")
    nd = len(spatial)
    if mode in ("NOTSET", ""):
        p = list(imp.attr(node, "pads") or [0] * (2 * nd))
        if len(p) != 2 * nd:
            raise imp.fail(node, f"expected {2 * nd} pads, got {len(p)}")
        if any(v < 0 for v in p):
            raise imp.fail(node, f"negative pads {p} (cropping) are not supported")
        return [(p[i], p[i + nd]) for i in range(nd)], False
    if mode == "VALID":
        return [(0, 0)] * nd, False
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        if any(v < 1 for v in (*k, *s, *d)):
            raise imp.fail(node, f"auto_pad {mode} with kernel {list(k)}, strides {list(s)}, dilations {list(d)}: "
                                 f"expected positive values")
        out = [same_pads(n, kk, ss, dd) for n, kk, ss, dd in zip(spatial, k, s, d)]
        if mode == "SAME_LOWER":
            out = [(hi, lo) for lo, hi in out]
        return out, mode == "SAME_UPPER"
    raise imp.fail(node, f"unknown auto_pad '{mode}'")


def onnx_padding(pads):
    """[(lo, hi)] per dim -> the spec's simplest padding form."""
    if all(lo == hi for lo, hi in pads):
        return compact_list([lo for lo, _ in pads])
    return [[lo, hi] for lo, hi in pads]


def onnx_ints(imp, node, name, default, nd):
    """A list-of-positive-ints attribute (kernel_shape, strides, dilations) of length nd, checked."""
    v = imp.attr(node, name, default)
    if v is None:
        raise imp.fail(node, f"missing attribute '{name}'")
    v = [int(x) for x in v]
    if len(v) != nd or any(x < 1 for x in v):
        raise imp.fail(node, f"expected '{name}' of {nd} positive integers, got {v}")
    return v


def compact_list(v):
    """[3, 3] -> 3; [3, 1] stays a list (the spec's compact per-dim form).

    >>> compact_list([2, 2]), compact_list([1, 2])
    (2, [1, 2])
    """
    v = [int(x) for x in v]
    return v[0] if len(set(v)) == 1 else v


def flat_pads(pads) -> list[int]:
    """[(lo, hi), ...] -> ONNX order: all begins, then all ends."""
    return [int(lo) for lo, _ in pads] + [int(hi) for _, hi in pads]


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
    """U(-bound, bound) drawn directly in float32 (VGG-16's 138M weights in about a second)."""
    out = rng.random(shape, dtype=np.float32)
    out *= np.float32(2 * bound)
    out -= np.float32(bound)
    return out


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
    axes = ("L", "HW", "DHW")[nd - 1]
    where = " and ".join(f"the last {n} along {axes[i]}" for i, n in enumerate(lost) if n)
    return [f"stride {'x'.join(map(str, s))} does not tile the {'x'.join(map(str, in_shape[1:]))} input: "
            f"no window sees {where} (border rows/cols lost)"]


# ---- FC view: every layer as the sparse fully-connected matrix it is -------

FC_MODES = ("linear", "piecewise", "local")


@dataclass(frozen=True)
class Lowered:
    """One layer as an affine map of one sample (the FC view):
    `y.ravel() == matrix @ concat([x.ravel() for x in xs]) + bias`.

    `matrix`: scipy.sparse CSR, float64; rows = output elements (C-order, no batch),
    columns = the inputs' elements, input after input (a block matrix for concat/add).
    `bias`: float64, one per row.
    `tie`: same sparsity pattern as `matrix`, aligned with `matrix.data`: the flat index
    into parameter `tie_param` that each connection uses (or is derived from, for a folded
    batchnorm), -1 for fixed coefficients (pool divisors, selections, identities).
    `mode`: 'linear' (exact everywhere), 'piecewise' (exact on the linear region of the
    given input: relu, max-pool), 'local' (the tangent at the given input, exact only
    there: sigmoid, tanh, softmax, lrn).

    >>> import numpy as np
    >>> lo = fc_identity(3)
    >>> lo.matrix @ np.arange(3.0) + lo.bias
    array([0., 1., 2.])
    """

    matrix: Any
    bias: np.ndarray
    tie: np.ndarray
    tie_param: str | None = None
    mode: str = "linear"

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    @property
    def nbytes(self) -> int:
        m = self.matrix
        return m.data.nbytes + m.indices.nbytes + m.indptr.nbytes + self.bias.nbytes + self.tie.nbytes

    def tie_matrix(self):
        """`tie` as an int CSR matrix sharing `matrix`'s index arrays (stored -1 = fixed)."""
        import scipy.sparse as sp
        m = self.matrix
        return sp.csr_matrix((self.tie, m.indices, m.indptr), shape=m.shape, copy=False)


def fc_index_dtype(*sizes) -> type:
    """int32 where every index and count fits, else int64 (scipy wants one dtype for both)."""
    return np.int32 if max(sizes, default=0) < 2**31 - 1 else np.int64


def fc_csr(data, indices, indptr, shape):
    """A float64 CSR matrix over the given arrays without copying them (columns ascending per row)."""
    import scipy.sparse as sp
    it = fc_index_dtype(shape[0], shape[1], len(data))
    m = sp.csr_matrix((np.asarray(data, np.float64), np.asarray(indices).astype(it, copy=False),
                       np.asarray(indptr).astype(it, copy=False)), shape=tuple(shape), copy=False)
    m.has_sorted_indices = True
    return m


def fc_counts_indptr(counts) -> np.ndarray:
    """Row pointer of a CSR matrix with `counts` entries per row."""
    indptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr


def fc_identity(n: int, tie_param=None) -> Lowered:
    """The n x n identity (flatten, dropout, concat)."""
    idx = np.arange(n)
    return Lowered(fc_csr(np.ones(n), idx, np.arange(n + 1), (n, n)), np.zeros(n), np.full(n, -1, np.int32))


def fc_diagonal(coef, bias, tie=None, tie_param=None, mode="linear", keep_zeros=False) -> Lowered:
    """A diagonal map (activations, batchnorm); exact zeros on the diagonal are not stored
    unless `keep_zeros` (a parameter that happens to be 0 is still a connection)."""
    coef = np.asarray(coef, np.float64).ravel()
    n = coef.size
    stored = np.ones(n, bool) if keep_zeros else coef != 0
    keep = np.flatnonzero(stored)
    tie = np.full(keep.size, -1, np.int32) if tie is None else np.asarray(tie).ravel()[keep]
    m = fc_csr(coef[keep], keep, fc_counts_indptr(stored), (n, n))
    return Lowered(m, np.asarray(bias, np.float64).ravel(), tie.astype(fc_index_dtype(tie.size), copy=False),
                   tie_param, mode)


def fc_point(layer: Layer, in_shapes, xs) -> list[np.ndarray]:
    """The input(s) a piecewise-linear or local lowering is taken at, float64, one sample each."""
    if xs is None:
        raise LayerError(f"'{layer.kind}' is not linear: its matrix depends on the input, "
                         f"so to_matrix needs the input sample (xs)")
    out = []
    for x, shape in zip(xs, in_shapes):
        x = np.asarray(x, np.float64)
        if x.size != math.prod(shape):
            raise LayerError(f"expected an input sample of shape {tuple(shape)}, got {x.shape}")
        out.append(x.reshape(shape))
    return out


def window_taps(spatial, kernel, stride, dilation, pads, out_spatial):
    """For every output position and kernel tap (both C-order): the flat input position it
    reads and whether that is a real input pixel (not padding, not past a ceil-mode edge).

    Returns (index, valid), both (prod(out_spatial), prod(kernel)); built per dim and
    combined by broadcasting, so its cost is O(outputs x taps), never a loop over pixels.

    >>> idx, ok = window_taps((4,), (3,), (1,), (1,), ((1, 1),), (4,))
    >>> idx[ok.all(1)].tolist(), int(ok.sum())
    ([[0, 1, 2], [1, 2, 3]], 10)
    """
    idx = np.zeros((1, 1), np.int64)
    valid = np.ones((1, 1), bool)
    for n, k, s, d, (lo, _), o in zip(spatial, kernel, stride, dilation, pads, out_spatial):
        i = np.arange(o)[:, None] * s - lo + np.arange(k)[None, :] * d  # (o, k) input coordinate
        v = (i >= 0) & (i < n)
        po, pk = idx.shape
        idx = (idx[:, None, :, None] * n + i[None, :, None, :]).reshape(po * o, pk * k)
        valid = (valid[:, None, :, None] & v[None, :, None, :]).reshape(po * o, pk * k)
    return idx, valid


def window_count(spatial, kernel, stride, dilation, pads, out_spatial) -> int:
    """Number of (output position, tap) pairs that read a real input pixel, counted per dim.

    >>> window_count((227, 227), (11, 11), (4, 4), (1, 1), ((0, 0), (0, 0)), (55, 55))
    366025
    """
    total = 1
    for n, k, s, d, (lo, _), o in zip(spatial, kernel, stride, dilation, pads, out_spatial):
        i = np.arange(o)[:, None] * s - lo + np.arange(k)[None, :] * d
        total *= int(((i >= 0) & (i < n)).sum())
    return total


def window_matrix(in_shape, out_channels: int, groups: int, taps, weight=None, row_scale=None):
    """The CSR matrix of a windowed linear map, written straight into its final arrays
    (memory: 16 bytes per connection plus one output channel's pattern).

    Output channel `co` (group co // (out/groups)) reads the in/groups input channels of its
    group under every real tap. The coefficient is `weight[co, ci, tap]` (conv; tie = its flat
    index) or `row_scale[o]` per output position (average pool; tie = -1).
    Every output channel has the same pattern up to offsets (columns: its group's first
    input channel; ties: co * in/groups * taps), so it is built once and copied per channel.
    Returns (matrix, tie).
    """
    idx, valid = taps
    n_o, n_k = idx.shape
    cin, s_in = in_shape[0], math.prod(in_shape[1:])
    cg, og = cin // groups, out_channels // groups
    rows, cols = out_channels * n_o, cin * s_in
    per_row = valid.sum(1) * cg
    per_chan = int(per_row.sum())
    nnz = per_chan * out_channels
    indptr = fc_counts_indptr(np.tile(per_row, out_channels))
    it = fc_index_dtype(rows, cols, nnz)
    tt = fc_index_dtype(out_channels * cg * n_k) if weight is not None else np.int32
    # the pattern of output channel 0, rows in order, columns ascending (channel, then tap)
    shape = (n_o, cg, n_k)
    mask = np.broadcast_to(valid[:, None, :], shape)
    ci = np.arange(cg)
    pat_cols = (ci[None, :, None] * s_in + idx[:, None, :])[mask].astype(it)
    indices = np.empty(nnz, it)
    data = np.empty(nnz, np.float64)
    if weight is not None:
        w = np.asarray(weight, np.float64).ravel()
        pat_tie = np.broadcast_to((ci[:, None] * n_k + np.arange(n_k))[None], shape)[mask].astype(tt)
        tie = np.empty(nnz, tt)
    else:
        pat_data = np.broadcast_to(np.asarray(row_scale, np.float64).ravel()[:, None, None], shape)[mask]
        tie = np.full(nnz, -1, np.int32)
    for co in range(out_channels):  # a loop over channels (copies), never over pixels
        blk = slice(co * per_chan, (co + 1) * per_chan)
        np.add(pat_cols, it((co // og) * cg * s_in), out=indices[blk])
        if weight is not None:
            np.add(pat_tie, tt(co * cg * n_k), out=tie[blk])
            np.take(w, tie[blk], out=data[blk])
        else:
            data[blk] = pat_data
    return fc_csr(data, indices, indptr, (rows, cols)), tie


def window_argmax(x, taps, chunk: int = 1 << 22):
    """Per channel and output position, the flat input column of the window's maximum
    (the first one on ties), or -1 where the window holds no real pixel. x: (C, *spatial)."""
    idx, valid = taps
    c_n = x.shape[0]
    xf = np.asarray(x, np.float64).reshape(c_n, -1)
    safe = np.where(valid, idx, 0)
    out = np.empty((c_n, idx.shape[0]), np.int64)
    step = max(1, chunk // idx.size)
    for c0 in range(0, c_n, step):
        vals = np.where(valid, xf[c0:c0 + step][:, safe], -np.inf)  # (nc, O, K)
        best = vals.argmax(-1)
        col = np.take_along_axis(np.broadcast_to(safe, vals.shape), best[..., None], -1)[..., 0]
        chans = np.arange(c0, c0 + vals.shape[0])[:, None]
        any_real = np.take_along_axis(np.broadcast_to(valid, vals.shape), best[..., None], -1)[..., 0]
        out[c0:c0 + step] = np.where(any_real, chans * xf.shape[1] + col, -1)
    return out.ravel()


def fc_selection(cols, n_cols: int, bias_missing=-np.inf) -> Lowered:
    """Row i copies input column cols[i]; rows with cols[i] < 0 are empty, their value is
    `bias_missing` (max-pool over a window of padding only: -inf, as in the reference)."""
    cols = np.asarray(cols, np.int64)
    has = cols >= 0
    m = fc_csr(np.ones(int(has.sum())), cols[has], fc_counts_indptr(has), (cols.size, n_cols))
    bias = np.where(has, 0.0, bias_missing)
    return Lowered(m, bias, np.full(m.nnz, -1, np.int32), None, "piecewise")
