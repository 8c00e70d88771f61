"""Elementwise arithmetic of two activations with broadcasting: mul, sub, div (add is in add.py and
broadcasts the same way). Squeeze-and-excitation gates a (C, H, W) tensor with a (C, 1, 1) one;
spatial attention multiplies by a (1, H, W) map.

Broadcasting follows numpy (and PyTorch, ONNX) over the dims after the batch: the inputs have the
same rank, and along each dim the sizes agree or one of them is 1 (that operand repeats).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import LayerError
from .base import Fusion, Layer, Lowered, fc_csr, fc_point
from .lowering import Merge


def broadcast_shape(in_shapes) -> tuple:
    """The output shape of inputs that broadcast against each other, else a LayerError.

    >>> broadcast_shape([(16, 7, 7), (16, 1, 1)]), broadcast_shape([(3, 1, 5), (1, 4, 1)])
    ((16, 7, 7), (3, 4, 5))
    """
    shapes = [tuple(s) for s in in_shapes]
    shown = ", ".join(str(s) for s in shapes)
    if len({len(s) for s in shapes}) != 1:
        raise LayerError(f"expected inputs of the same rank, got shapes {shown}",
                         hint="broadcasting repeats dims of size 1; it adds no dims")
    out = []
    for i, sizes in enumerate(zip(*shapes)):
        big = {n for n in sizes if n != 1}
        if len(big) > 1:
            what = "channels" if i == 0 else f"spatial dim {i - 1}"
            raise LayerError(f"expected inputs whose shapes broadcast (equal sizes, or 1), got {shown}: "
                             f"the {what} differ ({' vs '.join(map(str, sizes))})",
                             hint="the shortcut needs a 1x1 projection" if i == 0 else None)
        out.append(big.pop() if big else 1)
    return tuple(out)


def broadcast_columns(shape, out_shape) -> np.ndarray:
    """For every output element (C-order), the flat index of the input element it reads.

    >>> broadcast_columns((2, 1), (2, 3)).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    n = math.prod(shape)
    return np.broadcast_to(np.arange(n).reshape(shape), tuple(out_shape)).ravel()


def broadcast_rf(in_shapes, rfs):
    """The receptive field of a broadcasting merge: a dim of size 1 that repeats saw its whole input
    along that dim, so each dim keeps the largest window over the paths (the DAG rule); the jump and
    start are those of the operands that do not repeat, whose grid the output has (the repeated
    one's jump spans its whole input, and would compound through every layer after a gate).

    >>> broadcast_rf([(8, 7, 7), (8, 1, 1)], [((3, 1, 1.0), (3, 1, 1.0)), ((7, 7, 3.0), (7, 7, 3.0))])
    ((7, 1, 1.0), (7, 1, 1.0))
    """
    known = [(s, r) for s, r in zip(in_shapes, rfs) if r is not None]
    if not known:
        return None
    out = broadcast_shape(in_shapes)[1:]
    dims = []
    for d, n in enumerate(out):
        paths = [r[d] for _, r in known]
        grid = [r[d] for s, r in known if s[1 + d] == n] or paths
        _, jump, start = max(grid, key=lambda t: t[0])
        dims.append((max(t[0] for t in paths), jump, start))
    return tuple(dims)


