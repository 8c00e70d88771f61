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


def layer_fn(layer, in_shapes, params: dict):
    """A function of torch tensors computing `layer` (its `torch_fn` facet), or None."""
    return layer.torch_fn(_torch(), [tuple(s) for s in in_shapes], params)


def forward(graph, weights, dtype=np.float32):
    """A function numpy batch -> numpy output running the graph in PyTorch (no grad).

    Raises where a layer has no torch equivalent (asymmetric pool padding).
    """
    torch = _torch()
    steps = []
    for node in graph.nodes:
        params = {k: torch.from_numpy(np.ascontiguousarray(v, dtype)) for k, v in params_of(node, weights).items()}
        fn = layer_fn(node.layer, node.in_shapes, params)
        if fn is None:
            from ..errors import CnnGraphError
            raise CnnGraphError(f"layer '{node.name}' ({node.op}) has no PyTorch equivalent here")
        steps.append((node, fn))

    def run(x):
        with torch.no_grad():
            values = {INPUT: torch.from_numpy(np.ascontiguousarray(x, dtype))}
            for node, fn in steps:
                values[node.name] = fn(*[values[i] for i in node.inputs])
            return values[graph.output].numpy()

    return run
