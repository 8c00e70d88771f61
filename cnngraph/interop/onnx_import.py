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
import stat
import warnings
from dataclasses import dataclass

import numpy as np

from .. import spec as _spec
from ..errors import CnnGraphError, LayerError, clip, escape
from ..layers import REGISTRY, Fusion, make
from ..layers.layernorm import channels_first_perm, channels_last_perm
from ..spec import INPUT
from .common import InteropError, require_onnx
from .onnx_export import HINT
from .specwriter import Entry, to_yaml

BATCH = 7919  # placeholder for the batch size in folded shapes: a prime no real dim equals
BATCH2 = 7907  # a second one: a constant folded from shapes depends on the batch where the two folds differ
MAX_CONST = 1 << 28  # elements a folded constant may have
MAX_MODEL_BYTES = 2 << 30  # protobuf's own limit for one message
IDENTITY_EPS = 1e-30  # a batchnorm with mean 0, var 1 and this eps is exactly x * weight + bias

INFRASTRUCTURE = ("Identity", "Cast", "Shape", "Size")
# elementwise operators a pointwise region may be made of (see _Importer.pointwise_region)
POINTWISE_OPS = frozenset(("Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Erf",
                           "Tanh", "Sigmoid", "Relu", "Clip", "Max", "Min", "HardSigmoid", "HardSwish", "Softplus",
                           "Softsign", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Mish", "Identity", "Where",
                           "Greater", "Less", "GreaterOrEqual", "LessOrEqual"))
# where a region's function is compared with the pointwise kinds': a grid, the tails, near zero
PROBES = np.concatenate([np.linspace(-8, 8, 257), [-100, -30, -12, 12, 30, 100, -1e-3, 1e-3, -1e-6, 1e-6, 0.0],
                         np.random.default_rng(0).standard_normal(64) * 3]).astype(np.float32)  # operators that are no layer (aliases, shape arithmetic)


def _key(node) -> tuple:
    """A node's identity (protobuf wrappers are new objects on every access; outputs are unique)."""
    return node.op_type, tuple(node.output)


def _handlers() -> dict:
    """ONNX operator -> the `from_onnx` of every layer kind that imports it, in registry order."""
    out: dict[str, list] = {}
    for cls in REGISTRY.values():
        for op in cls.onnx_imports:
            out.setdefault(op, []).append(cls.from_onnx)
    return out


def _patterns() -> list:
    return [getattr(cls, name) for cls in REGISTRY.values() for name in cls.onnx_patterns]


def _channels_last_handlers() -> dict:
    """ONNX operator -> the `onnx_from_channels_last` of every layer kind that rewrites it on channels-last views."""
    out: dict[str, list] = {}
    for cls in REGISTRY.values():
        for op in cls.onnx_channels_last_ops:
            out.setdefault(op, []).append(cls.onnx_from_channels_last)
    return out


