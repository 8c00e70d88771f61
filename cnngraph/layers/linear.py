"""Fully-connected (linear) layer on a flat input."""

from __future__ import annotations

import numpy as np

from ..errors import LayerError
from .base import Attr, Fusion, Layer, Lowered, boolean, fan_in_bound, fc_csr, fc_index_dtype, pos_int, uniform
from .lowering import Dense


class Linear(Layer):
    """`linear: {out: 10, bias: true}`: y = x W^T + b, W of shape (out, in)."""

    kind = "linear"
    category = Fusion.ANCHOR
    attrs = (Attr("out", pos_int, doc="output features"), Attr("bias", boolean, True))
    onnx_imports = ("Gemm", "MatMul")
    examples = (({"out": 7}, [(20,)]), ({"out": 33, "bias": False}, [(5,)]))

    def to_onnx(self, b, node, ins, weights):
        args = [ins[0], b.init(f"{node.name}.weight", weights[f"{node.name}.weight"])]
        if self.bias:
            args.append(b.init(f"{node.name}.bias", weights[f"{node.name}.bias"]))
        return b.node("Gemm", args, node.name, node.name, transB=1)

    def torch_fn(self, torch, in_shapes, params):
        return lambda x: torch.nn.functional.linear(x, params["weight"], params.get("bias"))

    @classmethod
    def from_onnx(cls, imp, node):
        x = imp.x(node)
        if len(x.shape) != 1:
            raise imp.fail(node, f"expected a flat (batch, features) input, got shape "
                                 f"(N, {', '.join(map(str, x.shape))}); cnngraph's linear layer needs a flatten first")
        if node.op_type == "MatMul":
            b = imp.c(node, 1, "B (weight)")
            if b.ndim != 2:
                raise imp.fail(node, f"expected a 2-D weight, got shape {b.shape}")
            params = cls._params(imp, node, x, b.T, None)
            imp.add_layer(node, "linear", {"out": int(b.shape[1]), "bias": False}, [x.layer], params)
            return None
        if imp.attr(node, "transA", 0):
            raise imp.fail(node, "transA=1 would put the batch in the columns; cnngraph's linear needs transA=0")
        b = imp.c(node, 1, "B (weight)")
        c = imp.c(node, 2, "C (bias)", required=False)
        alpha = float(imp.attr(node, "alpha", 1.0))
        beta = float(imp.attr(node, "beta", 1.0))
        if b.ndim != 2:
            raise imp.fail(node, f"expected a 2-D B, got shape {b.shape}")
        w = b if imp.attr(node, "transB", 0) else b.T
        out = w.shape[0]
        bias = None
        if c is not None:
            c = np.asarray(c, np.float64)
            if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or (c.size not in (1, out)):
                raise imp.fail(node, f"bias C of shape {c.shape} varies over the batch; expected (), ({out},) or "
                                     f"(1, {out})")
            bias = (beta * np.broadcast_to(c.reshape(-1), (out,))).astype(np.float32)
        hint = imp.weight_hint(node, b) if alpha == 1.0 and imp.attr(node, "transB", 0) else None
        params = cls._params(imp, node, x, w if alpha == 1 else (alpha * w.astype(np.float64)).astype(np.float32), bias)
        comment = f"Gemm alpha={alpha:g} folded into the weight" if alpha != 1 else ""
        if c is not None and beta != 1:
            comment = (comment + ", " if comment else "Gemm ") + f"beta={beta:g} folded into the bias"
        imp.add_layer(node, "linear", {"out": int(out), "bias": bias is not None}, [x.layer], params,
                      hint=hint, comment=comment)
        return None

    @staticmethod
    def _params(imp, node, x, w, bias):
        """weight (out, in) and bias (out,) or None -> linear layer parameters."""
        if w.shape[1] != x.shape[0]:
            raise imp.fail(node, f"expected a weight with {x.shape[0]} inputs, got shape {w.shape}")
        params = {"weight": np.ascontiguousarray(w, np.float32)}
        if bias is not None:
            params["bias"] = np.ascontiguousarray(bias, np.float32)
        return params

    def infer_shape(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 1:
            raise LayerError(f"expected a flat input (features,), got shape {tuple(shape)}",
                             hint="add a 'flatten' (or a global pool and a flatten) before it")
        return (self.out,)

    def param_shapes(self, in_shapes):
        shapes = {"weight": (self.out, in_shapes[0][0])}
        if self.bias:
            shapes["bias"] = (self.out,)
        return shapes

    def macs(self, in_shapes, out_shape):
        return in_shapes[0][0] * self.out

    def receptive_field(self, in_shapes, rfs):
        return None

    def init_params(self, in_shapes, rng):
        bound = fan_in_bound(in_shapes[0][0])
        return {n: uniform(rng, bound, s) for n, s in self.param_shapes(in_shapes).items()}

    def lower(self, in_shapes, params):
        return Dense(params["weight"], params.get("bias"))

    def reference(self, xs, params):
        x = xs[0]
        y = x @ params["weight"].astype(x.dtype).T
        if self.bias:
            y = y + params["bias"].astype(x.dtype)
        return np.ascontiguousarray(y)

    # ---- FC view: the one layer that is fully connected, nothing shared ----
    def fc_connections(self, in_shapes) -> int:
        return in_shapes[0][0] * self.out

    def to_matrix(self, in_shapes, params, xs=None) -> Lowered:
        """M = weight (dense, stored as CSR), tie = arange: every connection its own parameter."""
        n_in, n = in_shapes[0][0], in_shapes[0][0] * self.out
        m = fc_csr(np.asarray(params["weight"], np.float64).ravel(), np.tile(np.arange(n_in), self.out),
                   np.arange(self.out + 1) * n_in, (self.out, n_in))
        bias = np.asarray(params["bias"], np.float64).copy() if self.bias else np.zeros(self.out)
        return Lowered(m, bias, np.arange(n, dtype=fc_index_dtype(n)), "weight", "linear")
