"""ONNX model -> readable spec YAML + weights.

The walk keeps every ONNX tensor as either a *constant* (initializers, Constant
nodes, and anything computed only from constants and known shapes, folded with
ONNX's own reference evaluator) or a *live* tensor (an activation: the output of
a cnngraph layer, or the network input). Each node with a live input maps to at
most one layer; a node cnngraph cannot express is an `InteropError` naming the
node and the operator. Nothing is dropped silently: a node whose output does not
reach the graph output cannot change it, and only those are left out.

The batch dim of the input is symbolic: `Shape` of a live tensor gives a
placeholder value (`BATCH`) there, so `Reshape(x, Concat(Shape(x)[0], -1))`
folds to a flatten; constants derived from the batch size are tracked and
refused where they would become weights.

>>> import cnngraph
>>> from cnngraph.interop.onnx_export import export
>>> m = export(cnngraph.load("input: [2, 6, 6]\\nlayers: [{conv: {name: c1, out: 4, kernel: 3}}, relu]"))
>>> print(import_onnx(m).yaml.split("layers:")[1])
<BLANKLINE>
  - conv: {name: c1, out: 4, kernel: 3}
  - relu
<BLANKLINE>
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from .. import spec as _spec
from ..errors import CnnGraphError, LayerError
from ..layers import make
from ..shapes import same_pads
from ..spec import INPUT
from .common import InteropError, require_onnx
from .onnx_export import HINT
from .specwriter import Entry, to_yaml

BATCH = 7919  # placeholder for the batch size in folded shapes: a prime no real dim equals
MAX_CONST = 1 << 28  # elements a folded constant may have
IDENTITY_EPS = 1e-30  # a batchnorm with mean 0, var 1 and this eps is exactly x * weight + bias

SUPPORTED = ("Conv, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, Relu, Clip, LeakyRelu, Sigmoid, Tanh, "
             "Softmax, Gemm, MatMul(+Add), Flatten, Reshape/Squeeze to flat, Concat, Add, Sum, "
             "Add/Sub/Mul/Div by a per-channel constant, BatchNormalization, LRN, Dropout, Pad, Identity, "
             "Cast to float, and constant subgraphs")


@dataclass(frozen=True)
class Imported:
    """The result of an import: the parsed spec, its weights, and the spec's YAML text."""

    spec: _spec.NetSpec
    weights: dict
    yaml: str


@dataclass
class _Layer:
    kind: str
    attrs: dict
    inputs: list  # layer names or INPUT
    params: dict  # param -> ndarray
    shape: tuple  # output shape without batch
    node: str  # the ONNX node it came from (for messages)
    hint: str | None  # a name suggested by the model
    name: str = ""
    replaces: str | None = None  # a bias fold: takes this layer's name if that one ends unused
    comment: str = ""


@dataclass
class _Live:
    layer: str  # INPUT or a key of _Importer.layers
    shape: tuple  # without batch


def _f32(v) -> float:
    """A float32 attribute as the shortest decimal that reads back as the same float32."""
    return float(str(np.float32(v)))


_SANE = re.compile(r"[^A-Za-z0-9_.\-]+")


def _clean(text: str, op: str | None) -> str | None:
    """'/layer1/layer1.0/conv1/Conv' -> 'layer1.0.conv1'; None when nothing meaningful is left."""
    if not text:
        return None
    text = re.sub(r"_output_\d+$", "", text)
    parts = [p for p in re.split(r"[/:]+", text) if p]
    if parts and op and re.fullmatch(rf"{re.escape(op)}(_\d+)?", parts[-1]):
        parts.pop()
    out: list[str] = []
    for p in parts:
        if out and (p.startswith(out[-1] + ".") or p == out[-1]):
            out.pop()  # torch repeats the module path: layer1/layer1.0 -> layer1.0
        out.append(p)
    name = _SANE.sub("_", ".".join(out)).strip("._-")
    if not name or name.isdigit() or name == INPUT or name.startswith(("onnx", "input.")) or \
            re.fullmatch(r"[A-Z][A-Za-z]*(_\d+)?", name):
        return None  # bare op names (Conv_3), numbers and torch's 'input.4' say nothing
    return name


