"""The bundled EfficientNet-B0 and MobileNetV3 specs are torchvision's networks: a torchvision
model's state_dict loads into them by name, and the numpy reference and the compiled net give
torchvision's output. Skips without torch and torchvision.

The architectures are whole; the input is 64x64 (instead of 224x224) to keep the test fast.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

import numpy as np
import pytest

import cnngraph
from cnngraph.spec import load as load_spec

torch = pytest.importorskip("torch")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tools"))
import zoo  # noqa: E402

try:
    TV = zoo.import_torchvision()
except ImportError:
    TV = None

SPECS = pathlib.Path(__file__).resolve().parent.parent / "specs"
NAMES = ["efficientnet_b0", "mobilenet_v3_large", "mobilenet_v3_small"]
SHAPE = (3, 64, 64)
TOL = 1e-4  # of the output's scale


def rel_err(y, r) -> float:
    return float(np.abs(y - r).max() / max(np.abs(r).max(), 1e-6))


@pytest.mark.skipif(TV is None, reason="torchvision is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_torchvision_state_dict_loads_by_name_and_outputs_agree(name):
    model = zoo.build(TV, name, "classification")  # random weights, batchnorm statistics that are not the identity
    weights = model.state_dict()
    graph = cnngraph.load(dataclasses.replace(load_spec(SPECS / f"{name}.yaml"), input_shape=SHAPE))
    x = np.random.default_rng(0).standard_normal((2, *SHAPE)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    ref = cnngraph.reference(graph, x, weights=weights)  # names and shapes checked: nothing missing or left over
    assert ref.shape == expected.shape == (2, 1000)
    assert rel_err(ref, expected) < TOL, f"reference vs torch: {rel_err(ref, expected):.2e}"
    y = cnngraph.compile(graph, weights=weights)(x)
    assert rel_err(y, ref) < TOL, f"compiled vs reference: {rel_err(y, ref):.2e}"
