"""Flatten (C, *spatial) to (C * prod(spatial),), channel-major like PyTorch."""

from __future__ import annotations

import math

from .base import Fusion, Layer, Lowered, fc_identity
from .lowering import Flatten as FlattenLowering


class Flatten(Layer):
    """`flatten`: no code, just a new view of the same memory."""

    kind = "flatten"
    category = Fusion.FREE
    onnx_imports = ("Flatten", "Reshape", "Squeeze")
    examples = (({}, [(20, 7)]), ({}, [(5, 6, 7)]), ({}, [(3, 2, 3, 4)]))

    def to_onnx(self, b, node, ins, weights):
        return b.node("Flatten", ins, node.name, node.name, axis=1)

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: x.flatten(1)

    # reshapes: fine when they flatten (batch, *dims) to (batch, features); no-ops are aliases
    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        full = [imp.BATCH, *x.shape]
        if node.op_type == "Flatten":
            axis = imp.attr(node, "axis", 1)
            axis = axis + len(full) if axis < 0 else axis
            if not 0 <= axis <= len(full):
                raise imp.fail(node, f"axis {imp.attr(node, 'axis', 1)} is out of range for rank {len(full)}")
            return cls._reshaped(imp, node, (math.prod(full[:axis]), math.prod(full[axis:])))
        if node.op_type == "Squeeze":
            axes = imp.attr(node, "axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = [int(a) for a in imp.c(node, 1, "axes").reshape(-1)]
            if axes is None:
                axes = [i for i, v in enumerate(full) if v == 1]
            axes = {a + len(full) if a < 0 else a for a in axes}
            if 0 in axes:
                raise imp.fail(node, "squeezes the batch dim")
            return cls._reshaped(imp, node, [v for i, v in enumerate(full) if i not in axes])
        if len(node.input) > 1 and node.input[1] in imp.batch_dep:  # Shape(x)[0] arithmetic: fine here
            shape = [int(v) for v in imp.const[node.input[1]].reshape(-1)]
        else:
            shape = [int(v) for v in imp.c(node, 1, "shape").reshape(-1)]
        allowzero = imp.attr(node, "allowzero", 0)
        out = []
        for i, v in enumerate(shape):
            if v == 0 and not allowzero:
                if i >= len(full):
                    raise imp.fail(node, f"shape entry {i} copies a dim the input does not have")
                v = full[i]
            elif i == 0 and imp.static_batch is not None and v == imp.static_batch:
                v = imp.BATCH  # a model exported with a fixed batch names it literally
            out.append(v)
        if out.count(-1) > 1:
            raise imp.fail(node, f"shape {shape} has more than one -1")
        if -1 in out:
            known = math.prod(v for v in out if v != -1)
            total = math.prod(full)
            if known == 0 or total % known:
                raise imp.fail(node, f"cannot reshape (N, {', '.join(map(str, x.shape))}) to {shape}")
            out[out.index(-1)] = total // known
        return cls._reshaped(imp, node, out)

    @staticmethod
    def _reshaped(imp, node, target):
        x = imp.x(node)
        batch = imp.BATCH
        if tuple(target) == (batch, *x.shape):
            return imp.alias(node, x)
        if tuple(target) != (batch, math.prod(x.shape)):
            shown = [("N" if v == batch else f"N*{v // batch}") if v and v % batch == 0 else str(v) for v in target]
            raise imp.fail(node, f"reshapes (N, {', '.join(map(str, x.shape))}) to ({', '.join(shown)}); "
                                 "cnngraph only flattens to (N, features)")
        if len(x.shape) == 1:
            return imp.alias(node, x)
        imp.add_layer(node, "flatten", {}, [x.layer])
        return None

    def infer_shape(self, in_shapes):
        return (math.prod(in_shapes[0]),)

    def receptive_field(self, in_shapes, rfs):
        return None

    def lower(self, in_shapes, params):
        return FlattenLowering()

    def reference(self, xs, params):
        return xs[0].reshape(xs[0].shape[0], math.prod(xs[0].shape[1:]))  # -1 is ambiguous for a batch of 0

    def fc_connections(self, in_shapes) -> int:
        return math.prod(in_shapes[0])

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """The identity: flattening is already how the FC view sees every tensor."""
        return fc_identity(math.prod(in_shapes[0]))
