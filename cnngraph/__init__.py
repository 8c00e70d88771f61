"""cnngraph: a declarative CNN compiler.

    spec (YAML) -> graph (shapes, costs) -> report / fcview / reference / compiled native code

>>> import cnngraph, numpy as np
>>> net = cnngraph.load("specs/lenet5.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

import os

from . import graph as _graph
from . import oracle as _oracle
from . import spec as _spec
from . import weights as _weights
from .errors import CnnGraphError, LayerError, SpecError, SpecWarning

__version__ = "0.1.0"


def load(spec_or_path, strict: bool = False) -> _graph.Graph:
    """A spec path, YAML text, NetSpec or Graph -> an inferred Graph.

    >>> load("input: [3, 8, 8]\\nlayers: [{conv: {out: 4, kernel: 3}}]").output_shape
    (4, 6, 6)
    """
    if isinstance(spec_or_path, _graph.Graph):
        return spec_or_path
    if isinstance(spec_or_path, _spec.NetSpec):
        return _graph.build(spec_or_path, strict)
    text = os.fspath(spec_or_path)
    if "\n" in text or (not os.path.exists(text) and ":" in text and not text.endswith((".yaml", ".yml"))):
        return _graph.build(_spec.loads(text), strict)
    return _graph.build(_spec.load(text), strict)


def reference(spec_or_path, x, weights=None, seed: int = 0):
    """Run the numpy reference executor (the oracle) on a batch x of shape (N, *input_shape).

    `weights`: None (seeded PyTorch-style init), a `.npz`/`.safetensors` path, or a mapping.
    """
    g = load(spec_or_path)
    return _oracle.run(g, x, _weights.resolve(g, weights, seed))


def compile(spec_or_path, threads: int | None = None, weights=None, seed: int = 0, **options):
    """JIT-compile a network to native code; returns a callable `net(x)`."""
    from .compiler import compile as _compile
    return _compile(spec_or_path, threads=threads, weights=weights, seed=seed, **options)


__all__ = ["CnnGraphError", "LayerError", "SpecError", "SpecWarning", "compile", "load", "reference"]
