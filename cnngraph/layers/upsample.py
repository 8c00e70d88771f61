"""Resampling of the spatial dims (PyTorch's F.interpolate, ONNX's Resize): nearest and (bi/tri)linear,
by a scale or to a size, with PyTorch's align_corners and the coordinate mappings ONNX exporters
write. Separable: each output pixel along a dim reads one input pixel (nearest) or two with weights
(linear), from per-dim tables built once; so it is linear, and exact in the FC view.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, boolean, choice, fc_csr, number, pos_int, spatial_input
from .lowering import Resample

COORDINATES = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners")
ROUNDING = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


def _scales(v):
    conv = number(0.0, lo_open=True)
    if isinstance(v, (list, tuple)):
        if not v:
            raise LayerError("expected a positive number or a list of them, got []")
        return tuple(conv(x) for x in v)
    return conv(v)


def _sizes(v):
    if isinstance(v, (list, tuple)):
        if not v:
            raise LayerError("expected a positive integer or a list of them, got []")
        return tuple(pos_int(x) for x in v)
    return pos_int(v, "a positive integer or a list of them")


def source_coordinate(o: np.ndarray, n_in: int, n_out: int, scale: float, coordinates: str) -> np.ndarray:
    """Where output pixel o lies in the input along one dim (ONNX Resize's coordinate_transformation_mode;
    `scale` is the output/input ratio: the one given, else n_out / n_in).

    >>> source_coordinate(np.arange(4), 2, 4, 2.0, "half_pixel").tolist()
    [-0.25, 0.25, 0.75, 1.25]
    >>> source_coordinate(np.arange(4), 2, 4, 2.0, "align_corners").tolist()
    [0.0, 0.3333333333333333, 0.6666666666666666, 1.0]
    """
    o = np.asarray(o, np.float64)
    if coordinates == "asymmetric":
        return o / scale
    if coordinates == "align_corners":
        return o * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros_like(o)
    if coordinates == "pytorch_half_pixel" and n_out == 1:
        return np.zeros_like(o)
    return (o + 0.5) / scale - 0.5


def round_index(x: np.ndarray, rounding: str) -> np.ndarray:
    """ONNX's nearest_mode: floor, ceil, or round half down / up.

    >>> [round_index(np.array([0.5, 1.5, 2.25]), r).tolist() for r in ("round_prefer_floor", "round_prefer_ceil")]
    [[0.0, 1.0, 2.0], [1.0, 2.0, 2.0]]
    """
    if rounding == "floor":
        return np.floor(x)
    if rounding == "ceil":
        return np.ceil(x)
    if rounding == "round_prefer_floor":
        return np.ceil(x - 0.5)
    return np.floor(x + 0.5)


class Upsample(Layer):
    """`upsample: {scale: 2, mode: nearest}` or `{size: [64, 64], mode: linear, align_corners: false}`; alone, it doubles

    Nearest takes the input pixel at PyTorch's coordinate (floor of o / scale) unless `coordinates` and
    `nearest` say otherwise (ONNX's coordinate_transformation_mode and nearest_mode: PyTorch's nearest-exact
    is half_pixel with round_prefer_ceil); linear interpolates between the two neighbours along each dim
    (bilinear on 2D, trilinear on 3D), the coordinates half_pixel, or align_corners with `align_corners:
    true`. A scale gives floor(n * scale) outputs and maps coordinates with that scale (PyTorch's
    scale_factor, ONNX's scales); a size maps them with size / n.
    """

    kind = "upsample"
    category = Fusion.OPAQUE
    attrs = (
        Attr("scale", _scales, None, "output / input size, a number or one per spatial dim (default 2, unless `size`)"),
        Attr("size", _sizes, None, "output size, an int or one per spatial dim"),
        Attr("mode", choice("nearest", "linear"), "nearest", "'nearest' or 'linear' (bi/trilinear by the dims)"),
        Attr("align_corners", boolean, False, "linear: the corner pixels of input and output coincide (PyTorch)"),
        Attr("coordinates", choice(*COORDINATES), None, "ONNX's coordinate_transformation_mode (default: "
                                                           "PyTorch's for the mode)"),
        Attr("nearest", choice(*ROUNDING), None, "ONNX's nearest_mode (default: PyTorch's floor)"),
    )
    onnx_imports = ("Resize", "Upsample")
    examples = (({"scale": 2}, [(5, 7)]), ({"scale": 2, "mode": "linear"}, [(17, 5, 6)]),
                ({"size": [9, 4], "mode": "linear", "align_corners": True}, [(3, 5, 6)]),
                ({"scale": [1, 2, 1.5], "mode": "linear"}, [(4, 2, 3, 4)]),
                ({"scale": 3, "coordinates": "half_pixel", "nearest": "round_prefer_ceil"}, [(6, 4, 3)]),
                ({"size": 5, "coordinates": "half_pixel", "nearest": "round_prefer_floor"}, [(3, 7, 3)]),
                ({"scale": 0.5, "mode": "linear"}, [(16, 8, 9)]))

    def validate(self):
        if self.scale is not None and self.size is not None:
            raise LayerError("expected either 'scale' or 'size', got both", attr="size",
                             hint="e.g. 'upsample: {scale: 2}' or 'upsample: {size: [64, 64]}'")
        if self.mode == "nearest" and self.align_corners:
            raise LayerError("align_corners applies to mode 'linear' only (PyTorch refuses it for nearest)",
                             attr="align_corners", hint="use 'coordinates: align_corners' for ONNX's meaning")
        if self.mode == "linear" and self.nearest is not None:
            raise LayerError("'nearest' (the rounding) applies to mode 'nearest' only", attr="nearest")
        if self.align_corners and self.coordinates not in (None, "align_corners"):
            raise LayerError(f"align_corners: true contradicts coordinates: {self.coordinates}", attr="coordinates")

    # ---- geometry: per spatial dim, the output size and the scale coordinates use ----
    def geometry(self, in_shape):
        """Per spatial dim (input size, output size, scale)."""
        nd = spatial_input(self, in_shape)
        spatial = in_shape[1:]
        if self.size is None:
            scale = 2.0 if self.scale is None else self.scale
            sc = scale if isinstance(scale, tuple) else (scale,) * nd
            if len(sc) != nd:
                raise LayerError(f"attribute 'scale': expected 1 or {nd} values for a {nd}D input, got {len(sc)}",
                                 attr="scale")
            out = tuple(math.floor(n * s) for n, s in zip(spatial, sc))
            for i, (n, s, o) in enumerate(zip(spatial, sc, out)):
                if o < 1:
                    raise LayerError(f"scale {s:g} leaves no output pixel of the {n} along spatial dim {i}",
                                     attr="scale")
                if o > 1 << 20:
                    raise LayerError(f"scale {s:g} makes {o} pixels along spatial dim {i} (too large to be sane)",
                                     attr="scale")
            return tuple(zip(spatial, out, sc))
        size = self.size if isinstance(self.size, tuple) else (self.size,) * nd
        if len(size) != nd:
            raise LayerError(f"attribute 'size': expected 1 or {nd} values for a {nd}D input, got {len(size)}",
                             attr="size")
        return tuple((n, o, o / n) for n, o in zip(spatial, size))

    @property
    def mapping(self) -> tuple[str, str]:
        """(coordinates, rounding) with PyTorch's defaults resolved."""
        if self.coordinates is not None:
            coords = self.coordinates
        elif self.mode == "nearest":
            coords = "asymmetric"
        else:
            coords = "align_corners" if self.align_corners else "half_pixel"
        return coords, self.nearest or "floor"

    def tables(self, in_shape):
        """Per spatial dim, the taps: ((indices, weights), ...) over the output pixels; one tap for nearest,
        two for linear (indices clamped into the input, weights summing to 1)."""
        coords, rounding = self.mapping
        out = []
        for n, o, s in self.geometry(in_shape):
            x = source_coordinate(np.arange(o), n, o, s, coords)
            if self.mode == "nearest":
                idx = np.clip(round_index(x, rounding), 0, n - 1).astype(np.int64)
                out.append(((idx, np.ones(o)),))
                continue
            if o == n:  # PyTorch copies a dim whose size does not change: no neighbour is read (NaN stays put)
                out.append(((np.arange(n, dtype=np.int64), np.ones(o)),))
                continue
            x = np.clip(x, 0, n - 1)
            i0 = np.floor(x).astype(np.int64)
            i1 = np.minimum(i0 + 1, n - 1)
            w1 = x - i0
            out.append(((i0, 1 - w1), (i1, w1)))
        return out

    def lower(self, in_shapes, params):
        return Resample(tuple(tuple((tuple(int(v) for v in i), tuple(float(v) for v in w)) for i, w in dim)
                              for dim in self.tables(in_shapes[0])))

    def op_name(self, in_shapes):
        return f"upsample{spatial_input(self, in_shapes[0])}d"

    def infer_shape(self, in_shapes):
        return (in_shapes[0][0], *(o for _, o, _ in self.geometry(in_shapes[0])))

    def receptive_field(self, in_shapes, rfs):
        """Output pixels step 1 / scale input pixels; linear reads one more neighbour."""
        if rfs[0] is None:
            return None
        coords, _ = self.mapping
        out = []
        for (size, jump, start), (n, o, s) in zip(rfs[0], self.geometry(in_shapes[0])):
            x0 = float(source_coordinate(np.zeros(1), n, o, s, coords)[0])
            step = (n - 1) / (o - 1) if coords == "align_corners" and o > 1 else 1 / s
            if self.mode == "linear":
                out.append((size + jump, jump * step, start + (math.floor(max(x0, 0.0)) + 0.5) * jump))
            else:
                out.append((size, jump * step, start + max(x0, 0.0) * jump))
        return tuple(out)

    def reference(self, xs, params):
        """Separable: dim after dim, y = sum over the taps of weight * x[index] (a zero weight still reads
        its pixel: NaN there propagates, as in PyTorch)."""
        y = xs[0]
        for axis, taps in enumerate(self.tables(xs[0].shape[1:]), 2):
            shape = [1] * y.ndim
            shape[axis] = -1
            acc = None
            for idx, w in taps:
                term = np.take(y, idx, axis=axis)
                if len(taps) > 1:
                    term = term * w.reshape(shape).astype(y.dtype)
                acc = term if acc is None else acc + term
            y = acc
        return np.ascontiguousarray(y)

    # ---- FC view: linear (nearest a 0/1 selection): the Kronecker product of the per-dim maps ----
    def _dim_matrices(self, in_shape):
        import scipy.sparse as sp
        mats = []
        for (n, o, _), taps in zip(self.geometry(in_shape), self.tables(in_shape)):
            rows = np.concatenate([np.arange(o)] * len(taps))
            cols = np.concatenate([i for i, _ in taps])
            vals = np.concatenate([w for _, w in taps])
            m = sp.coo_matrix((vals, (rows, cols)), shape=(o, n)).tocsr()  # duplicates (clamped) summed
            m.eliminate_zeros()
            mats.append(m)
        return mats

    def fc_connections(self, in_shapes) -> int:
        return in_shapes[0][0] * math.prod(m.nnz for m in self._dim_matrices(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """kron(I_C, A_D, A_H, A_W): each output pixel the product of its per-dim weights.

        >>> Upsample.from_attrs({"scale": 2}).to_matrix([(1, 2)], {}).matrix.toarray()
        array([[1., 0.],
               [1., 0.],
               [0., 1.],
               [0., 1.]])
        """
        import scipy.sparse as sp
        m = sp.identity(in_shapes[0][0], format="csr")
        for d in self._dim_matrices(in_shapes[0]):
            m = sp.kron(m, d, format="csr")
        m.sort_indices()
        m = fc_csr(m.data, m.indices, m.indptr, m.shape)
        return Lowered(m, np.zeros(m.shape[0]), np.full(m.nnz, -1, np.int32), None, "linear")

    # ---- interop ----
    def torch_fn(self, torch, in_shapes, params):
        """F.interpolate where PyTorch has the same mapping: nearest (floor), nearest-exact, (bi/tri)linear
        with or without align_corners; None otherwise."""
        nd = spatial_input(self, in_shapes[0])
        coords, rounding = self.mapping
        if self.mode == "nearest":
            if (coords, rounding) == ("asymmetric", "floor"):
                mode = "nearest"
            elif (coords, rounding) == ("half_pixel", "round_prefer_ceil"):
                mode = "nearest-exact"
            else:
                return None
            corners = None
        else:
            if coords not in ("half_pixel", "align_corners"):
                return None
            mode, corners = ("linear", "bilinear", "trilinear")[nd - 1], coords == "align_corners"
        if self.size is not None:
            size = tuple(o for _, o, _ in self.geometry(in_shapes[0]))
            return lambda x: torch.nn.functional.interpolate(x, size=size, mode=mode, align_corners=corners)
        scale = tuple(s for _, _, s in self.geometry(in_shapes[0]))
        return lambda x: torch.nn.functional.interpolate(x, scale_factor=scale, mode=mode, align_corners=corners)

    def to_onnx(self, b, node, ins, weights):
        """Resize with the mapping spelled out; a size as PyTorch writes it: Concat(Shape(x)[:2], size)."""
        n = node.name
        coords, rounding = self.mapping
        attrs = {"mode": self.mode, "coordinate_transformation_mode": coords, "nearest_mode": rounding}
        if self.size is None:
            sc = [s for _, _, s in self.geometry(node.in_shapes[0])]
            scales = b.init(f"{n}.scales", np.array([1.0, 1.0, *sc], np.float32))
            return b.node("Resize", [ins[0], "", scales], n, n, **attrs)
        shape = b.node("Shape", [ins[0]], f"{n}/shape", f"{n}/shape")
        lead = b.node("Slice", [shape, b.init(f"{n}.zero", np.array([0], np.int64)),
                                b.init(f"{n}.two", np.array([2], np.int64))], f"{n}/batch_channels", f"{n}/batch_channels")
        size = b.init(f"{n}.size", np.array([o for _, o, _ in self.geometry(node.in_shapes[0])], np.int64))
        sizes = b.node("Concat", [lead, size], f"{n}/sizes", f"{n}/sizes", axis=0)
        return b.node("Resize", [ins[0], "", "", sizes], n, n, **attrs)

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        nd = len(x.shape) - 1
        if nd < 1:
            raise imp.fail(node, f"expected an input with spatial dims, got shape {x.shape}")
        mode = imp.attr(node, "mode", "nearest")
        if mode not in ("nearest", "linear"):
            raise imp.fail(node, f"mode '{mode}': cnngraph resamples with 'nearest' or 'linear' only")
        if node.op_type == "Upsample" or imp.opset < 11:  # opset 7-10: scales only, asymmetric coordinates
            coords, rounding = "asymmetric", "floor" if mode == "nearest" else None
            scales = imp.attr(node, "scales") if imp.opset < 9 else imp.c(node, 1, "scales")
            sizes = None
        else:
            coords = imp.attr(node, "coordinate_transformation_mode", "half_pixel")
            rounding = imp.attr(node, "nearest_mode", "round_prefer_floor") if mode == "nearest" else None
            if coords not in COORDINATES:
                raise imp.fail(node, f"coordinate_transformation_mode '{coords}': cnngraph maps coordinates with "
                                     f"{', '.join(COORDINATES)}")
            if imp.attr(node, "antialias", 0):
                raise imp.fail(node, "antialias=1: cnngraph resamples without an anti-aliasing filter")
            if imp.attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
                raise imp.fail(node, "keep_aspect_ratio_policy other than 'stretch' is not supported")
            scales = imp.c(node, 2, "scales", required=False)
            sizes = imp.batched(node, 3, "sizes") if len(node.input) > 3 and node.input[3] else None
            if scales is not None and np.size(scales) == 0:
                scales = None
        axes = imp.attr(node, "axes")
        rank = nd + 2
        axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
        attrs = {"mode": mode}
        if sizes is not None:
            full = [imp.BATCH, *x.shape]
            want = list(full)
            for a, v in zip(axes, [int(v) for v in np.reshape(sizes, -1)]):
                want[a] = v
            if imp.static_batch is not None and want[0] == imp.static_batch:  # a model with a fixed batch
                want[0] = imp.BATCH
            if want[:2] != full[:2]:
                raise imp.fail(node, f"resizes the batch or channel dim (to {want[:2]}); cnngraph resamples spatial "
                                     "dims only")
            attrs["size"] = _compact(want[2:])
        elif scales is not None:
            sc = [1.0] * rank
            for a, v in zip(axes, [float(v) for v in np.reshape(scales, -1)]):
                sc[a] = v
            if sc[:2] != [1.0, 1.0]:
                raise imp.fail(node, f"scales the batch or channel dim ({sc[:2]}); cnngraph resamples spatial "
                                     "dims only")
            lengths = [n * float(np.float32(s)) for n, s in zip(x.shape[1:], sc[2:])]
            if coords == "align_corners" and any(not v.is_integer() for v in lengths):
                # ONNX maps with the fractional length n * scale, PyTorch (and cnngraph) with the output size
                raise imp.fail(node, f"align_corners with scales {sc[2:]} that make fractional lengths "
                                     f"{[round(v, 4) for v in lengths]}: ONNX's coordinates then differ from "
                                     "PyTorch's; give sizes instead")
            attrs["scale"] = _compact([imp.f32(v) for v in sc[2:]])
        else:
            raise imp.fail(node, "gives neither scales nor sizes")
        default = "asymmetric" if mode == "nearest" else "half_pixel"
        if mode == "linear" and coords == "align_corners":
            attrs["align_corners"] = True
        elif coords != default:
            attrs["coordinates"] = coords
        if rounding not in (None, "floor"):
            attrs["nearest"] = rounding
        if (attrs.get("scale") or attrs.get("size")) in (1, 1.0) and sizes is None:  # a no-op
            return imp.alias(node, x)
        imp.add_layer(node, "upsample", attrs, [x.layer])
        return None


def _compact(v):
    """[2, 2] -> 2 (an int where whole); one value per dim stays a list where they differ."""
    v = [int(x) if float(x).is_integer() else x for x in v]
    return v[0] if len(set(v)) == 1 else v