class _Importer:
    def __init__(self, onnx, model, source: str):
        self.onnx = onnx
        self.model = model
        self.source = source
        self.g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        if self.opset is None:
            raise InteropError(f"{source}: the model imports no version of the default ONNX operator set")
        self.const: dict[str, np.ndarray] = {}
        self.batch_dep: set[str] = set()  # constants computed from the batch size
        self.live: dict[str, _Live] = {}
        self.pending: dict[str, tuple] = {}  # steps of cnngraph's even-size LRN export: (step, x tensor, ...)
        self.pending_node: dict[str, object] = {}
        self.layers: dict[str, _Layer] = {}  # keyed by a unique internal id
        self.init_names: dict[int, str] = {}  # id(array) -> initializer name (for layer names)
        self.static_batch: int | None = None

    # ---- messages ----
    def where(self, node) -> str:
        return f"node '{node.name or node.output[0]}' ({node.op_type})"

    def fail(self, node, msg: str):
        return InteropError(f"{self.source}: {self.where(node)}: {msg}")

    # ---- constants ----
    def load_constants(self):
        nh = self.onnx.numpy_helper
        for t in self.g.initializer:
            arr = nh.to_array(t)
            self.const[t.name] = arr
            self.init_names[id(arr)] = t.name
        for t in self.g.sparse_initializer:
            raise InteropError(f"{self.source}: sparse initializer '{t.values.name}' is not supported")

    def input(self):
        data = [i for i in self.g.input if i.name not in self.const]
        if len(data) != 1:
            names = ", ".join(i.name for i in data) or "none"
            raise InteropError(f"{self.source}: expected exactly one data input (cnngraph networks have one), "
                               f"got {len(data)}: {names}")
        vi = data[0]
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or tt.elem_type != self.onnx.TensorProto.FLOAT:
            kind = self.onnx.TensorProto.DataType.Name(tt.elem_type) if vi.type.HasField("tensor_type") \
                else "non-tensor"
            raise InteropError(f"{self.source}: input '{vi.name}': expected a float32 tensor, got {kind} "
                               "(cnngraph computes in float32)")
        dims = list(tt.shape.dim)
        if len(dims) < 2:
            raise InteropError(f"{self.source}: input '{vi.name}': expected (batch, channels, *spatial), "
                               f"got rank {len(dims)}")
        shape = []
        for i, d in enumerate(dims[1:], 1):
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise InteropError(f"{self.source}: input '{vi.name}': dim {i} is '{d.dim_param or '?'}', "
                                   "expected a fixed size (only the batch dim may vary)")
            shape.append(int(d.dim_value))
        if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            self.static_batch = int(dims[0].dim_value)
        self.input_name = vi.name
        self.input_shape = tuple(shape)
        self.live[vi.name] = _Live(INPUT, tuple(shape))

    def c(self, node, i: int, what: str, required=True):
        """Input i of node as a constant array (None if absent and optional)."""
        if i >= len(node.input) or not node.input[i]:
            if required:
                raise self.fail(node, f"missing input {i} ({what})")
            return None
        name = node.input[i]
        if name in self.live or name in self.pending:
            raise self.fail(node, f"expected {what} ('{name}') to be a constant, got an activation "
                            "(cnngraph layers take one activation and constant weights)")
        if name in self.batch_dep:
            raise self.fail(node, f"{what} ('{name}') depends on the batch size")
        return self.const[name]

    def x(self, node, i: int = 0) -> _Live:
        name = node.input[i] if i < len(node.input) else ""
        if name in self.pending:
            raise self.unfinished(name, f"used by {self.where(node)}")
        if name not in self.live:
            raise self.fail(node, f"expected input {i} ('{name}') to be an activation, got a constant "
                            "(cnngraph networks compute on their one input)")
        return self.live[name]

    def fold(self, node):
        """Evaluate a node whose inputs are all constants with ONNX's reference implementation."""
        from onnx.reference import ReferenceEvaluator
        ins = {n: self.const[n] for n in node.input if n}
        dep = any(n in self.batch_dep for n in node.input if n)
        if dep and node.op_type in ("ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample"):
            raise self.fail(node, "builds a tensor whose size depends on the batch size")
        h = self.onnx.helper
        # a one-node model, so the evaluator picks the operator version of the model's opset
        graph = h.make_graph([node], "fold", [h.make_tensor_value_info(n, h.np_dtype_to_tensor_dtype(v.dtype), None)
                                              for n, v in ins.items()],
                             [h.make_tensor_value_info(o, self.onnx.TensorProto.UNDEFINED, None)
                              for o in node.output if o])
        tiny = h.make_model(graph, opset_imports=[h.make_opsetid("", self.opset)])
        try:
            outs = ReferenceEvaluator(tiny).run(None, ins)
        except Exception as e:  # the evaluator raises many types for unsupported or malformed nodes
            raise self.fail(node, f"cannot fold this constant subgraph: {e}") from None
        for name, val in zip(node.output, outs):
            if name:
                val = np.asarray(val)
                if val.size > MAX_CONST:
                    raise self.fail(node, f"folded constant '{name}' has {val.size} elements (too large)")
                self.const[name] = val
                if dep:
                    self.batch_dep.add(name)

    def shape_of(self, node):
        """`Shape` of an activation: static dims, BATCH in front."""
        live = self.x(node)
        full = [BATCH, *live.shape]
        r = len(full)
        start = self.attr(node, "start", 0)
        end = self.attr(node, "end", r)
        start = min(max(start + r if start < 0 else start, 0), r)
        end = min(max(end + r if end < 0 else end, 0), r)
        self.const[node.output[0]] = np.array(full[start:end], np.int64)
        if start == 0 and end > 0:
            self.batch_dep.add(node.output[0])

    # ---- attributes ----
    def attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                v = self.onnx.helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def only_output(self, node, n_used=1):
        """Refuse nodes whose extra outputs (indices, masks, statistics) are used."""
        for out in node.output[n_used:]:
            if out and out in self.used:
                raise self.fail(node, f"output '{out}' is used, but cnngraph computes only the first output")

    # ---- layers ----
    def add_layer(self, node, kind, attrs, inputs, params=None, hint=None, out=0, comment="") -> str:
        ins = [self.layers[i].shape if i != INPUT else self.input_shape for i in inputs]
        try:
            layer = make(kind, attrs)
            shape = tuple(layer.infer_shape(ins))
        except LayerError as e:
            raise self.fail(node, f"as cnngraph '{kind}': {e.msg}") from None
        key = f"#{len(self.layers)}"
        if hint is None:
            hint = _clean(node.name, node.op_type) or _clean(node.output[0], node.op_type)
        self.layers[key] = _Layer(kind, attrs, list(inputs), params or {}, shape, self.where(node), hint,
                                  comment=comment)
        self.live[node.output[out]] = _Live(key, shape)
        return key

    def weight_hint(self, node, arr) -> str | None:
        name = self.init_names.get(id(arr))
        if name and name.endswith(".weight"):
            return _clean(name[: -len(".weight")], None)
        return None

    def alias(self, node, live: _Live):
        self.live[node.output[0]] = live

    # ---- the walk ----
    def run(self):
        self.load_constants()
        self.input()
        self.used = {i for n in self.g.node for i in n.input} | {o.name for o in self.g.output}
        for node in self.g.node:
            if node.domain not in ("", "ai.onnx"):
                raise self.fail(node, f"operator '{node.op_type}' of domain '{node.domain}' is not supported "
                                f"(cnngraph imports {SUPPORTED})")
            for i in node.input:
                if i and i not in self.live and i not in self.const and i not in self.pending:
                    raise self.fail(node, f"input '{i}' is not produced before this node "
                                    "(expected nodes in topological order)")
            ins = [i for i in node.input if i]
            if node.op_type == "Shape" and ins and ins[0] in self.live:
                self.shape_of(node)
            elif node.op_type == "Size" and ins and ins[0] in self.live:
                self.const[node.output[0]] = np.array(BATCH * math.prod(self.live[ins[0]].shape), np.int64)
                self.batch_dep.add(node.output[0])
            elif self.lrn_step(node):
                pass
            elif all(i in self.const for i in ins):
                self.fold(node)
            else:
                handler = getattr(self, f"op_{node.op_type}", None)
                if handler is None:
                    raise self.fail(node, f"operator '{node.op_type}' is not supported on activations "
                                    f"(cnngraph imports {SUPPORTED})")
                handler(node)
        outs = list(self.g.output)
        if len(outs) != 1:
            raise InteropError(f"{self.source}: expected one graph output (cnngraph networks have one), "
                               f"got {len(outs)}: {', '.join(o.name for o in outs)}")
        out = outs[0].name
        if out in self.pending:
            raise self.unfinished(out, "the graph output")
        if out not in self.live:
            raise InteropError(f"{self.source}: output '{out}' is a constant; it does not depend on the input")
        if self.live[out].layer == INPUT:
            raise InteropError(f"{self.source}: output '{out}' is the input itself; the model computes nothing")
        self.output = self.live[out].layer
        self.output_tensor = outs[0]

    # ---- cnngraph's own export of an even-size LRN: Mul(x, x) -> Conv/Gemm(band, k) -> Pow(beta) -> Div ----
    def unfinished(self, name, how) -> InteropError:
        step, x = self.pending[name][:2]
        node = self.pending_node[name]
        return self.fail(node, f"operator '{node.op_type}' is not supported on activations (its output, {step} of "
                         f"'{x}', is {how}; cnngraph reads it only as a step of an even-size LRN, "
                         f"x / (k + band(x*x))^beta) (cnngraph imports {SUPPORTED})")

    def lrn_step(self, node) -> bool:
        """Track the four steps; True when this node was one of them."""
        done = self._lrn_step(node)
        if done and node.output[0] in self.pending:
            self.pending_node[node.output[0]] = node
        return done

    def _lrn_step(self, node) -> bool:
        op, ins = node.op_type, list(node.input)
        if op == "Mul" and len(ins) == 2 and ins[0] == ins[1] and ins[0] in self.live:
            self.pending[node.output[0]] = ("square", ins[0])
        elif op in ("Conv", "Gemm") and ins and self.pending.get(ins[0], ("",))[0] == "square":
            x = self.live[self.pending[ins[0]][1]]
            w = self.c(node, 1, "band")
            k = self.c(node, 2, "k", required=False)
            c = x.shape[0]
            plain = all(self.attr(node, a, 0) in (0, None) for a in ("transA", "transB")) if op == "Gemm" else \
                all(v == 1 for v in self.attr(node, "strides", [1])) and not any(self.attr(node, "pads", [0])) \
                and self.attr(node, "group", 1) == 1 and self.attr(node, "auto_pad", "NOTSET") == "NOTSET"
            if op == "Gemm" and w.ndim == 2:
                w = w.T
            if not plain or w.shape[:2] != (c, c) or np.size(w) != c * c or k is None or np.size(k) != c or \
                    not np.all(np.asarray(k) == np.asarray(k).reshape(-1)[0]):
                raise self.fail(node, "applies a channel mix to x*x that is not an LRN window")
            if op == "Gemm" and (float(self.attr(node, "alpha", 1.0)) != 1 or float(self.attr(node, "beta", 1.0)) != 1):
                raise self.fail(node, "applies a scaled channel mix to x*x that is not an LRN window")
            self.pending[node.output[0]] = ("window sum", self.pending[ins[0]][1], w.reshape(c, c),
                                            float(np.asarray(k).reshape(-1)[0]))
        elif op == "Pow" and ins and self.pending.get(ins[0], ("",))[0] == "window sum":
            beta = self.c(node, 1, "exponent")
            if np.size(beta) != 1:
                raise self.fail(node, "raises an LRN window sum to a non-scalar power")
            self.pending[node.output[0]] = ("denominator", *self.pending[ins[0]][1:], float(np.reshape(beta, -1)[0]))
        elif op == "Div" and len(ins) == 2 and self.pending.get(ins[1], ("",))[0] == "denominator":
            _, xname, band, k, beta = self.pending[ins[1]]
            if ins[0] != xname:
                raise self.fail(node, "divides by an LRN denominator computed from another tensor")
            attrs = self._lrn_from_band(node, band, k, beta)
            hint = self.hint(node, "lrn")
            if hint and hint.get("size") == attrs["size"] and \
                    np.float32(np.float32(hint.get("alpha", 0)) / np.float32(attrs["size"])) == np.float32(
                        band[band != 0][0]) and np.float32(hint.get("beta")) == np.float32(beta) and \
                    np.float32(hint.get("k")) == np.float32(k):
                attrs = hint  # the exporter's exact decimals
            self.add_layer(node, "lrn", attrs, [self.live[xname].layer])
        else:
            return False
        return True

    def _lrn_from_band(self, node, band, k, beta) -> dict:
        c = band.shape[0]
        nz = band != 0
        if not nz.any():
            raise self.fail(node, "an LRN window with no channels")
        o, i = np.nonzero(nz)
        before, after = int(np.max(o - i)), int(np.max(i - o))
        size = before + after + 1
        value = float(band[nz][0])
        attrs = {"size": size, "alpha": _f32(value * size), "beta": _f32(beta), "k": _f32(k)}
        oo, ii = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
        want = ((ii >= oo - size // 2) & (ii <= oo + (size - 1) // 2)).astype(np.float32) * np.float32(value)
        if before != size // 2 or after != (size - 1) // 2 or not np.array_equal(band.astype(np.float32), want):
            raise self.fail(node, "x / (k + mix(x*x))^beta whose channel mix is not an LRN window")
        return attrs

    # ---- operator handlers (nodes with an activation input) ----
    def op_Identity(self, node):
        self.alias(node, self.x(node))

    def op_Cast(self, node):
        if self.attr(node, "to") != self.onnx.TensorProto.FLOAT:
            raise self.fail(node, "casts an activation to a non-float32 type")
        self.alias(node, self.x(node))

    def op_Dropout(self, node):
        self.only_output(node)
        x = self.x(node)
        ratio = self.attr(node, "ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            ratio = float(self.c(node, 1, "ratio"))
        hint = self.hint(node, "dropout")  # p has no effect at inference: the exporter's value is safe to take
        if hint and isinstance(hint.get("p"), (int, float)) and 0 <= hint["p"] <= 1:
            ratio = hint["p"]
        if len(node.input) > 2 and node.input[2] and bool(self.c(node, 2, "training_mode")):
            raise self.fail(node, "training_mode is true; cnngraph runs inference only")
        self.add_layer(node, "dropout", {"p": _f32(ratio)}, [x.layer])

    def _auto_pads(self, node, spatial, k, s, d, pads):
        """ONNX `auto_pad`/`pads` -> [(lo, hi)] per dim, and whether it is exactly cnngraph's 'same'."""
        mode = self.attr(node, "auto_pad", "NOTSET")
        nd = len(spatial)
        if mode in ("NOTSET", ""):
            p = list(pads) if pads else [0] * (2 * nd)
            if len(p) != 2 * nd:
                raise self.fail(node, f"expected {2 * nd} pads, got {len(p)}")
            return [(p[i], p[i + nd]) for i in range(nd)], False
        if mode == "VALID":
            return [(0, 0)] * nd, False
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            out = [same_pads(n, kk, ss, dd) for n, kk, ss, dd in zip(spatial, k, s, d)]
            if mode == "SAME_LOWER":
                out = [(hi, lo) for lo, hi in out]
            return out, mode == "SAME_UPPER"
        raise self.fail(node, f"unknown auto_pad '{mode}'")

    @staticmethod
    def _padding(pads):
        if all(lo == hi for lo, hi in pads):
            return compact_list([lo for lo, _ in pads])
        return [[lo, hi] for lo, hi in pads]

    def op_Conv(self, node):
        x = self.x(node)
        w = self.c(node, 1, "weight").astype(np.float32)
        b = self.c(node, 2, "bias", required=False)
        nd = len(x.shape) - 1
        if w.ndim != nd + 2:
            raise self.fail(node, f"expected a weight of rank {nd + 2} for input shape {x.shape}, got {w.shape}")
        k = list(self.attr(node, "kernel_shape", w.shape[2:]))
        s = list(self.attr(node, "strides", [1] * nd))
        d = list(self.attr(node, "dilations", [1] * nd))
        groups = int(self.attr(node, "group", 1))
        if tuple(k) != tuple(w.shape[2:]):
            raise self.fail(node, f"kernel_shape {k} differs from the weight's {list(w.shape[2:])}")
        pads, same = self._auto_pads(node, x.shape[1:], k, s, d, self.attr(node, "pads"))
        cin = x.shape[0]
        attrs = {"out": int(w.shape[0]), "kernel": compact_list(k), "stride": compact_list(s),
                 "padding": "same" if same else self._padding(pads), "dilation": compact_list(d),
                 "groups": "depthwise" if groups == cin and groups > 1 and w.shape[0] % cin == 0 else groups,
                 "bias": b is not None}
        params = {"weight": w}
        if b is not None:
            params["bias"] = np.asarray(b, np.float32).reshape(-1)
        attrs = self.simplest("conv", attrs, [self.hint(node, "conv")], x.shape)
        self.add_layer(node, "conv", attrs, [x.layer], params, hint=self.weight_hint(node, w))

    def _pool(self, node, kind):
        x = self.x(node)
        nd = len(x.shape) - 1
        if nd < 1:
            raise self.fail(node, f"expected an input with spatial dims, got shape {x.shape}")
        k = list(self.attr(node, "kernel_shape"))
        s = list(self.attr(node, "strides", [1] * nd))
        d = list(self.attr(node, "dilations", [1] * nd))
        ceil = bool(self.attr(node, "ceil_mode", 0))
        pads, same = self._auto_pads(node, x.shape[1:], k, s, d, self.attr(node, "pads"))
        attrs = {"kernel": compact_list(k), "stride": compact_list(s),
                 "padding": "same" if same else self._padding(pads), "ceil_mode": ceil}
        if kind == "maxpool":
            attrs["dilation"] = compact_list(d)
        else:
            if any(v != 1 for v in d):
                raise self.fail(node, f"dilations {d}: cnngraph's avgpool has no dilation")
            include = bool(self.attr(node, "count_include_pad", 0))
            attrs["count_include_pad"] = include or not any(lo or hi for lo, hi in pads)
        if self.attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "") and ceil:
            raise self.fail(node, "ceil_mode together with auto_pad is ambiguous in ONNX; refused")
        candidates = [self.hint(node, kind)]
        if not same and any(lo != hi for lo, hi in pads):  # asymmetric pads often mean ceil_mode or 'same'
            sym = compact_list([lo for lo, _ in pads])
            candidates += [{**attrs, "padding": sym, "ceil_mode": True}, {**attrs, "padding": sym},
                           {**attrs, "padding": "same", "ceil_mode": False}]
        self.add_layer(node, kind, self.simplest(kind, attrs, candidates, x.shape), [x.layer])

    def hint(self, node, kind) -> dict | None:
        """The spec attributes cnngraph's exporter recorded on this node, if any."""
        if not node.doc_string.startswith(HINT):
            return None
        try:
            attrs = json.loads(node.doc_string[len(HINT):])
        except ValueError:
            return None
        return attrs if isinstance(attrs, dict) and attrs.pop("kind", None) == kind else None

    def simplest(self, kind, attrs, candidates, in_shape) -> dict:
        """The first candidate that means exactly the same as `attrs` on this input, else `attrs`."""
        for cand in candidates:
            if cand is not None and _same_meaning(kind, attrs, cand, in_shape):
                return cand
        return attrs

    def op_MaxPool(self, node):
        self.only_output(node)  # the Indices output (and so storage_order) is refused when used
        self._pool(node, "maxpool")

    def op_AveragePool(self, node):
        self._pool(node, "avgpool")

    def op_GlobalAveragePool(self, node):
        self.add_layer(node, "global_avgpool", {}, [self.x(node).layer])

    def op_GlobalMaxPool(self, node):
        self.add_layer(node, "global_maxpool", {}, [self.x(node).layer])

    def op_Relu(self, node):
        self.add_layer(node, "relu", {}, [self.x(node).layer])

    def op_Clip(self, node):
        """Clip(0, 6) is relu6 and Clip(0, +inf) relu; other bounds have no cnngraph layer."""
        if self.opset >= 11:
            lo, hi = self.c(node, 1, "min", required=False), self.c(node, 2, "max", required=False)
        else:
            lo, hi = self.attr(node, "min", None), self.attr(node, "max", None)
        lo = None if lo is None else float(np.asarray(lo))
        hi = None if hi is None else float(np.asarray(hi))
        kinds = {(0.0, 6.0): "relu6", (0.0, None): "relu", (0.0, math.inf): "relu"}
        if (lo, hi) not in kinds:
            raise self.fail(node, f"Clip to [{lo}, {hi}]: cnngraph has relu (Clip to [0, inf]) and relu6 "
                            "(Clip to [0, 6]) only")
        self.add_layer(node, kinds[lo, hi], {}, [self.x(node).layer])

    def op_LeakyRelu(self, node):
        self.add_layer(node, "leaky_relu", {"alpha": _f32(self.attr(node, "alpha", 0.01))}, [self.x(node).layer])

    def op_Sigmoid(self, node):
        self.add_layer(node, "sigmoid", {}, [self.x(node).layer])

    def op_Tanh(self, node):
        self.add_layer(node, "tanh", {}, [self.x(node).layer])

    def op_Softmax(self, node):
        x = self.x(node)
        r = len(x.shape) + 1
        default = -1 if self.opset >= 13 else 1
        axis = self.attr(node, "axis", default)
        axis = axis + r if axis < 0 else axis
        if self.opset >= 13:
            ok = axis == 1
        else:  # before opset 13: softmax over the flattened dims from `axis` on
            ok = axis == 1 and math.prod(x.shape[1:]) == 1 or r == 2 and axis == 1
        if not ok:
            raise self.fail(node, f"softmax over axis {self.attr(node, 'axis', default)} of a rank-{r} input "
                            f"(opset {self.opset}): cnngraph's softmax is over the channel axis 1 only")
        self.add_layer(node, "softmax", {}, [x.layer])

    def _flat(self, node, x):
        if len(x.shape) != 1:
            raise self.fail(node, f"expected a flat (batch, features) input, got shape "
                            f"(N, {', '.join(map(str, x.shape))}); cnngraph's linear layer needs a flatten first")

    def _linear(self, node, x, w, bias):
        """weight (out, in) and bias (out,) or None -> linear layer parameters."""
        self._flat(node, x)
        if w.shape[1] != x.shape[0]:
            raise self.fail(node, f"expected a weight with {x.shape[0]} inputs, got shape {w.shape}")
        params = {"weight": np.ascontiguousarray(w, np.float32)}
        if bias is not None:
            params["bias"] = np.ascontiguousarray(bias, np.float32)
        return params

    def op_Gemm(self, node):
        x = self.x(node)
        if self.attr(node, "transA", 0):
            raise self.fail(node, "transA=1 would put the batch in the columns; cnngraph's linear needs transA=0")
        b = self.c(node, 1, "B (weight)")
        c = self.c(node, 2, "C (bias)", required=False)
        alpha = float(self.attr(node, "alpha", 1.0))
        beta = float(self.attr(node, "beta", 1.0))
        if b.ndim != 2:
            raise self.fail(node, f"expected a 2-D B, got shape {b.shape}")
        w = b if self.attr(node, "transB", 0) else b.T
        out = w.shape[0]
        bias = None
        if c is not None:
            c = np.asarray(c, np.float64)
            if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or (c.size not in (1, out)):
                raise self.fail(node, f"bias C of shape {c.shape} varies over the batch; expected (), ({out},) or "
                                f"(1, {out})")
            bias = (beta * np.broadcast_to(c.reshape(-1), (out,))).astype(np.float32)
        hint = self.weight_hint(node, b) if alpha == 1.0 and self.attr(node, "transB", 0) else None
        params = self._linear(node, x, w if alpha == 1 else (alpha * w.astype(np.float64)).astype(np.float32), bias)
        comment = f"Gemm alpha={alpha:g} folded into the weight" if alpha != 1 else ""
        if c is not None and beta != 1:
            comment = (comment + ", " if comment else "Gemm ") + f"beta={beta:g} folded into the bias"
        self.add_layer(node, "linear", {"out": int(out), "bias": bias is not None}, [x.layer], params,
                       hint=hint, comment=comment)

    def op_MatMul(self, node):
        x = self.x(node)
        self._flat(node, x)
        b = self.c(node, 1, "B (weight)")
        if b.ndim != 2:
            raise self.fail(node, f"expected a 2-D weight, got shape {b.shape}")
        params = self._linear(node, x, b.T, None)
        self.add_layer(node, "linear", {"out": int(b.shape[1]), "bias": False}, [x.layer], params)

    def _per_channel(self, node, const, shape) -> np.ndarray | None:
        """A constant that broadcasts to (1, *shape) as one value per channel, else None."""
        c = np.asarray(const, np.float64)
        full = (1, *shape)
        if c.ndim > len(full):
            return None
        try:
            bc = np.broadcast_to(c, full)
        except ValueError:
            return None
        per = bc.reshape(shape[0], -1)
        if not np.all(per == per[:, :1]):
            return None
        return per[:, 0]

    def _live_and_const(self, node, what):
        """(activation, constant) operands of a binary op; the constant must be the second for Sub/Div."""
        a, b = node.input[0], node.input[1]
        if a in self.live and b in self.live:
            return None, None
        if a not in self.live and node.op_type in ("Sub", "Div"):
            self.x(node, 0)  # raises: constant - activation is no layer
        return (self.live[a], self.c(node, 1, what)) if a in self.live else (self.live[b], self.c(node, 0, what))

    def _affine(self, node, x: _Live, scale, shift, verb: str):
        """y = x * scale + shift per channel: folded into the conv/linear/batchnorm that produced x (a copy
        of it, so other readers of x are unaffected), else a batchnorm with identity statistics."""
        c = x.shape[0]
        prod = self.layers.get(x.layer)
        if prod is not None and prod.kind in ("conv", "linear", "batchnorm"):
            params = dict(prod.params)
            if prod.kind == "batchnorm" and not prod.attrs.get("affine", True):  # gains its affine part
                params.update(weight=np.ones(c, np.float32), bias=np.zeros(c, np.float32))
            if scale is not None:
                w = params["weight"].astype(np.float64)
                params["weight"] = (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
            bias = params.get("bias", np.zeros(c, np.float32)).astype(np.float64)
            if scale is not None:
                bias = bias * scale
            params["bias"] = (bias + (shift if shift is not None else 0.0)).astype(np.float32)
            attrs = dict(prod.attrs)
            if "bias" in attrs:
                attrs["bias"] = True
            if "affine" in attrs:
                attrs["affine"] = True
            key = self.add_layer(node, prod.kind, attrs, prod.inputs, params, hint=prod.hint)
            self.layers[key].replaces = x.layer
            self.layers[key].comment = prod.comment
            return
        if len(x.shape) < 1:
            raise self.fail(node, f"{verb} a constant on a scalar")
        params = {"weight": np.asarray(scale if scale is not None else np.ones(c), np.float32),
                  "bias": np.asarray(shift if shift is not None else np.zeros(c), np.float32),
                  "running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
        self.add_layer(node, "batchnorm", {"eps": IDENTITY_EPS}, [x.layer], params,
                       comment=f"ONNX {node.op_type} by a per-channel constant")

    def _per_channel_or_fail(self, node, x, c, verb):
        per = self._per_channel(node, c, x.shape)
        if per is None:
            raise self.fail(node, f"{verb} a constant of shape {np.shape(c)} that is not one value per channel "
                            f"of the (N, {', '.join(map(str, x.shape))}) activation")
        return per

    def op_Add(self, node):
        x, c = self._live_and_const(node, "addend")
        if x is None:
            return self._merge(node, list(node.input))
        self._affine(node, x, None, self._per_channel_or_fail(node, x, c, "adds"), "adds")

    def op_Sub(self, node):
        x, c = self._live_and_const(node, "subtrahend")
        if x is None:
            raise self.fail(node, "subtracts two activations; cnngraph's add only sums")
        self._affine(node, x, None, -self._per_channel_or_fail(node, x, c, "subtracts"), "subtracts")

    def op_Mul(self, node):
        x, c = self._live_and_const(node, "factor")
        if x is None:
            raise self.fail(node, "multiplies two activations (elementwise products are no cnngraph layer)")
        self._affine(node, x, self._per_channel_or_fail(node, x, c, "multiplies by"), None, "multiplies by")

    def op_Div(self, node):
        x, c = self._live_and_const(node, "divisor")
        if x is None:
            raise self.fail(node, "divides two activations (elementwise quotients are no cnngraph layer)")
        per = self._per_channel_or_fail(node, x, c, "divides by")
        if np.any(per == 0):
            raise self.fail(node, "divides by a constant with zeros")
        self._affine(node, x, 1.0 / per, None, "divides by")

    def _merge(self, node, live):
        xs = [self.live[n] for n in live]
        if len({x.shape for x in xs}) != 1:
            raise self.fail(node, f"adds activations of shapes {[x.shape for x in xs]}; cnngraph's add needs "
                            "equal shapes (no broadcasting)")
        self.add_layer(node, "add", {}, [x.layer for x in xs])

    def op_Sum(self, node):
        ins = [n for n in node.input if n]
        for i, n in enumerate(ins):
            if n not in self.live:
                self.x(node, i)  # raises: a constant term
        if len(ins) == 1:
            return self.alias(node, self.live[ins[0]])
        self._merge(node, ins)

    def op_Concat(self, node):
        ins = [n for n in node.input if n]
        for i, n in enumerate(ins):
            if n not in self.live:
                self.x(node, i)
        xs = [self.live[n] for n in ins]
        r = len(xs[0].shape) + 1
        axis = self.attr(node, "axis")
        if axis is None or (axis + r if axis < 0 else axis) != 1:
            raise self.fail(node, f"concatenates along axis {axis} of rank-{r} tensors; cnngraph concatenates "
                            "channels (axis 1) only")
        if len(xs) == 1:
            return self.alias(node, xs[0])
        self.add_layer(node, "concat", {}, [x.layer for x in xs])

    def op_BatchNormalization(self, node):
        x = self.x(node)
        if self.attr(node, "training_mode", 0):
            raise self.fail(node, "training_mode=1; cnngraph runs inference only")
        self.only_output(node)
        if self.attr(node, "spatial", 1) == 0:
            raise self.fail(node, "spatial=0 (per-element statistics) is not cnngraph's batchnorm")
        scale, bias, mean, var = (np.asarray(self.c(node, i, w), np.float32).reshape(-1)
                                  for i, w in enumerate(("scale", "B", "mean", "var"), 1))
        c = x.shape[0]
        for arr, what in ((scale, "scale"), (bias, "B"), (mean, "mean"), (var, "var")):
            if arr.shape != (c,):
                raise self.fail(node, f"expected {what} of shape ({c},), got {arr.shape}")
        scale_name = self.init_names.get(id(self.c(node, 1, "scale")), "")
        affine = not (np.all(scale == 1) and np.all(bias == 0) and not scale_name.endswith(".weight"))
        params = {"running_mean": mean, "running_var": var}
        if affine:
            params.update(weight=scale, bias=bias)
        hint = self.weight_hint(node, self.c(node, 1, "scale"))
        if hint is None and scale_name.endswith(".const_scale"):
            hint = _clean(scale_name[: -len(".const_scale")], None)
        self.add_layer(node, "batchnorm", {"eps": _f32(self.attr(node, "epsilon", 1e-5)), "affine": affine},
                       [x.layer], params, hint=hint)

    def op_LRN(self, node):
        x = self.x(node)
        size = int(self.attr(node, "size"))
        if size % 2 == 0:
            raise self.fail(node, f"size={size} is even: ONNX puts the extra channel after, cnngraph (PyTorch) "
                            "before; only odd sizes mean the same")
        self.add_layer(node, "lrn", {"size": size, "alpha": _f32(self.attr(node, "alpha", 1e-4)),
                                     "beta": _f32(self.attr(node, "beta", 0.75)),
                                     "k": _f32(self.attr(node, "bias", 1.0))}, [x.layer])

    def op_Pad(self, node):
        x = self.x(node)
        r = len(x.shape) + 1
        mode = self.attr(node, "mode", "constant")
        if mode != "constant":
            raise self.fail(node, f"mode '{mode}': cnngraph pads with a constant only")
        if self.opset < 11:
            pads = list(self.attr(node, "pads"))
            value = float(self.attr(node, "value", 0.0))
        else:
            pads = [int(v) for v in self.c(node, 1, "pads").reshape(-1)]
            v = self.c(node, 2, "constant_value", required=False)
            value = float(np.asarray(v).reshape(-1)[0]) if v is not None and np.size(v) else 0.0
        axes = self.c(node, 3, "axes", required=False)
        axes = list(range(r)) if axes is None else [int(a) + r if a < 0 else int(a) for a in np.reshape(axes, -1)]
        if len(pads) != 2 * len(axes):
            raise self.fail(node, f"expected {2 * len(axes)} pads, got {len(pads)}")
        full = [(0, 0)] * r
        for i, a in enumerate(axes):
            full[a] = (pads[i], pads[i + len(axes)])
        if any(lo < 0 or hi < 0 for lo, hi in full):
            raise self.fail(node, f"negative pads {pads} (cropping) are not supported")
        if full[0] != (0, 0) or full[1] != (0, 0):
            raise self.fail(node, "pads the batch or channel dim; cnngraph pads spatial dims only")
        if all(p == (0, 0) for p in full):
            return self.alias(node, x)
        self.add_layer(node, "pad", {"padding": [list(p) for p in full[2:]], "value": _f32(value)}, [x.layer])

    # reshapes: fine when they flatten (batch, *dims) to (batch, features)
    def _reshaped(self, node, target):
        x = self.x(node)
        flat = (BATCH, math.prod(x.shape))
        if tuple(target) == (BATCH, *x.shape):
            return self.alias(node, x)
        if tuple(target) != flat:
            shown = [("N" if v == BATCH else f"N*{v // BATCH}") if v and v % BATCH == 0 else str(v) for v in target]
            raise self.fail(node, f"reshapes (N, {', '.join(map(str, x.shape))}) to ({', '.join(shown)}); "
                            "cnngraph only flattens to (N, features)")
        if len(x.shape) == 1:
            return self.alias(node, x)
        self.add_layer(node, "flatten", {}, [x.layer])

    def op_Flatten(self, node):
        x = self.x(node)
        full = [BATCH, *x.shape]
        axis = self.attr(node, "axis", 1)
        axis = axis + len(full) if axis < 0 else axis
        self._reshaped(node, (math.prod(full[:axis]), math.prod(full[axis:])))

    def op_Reshape(self, node):
        x = self.x(node)
        if len(node.input) > 1 and node.input[1] in self.batch_dep:  # Shape(x)[0] arithmetic: fine here
            shape = [int(v) for v in self.const[node.input[1]].reshape(-1)]
        else:
            shape = [int(v) for v in self.c(node, 1, "shape").reshape(-1)]
        full = [BATCH, *x.shape]
        allowzero = self.attr(node, "allowzero", 0)
        out = []
        for i, v in enumerate(shape):
            if v == 0 and not allowzero:
                if i >= len(full):
                    raise self.fail(node, f"shape entry {i} copies a dim the input does not have")
                v = full[i]
            elif i == 0 and self.static_batch is not None and v == self.static_batch:
                v = BATCH  # a model exported with a fixed batch names it literally
            out.append(v)
        if out.count(-1) > 1:
            raise self.fail(node, f"shape {shape} has more than one -1")
        if -1 in out:
            known = math.prod(v for v in out if v != -1)
            total = math.prod(full)
            if known == 0 or total % known:
                raise self.fail(node, f"cannot reshape (N, {', '.join(map(str, x.shape))}) to {shape}")
            out[out.index(-1)] = total // known
        self._reshaped(node, out)

    def op_Squeeze(self, node):
        x = self.x(node)
        full = [BATCH, *x.shape]
        axes = self.attr(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(a) for a in self.c(node, 1, "axes").reshape(-1)]
        if axes is None:
            axes = [i for i, v in enumerate(full) if v == 1]
        axes = {a + len(full) if a < 0 else a for a in axes}
        if 0 in axes:
            raise self.fail(node, "squeezes the batch dim")
        self._reshaped(node, [v for i, v in enumerate(full) if i not in axes])


def _same_meaning(kind: str, a: dict, b: dict, in_shape) -> bool:
    """Do two attribute sets give the same function on this input? (Exact checks, no tolerance.)"""
    try:
        la, lb = make(kind, a), make(kind, b)
        if la.infer_shape([in_shape]) != lb.infer_shape([in_shape]):
            return False
        if kind == "conv":
            return la.geometry(in_shape) == lb.geometry(in_shape) and la.channels(in_shape) == \
                lb.channels(in_shape) and la.bias == lb.bias
        _, ka, sa, da, pa = la.geometry(in_shape)
        _, kb, sb, db, pb = lb.geometry(in_shape)
        # same windows: same size, step, dilation and first window start; the count is the shape above
        if (ka, sa, da, [lo for lo, _ in pa]) != (kb, sb, db, [lo for lo, _ in pb]):
            return False
        return kind != "avgpool" or np.array_equal(la.divisor(in_shape), lb.divisor(in_shape))
    except (CnnGraphError, TypeError, ValueError):
        return False


def compact_list(v):
    v = [int(x) for x in v]
    return v[0] if len(set(v)) == 1 else v


# ---- naming and writing ------------------------------------------------------

def _finish(imp: _Importer, name: str, header: str) -> tuple[str, dict, dict]:
    """Dead-layer removal, final names, YAML text and weights."""
    layers = imp.layers
    # keep what reaches the output
    keep, stack = set(), [imp.output]
    while stack:
        k = stack.pop()
        if k == INPUT or k in keep:
            continue
        keep.add(k)
        stack.extend(layers[k].inputs)
    order = [k for k in layers if k in keep]
    # a folded bias takes the name of the layer it replaced when that one is gone
    for k in order:
        r = layers[k].replaces
        while r is not None and r not in keep:
            layers[k].hint = layers[r].hint
            r = layers[r].replaces
    # A hint shared by several layers, or naming a container of other layers (PyTorch's functional
    # calls inside a module: '/layer1/layer1.0/Relu' -> 'layer1.0'), gets the kind appended.
    all_hints = [layers[k].hint for k in order if layers[k].hint]
    counts = {h: all_hints.count(h) for h in all_hints}
    for k in order:
        h = layers[k].hint
        if h and (counts[h] > 1 or any(o.startswith(h + ".") for o in all_hints)):
            layers[k].hint = f"{h}.{layers[k].kind}"
    # unique names: model-given hints first, then cnngraph's auto names where possible
    taken = {INPUT}
    counter: dict[str, int] = {}
    hints = {}
    for k in order:
        h = layers[k].hint
        if h is not None:
            base, i = h, 2
            while h in taken:
                h, i = f"{base}_{i}", i + 1
            taken.add(h)
        hints[k] = h
    for k in order:
        kind = layers[k].kind
        h = hints[k]
        auto = f"{kind}{counter.get(kind, 0) + 1}"
        if h is None:
            if auto in taken:
                base, i = f"{kind}_{counter.get(kind, 0) + 1}", 2
                h = base
                while h in taken:
                    h, i = f"{base}_{i}", i + 1
            else:
                h = auto
            taken.add(h)
        if h == auto:
            counter[kind] = counter.get(kind, 0) + 1
        layers[k].name = h
    final = {INPUT: INPUT, **{k: layers[k].name for k in order}}
    entries = [Entry(layers[k].name, layers[k].kind, layers[k].attrs, [final[i] for i in layers[k].inputs],
                     layers[k].comment) for k in order]
    weights = {f"{layers[k].name}.{p}": np.ascontiguousarray(v, np.float32)
               for k in order for p, v in layers[k].params.items()}
    text = to_yaml(name, imp.input_shape, entries, final[imp.output], header)
    shapes = {final[k]: layers[k].shape for k in order}
    return text, weights, shapes


def _cross_check(imp: _Importer, onnx, model, shapes_by_tensor):
    """Compare our shapes with ONNX's own shape inference where it knows them."""
    light = onnx.ModelProto()  # big initializers become typed inputs: inference needs no weight bytes
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.graph.node.extend(model.graph.node)
    light.graph.input.extend(model.graph.input)
    light.graph.output.extend(model.graph.output)
    declared = {i.name for i in model.graph.input}
    for t in model.graph.initializer:
        if t.name in declared:
            continue
        if math.prod(t.dims) <= 4096:
            light.graph.initializer.append(t)
        else:
            light.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    try:
        inferred = onnx.shape_inference.infer_shapes(light)
    except Exception:  # a model ONNX cannot infer is still checked by our own inference
        return
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        ours = shapes_by_tensor.get(vi.name)
        if ours is None or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 0:
            continue
        theirs = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
        if len(theirs) != len(ours) or any(t is not None and t != o for t, o in zip(theirs, ours)):
            node = next((n for n in model.graph.node if vi.name in n.output), None)
            who = f"node '{node.name or vi.name}' ({node.op_type})" if node is not None else f"tensor '{vi.name}'"
            raise InteropError(f"{imp.source}: {who}: ONNX infers shape (N, {', '.join(map(str, theirs))}) but "
                               f"cnngraph's layer gives (N, {', '.join(map(str, ours))}); refusing a model whose "
                               "meaning would change")


def _read(onnx, model, source):
    if isinstance(model, onnx.ModelProto):
        return model, source or "<model>"
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model)), source or "<bytes>"
        except Exception as e:  # protobuf decode errors have no common base
            raise InteropError(f"cannot parse ONNX bytes: {e}") from None
    path = os.fspath(model)
    if not os.path.exists(path):
        raise InteropError(f"no such file: {path}")
    try:
        return onnx.load(path), source or path
    except Exception as e:  # protobuf decode errors have no common base
        raise InteropError(f"cannot read ONNX model {path}: {e}") from None


def import_onnx(model, *, name: str | None = None, source: str | None = None) -> Imported:
    """An ONNX model (path, bytes or ModelProto) -> `Imported(spec, weights, yaml)`.

    Raises `InteropError` naming the node and operator for anything cnngraph
    cannot express. The spec is parsed and shape-checked, and its shapes are
    compared with ONNX's shape inference.
    """
    onnx = require_onnx()
    m, src = _read(onnx, model, source)
    imp = _Importer(onnx, m, src)
    imp.run()
    if name is None:  # the graph's own name unless it is an exporter's placeholder, else the file's
        stem = os.path.splitext(os.path.basename(src))[0] if not src.startswith("<") else ""
        own = m.graph.name if m.graph.name not in ("", "main_graph", "torch_jit", "torch-jit-export", "graph") \
            else ""
        name = _SANE.sub("_", own or stem or "imported").strip("_.-") or "imported"
    producer = f"{m.producer_name} {m.producer_version}".strip() or "unknown producer"
    header = f"Imported from {os.path.basename(src)} by cnngraph ({producer}, opset {imp.opset})."
    text, weights, shapes = _finish(imp, name, header)
    try:
        net = _spec.loads(text, src)
        from ..graph import build
        from ..weights import check
        g = build(net)
        weights = check(g, weights)
    except CnnGraphError as e:  # our own output must parse: anything else is a bug worth a clear report
        raise InteropError(f"{src}: the imported spec does not build: {e}\n{text}") from None
    for node in g.nodes:
        if node.out_shape != shapes[node.name]:
            raise InteropError(f"{src}: layer '{node.name}': expected shape {shapes[node.name]}, "
                               f"got {node.out_shape}")
    by_tensor = {t: imp.layers[v.layer].shape for t, v in imp.live.items() if v.layer != INPUT}
    _cross_check(imp, onnx, m, by_tensor)
    return Imported(net, weights, text)


_CACHE: dict = {}


def load_onnx(path) -> tuple:
    """(NetSpec, weights) of an ONNX file; cached while the file's size and mtime are unchanged."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        raise InteropError(f"no such file: {path}") from None
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(key)
    if hit is None:
        imported = import_onnx(path)
        hit = (imported.spec, imported.weights)
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = hit
    return hit[0], dict(hit[1])
