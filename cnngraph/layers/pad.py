"""Explicit constant padding of the spatial dims."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, fc_selection, number, padding, resolve_pads, spatial_input
from .lowering import ConstantPad


class Pad(Layer):
    """`pad: {padding: [[0, 1], [0, 1]], value: 0}`: same padding forms as conv, except 'same'."""

    kind = "pad"
    category = Fusion.OPAQUE
    onnx_imports = ("Pad",)
    examples = (({"padding": [[1, 2]], "value": 0.5}, [(5, 7)]), ({"padding": 1}, [(17, 4, 5)]),
                ({"padding": [[0, 1], [2, 0], [1, 1]], "value": -1.0}, [(3, 2, 3, 4)]))

    def to_onnx(self, b, node, ins, weights):
        pads = self.pads(node.in_shapes[0])
        flat = [0, 0] + [lo for lo, _ in pads] + [0, 0] + [hi for _, hi in pads]
        pname = b.init(f"{node.name}.pads", np.array(flat, np.int64))
        vname = b.init(f"{node.name}.value", np.array(self.value, np.float32))
        return b.node("Pad", [ins[0], pname, vname], node.name, node.name, mode="constant")

    def torch_fn(self, torch, in_shapes, params):
        sides = [p for lo_hi in reversed(self.pads(in_shapes[0])) for p in lo_hi]
        return lambda x: torch.nn.functional.pad(x, sides, value=self.value)

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        r = len(x.shape) + 1
        mode = imp.attr(node, "mode", "constant")
        if mode != "constant":
            raise imp.fail(node, f"mode '{mode}': cnngraph pads with a constant only")
        if imp.opset < 11:
            pads = list(imp.attr(node, "pads") or [])
            value = float(imp.attr(node, "value", 0.0))
        else:
            pads = [int(v) for v in imp.c(node, 1, "pads").reshape(-1)]
            v = imp.c(node, 2, "constant_value", required=False)
            value = float(np.asarray(v).reshape(-1)[0]) if v is not None and np.size(v) else 0.0
        axes = imp.c(node, 3, "axes", required=False)
        axes = list(range(r)) if axes is None else [int(a) + r if a < 0 else int(a) for a in np.reshape(axes, -1)]
        if len(pads) != 2 * len(axes) or any(not 0 <= a < r for a in axes):
            raise imp.fail(node, f"expected {2 * len(axes)} pads for axes {axes} of a rank-{r} input, got {len(pads)}")
        full = [(0, 0)] * r
        for i, a in enumerate(axes):
            full[a] = (pads[i], pads[i + len(axes)])
        if any(lo < 0 or hi < 0 for lo, hi in full):
            raise imp.fail(node, f"negative pads {pads} (cropping) are not supported")
        if full[0] != (0, 0) or full[1] != (0, 0):
            raise imp.fail(node, "pads the batch or channel dim; cnngraph pads spatial dims only")
        if all(p == (0, 0) for p in full):
            return imp.alias(node, x)
        imp.add_layer(node, "pad", {"padding": [list(p) for p in full[2:]], "value": imp.f32(value)}, [x.layer])
        return None
    attrs = (Attr("padding", padding, doc="an int, one per dim, or [lo, hi] per dim"),
             Attr("value", number(allow_inf=True), 0.0, "the fill (may be -inf: a max-pool's padding)"))

    def validate(self):
        if self.padding == "same":  # no window, so 'same' would silently mean no padding
            raise LayerError("attribute 'padding': expected an integer, a list or 'valid', got 'same'",
                             attr="padding", hint="'same' needs a kernel and stride; give the pads explicitly")

    def pads(self, in_shape):
        nd = spatial_input(self, in_shape)
        one = (1,) * nd
        return resolve_pads(self, in_shape[1:], one, one, one)

    def infer_shape(self, in_shapes):
        return (in_shapes[0][0], *(n + lo + hi for n, (lo, hi) in zip(in_shapes[0][1:], self.pads(in_shapes[0]))))

    def receptive_field(self, in_shapes, rfs):
        if rfs[0] is None:
            return None
        return tuple((size, jump, start - lo * jump) for (size, jump, start), (lo, _) in
                     zip(rfs[0], self.pads(in_shapes[0])))

    def lower(self, in_shapes, params):
        return ConstantPad(self.pads(in_shapes[0]), float(self.value))

    def reference(self, xs, params):
        x = xs[0]
        return np.pad(x, [(0, 0), (0, 0), *self.pads(x.shape[1:])], constant_values=self.value)

    # ---- FC view: a 0/1 selection; padded rows are empty with bias `value` ----
    def fc_connections(self, in_shapes) -> int:
        return int(np.prod(in_shapes[0]))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        shape = tuple(in_shapes[0])
        src = np.pad(np.arange(int(np.prod(shape))).reshape(shape), [(0, 0), *self.pads(shape)],
                     constant_values=-1)
        sel = fc_selection(src.ravel(), int(np.prod(shape)), bias_missing=self.value)
        return Lowered(sel.matrix, sel.bias, sel.tie, None, "linear")
