"""Run an ONNX model on ONNX Runtime (CPU): for comparisons and benchmarks.

>>> import cnngraph, numpy as np
>>> from cnngraph.interop import export
>>> m = export(cnngraph.load("input: [3]\\nlayers: [relu]"))
>>> run(m, np.array([[-1, 0, 2]], np.float32))
array([[0., 0., 2.]], dtype=float32)
"""

from __future__ import annotations

import os

import numpy as np

from .common import require_onnxruntime


def session(model, threads: int | None = None):
    """An `onnxruntime.InferenceSession` for a ModelProto, bytes or path; `threads` caps intra-op threads."""
    ort = require_onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # no warnings on stderr
    if threads:
        opts.intra_op_num_threads = int(threads)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, (bytes, bytearray)):
        model = os.fspath(model)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run(model_or_session, x) -> np.ndarray:
    """The first output for input `x` (float32) fed to the first input."""
    sess = model_or_session if hasattr(model_or_session, "get_inputs") else session(model_or_session)
    return sess.run(None, {sess.get_inputs()[0].name: np.asarray(x, np.float32)})[0]
