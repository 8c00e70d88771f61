"""Weights: seeded init, PyTorch names/layouts, npz/safetensors round trips, clear mismatch errors."""

import numpy as np
import pytest

import cnngraph
from cnngraph import oracle
from cnngraph import weights as W

SPEC = """
name: small
input: [3, 12, 12]
layers:
  - conv: {name: conv1, out: 8, kernel: 3, padding: 1, bias: false}
  - batchnorm: {name: bn1}
  - relu
  - maxpool: {kernel: 2}
  - conv: {name: conv2, out: 8, kernel: 3, groups: 2}
  - global_avgpool
  - flatten
  - linear: {name: fc, out: 4}
"""


@pytest.fixture
def graph():
    return cnngraph.load(SPEC)


def test_init_names_layouts_and_seed(graph):
    w = W.init(graph, seed=3)
    assert {k: v.shape for k, v in w.items()} == {
        "conv1.weight": (8, 3, 3, 3), "bn1.weight": (8,), "bn1.bias": (8,), "bn1.running_mean": (8,),
        "bn1.running_var": (8,), "conv2.weight": (8, 4, 3, 3), "conv2.bias": (8,), "fc.weight": (4, 8),
        "fc.bias": (4,)}
    assert all(v.dtype == np.float32 for v in w.values())
    again, other = W.init(graph, seed=3), W.init(graph, seed=4)
    assert all(np.array_equal(w[k], again[k]) for k in w)
    assert not np.array_equal(w["conv1.weight"], other["conv1.weight"])
    # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(w["conv1.weight"]).max() <= 1 / np.sqrt(27) and np.abs(w["conv1.weight"]).max() > 0.8 / np.sqrt(27)
    assert np.all(w["bn1.running_var"] == 1) and np.all(w["bn1.weight"] == 1)


@pytest.mark.parametrize("ext", [".npz", ".safetensors"])
def test_save_load_round_trip(graph, tmp_path, ext):
    w = W.init(graph, seed=1)
    path = tmp_path / f"w{ext}"
    W.save(w, path)
    back = W.resolve(graph, str(path))
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    np.testing.assert_array_equal(cnngraph.reference(graph, x, str(path)), cnngraph.reference(graph, x, w))


def test_every_mismatch_in_one_message(graph):
    w = W.init(graph)
    del w["fc.bias"]
    w["conv1.weight"] = np.zeros((8, 3, 5, 5), np.float32)
    w["conv9.weight"] = np.zeros(3, np.float32)
    with pytest.raises(W.WeightsError, match=r"3 problem\(s\)") as e:
        W.check(graph, w)
    msg = str(e.value)
    assert "missing 'fc.bias' (4,)" in msg
    assert "'conv1.weight': expected shape (8, 3, 3, 3), got (8, 3, 5, 5)" in msg
    assert "unexpected 'conv9.weight'" in msg


def test_bad_weight_files(tmp_path, graph):
    with pytest.raises(W.WeightsError, match="no such weights file"):
        W.load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(W.WeightsError, match="cannot read weights"):
        W.load(bad)
    txt = tmp_path / "w.txt"
    txt.write_text("x")
    with pytest.raises(W.WeightsError, match="expected a .npz or .safetensors weights file"):
        W.load(txt)


def test_torch_state_dict_loads_directly_and_matches(graph):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Module()
    model.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    model.bn1 = nn.BatchNorm2d(8)
    model.conv2 = nn.Conv2d(8, 8, 3, groups=2)
    model.fc = nn.Linear(8, 4)
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-1, 1)
        model.bn1.running_var.uniform_(0.5, 2)
        model.bn1.weight.uniform_(0.5, 2)
    model.eval()

    def forward(x):
        x = torch.nn.functional.max_pool2d(torch.relu(model.bn1(model.conv1(x))), 2)
        return model.fc(model.conv2(x).mean(dim=(2, 3)))

    sd = model.state_dict()
    assert "bn1.num_batches_tracked" in sd  # ignored: no effect at inference
    x = np.random.default_rng(0).standard_normal((3, 3, 12, 12)).astype(np.float32)
    y = oracle.run(graph, x, W.check(graph, sd))
    with torch.no_grad():
        want = forward(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_gain_keeps_the_signal_of_a_deep_net_alive():
    g = cnngraph.load(str(__import__("pathlib").Path(__file__).parent.parent / "specs" / "mobilenet_v2.yaml"))
    x = np.random.default_rng(0).standard_normal((1, *g.input_shape)).astype(np.float32)
    out = {}
    for gain in (1.0, 6 ** 0.5):
        w = W.init(g, gain=gain)
        out[gain] = oracle.run(g, x, w).ravel() - w["classifier.1.bias"]
    assert np.std(out[1.0]) < 1e-6  # PyTorch's default: the body contributes next to nothing
    assert np.std(out[6 ** 0.5]) > 0.1
    assert np.array_equal(W.init(g, gain=2.0)["features.0.0.weight"], 2 * W.init(g)["features.0.0.weight"])
