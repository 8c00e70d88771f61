"""The bundled ShuffleNetV2, RegNetY and ConvNeXt specs are torchvision's networks: torchvision's
model's state_dict loads into them by name, and the numpy reference and the compiled net give
torchvision's output. At 64x64 inputs (the models are the same; the sizes keep the tests fast).
Skips without torch and torchvision."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys

import numpy as np
import pytest

import cnngraph
from cnngraph import oracle
from cnngraph import weights as W
from cnngraph.spec import load as load_spec

torch = pytest.importorskip("torch")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import zoo  # noqa: E402

try:
    TV = zoo.import_torchvision()
except ImportError:
    TV = None

pytestmark = pytest.mark.skipif(TV is None, reason="torchvision is not installed")

NAMES = ("shufflenet_v2_x1_0", "regnet_y_400mf", "convnext_tiny")
SHAPE = (3, 64, 64)
TOL = 1e-4


def rel_err(y, want) -> float:
    return float(np.abs(np.asarray(y, np.float64) - want).max() / max(float(np.abs(want).max()), 1e-6))


def randomise(model, seed: int = 1):
    """Parameters the default init leaves at their identity, which would hide a mis-wired or mis-loaded
    one: batchnorm statistics and affines (as tools/zoo.py), layer norm affines, and ConvNeXt's layer
    scales (1e-6 by default, which makes every block all but the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.2)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
            if isinstance(mod, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.2)
            if hasattr(mod, "layer_scale"):
                mod.layer_scale.copy_(torch.rand(mod.layer_scale.shape, generator=g) * 0.5 + 0.25)
    return model


@functools.cache
def case(name: str):
    """(graph at SHAPE, the torchvision model's weights as cnngraph takes them, input batch, torch's output)."""
    torch.manual_seed(0)
    model = randomise(TV.models.get_model(name, weights=None).eval())
    graph = cnngraph.load(dataclasses.replace(load_spec(ROOT / "specs" / f"{name}.yaml"), input_shape=SHAPE))
    weights = W.check(graph, model.state_dict())  # by name: no key renamed, none left over
    x = np.random.default_rng(0).standard_normal((2, *SHAPE)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy().astype(np.float64)
    return graph, weights, x, want


@pytest.mark.parametrize("name", NAMES)
def test_reference_matches_torchvision(name):
    graph, weights, x, want = case(name)
    y = oracle.run(graph, x, weights)
    assert y.shape == want.shape == (2, 1000)
    assert rel_err(y, want) <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_compiled_matches_reference(name):
    graph, weights, x, want = case(name)
    net = cnngraph.compile(graph, weights=weights)
    y, r = net(x), oracle.run(graph, x, weights)
    assert rel_err(y, r) <= TOL
    assert rel_err(y, want) <= TOL


def test_convnext_loads_torchvision_forms():
    """torchvision's CNBlock keeps its layer scale as a bare (C, 1, 1) parameter and its MLP as
    nn.Linear (out, in): they load into the layer_scale's (C,) weight and the 1x1 convs' (out, in, 1, 1)."""
    graph, weights, _, _ = case("convnext_tiny")
    sd = TV.models.get_model("convnext_tiny", weights=None).state_dict()
    assert sd["features.5.4.layer_scale"].shape == (384, 1, 1)
    assert sd["features.5.4.block.3.weight"].shape == (1536, 384)
    assert weights["features.5.4.layer_scale.weight"].shape == (384,)
    assert weights["features.5.4.block.3.weight"].shape == (1536, 384, 1, 1)
    assert graph.node("features.5.4.block.3").op == "conv2d"