class _Binary(Layer):
    """Two inputs combined element by element, broadcasting."""

    category = Fusion.MERGE
    n_inputs = 2
    onnx_op: str
    torch_op: str
    examples = (({}, [(20, 7), (20, 7)]), ({}, [(5, 6, 7), (5, 1, 1)]), ({}, [(18, 2, 3, 4), (18, 2, 3, 4)]),
                ({}, [(3, 6, 7), (1, 6, 7)]), ({}, [(9,), (9,)]), ({}, [(17, 1, 5), (17, 4, 1)]))

    def infer_shape(self, in_shapes):
        if len(in_shapes) != 2:
            raise LayerError(f"expected 2 inputs, got {len(in_shapes)}")
        return broadcast_shape(in_shapes)

    def receptive_field(self, in_shapes, rfs):
        return broadcast_rf(in_shapes, rfs)

    def apply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reference(self, xs, params):
        with np.errstate(all="ignore"):  # inf and NaN as IEEE arithmetic gives them, like PyTorch
            return self.apply(xs[0], xs[1]).astype(np.result_type(xs[0], xs[1]), copy=False)

    # ---- compiled: the same once more in the emitters' vector math ----
    def combine(self, m, a, b):
        raise NotImplementedError

    commutative = False
    finite = True  # finite operands give a finite result (padding lanes stay finite)
    channel_scale = (None, None)

    def lower(self, in_shapes, params):
        return Merge(self, self.commutative, self.finite, self.channel_scale)

    # ---- interop ----
    def to_onnx(self, b, node, ins, weights):
        return b.node(self.onnx_op, ins, node.name, node.name)

    def torch_fn(self, torch, in_shapes, params):
        return getattr(torch, self.torch_op)

    @classmethod
    def from_onnx(cls, imp, node):
        """Two activations (an activation and a constant is a per-channel affine: batchnorm's)."""
        ins = [n for n in node.input if n]
        if len(ins) != 2 or not all(n in imp.live for n in ins):
            return f"{node.op_type} of an activation and a constant"
        a, b = imp.x(node, 0), imp.x(node, 1)
        imp.add_layer(node, cls.kind, {}, [a.layer, b.layer])
        return None

    # ---- FC view: a block matrix over the two inputs, each block a broadcast selection ----
    def fc_connections(self, in_shapes) -> int:
        return 2 * math.prod(self.infer_shape(in_shapes))

    def partials(self, a, b):
        """(d y / d a, d y / d b) elementwise at broadcast a, b."""
        raise NotImplementedError

    fc_mode = "local"

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """Row i reads a's and b's elements under output element i (broadcast): the coefficients are
        the partial derivatives at `xs` (exact everywhere for sub; the tangent for mul and div), the
        bias what is left: y - J x.

        >>> import numpy as np
        >>> Sub().to_matrix([(2,), (1,)], {}).matrix.toarray()
        array([[ 1.,  0., -1.],
               [ 0.,  1., -1.]])
        """
        out = self.infer_shape(in_shapes)
        n_a = math.prod(in_shapes[0])
        ca = broadcast_columns(in_shapes[0], out)
        cb = broadcast_columns(in_shapes[1], out) + n_a
        if self.fc_mode == "linear":
            a = np.zeros(in_shapes[0])
            b = np.zeros(in_shapes[1])
        else:
            a, b = fc_point(self, in_shapes, xs)
        ab, bb = np.broadcast_arrays(a, b)
        with np.errstate(all="ignore"):
            da, db = (np.broadcast_to(v, ab.shape).ravel() for v in self.partials(ab, bb))
            y = self.apply(ab, bb).ravel()
        rows = ca.size
        # columns ascending per row: a's block comes before b's
        cols = np.stack([ca, cb], 1).ravel()
        data = np.stack([da, db], 1).ravel()
        m = fc_csr(data, cols, np.arange(rows + 1) * 2, (rows, n_a + math.prod(in_shapes[1])))
        xin = np.concatenate([a.ravel(), b.ravel()])
        with np.errstate(all="ignore"):
            bias = y - m @ xin
        return Lowered(m, bias, np.full(m.nnz, -1, np.int32), None, self.fc_mode)


class Mul(_Binary):
    """`mul: {from: [x, gate]}`: x * gate, broadcasting (squeeze-and-excitation: (C, H, W) by (C, 1, 1))."""

    kind = "mul"
    onnx_op = "Mul"
    onnx_imports = ("Mul",)
    torch_op = "mul"
    commutative = True
    # a (C, 1, ...) operand scales the other per channel (the compiler may fold it into a conv's weights)
    channel_scale = (lambda m, s: s, lambda m, s: s)

    def apply(self, a, b):
        return a * b

    def combine(self, m, a, b):
        return m.mul(a, b)

    def partials(self, a, b):
        return b, a


class Sub(_Binary):
    """`sub: {from: [a, b]}`: a - b, broadcasting."""

    kind = "sub"
    onnx_op = "Sub"
    onnx_imports = ("Sub",)
    torch_op = "sub"
    fc_mode = "linear"

    def apply(self, a, b):
        return a - b

    def combine(self, m, a, b):
        return m.sub(a, b)

    def partials(self, a, b):
        return np.ones_like(a), -np.ones_like(b)


class Div(_Binary):
    """`div: {from: [a, b]}`: a / b, broadcasting; x / 0 is inf or NaN as in IEEE arithmetic (PyTorch)."""

    kind = "div"
    category = Fusion.OPAQUE  # 0 / 0 in a channel block's padding lanes: runs alone, masking them
    onnx_op = "Div"
    onnx_imports = ("Div",)
    torch_op = "div"
    finite = False
    channel_scale = (None, lambda m, s: m.div(1.0, s))  # a / s[c] = a * (1 / s[c]); s[c] / b is no scaling

    def apply(self, a, b):
        return a / b

    def combine(self, m, a, b):
        return m.div(a, b)

    def partials(self, a, b):
        return 1.0 / b, -a / (b * b)
