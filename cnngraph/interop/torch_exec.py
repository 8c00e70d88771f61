"""Run a cnngraph Graph with PyTorch (`torch.nn.functional`), layer by layer.

A second, independent oracle for the tests and the peer for `tools/bench.py`.
PyTorch is optional: it is imported here, on use.

>>> import cnngraph, numpy as np
>>> g = cnngraph.load("input: [1, 4, 4]\\nlayers: [{maxpool: {kernel: 2}}]")
>>> forward(g, {})(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))[0, 0]  # doctest: +SKIP
array([[ 5.,  7.],
       [13., 15.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from ..oracle import params_of
from ..spec import INPUT


def _torch():
    try:
        import torch
    except ImportError:
        from ..errors import CnnGraphError
        raise CnnGraphError("PyTorch is not installed (pip install torch)") from None
    return torch


def _sides(pads):
    """[(lo, hi) per spatial dim] -> F.pad's order: last dim first."""
    return [p for lo_hi in reversed(pads) for p in lo_hi]


def layer_fn(layer, in_shape, params: dict):
    """A function of torch tensors computing `layer` (params: name -> tensor)."""
    torch = _torch()
    F = torch.nn.functional
    kind, nd = layer.kind, len(in_shape) - 1
    if kind == "conv":
        _, k, s, d, pads = layer.geometry(in_shape)
        _, _, g = layer.channels(in_shape)
        conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        w, b = params["weight"], params.get("bias")
        if all(lo == hi for lo, hi in pads):
            return lambda x: conv(x, w, b, stride=s, dilation=d, groups=g, padding=[lo for lo, _ in pads])
        return lambda x: conv(F.pad(x, _sides(pads)), w, b, stride=s, dilation=d, groups=g)
    if kind in ("maxpool", "avgpool"):
        _, k, s, d, pads = layer.geometry(in_shape)
        if any(lo != hi or lo > kk // 2 for (lo, hi), kk in zip(pads, k)):
            return None  # torch pools take symmetric padding of at most half the kernel
        sym = [lo for lo, _ in pads]
        if kind == "maxpool":
            f = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
            return lambda x: f(x, k, s, sym, d, ceil_mode=layer.ceil_mode)
        f = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
        return lambda x: f(x, k, s, sym, ceil_mode=layer.ceil_mode, count_include_pad=layer.count_include_pad)
    if kind == "batchnorm":
        return lambda x: F.batch_norm(x, params["running_mean"], params["running_var"], params.get("weight"),
                                      params.get("bias"), False, 0.0, layer.eps)
    if kind == "linear":
        return lambda x: F.linear(x, params["weight"], params.get("bias"))
    if kind == "lrn":
        return lambda x: F.local_response_norm(x, layer.size, layer.alpha, layer.beta, layer.k)
    if kind == "leaky_relu":
        return lambda x: F.leaky_relu(x, layer.alpha)
    if kind == "pad":
        return lambda x: F.pad(x, _sides(layer.pads(in_shape)), value=layer.value)
    simple = {
        "relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
        "softmax": lambda x: F.softmax(x, 1), "flatten": lambda x: x.flatten(1), "dropout": lambda x: x,
        "global_avgpool": lambda x: x.mean(dim=tuple(range(2, x.ndim)), keepdim=True),
        "global_maxpool": lambda x: x.amax(dim=tuple(range(2, x.ndim)), keepdim=True),
    }
    return simple.get(kind)


def forward(graph, weights, dtype=np.float32):
    """A function numpy batch -> numpy output running the graph in PyTorch (no grad).

    Raises where a layer has no torch equivalent (asymmetric pool padding).
    """
    torch = _torch()
    steps = []
    for node in graph.nodes:
        params = {k: torch.from_numpy(np.ascontiguousarray(v, dtype)) for k, v in params_of(node, weights).items()}
        if node.kind in ("add", "concat"):
            fn = None
        else:
            fn = layer_fn(node.layer, node.in_shapes[0], params)
            if fn is None:
                from ..errors import CnnGraphError
                raise CnnGraphError(f"layer '{node.name}' ({node.op}) has no PyTorch equivalent here")
        steps.append((node, fn))

    def run(x):
        with torch.no_grad():
            values = {INPUT: torch.from_numpy(np.ascontiguousarray(x, dtype))}
            for node, fn in steps:
                ins = [values[i] for i in node.inputs]
                if node.kind == "add":
                    values[node.name] = torch.stack(ins).sum(0)
                elif node.kind == "concat":
                    values[node.name] = torch.cat(ins, 1)
                else:
                    values[node.name] = fn(ins[0])
            return values[graph.output].numpy()

    return run
