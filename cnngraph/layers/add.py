"""Elementwise sum of branches (ResNet's shortcut merge)."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Fusion, Layer, Lowered, fc_csr
from .concat import largest_rf
from .lowering import Merge


class Add(Layer):
    """`add: {from: [a, b]}`: all inputs must have the same shape."""

    kind = "add"
    category = Fusion.MERGE
    n_inputs = None
    onnx_imports = ("Add", "Sum")
    examples = (({}, [(20, 7), (20, 7)]), ({}, [(5, 6, 7), (5, 6, 7), (5, 6, 7)]), ({}, [(3, 2, 3, 4), (3, 2, 3, 4)]),
                ({}, [(9,), (9,)]))

    def to_onnx(self, b, node, ins, weights):
        return b.node("Add" if len(ins) == 2 else "Sum", ins, node.name, node.name)

    def torch_fn(self, torch, in_shapes, params):
        return lambda *xs: torch.stack(xs).sum(0)

    @classmethod
    def from_onnx(cls, imp, node):
        """Sums of activations; an activation plus a constant is a per-channel affine (batchnorm's)."""
        ins = [n for n in node.input if n]
        if node.op_type == "Add" and not all(n in imp.live for n in ins):
            return "adds a constant"
        xs = [imp.x(node, i) for i, n in enumerate(node.input) if n]
        if len(xs) == 1:
            return imp.alias(node, xs[0])
        if len({x.shape for x in xs}) != 1:
            raise imp.fail(node, f"adds activations of shapes {[x.shape for x in xs]}; cnngraph's add needs "
                                 "equal shapes (no broadcasting)")
        imp.add_layer(node, "add", {}, [x.layer for x in xs])
        return None

    def infer_shape(self, in_shapes):
        first = tuple(in_shapes[0])
        for s in in_shapes[1:]:
            if tuple(s) != first:
                hint = "the shortcut needs a 1x1 projection" if len(s) == len(first) else None
                raise LayerError(f"expected inputs of equal shape, got "
                                 f"{', '.join(str(tuple(x)) for x in in_shapes)}", hint=hint)
        return first

    def receptive_field(self, in_shapes, rfs):
        return largest_rf(rfs)

    def lower(self, in_shapes, params):
        return Merge(self)

    def combine(self, m, a, b):
        """Two operands to one, in the emitters' vector math (see layers/lowering.py)."""
        return m.add(a, b)

    def reference(self, xs, params):
        y = xs[0].copy()
        for x in xs[1:]:
            y += x
        return y

    # ---- FC view: the block matrix [I I ... I] over the inputs ----
    def fc_connections(self, in_shapes) -> int:
        return sum(int(np.prod(s)) for s in in_shapes)

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """Row r sums element r of every input: columns r, n + r, 2n + r, ...

        >>> Add().to_matrix([(2,), (2,)], {}).matrix.toarray()
        array([[1., 0., 1., 0.],
               [0., 1., 0., 1.]])
        """
        n, k = int(np.prod(in_shapes[0])), len(in_shapes)
        cols = np.arange(n)[:, None] + np.arange(k)[None, :] * n
        m = fc_csr(np.ones(n * k), cols.ravel(), np.arange(n + 1) * k, (n, n * k))
        return Lowered(m, np.zeros(n), np.full(n * k, -1, np.int32), None, "linear")
