"""What export and import share: the error type, opset range, lazy imports."""

from __future__ import annotations

from ..errors import CnnGraphError, escape

DEFAULT_OPSET = 17  # what PyTorch exports by default; ONNX Runtime runs it everywhere
MIN_OPSET = 13  # Softmax over one axis (not "flatten from axis") starts here


class InteropError(CnnGraphError):
    """A model cnngraph cannot export or import, or the optional onnx packages are missing.
    The message is one line: names from a model are escaped (escaping is idempotent on what
    is already escaped text only in that it never adds line breaks)."""

    def __init__(self, msg: str):
        super().__init__(escape(msg))


def require_onnx():
    """The `onnx` module, or a clear error naming the extra to install."""
    try:
        import onnx
    except ImportError:
        raise InteropError("ONNX support needs the optional packages onnx and onnxruntime: "
                           "pip install 'cnngraph[onnx]'") from None
    return onnx


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise InteropError("running ONNX models needs onnxruntime: pip install 'cnngraph[onnx]'") from None
    return onnxruntime
