"""Weights: seeded PyTorch-style initialisation, checking, `.npz`/`.safetensors` I/O.

Weights are a flat mapping `"<layer>.<param>" -> ndarray` with PyTorch's names
and layouts (conv weight `(out, in/groups, *kernel)`, linear `(out, in)`,
batchnorm `weight`, `bias`, `running_mean`, `running_var`), so a PyTorch
state_dict of the same architecture (same layer names) loads directly.

>>> from cnngraph.spec import loads
>>> from cnngraph.graph import build
>>> g = build(loads("input: [4]\\nlayers: [{linear: {out: 2, name: fc}}]"))
>>> sorted((k, v.shape) for k, v in init(g, seed=0).items())
[('fc.bias', (2,)), ('fc.weight', (2, 4))]
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .errors import CnnGraphError
from .graph import Graph
from .layers import Fusion

IGNORED = ("num_batches_tracked",)  # PyTorch bookkeeping with no effect at inference


class WeightsError(CnnGraphError):
    """Weights that do not fit the network (names or shapes), or an unreadable weights file."""


def expected(graph: Graph) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer the graph needs, with its shape."""
    out = {}
    for node in graph.nodes:
        for p, shape in {**node.params, **node.buffers}.items():
            out[f"{node.name}.{p}"] = tuple(shape)
    return out


def init(graph: Graph, seed: int = 0, gain: float = 1.0) -> dict[str, np.ndarray]:
    """PyTorch's default initialisation, reproducible with `seed`.

    `gain` scales conv and linear weights: PyTorch's default shrinks the signal
    about 3x in variance per layer, so deep nets end up printing their last bias;
    `gain=6 ** 0.5` gives He initialisation, which keeps it alive (the tests use it).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for node in graph.nodes:
        for p, arr in node.layer.init_params(list(node.in_shapes), rng).items():
            if p == "weight" and node.layer.category is Fusion.ANCHOR and gain != 1.0:
                arr = arr * np.float32(gain)
            out[f"{node.name}.{p}"] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def _as_numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor, without importing torch
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def check(graph: Graph, weights: Mapping) -> dict[str, np.ndarray]:
    """Validate names and shapes, reporting every mismatch in one message; returns float32 copies."""
    want = expected(graph)
    problems = []
    got = {k: _as_numpy(v) for k, v in weights.items() if k.rsplit(".", 1)[-1] not in IGNORED}
    for k, shape in want.items():
        if k not in got:
            problems.append(f"missing '{k}' {shape}")
        elif tuple(got[k].shape) != shape:
            problems.append(f"'{k}': expected shape {shape}, got {tuple(got[k].shape)}")
    for k in got:
        if k not in want:
            problems.append(f"unexpected '{k}' {tuple(got[k].shape)}")
    if problems:
        raise WeightsError(f"weights do not fit network '{graph.name}' ({len(problems)} problem(s)):\n  "
                           + "\n  ".join(problems))
    for k in want:
        if not np.issubdtype(got[k].dtype, np.floating) and not np.issubdtype(got[k].dtype, np.integer):
            raise WeightsError(f"'{k}': expected a numeric array, got dtype {got[k].dtype}")
    return {k: np.ascontiguousarray(got[k], dtype=np.float32) for k in want}


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read `.npz` or `.safetensors` into a name -> array mapping."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsError(f"no such weights file: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file
            return dict(load_file(path))
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
    except Exception as e:  # corrupt files raise many types; report them all the same way
        raise WeightsError(f"cannot read weights {path}: {e}") from None
    raise WeightsError(f"expected a .npz or .safetensors weights file, got {path}")


def save(weights: Mapping, path: str | os.PathLike) -> None:
    """Write weights as `.npz` or `.safetensors` (by the file's extension)."""
    path = os.fspath(path)
    arrays = {k: np.ascontiguousarray(_as_numpy(v)) for k, v in weights.items()}
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file
        save_file(arrays, path)
    elif path.endswith(".npz"):
        np.savez(path, **arrays)
    else:
        raise WeightsError(f"expected a .npz or .safetensors path, got {path}")


def resolve(graph: Graph, weights=None, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights from None (seeded init), a path, or a mapping; always checked against the graph."""
    if weights is None:
        return init(graph, seed)
    if isinstance(weights, (str, os.PathLike)):
        weights = load(weights)
    return check(graph, weights)
