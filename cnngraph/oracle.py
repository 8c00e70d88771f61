"""The numpy reference executor: each layer's `reference()` in topological order.

Deliberately plain: it is the oracle every other executor is checked against.
float32 by default; pass a float64 input for high-precision checks.

>>> import numpy as np
>>> from cnngraph.spec import loads
>>> from cnngraph.graph import build
>>> g = build(loads("input: [1, 4, 4]\\nlayers: [{maxpool: {kernel: 2}}]"))
>>> run(g, np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4), {})[0, 0]
array([[ 5.,  7.],
       [13., 15.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from .graph import Graph
from .spec import INPUT


def real_array(x) -> np.ndarray:
    """x as a base-class ndarray: a subclass's claims about its dtype and shape are not trusted,
    a torch tensor that requires grad is detached, anything else goes through np.asarray.

    >>> real_array([[1, 2]]).shape
    (1, 2)
    """
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ndarray):
        return np.asarray(x).view(np.ndarray)  # the memory's real descriptor, not a property's
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch, without importing it
        x = x.detach().cpu().numpy()
    try:
        out = np.asarray(x)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"expected a numeric array, got {type(x).__name__}: {e}") from None
    return out.view(np.ndarray) if type(out) is not np.ndarray else out


def check_input(graph: Graph, x) -> np.ndarray:
    """x must be (N, *input_shape) and real; returns it as a float32 (or float64) array."""
    x = real_array(x)
    want = graph.input_shape
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
        raise ValueError(f"expected an input of shape (N, {', '.join(map(str, want))}), got {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"expected a float32 array, got dtype {x.dtype}")
    return x if x.dtype == np.float64 else x.astype(np.float32, copy=False)


def params_of(node, weights) -> dict[str, np.ndarray]:
    prefix = node.name + "."
    return {p: weights[prefix + p] for p in (*node.params, *node.buffers)}


def run_all(graph: Graph, x, weights) -> dict[str, np.ndarray]:
    """Every layer's output by name (plus 'input')."""
    values = {INPUT: check_input(graph, x)}
    for node in graph.nodes:
        values[node.name] = node.layer.reference([values[i] for i in node.inputs], params_of(node, weights))
    return values


def run(graph: Graph, x, weights) -> np.ndarray:
    """The network's output for a batch `x` of shape (N, *input_shape)."""
    values = {INPUT: check_input(graph, x)}
    frees = graph.frees_after()
    for node in graph.nodes:
        values[node.name] = node.layer.reference([values[i] for i in node.inputs], params_of(node, weights))
        for i in frees[node.name]:  # drop what nobody reads any more
            del values[i]
    return values[graph.output]
