"""Graph + weights -> ONNX model (float32, dynamic batch dim `N`).

One emitter per layer kind (`_EMIT`). Every tensor is named after the layer
that produces it and every initializer keeps cnngraph's weight name
(`conv1.weight`), so an exported model re-imports with the same names.

Where ONNX's operator means something slightly different from cnngraph's layer,
the emitter writes an exact equivalent instead:

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
from .common import DEFAULT_OPSET, MIN_OPSET, InteropError, require_onnx

BATCH = "N"
HINT = "cnngraph layer: "  # node doc_string prefix carrying the layer's spec attributes
HINTED = ("conv", "maxpool", "avgpool", "dropout", "lrn")


def _plain(v):
    """Layer attribute values as JSON-able lists/ints/floats/strings."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class _Builder:
    """Collects nodes and initializers; names are unique by construction."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.h = onnx.helper
        self.nodes, self.inits, self.value_info = [], [], []
        self.names = set()

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


def _flat_pads(pads) -> list[int]:
    """[(lo, hi), ...] -> ONNX order: all begins, then all ends."""
    return [int(lo) for lo, _ in pads] + [int(hi) for _, hi in pads]


# ---- one emitter per layer kind: (builder, node, input names, weights) -> output name ----

def _conv(b, node, ins, w):
    layer = node.layer
    _, k, s, d, pads = layer.geometry(node.in_shapes[0])
    _, _, groups = layer.channels(node.in_shapes[0])
    args = [ins[0], b.init(f"{node.name}.weight", w[f"{node.name}.weight"])]
    if layer.bias:
        args.append(b.init(f"{node.name}.bias", w[f"{node.name}.bias"]))
    return b.node("Conv", args, node.name, node.name, kernel_shape=list(k), strides=list(s),
                  pads=_flat_pads(pads), dilations=list(d), group=int(groups))


def _linear(b, node, ins, w):
    args = [ins[0], b.init(f"{node.name}.weight", w[f"{node.name}.weight"])]
    if node.layer.bias:
        args.append(b.init(f"{node.name}.bias", w[f"{node.name}.bias"]))
    return b.node("Gemm", args, node.name, node.name, transB=1)


def _pool_windows(node):
    """Per dim (n, k, s, d, lo, hi, need): `need` is the padded extent the windows touch."""
    layer = node.layer
    shape = node.in_shapes[0]
    _, k, s, d, pads = layer.geometry(shape)
    out = node.out_shape[1:]
    return [(n, kk, ss, dd, lo, hi, (o - 1) * ss + dd * (kk - 1) + 1)
            for n, kk, ss, dd, (lo, hi), o in zip(shape[1:], k, s, d, pads, out)]


def _explicit_pad(b, node, x, pads, value) -> str:
    """A `Pad` node on the spatial dims; returns its output name."""
    nd = len(pads)
    flat = [0, 0] + [lo for lo, _ in pads] + [0, 0] + [hi for _, hi in pads]
    pname = b.init(f"{node.name}.pads", np.array(flat, np.int64))
    vname = b.init(f"{node.name}.pad_value", np.array(value, np.float32))
    assert len(flat) == 2 * (nd + 2)
    return b.node("Pad", [x, pname, vname], f"{node.name}/pad", f"{node.name}/pad", mode="constant")


def _maxpool(b, node, ins, w):
    dims = _pool_windows(node)
    k = [kk for _, kk, *_ in dims]
    s = [ss for _, _, ss, *_ in dims]
    d = [dd for _, _, _, dd, *_ in dims]
    pads = [(lo, max(0, need - n - lo)) for n, _, _, _, lo, _, need in dims]  # exactly the windows
    x = ins[0]
    if any(lo >= kk or hi >= kk for (lo, hi), kk in zip(pads, k)):  # ONNX Runtime: pads < kernel
        x, pads = _explicit_pad(b, node, x, pads, -np.inf), [(0, 0)] * len(dims)
    return b.node("MaxPool", [x], node.name, node.name, kernel_shape=k, strides=s, pads=_flat_pads(pads),
                  dilations=d)


def _avgpool(b, node, ins, w):
    layer = node.layer
    dims = _pool_windows(node)
    k = [kk for _, kk, *_ in dims]
    s = [ss for _, _, ss, *_ in dims]
    x = ins[0]
    include = layer.count_include_pad and any(lo or hi for *_, lo, hi, _ in dims)
    past = any(need > n + lo + hi for n, _, _, _, lo, hi, need in dims)
    if include and past:
        # The divisor counts padding but not the ceil-mode overhang: pad explicitly, count nothing else.
        x = _explicit_pad(b, node, x, [(lo, hi) for *_, lo, hi, _ in dims], 0.0)
        pads = [(0, max(0, need - n - lo - hi)) for n, _, _, _, lo, hi, need in dims]
        include = False
    else:
        pads = [(lo, max(0, need - n - lo)) for n, _, _, _, lo, _, need in dims]
    return b.node("AveragePool", [x], node.name, node.name, kernel_shape=k, strides=s, pads=_flat_pads(pads),
                  count_include_pad=int(include))


def _simple(op, **attrs):
    def emit(b, node, ins, w):
        return b.node(op, ins, node.name, node.name, **attrs)
    return emit


def _relu6(b, node, ins, w):
    lo = b.init(f"{node.name}.min", np.array(0.0, np.float32))
    hi = b.init(f"{node.name}.max", np.array(6.0, np.float32))
    return b.node("Clip", [ins[0], lo, hi], node.name, node.name)


def _leaky_relu(b, node, ins, w):
    return b.node("LeakyRelu", ins, node.name, node.name, alpha=float(node.layer.alpha))


def _batchnorm(b, node, ins, w):
    n, c = node.name, node.in_shapes[0][0]
    if node.layer.affine:
        scale, bias = b.init(f"{n}.weight", w[f"{n}.weight"]), b.init(f"{n}.bias", w[f"{n}.bias"])
    else:  # not parameters of the layer: names the importer recognises as constants
        scale = b.init(f"{n}.const_scale", np.ones(c, np.float32))
        bias = b.init(f"{n}.const_bias", np.zeros(c, np.float32))
    mean = b.init(f"{n}.running_mean", w[f"{n}.running_mean"])
    var = b.init(f"{n}.running_var", w[f"{n}.running_var"])
    return b.node("BatchNormalization", [ins[0], scale, bias, mean, var], n, n, epsilon=float(node.layer.eps))


def _lrn(b, node, ins, w):
    layer, n = node.layer, node.name
    rank = len(node.in_shapes[0]) + 1
    if layer.size % 2 == 1 and rank >= 3:
        return b.node("LRN", ins, n, n, size=int(layer.size), alpha=float(layer.alpha),
                      beta=float(layer.beta), bias=float(layer.k))
    # Exact PyTorch window as a banded channel mix: denom = (k + alpha/size * sum_{window} x^2)^beta.
    c = node.in_shapes[0][0]
    o, i = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
    band = ((i >= o - layer.size // 2) & (i <= o + (layer.size - 1) // 2)).astype(np.float32)
    band *= np.float32(layer.alpha / layer.size)
    sq = b.node("Mul", [ins[0], ins[0]], f"{n}/square", f"{n}/square")
    if rank >= 3:
        wname = b.init(f"{n}.window", band.reshape(c, c, *([1] * (rank - 2))))
        kname = b.init(f"{n}.k", np.full(c, layer.k, np.float32))
        acc = b.node("Conv", [sq, wname, kname], f"{n}/window_sum", f"{n}/window_sum",
                     kernel_shape=[1] * (rank - 2))
    else:
        wname = b.init(f"{n}.window", band.T.copy())
        kname = b.init(f"{n}.k", np.full(c, layer.k, np.float32))
        acc = b.node("Gemm", [sq, wname, kname], f"{n}/window_sum", f"{n}/window_sum")
    beta = b.init(f"{n}.beta", np.array(layer.beta, np.float32))
    den = b.node("Pow", [acc, beta], f"{n}/denominator", f"{n}/denominator")
    return b.node("Div", [ins[0], den], n, n)


def _dropout(b, node, ins, w):
    args = list(ins)
    if node.layer.p < 1.0:  # ONNX wants ratio in [0, 1); at inference it has no effect anyway
        args.append(b.init(f"{node.name}.ratio", np.array(node.layer.p, np.float32)))
    return b.node("Dropout", args, node.name, node.name)


def _add(b, node, ins, w):
    return b.node("Add" if len(ins) == 2 else "Sum", ins, node.name, node.name)


def _pad(b, node, ins, w):
    pads = node.layer.pads(node.in_shapes[0])
    flat = [0, 0] + [lo for lo, _ in pads] + [0, 0] + [hi for _, hi in pads]
    pname = b.init(f"{node.name}.pads", np.array(flat, np.int64))
    vname = b.init(f"{node.name}.value", np.array(node.layer.value, np.float32))
    return b.node("Pad", [ins[0], pname, vname], node.name, node.name, mode="constant")


_EMIT = {
    "conv": _conv,
    "linear": _linear,
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "global_avgpool": _simple("GlobalAveragePool"),
    "global_maxpool": _simple("GlobalMaxPool"),
    "relu": _simple("Relu"),
    "relu6": _relu6,
    "leaky_relu": _leaky_relu,
    "sigmoid": _simple("Sigmoid"),
    "tanh": _simple("Tanh"),
    "softmax": _simple("Softmax", axis=1),
    "flatten": _simple("Flatten", axis=1),
    "batchnorm": _batchnorm,
    "lrn": _lrn,
    "dropout": _dropout,
    "concat": _simple("Concat", axis=1),
    "add": _add,
    "pad": _pad,
}


def _check_opset(opset, onnx) -> int:
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= latest:
        raise InteropError(f"expected an ONNX opset between {MIN_OPSET} and {latest}, got {opset}")
    return int(opset)


def _tensor_type(h, onnx, name, shape):
    return h.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [BATCH, *shape])


def export(graph, weights=None, path=None, *, opset: int = DEFAULT_OPSET, seed: int = 0,
           check: bool = False, value_info: bool = True):
    """A network (Graph, NetSpec or spec path) and its weights -> `onnx.ModelProto`; written to `path` if given.

    `weights`: a mapping, a `.npz`/`.safetensors` path, or None (seeded init with `seed`).
    Inputs are float32 `(N, *input_shape)` named `input`; the output is named after the
    output layer. `value_info` records cnngraph's shape of every layer output, so ONNX's
    shape inference cross-checks it; `check` runs `onnx.checker.check_model(full_check=True)`.

    >>> import cnngraph
    >>> m = export(cnngraph.load("input: [4]\\nlayers: [{linear: {out: 2, name: fc}}, softmax]"))
    >>> [i.name for i in m.graph.initializer], m.graph.output[0].name
    (['fc.weight', 'fc.bias'], 'softmax1')
    """
    onnx = require_onnx()
    h = onnx.helper
    opset = _check_opset(opset, onnx)
    from .. import load, onnx_weights
    g = graph if isinstance(graph, _graph.Graph) else load(graph)
    w = _weights.resolve(g, onnx_weights(graph, weights), seed)  # an .onnx path brings its own weights

    b = _Builder(onnx)
    b.names.update(["input", *(n.name for n in g.nodes)])
    tensor = {INPUT: "input"}
    for node in g.nodes:
        emit = _EMIT.get(node.kind)
        if emit is None:
            raise InteropError(f"layer '{node.name}': no ONNX export for layer kind '{node.kind}'")
        tensor[node.name] = emit(b, node, [tensor[i] for i in node.inputs], w)
        if node.kind in HINTED:  # the spec's own form ('same', ceil_mode), checked by the importer before use
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
    from .. import __version__
    model.producer_version = __version__
    model.doc_string = f"cnngraph network '{g.name}' ({len(g.nodes)} layers)"
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        path = os.fspath(path)
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    return model
