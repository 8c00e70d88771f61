"""Interchange with other tools: ONNX export and import.

onnx and onnxruntime are the optional extra `cnngraph[onnx]`; they are imported
lazily, inside these functions, with a clear error when missing.

    export(graph, weights, "net.onnx")        -> onnx.ModelProto (graph + weights, dynamic batch)
    import_onnx("model.onnx")                 -> Imported(spec, weights, yaml)
    load_onnx("model.onnx")                   -> (NetSpec, weights), cached per file version

>>> import cnngraph.interop as io
>>> sorted(n for n in io.__all__)
['DEFAULT_OPSET', 'Imported', 'InteropError', 'export', 'import_onnx', 'load_onnx', 'register']
"""

from __future__ import annotations

from .common import DEFAULT_OPSET, InteropError


def export(graph, weights=None, path=None, **options):
    """Write a network and its weights as ONNX; see `onnx_export.export`."""
    from .onnx_export import export as _export
    return _export(graph, weights, path, **options)


def import_onnx(model, **options):
    """An ONNX model (path, bytes or ModelProto) -> `Imported`; see `onnx_import.import_onnx`."""
    from .onnx_import import import_onnx as _import
    return _import(model, **options)


def load_onnx(path):
    """`(NetSpec, weights)` of an ONNX file, cached while the file is unchanged."""
    from .onnx_import import load_onnx as _load
    return _load(path)


def register(register_loader) -> None:
    """Register the model formats this package reads with the facade (`cnngraph.register_loader`)."""
    register_loader(".onnx", load_onnx)


def __getattr__(name):
    if name == "Imported":
        from .onnx_import import Imported
        return Imported
    raise AttributeError(name)


__all__ = ["DEFAULT_OPSET", "Imported", "InteropError", "export", "import_onnx", "load_onnx", "register"]