def supported() -> str:
    """The ONNX operators cnngraph imports on activations (constant subgraphs fold whatever ONNX runs)."""
    return ", ".join(sorted(set(_handlers()) | set(INFRASTRUCTURE))) + ", and constant subgraphs"


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
        self.const_alt: dict[str, np.ndarray] = {}  # batch-dependent constants folded with BATCH2 instead
        self.live: dict[str, _Live] = {}
        self.pending: dict[str, tuple] = {}  # steps of cnngraph's even-size LRN export: (step, x tensor, ...)
        self.pending_node: dict[str, object] = {}
        self.layers: dict[str, _Layer] = {}  # keyed by a unique internal id
        self.init_names: dict[int, str] = {}  # id(array) -> initializer name (for layer names)
        self.static_batch: int | None = None
        self.consumed: set = set()  # nodes (by _key) imported as part of a region
        self.nodes = list(self.g.node)  # the walk's nodes: channels-last islands rewritten (see channels_first)
        self.views: dict[str, int] = {}  # channels-last views of activations -> their rank (during channels_first)
        self.island_why: dict[str, str] = {}  # a channels-last view left as written -> why (for the refusal)
        self._readers: dict | None = None

    # ---- messages ----
    def where(self, node) -> str:
        return f"node '{escape(node.name or (node.output[0] if node.output else '?'))}' ({escape(node.op_type)})"

    def fail(self, node, msg: str):
        """The refusal of `node`, on one line: names from the model are escaped, long values clipped."""
        return InteropError(f"{escape(self.source)}: {self.where(node)}: {escape(clip(msg))}")

    # ---- constants ----
    def load_constants(self):
        nh = self.onnx.numpy_helper
        for t in self.g.initializer:
            arr = nh.to_array(t)
            self.const[t.name] = arr
            self.init_names[id(arr)] = t.name
        for t in self.g.sparse_initializer:
            raise InteropError(f"{self.source}: sparse initializer '{t.values.name}' is not supported")
        # Constant nodes up front: a pointwise region is grown when its first node is reached, and PyTorch
        # writes each scalar of GELU's erf form as a Constant just before its use, after that first node
        for n in self.g.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and not n.input:
                self.fold(n)

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
        """Evaluate a node whose inputs are all constants with ONNX's reference implementation. A node
        reading batch-dependent constants is evaluated twice, with the batch as BATCH and as BATCH2: its
        outputs depend on the batch only where the two differ (Shape(x)[2], a spatial dim, does not)."""
        ins = {n: self.const[n] for n in node.input if n}
        dep = any(n in self.batch_dep for n in node.input if n)
        if dep and node.op_type in ("ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample"):
            raise self.fail(node, "builds a tensor whose size depends on the batch size")
        outs = self._evaluate(node, ins)
        alts = self._evaluate(node, {n: self.const_alt.get(n, v) for n, v in ins.items()}) if dep else outs
        for name, val, alt in zip(node.output, outs, alts):
            if name:
                val = np.asarray(val)
                if val.size > MAX_CONST:
                    raise self.fail(node, f"folded constant '{name}' has {val.size} elements (too large)")
                self.const[name] = val
                alt = np.asarray(alt)
                if alt.shape != val.shape or not np.array_equal(alt, val):
                    self.batch_dep.add(name)
                    self.const_alt[name] = alt

    def _evaluate(self, node, ins) -> list:
        from onnx.reference import ReferenceEvaluator
        h = self.onnx.helper
        # a one-node model, so the evaluator picks the operator version of the model's opset
        graph = h.make_graph([node], "fold", [h.make_tensor_value_info(n, h.np_dtype_to_tensor_dtype(v.dtype), None)
                                              for n, v in ins.items()],
                             [h.make_tensor_value_info(o, self.onnx.TensorProto.UNDEFINED, None)
                              for o in node.output if o])
        tiny = h.make_model(graph, opset_imports=[h.make_opsetid("", self.opset)])
        try:
            return ReferenceEvaluator(tiny).run(None, ins)
        except Exception as e:  # the evaluator raises many types for unsupported or malformed nodes
            raise self.fail(node, f"cannot fold this constant subgraph: {e}") from None

    def batched(self, node, i: int, what: str) -> np.ndarray:
        """Input i as a constant whose elements may be the batch size itself (a Resize's sizes built from
        Shape(x)): those read BATCH; any other dependence on the batch is refused."""
        name = node.input[i] if i < len(node.input) else ""
        if name not in self.batch_dep:
            return self.c(node, i, what)
        val, alt = self.const[name], self.const_alt[name]
        if val.shape != alt.shape or not np.all((val == alt) | ((val == BATCH) & (alt == BATCH2))):
            raise self.fail(node, f"{what} ('{name}') depends on the batch size")
        return val

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
            self.const_alt[node.output[0]] = np.array([BATCH2, *live.shape][start:end], np.int64)

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
        self.nodes = self.channels_first(self.nodes)
        self._readers = None
        self.used = {i for n in self.nodes for i in n.input} | {o.name for o in self.g.output}
        for node in self.nodes:
            if _key(node) in self.consumed:  # a step of a pointwise region already imported as one layer
                continue
            if node.domain not in ("", "ai.onnx"):
                raise self.fail(node, f"operator '{node.op_type}' of domain '{node.domain}' is not supported "
                                f"(cnngraph imports {supported()})")
            for i in node.input:
                if i and i not in self.live and i not in self.const and i not in self.pending:
                    raise self.fail(node, f"input '{i}' is not produced before this node "
                                    "(expected nodes in topological order)")
            ins = [i for i in node.input if i]
            if node.op_type == "Shape" and ins and ins[0] in self.live:
                self.shape_of(node)
            elif node.op_type == "Size" and ins and ins[0] in self.live:
                self.const[node.output[0]] = np.array(BATCH * math.prod(self.live[ins[0]].shape), np.int64)
                self.const_alt[node.output[0]] = np.array(BATCH2 * math.prod(self.live[ins[0]].shape), np.int64)
                self.batch_dep.add(node.output[0])
            elif self.pattern_step(node):
                pass
            elif all(i in self.const for i in ins):
                if not all(o in self.const for o in node.output if o):  # else folded already
                    self.fold(node)
            elif self.pointwise_region(node):
                pass
            else:
                self.dispatch(node)
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

    # ---- channels-last islands: x.permute(0, 2, 3, 1), layers over the last axis, .permute(0, 3, 1, 2) ----
    def channels_first(self, nodes) -> list:
        """`nodes` with every channels-last island written channels-first, before the walk. An island
        begins at Transposes that move the channels of activations last and ends at Transposes that
        move them back; each node between reads channels-last views (of one rank) and constants only
        and has a channels-first equivalent: any elementwise operator (its constants transposed too),
        or an operator a layer kind rewrites (`onnx_channels_last_ops`: torchvision ConvNeXt's Linear
        over the channels is a MatMul, a 1x1 convolution channels-first). The views then never exist,
        so nothing is copied. An island with any other reader, or whose view is the graph output, is
        left as written (and refused where it is read, naming the node)."""
        acts = {self.input_name}
        for n in nodes:
            if n.op_type not in ("Shape", "Size") and any(i in acts for i in n.input if i):
                acts.update(o for o in n.output if o)
        handlers = _channels_last_handlers()
        parent: dict[str, str] = {}  # union-find over views: an island is a connected set of them

        def find(t):
            while parent[t] != t:
                parent[t] = parent[parent[t]]
                t = parent[t]
            return t

        rewritten, member, bad = {}, {}, []
        for n in nodes:
            ins = [i for i in n.input if i]
            if n.output and n.domain in ("", "ai.onnx") and not any(i in acts for i in ins) and \
                    all(i in self.const for i in ins) and not all(o in self.const for o in n.output if o):
                self.fold(n)  # constants now (a bias behind an Identity), to be transposed for the twins
                continue
            views = [i for i in ins if i in self.views]
            perm = list(self.attr(n, "perm", []) or []) if n.op_type == "Transpose" else []
            if not views:
                r = len(perm)
                if r >= 3 and perm == channels_last_perm(r) and len(ins) == 1 and ins[0] in acts:
                    out = n.output[0]
                    self.views[out], parent[out] = r, out
                    rewritten[_key(n)] = [self.channels_first_node(n, "Identity", ins)]
                    member[_key(n)] = out
                continue
            root, r = views[0], self.views[views[0]]
            for v in views[1:]:
                parent[find(v)] = find(root)
            if any(self.views[v] != r for v in views) or any(i in acts and i not in self.views for i in ins):
                bad.append((root, f"read by {self.where(n)} together with other activations"))
                continue
            if perm == channels_first_perm(r):  # back to channels-first: the island's value itself
                rewritten[_key(n)] = [self.onnx.helper.make_node("Identity", [self.cf(ins[0])], [n.output[0]],
                                                                 name=n.name)]
                member[_key(n)] = root
                continue
            new = self.pointwise_channels_first(n, r) if n.op_type in POINTWISE_OPS else None
            for handler in handlers.get(n.op_type, ()) if new is None else ():
                new = handler(self, n, r)
                if new is not None:
                    break
            if new is None:
                bad.append((root, f"read by {self.where(n)}, which has no channels-first form"))
                continue
            rewritten[_key(n)], member[_key(n)] = new, root
            for o in n.output:
                if o:
                    self.views[o], parent[o] = r, find(root)
        bad.extend((o.name, "the graph output") for o in self.g.output if o.name in self.views)
        refused = {}
        for t, why in bad:
            refused.setdefault(find(t), why)
        out = []
        for n in nodes:
            k = _key(n)
            if k not in rewritten or find(member[k]) not in refused:
                out.extend(rewritten.get(k, [n]))
            elif n.op_type == "Transpose" and n.output[0] == member[k]:  # an entry: why it stays a transpose
                self.island_why[n.output[0]] = refused[find(member[k])]
                out.append(n)
            else:
                out.append(n)
        self.views = {}
        return out

    @staticmethod
    def cf(name: str) -> str:
        """The channels-first twin of channels-last view `name` (a name no node of the model uses)."""
        return f"{name}#channels_first"

    def channels_first_node(self, node, op: str, inputs: list, **attrs):
        """A channels-first node standing for `node` of a channels-last island: output 0 is the twin of
        node's; the name is node's with the operator's part renamed ('/fc/MatMul' -> '/fc/Conv')."""
        name = re.sub(rf"{re.escape(node.op_type)}(_\d+)?$", lambda m: op + (m.group(1) or ""), node.name)
        return self.onnx.helper.make_node(op, inputs, [self.cf(node.output[0])], name=name, **attrs)

    def channels_first_const(self, name: str, rank: int) -> str | None:
        """Constant `name`, broadcast against a channels-last view of this rank, as the constant that
        broadcasts the same against the channels-first twin (its own name where it is one value);
        None when it is no such constant (an activation, batch-dependent, of higher rank)."""
        arr = self.const.get(name)
        if arr is None or name in self.batch_dep or np.ndim(arr) > rank:
            return None
        if np.size(arr) == 1:
            return name
        new = self.cf(name)
        if new not in self.const:
            full = np.reshape(arr, (1,) * (rank - np.ndim(arr)) + np.shape(arr))
            self.const[new] = np.ascontiguousarray(np.transpose(full, channels_first_perm(rank)))
        return new

    def pointwise_channels_first(self, node, rank: int):
        """An elementwise operator commutes with the transpose: the same node on the twins (and on its
        constants transposed); None where an input is neither a view nor such a constant."""
        new = self.onnx.NodeProto()
        new.CopyFrom(node)  # attributes and cnngraph's export hints kept
        del new.input[:], new.output[:]
        for i in node.input:
            mapped = "" if not i else self.cf(i) if i in self.views else self.channels_first_const(i, rank)
            if mapped is None:
                return None
            new.input.append(mapped)
        new.output.extend(self.cf(o) if o else "" for o in node.output)
        return [new]

    # ---- cnngraph's own export of an even-size LRN: Mul(x, x) -> Conv/Gemm(band, k) -> Pow(beta) -> Div ----
    def unfinished(self, name, how) -> InteropError:
        step, x = self.pending[name][:2]
        node = self.pending_node[name]
        return self.fail(node, f"operator '{node.op_type}' is not supported on activations (its output, {step} of "
                         f"'{x}', is {how}; cnngraph reads it only as a step of a multi-node pattern such as an "
                         f"even-size LRN, x / (k + band(x*x))^beta, or a channels-last layer norm, Transpose -> "
                         f"LayerNormalization -> Transpose) (cnngraph imports {supported()})")

    # ---- pointwise regions: any decomposition of a pointwise layer (x * sigmoid(x), GELU's erf form) ----
    def pointwise_region(self, node) -> bool:
        """Import the largest region of elementwise nodes computing a function of one activation x
        (with scalar constants) that has one output, as the pointwise layer kind whose function it
        is. The region is evaluated with ONNX's reference implementation on probe values and
        compared with each pointwise kind's numpy function; True when one matched."""
        ins = [i for i in node.input if i in self.live]
        if node.op_type not in POINTWISE_OPS or len(set(ins)) != 1:
            return False
        root = ins[0]
        region, inside = [], {root}
        for n in self.nodes:  # nodes are in topological order: one pass grows the region
            if _key(n) in self.consumed or n.op_type not in POINTWISE_OPS or not any(i in inside for i in n.input):
                continue
            if _key(n) != _key(node) and not region:
                continue  # grow from `node`, the first reader of the root in the walk
            if all(i in inside or (i in self.const and np.size(self.const[i]) == 1 and i not in self.batch_dep)
                   for i in n.input if i) and len(n.output) == 1:
                region.append(n)
                inside.add(n.output[0])
        # the largest region first, then shorter prefixes of it (a decomposition followed by another
        # elementwise layer, such as softplus's Where followed by a Clip, is one layer and then the other)
        handled = _handlers()
        for k in range(len(region), 1, -1):
            if self.pointwise_prefix(region[:k], root, handled):
                return True
        return False

    def pointwise_prefix(self, region, root, handled) -> bool:
        inside = {root} | {n.output[0] for n in region}
        # a chain of operators that are layers of their own is imported node by node (as written);
        # a region is one layer where it combines its values (x * sigmoid(x)) or uses an operator
        # no layer takes on its own (Erf)
        combines = any(sum(i in inside for i in n.input) > 1 for n in region)
        if not combines and all(n.op_type in handled for n in region):
            return False
        produced = {n.output[0] for n in region}
        keys = {_key(n) for n in region}
        used_outside = {i for n in self.nodes if _key(n) not in keys for i in n.input} | {o.name for o in self.g.output}
        leaving = [t for t in produced if t in used_outside]
        if len(leaving) != 1:
            return False
        out = leaving[0]
        kind, attrs = self.match_pointwise(region, root, out)
        if kind is None:
            return False
        self.consumed.update(keys)
        key = self.add_layer(region[-1], kind, attrs, [self.live[root].layer])
        self.live[out] = _Live(key, self.live[root].shape)
        return True

    def match_pointwise(self, region, root, out):
        from onnx.reference import ReferenceEvaluator
        h = self.onnx.helper
        consts = {i for n in region for i in n.input if i and i in self.const}
        graph = h.make_graph(region, "region", [h.make_tensor_value_info(root, self.onnx.TensorProto.FLOAT, None)],
                             [h.make_tensor_value_info(out, self.onnx.TensorProto.FLOAT, None)],
                             [self.onnx.numpy_helper.from_array(np.asarray(self.const[c]), c) for c in consts])
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):  # the probes overflow exp on purpose
                warnings.simplefilter("ignore")
                y = np.asarray(ReferenceEvaluator(h.make_model(graph, opset_imports=[h.make_opsetid("", self.opset)]))
                               .run(None, {root: PROBES})[0], np.float64)
        except Exception:  # anything the evaluator cannot run is no pointwise function we know
            return None, None
        if y.shape != PROBES.shape:
            return None, None
        # the attributes cnngraph's exporter recorded on the region's last node come first: exact values
        last = next(n for n in region if out in n.output)
        hinted = {k: self.hint(last, k) for k, cls in REGISTRY.items() if cls.onnx_hint}
        for kind, cls in REGISTRY.items():
            if cls.category is not Fusion.ELEMWISE or not hasattr(cls, "apply"):
                continue
            for attrs in [a for a in [hinted.get(kind)] if a is not None] + [{}] + [a for a, _ in cls.examples]:
                try:
                    want = cls.from_attrs(attrs).apply(PROBES.astype(np.float64))
                except LayerError:  # a kind with required attributes, or a hint that does not fit it
                    continue
                if np.allclose(y, want, rtol=2e-5, atol=2e-6, equal_nan=True):
                    return kind, attrs
        return None, None

    def readers_of(self, tensor: str) -> list:
        """The nodes that read `tensor` (for patterns that must see a value's whole use)."""
        if self._readers is None:
            self._readers = {}
            for n in self.nodes:
                for i in n.input:
                    self._readers.setdefault(i, []).append(n)
        return self._readers.get(tensor, [])

    def pattern_step(self, node) -> bool:
        """Give every layer kind's multi-node patterns (registry `onnx_patterns`) a look at `node`;
        True when one of them took it as a step."""
        for pattern in _patterns():
            if pattern(self, node):
                if node.output and node.output[0] in self.pending:
                    self.pending_node[node.output[0]] = node
                return True
        return False

    # ---- operators that are no layer: aliases ----
    def op_Identity(self, node):
        self.alias(node, self.x(node))

    def op_Cast(self, node):
        if self.attr(node, "to") != self.onnx.TensorProto.FLOAT:
            raise self.fail(node, "casts an activation to a non-float32 type")
        self.alias(node, self.x(node))

    # ---- the API layer kinds import through (see Layer.from_onnx) ----
    BATCH = BATCH

    @staticmethod
    def f32(v) -> float:
        """A float32 attribute as the shortest decimal that reads back as the same float32."""
        return _f32(v)

    @staticmethod
    def clean_name(text):
        return _clean(text, None)

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

    @staticmethod
    def per_channel(const, shape) -> np.ndarray | None:
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

    def affine(self, node, x: _Live, scale, shift):
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
            raise self.fail(node, "an affine map of a scalar")
        params = {"weight": np.asarray(scale if scale is not None else np.ones(c), np.float32),
                  "bias": np.asarray(shift if shift is not None else np.zeros(c), np.float32),
                  "running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
        self.add_layer(node, "batchnorm", {"eps": IDENTITY_EPS}, [x.layer], params,
                       comment=f"ONNX {node.op_type} by a per-channel constant")

    def dispatch(self, node):
        """The layer kinds that import this operator (the registry's `onnx_imports`), in turn; the first
        that takes the node wins, and if none does the node is refused with their reasons."""
        own = getattr(self, f"op_{node.op_type}", None)
        if own is not None:
            return own(node)
        handlers = _handlers().get(node.op_type)
        why = self.island_why.get(node.output[0]) if node.output else None
        if why is not None:
            raise self.fail(node, f"moves the channels last, and the channels-last values are {why} (cnngraph "
                                  f"imports a channels-last region as its channels-first equivalent where every "
                                  f"operator in it has one)")
        if not handlers:
            raise self.fail(node, f"operator '{node.op_type}' is not supported on activations "
                                  f"(cnngraph imports {supported()})")
        reasons = []
        for h in handlers:
            why = h(self, node)
            if why is None:
                return None
            reasons.append(why)
        raise self.fail(node, f"{'; '.join(dict.fromkeys(reasons))}: no cnngraph layer does that "
                              f"(cnngraph imports {supported()})")


def _same_meaning(kind: str, a: dict, b: dict, in_shape) -> bool:
    """Do two attribute sets give the same function on this input? (Exact checks, no tolerance.)"""
    try:
        return make(kind, a).same_function(make(kind, b), in_shape)
    except (CnnGraphError, TypeError, ValueError, AttributeError):
        return False


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
    """(ModelProto, source name): external data read only for a model loaded from a file, from
    that file's own folder; strings that are not UTF-8 decoded with replacement characters."""
    if isinstance(model, onnx.ModelProto):
        m, src, base = model, source or "<model>", None
    elif isinstance(model, (bytes, bytearray)):
        try:
            m, src, base = onnx.load_from_string(bytes(model)), source or "<bytes>", None
        except Exception as e:  # protobuf decode errors have no common base
            raise InteropError(f"cannot parse ONNX bytes: {e}") from None
    else:
        path = os.fspath(model)
        try:
            st = os.stat(path)
        except OSError:
            raise InteropError(f"no such file: {path}") from None
        if not stat.S_ISREG(st.st_mode):
            raise InteropError(f"{path}: expected an ONNX model file, got something else (a folder, pipe or device)")
        if st.st_size > MAX_MODEL_BYTES:
            raise InteropError(f"{path}: the model file is {st.st_size:,} bytes, more than the {MAX_MODEL_BYTES:,} "
                               f"cnngraph reads (keep large weights as external data)")
        try:
            m, src, base = onnx.load(path, load_external_data=False), source or path, os.path.dirname(path) or "."
        except Exception as e:  # protobuf decode errors have no common base
            raise InteropError(f"cannot read ONNX model {path}: {e}") from None
    _decode_text(m)
    _load_external(onnx, m, src, base)
    return m, src


def _decode_text(m):
    """Protobuf hands strings that are not UTF-8 back as bytes: decode them once, here."""
    def fix(msg, field):
        v = getattr(msg, field)
        if isinstance(v, bytes):
            setattr(msg, field, v.decode("utf-8", "replace"))

    def fix_list(rep):
        for i, v in enumerate(rep):
            if isinstance(v, bytes):
                rep[i] = v.decode("utf-8", "replace")

    for field in ("producer_name", "producer_version", "domain", "doc_string"):
        fix(m, field)
    g = m.graph
    fix(g, "name")
    fix(g, "doc_string")
    for vi in (*g.input, *g.output, *g.value_info):
        fix(vi, "name")
        fix(vi, "doc_string")
    for t in g.initializer:
        fix(t, "name")
    for n in g.node:
        for field in ("name", "op_type", "domain", "doc_string"):
            fix(n, field)
        fix_list(n.input)
        fix_list(n.output)


def _load_external(onnx, m, src, base):
    """Bring external tensor data in, from the model's own folder only."""
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_tensor, uses_external_data
    tensors = list(m.graph.initializer) + [a.t for n in m.graph.node for a in n.attribute if a.HasField("t")]
    for t in tensors:
        if not uses_external_data(t):
            continue
        location = ExternalDataInfo(t).location
        if base is None:
            raise InteropError(f"{src}: tensor '{t.name}' keeps its data in an external file ('{location}'); "
                               "external data is read only for a model loaded from a file, from that file's folder")
        root = os.path.realpath(base)
        target = os.path.realpath(os.path.join(base, location))
        if os.path.isabs(location) or os.path.commonpath([root, target]) != root:
            raise InteropError(f"{src}: tensor '{t.name}' keeps its data at '{location}', outside the model's folder; "
                               "refused")
        try:
            load_external_data_for_tensor(t, base)
        except Exception as e:  # onnx raises several types for missing files and bad offsets
            raise InteropError(f"{src}: cannot read the external data of tensor '{t.name}' ('{location}'): {e}") \
                from None


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
