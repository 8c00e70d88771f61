"""Graph + weights -> ONNX model (float32, dynamic batch dim `N`).

Each layer kind writes its own nodes (`Layer.to_onnx`, in its file). Every tensor is named after the layer
that produces it and every initializer keeps cnngraph's weight name
(`conv1.weight`), so an exported model re-imports with the same names.

Where ONNX's operator means something slightly different from cnngraph's layer,
the layer writes an exact equivalent instead (see the pool and LRN files):

- pooling never uses ONNX's `ceil_mode`: the padding is widened (or cut) so the
  floor formula gives exactly cnngraph's windows; ONNX Runtime wants every pad
  smaller than the kernel, so the larger pads a dilated max-pool can have become
  an explicit `Pad` node (every window touches the input: the layer checks that);
- average pooling with `count_include_pad` whose ceil-mode windows run past the
  padding divides by the window clipped to the padded input (PyTorch), which is
  `Pad` + `AveragePool(count_include_pad=0)`;
- LRN with an even `size` (PyTorch's window: size//2 channels before, (size-1)//2
  after; ONNX's is the other way round) is x / (k + x^2 conv band)^beta, the band
  a 1x1 convolution over channels (a MatMul on flat inputs).

>>> import cnngraph, numpy as np
>>> g = cnngraph.load("input: [2, 5, 5]\\nlayers: [{conv: {out: 3, kernel: 3}}, relu]")
>>> m = export(g, None, None)
>>> [n.op_type for n in m.graph.node]
['Conv', 'Relu']
"""

from __future__ import annotations

import json
import os

import numpy as np

from .. import graph as _graph
from .. import weights as _weights
from ..spec import INPUT
from ..errors import LayerError
from .common import DEFAULT_OPSET, MIN_OPSET, InteropError, require_onnx

BATCH = "N"
HINT = "cnngraph layer: "  # node doc_string prefix carrying the layer's spec attributes (layers with `onnx_hint`)


def _plain(v):
    """Layer attribute values as JSON-able lists/ints/floats/strings."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class _Builder:
    """Collects nodes and initializers; names are unique by construction."""

    def __init__(self, onnx, opset: int = DEFAULT_OPSET):
        self.onnx = onnx
        self.h = onnx.helper
        self.opset = opset  # layers pick operators the target opset has
        self.nodes, self.inits, self.value_info = [], [], []
        self.names = set()

    def scalar(self, name: str, value) -> str:
        """A float32 scalar initializer."""
        return self.init(name, np.array(value, np.float32))

    def init(self, name: str, array: np.ndarray) -> str:
        assert name not in self.names, name
        self.names.add(name)
        self.inits.append((name, np.asarray(array)))
        return name

    def write_inits(self, graph) -> None:
        """Initializers straight into the graph: one copy of the bytes, not three (vgg16 is 0.5 GB)."""
        types = {np.dtype(np.float32): self.onnx.TensorProto.FLOAT, np.dtype(np.int64): self.onnx.TensorProto.INT64}
        for name, arr in self.inits:
            t = graph.initializer.add()
            t.name = name
            t.data_type = types[arr.dtype]
            t.dims.extend(arr.shape)
            t.raw_data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()

    def node(self, op: str, inputs, output: str, name: str, **attrs) -> str:
        self.nodes.append(self.h.make_node(op, list(inputs), [output], name=name, **attrs))
        return output

    def explicit_pad(self, name: str, x: str, pads, value) -> str:
        """A constant `Pad` node on the spatial dims of x (pads: [(lo, hi)] per dim); returns its output."""
        flat = [0, 0] + [lo for lo, _ in pads] + [0, 0] + [hi for _, hi in pads]
        pname = self.init(f"{name}.pads", np.array(flat, np.int64))
        vname = self.init(f"{name}.pad_value", np.array(value, np.float32))
        return self.node("Pad", [x, pname, vname], f"{name}/pad", f"{name}/pad", mode="constant")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("cnngraph")
    except PackageNotFoundError:
        return "unknown"


def _check_opset(opset, onnx) -> int:
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= latest:
        raise InteropError(f"expected an ONNX opset between {MIN_OPSET} and {latest}, got {opset}")
    return int(opset)


def _tensor_type(h, onnx, name, shape):
    return h.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [BATCH, *shape])


def export(graph, weights=None, path=None, *, opset: int = DEFAULT_OPSET, seed: int = 0,
           check: bool = False, value_info: bool = True):
    """A Graph and its weights -> `onnx.ModelProto`; written to `path` if given.

    `weights`: a mapping, a `.npz`/`.safetensors` path, or None (seeded init with `seed`).
    Inputs are float32 `(N, *input_shape)` named `input`; the output is named after the
    output layer. `value_info` records cnngraph's shape of every layer output, so ONNX's
    shape inference cross-checks it; `check` runs `onnx.checker.check_model(full_check=True)`.
    (`cnngraph.export` takes spec paths and `.onnx` models too.)

    >>> import cnngraph
    >>> m = export(cnngraph.load("input: [4]\\nlayers: [{linear: {out: 2, name: fc}}, softmax]"))
    >>> [i.name for i in m.graph.initializer], m.graph.output[0].name
    (['fc.weight', 'fc.bias'], 'softmax1')
    """
    onnx = require_onnx()
    h = onnx.helper
    opset = _check_opset(opset, onnx)
    if not isinstance(graph, _graph.Graph):
        raise TypeError(f"expected a cnngraph Graph (see cnngraph.load or cnngraph.export), got {type(graph).__name__}")
    g = graph
    w = _weights.resolve(g, weights, seed)

    b = _Builder(onnx, opset)
    b.names.update(["input", *(n.name for n in g.nodes)])
    tensor = {INPUT: "input"}
    for node in g.nodes:
        try:
            tensor[node.name] = node.layer.to_onnx(b, node, [tensor[i] for i in node.inputs], w)
        except LayerError as e:
            raise InteropError(f"layer '{node.name}' ({node.op}): {e.msg}") from None
        if node.layer.onnx_hint:  # the spec's own form ('same', ceil_mode), checked by the importer before use
            b.nodes[-1].doc_string = HINT + json.dumps({"kind": node.kind, **_plain(node.layer.values())})
        if value_info and node.name != g.output:
            b.value_info.append(_tensor_type(h, onnx, node.name, node.out_shape))

    onnx_graph = h.make_graph(
        b.nodes, g.name, [_tensor_type(h, onnx, "input", g.input_shape)],
        [_tensor_type(h, onnx, tensor[g.output], g.output_shape)], value_info=b.value_info)
    opsets = [h.make_opsetid("", opset)]
    model = h.make_model(onnx_graph, opset_imports=opsets, producer_name="cnngraph",
                         ir_version=h.find_min_ir_version_for(opsets))
    b.write_inits(model.graph)
    model.producer_version = _version()
    model.doc_string = f"cnngraph network '{g.name}' ({len(g.nodes)} layers)"
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        path = os.fspath(path)
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    return model
