"""Elementwise sum of branches (ResNet's shortcut merge), broadcasting like mul, sub and div."""

from __future__ import annotations

import numpy as np

from .base import Fusion, Layer, Lowered, fc_csr
from .binary import broadcast_columns, broadcast_rf, broadcast_shape
from .lowering import Merge


class Add(Layer):
    """`add: {from: [a, b]}`: the sum of two or more inputs whose shapes broadcast (equal, or 1 along a dim)."""

    kind = "add"
    category = Fusion.MERGE
    n_inputs = None
    onnx_imports = ("Add", "Sum")
    examples = (({}, [(20, 7), (20, 7)]), ({}, [(5, 6, 7), (5, 6, 7), (5, 6, 7)]), ({}, [(3, 2, 3, 4), (3, 2, 3, 4)]),
                ({}, [(9,), (9,)]), ({}, [(17, 5, 6), (17, 1, 1)]), ({}, [(4, 1, 6), (1, 5, 1), (4, 5, 6)]))

    def to_onnx(self, b, node, ins, weights):
        return b.node("Add" if len(ins) == 2 else "Sum", ins, node.name, node.name)

    def torch_fn(self, torch, in_shapes, params):
        def add(*xs):
            y = xs[0]
            for x in xs[1:]:
                y = y + x
            return y
        return add

    @classmethod
    def from_onnx(cls, imp, node):
        """Sums of activations; an activation plus a constant is a per-channel affine (batchnorm's)."""
        ins = [n for n in node.input if n]
        if node.op_type == "Add" and not all(n in imp.live for n in ins):
            return "adds a constant"
        xs = [imp.x(node, i) for i, n in enumerate(node.input) if n]
        if len(xs) == 1:
            return imp.alias(node, xs[0])
        imp.add_layer(node, "add", {}, [x.layer for x in xs])
        return None

    def infer_shape(self, in_shapes):
        return broadcast_shape(in_shapes)

    def receptive_field(self, in_shapes, rfs):
        return broadcast_rf(in_shapes, rfs)

    def lower(self, in_shapes, params):
        return Merge(self)

    def combine(self, m, a, b):
        """Two operands to one, in the emitters' vector math (see layers/lowering.py)."""
        return m.add(a, b)

    def reference(self, xs, params):
        y = xs[0]
        for x in xs[1:]:
            y = y + x  # broadcasting: the first operand may be the smaller
        return y.copy() if y is xs[0] else y

    # ---- FC view: the block matrix [B1 B2 ... Bk] over the inputs, each a broadcast selection ----
    def fc_connections(self, in_shapes) -> int:
        return len(in_shapes) * int(np.prod(self.infer_shape(in_shapes)))

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """Row r sums the element of every input under output element r (the identity blocks [I I ... I]
        for equal shapes; a repeated column where an input broadcasts).

        >>> Add().to_matrix([(2,), (2,)], {}).matrix.toarray()
        array([[1., 0., 1., 0.],
               [0., 1., 0., 1.]])
        >>> Add().to_matrix([(2,), (1,)], {}).matrix.toarray()
        array([[1., 0., 1.],
               [0., 1., 1.]])
        """
        out = self.infer_shape(in_shapes)
        n, k = int(np.prod(out)), len(in_shapes)
        starts = np.cumsum([0] + [int(np.prod(s)) for s in in_shapes])
        cols = np.stack([broadcast_columns(s, out) + o for s, o in zip(in_shapes, starts)], 1)
        m = fc_csr(np.ones(n * k), cols.ravel(), np.arange(n + 1) * k, (n, int(starts[-1])))
        return Lowered(m, np.zeros(n), np.full(n * k, -1, np.int32), None, "linear")
