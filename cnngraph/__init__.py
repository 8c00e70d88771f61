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
    loader = _loader(text)
    if loader is not None:  # a model file another tool wrote (ONNX): its weights come with `onnx_weights`
        return _graph.build(loader(text)[0], strict)
    if "\n" in text or (not _os.path.exists(text) and ":" in text and not text.endswith((".yaml", ".yml"))):
        return _graph.build(_spec.loads(text), strict)
    return _graph.build(_spec.load(text), strict)


# ---- model files of other tools: a registry the interop package fills (nothing below imports us) ----
_LOADERS: dict = {}  # file suffix -> function(path) -> (NetSpec, weights)


def register_loader(suffix: str, load_file) -> None:
    """Teach `load`, `reference` and `compile` a model file format: `load_file(path)` returns
    (NetSpec, weights). cnngraph.interop registers `.onnx`."""
    _LOADERS[suffix.lower()] = load_file


def _loader(spec_or_path):
    if not isinstance(spec_or_path, (str, _os.PathLike)):
        return None
    text = _os.fspath(spec_or_path)
    if "\n" in text:
        return None
    return next((f for suffix, f in _LOADERS.items() if text.lower().endswith(suffix)), None)


def onnx_weights(spec_or_path, weights=None):
    """The weights to use: `weights` if given, else those inside a model file (`.onnx`), else None."""
    loader = _loader(spec_or_path)
    if weights is None and loader is not None:
        return loader(_os.fspath(spec_or_path))[1]
    return weights


def export(spec_or_path, path=None, weights=None, seed: int = 0, **options):
    """A network (spec path, name, YAML text, NetSpec, Graph or `.onnx`) and its weights as an ONNX
    model, written to `path` if given (see `cnngraph.interop.export` for the options)."""
    from .interop import export as _export
    return _export(load(spec_or_path), onnx_weights(spec_or_path, weights), path, seed=seed, **options)


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
    `options`: `target` ('host', 'avx2'), `precision` ('f32', 'bf16', 'auto'), `poison` (see
    `cnngraph.compiler.compile`).
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


from .interop import register as _register_interop  # noqa: E402 - after the registry it fills

_register_interop(register_loader)


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
    "export",
    "data",
    "fcview",
    "load",
    "onnx_weights",
    "prepare",
    "preprocess",
    "reference",
    "register_loader",
    "report",
    "specs",
    "weights",
]
