"""Models people deploy, as PyTorch exports them (tools/zoo.py runs all of torchvision's
convolutional models; this is the CI share, at small inputs): imported, compiled, and equal to
ONNX Runtime on the same model. Skips without torch and torchvision."""

from __future__ import annotations

import pathlib
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tools"))
import zoo  # noqa: E402

try:
    TV = zoo.import_torchvision()
except ImportError:
    TV = None

# (model, family, input without the batch): small inputs keep CI fast; the architectures are whole
CASES = [
    ("resnet18", "classification", (3, 64, 64)),
    ("mobilenet_v2", "classification", (3, 64, 64)),
    ("squeezenet1_1", "classification", (3, 64, 64)),
    ("regnet_x_400mf", "classification", (3, 64, 64)),
    ("googlenet", "classification", (3, 64, 64)),
    ("r3d_18", "video", (3, 4, 32, 32)),
    ("convnext_tiny", "classification", (3, 64, 64)),  # channels-last blocks, imported channels-first
    ("lraspp_mobilenet_v3_large", "segmentation", (3, 64, 64)),  # the one segmentation model: Resize to the input
]


@pytest.mark.skipif(TV is None, reason="torchvision is not installed")
@pytest.mark.parametrize("name,family,shape", CASES, ids=[c[0] for c in CASES])
def test_torchvision_model_matches_onnx_runtime(name, family, shape):
    r = zoo.run_one(TV, name, family, shape)
    assert r["status"] == "ok", r
    assert r["err"] <= zoo.TOL
