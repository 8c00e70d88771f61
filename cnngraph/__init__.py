"""cnngraph: a declarative CNN compiler.

    spec (YAML) -> graph (shapes, costs) -> report / fcview / reference / compiled native code

Everything public is reachable from here (`dir(cnngraph)` lists it): `load`,
`reference`, `compile`, `prepare`, `specs`, the error types, and the modules
`report`, `weights`, `data`, `preprocess`, `fcview` and `dask` (imported when
first used).

>>> import cnngraph
>>> g = cnngraph.load("lenet5")           # a bundled spec, by name
>>> g.output_shape, cnngraph.report.graph_repr(g)
((10,), "<Graph 'lenet5': input 1x32x32 -> output 10, 12 layers, 61.71K params, 416.5K MACs>")
"""

import importlib as _importlib
import os as _os

from . import graph as _graph
from . import oracle as _oracle
from . import spec as _spec
from . import weights as _weights
from .errors import CnnGraphError, LayerError, SpecError, SpecWarning
from .graph import Graph
from .preprocess import InputError
from .spec import NetSpec
from .weights import WeightsError

__version__ = "0.1.0"


def load(spec_or_path, strict: bool = False) -> _graph.Graph:
    """A spec path, a bundled spec's name, YAML text, NetSpec or Graph -> an inferred Graph.

    A path ending in `.onnx` is imported (needs `cnngraph[onnx]`); `reference` and
    `compile` then use the model's own weights unless given others.

    >>> load("input: [3, 8, 8]\\nlayers: [{conv: {out: 4, kernel: 3}}]").output_shape
    (4, 6, 6)
    """
    if isinstance(spec_or_path, _graph.Graph):
        return spec_or_path
    if isinstance(spec_or_path, _spec.NetSpec):
        return _graph.build(spec_or_path, strict)
    if not isinstance(spec_or_path, (str, _os.PathLike)):
        raise TypeError(f"expected a path, a bundled spec's name, YAML text, a NetSpec or a Graph, got "
                        f"{type(spec_or_path).__name__}")
    text = _os.fspath(spec_or_path)
    if _is_onnx(text):  # an ONNX model: imported (cnngraph[onnx]); its weights come with `onnx_weights`
        from .interop import load_onnx
        return _graph.build(load_onnx(text)[0], strict)
    if "\n" in text or (not _os.path.exists(text) and ":" in text and not text.endswith((".yaml", ".yml"))):
        return _graph.build(_spec.loads(text), strict)
    return _graph.build(_spec.load(text), strict)


def _is_onnx(spec_or_path) -> bool:
    return isinstance(spec_or_path, (str, _os.PathLike)) and _os.fspath(spec_or_path).endswith(".onnx") \
        and "\n" not in _os.fspath(spec_or_path)


def onnx_weights(spec_or_path, weights=None):
    """The weights to use: `weights` if given, else those inside an `.onnx` model (else None)."""
    if weights is None and _is_onnx(spec_or_path):
        from .interop import load_onnx
        return load_onnx(spec_or_path)[1]
    return weights


def reference(spec_or_path, x, weights=None, seed: int = 0):
    """Run the numpy reference executor (the oracle) on a batch x of shape (N, *input_shape).

    `weights`: None (seeded PyTorch-style init; for an `.onnx` model, its own weights),
    a `.npz`/`.safetensors`/`.pt` path, or a mapping.
    """
    g = load(spec_or_path)
    return _oracle.run(g, x, _weights.resolve(g, onnx_weights(spec_or_path, weights), seed))


def compile(spec_or_path, threads: int | None = None, weights=None, seed: int = 0, **options):
    """JIT-compile a network (spec path, YAML text, NetSpec, Graph or `.onnx` path) to native code;
    returns a callable `net(x)`. An `.onnx` model's own weights are used unless `weights` is given.
    `options`: `target` ('host', 'avx2'), `poison` (see `cnngraph.compiler.compile`).
    """
    weights = onnx_weights(spec_or_path, weights)
    from .compiler import compile as _compile
    return _compile(load(spec_or_path), threads=threads, weights=weights, seed=seed, **options)


def prepare(net, source):
    """One input for `net` from an image, a `.wav`, a `.npy` sample or an image array, as the
    spec's `preprocess:` section says (see `cnngraph.preprocess.prepare`)."""
    from .preprocess import prepare as _prepare
    return _prepare(net, source)


def specs() -> dict[str, str]:
    """The bundled specs: name -> file (`load("resnet50")` reads one by name).

    >>> "resnet50" in specs()
    True
    """
    return _spec.bundled()


_MODULES = ("report", "weights", "data", "preprocess", "fcview", "dask", "units", "errors", "spec", "graph",
            "compiler", "interop", "oracle", "layers")


def __getattr__(name):
    if name in _MODULES:  # `cnngraph.report.to_text(...)` without importing cnngraph.report first
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'cnngraph' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = [
    "CnnGraphError",
    "Graph",
    "InputError",
    "LayerError",
    "NetSpec",
    "SpecError",
    "SpecWarning",
    "WeightsError",
    "__version__",
    "compile",
    "dask",
    "data",
    "fcview",
    "load",
    "onnx_weights",
    "prepare",
    "preprocess",
    "reference",
    "report",
    "specs",
    "weights",
]
