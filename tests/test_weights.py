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
    with pytest.raises(W.WeightsError, match=r"3 problem\(s\) \(1 missing, 1 unexpected, 1 of the wrong shape\)") as e:
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
    with pytest.raises(W.WeightsError, match=r"expected a \.npz, \.safetensors, \.pt or \.pth weights file"):
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



CNBLOCK = """
input: [4, 5, 5]
layers:
  - conv: {name: blk.block.3, out: 8, kernel: 1}
  - gelu
  - conv: {name: blk.block.5, out: 4, kernel: 1}
  - layer_scale: {name: blk.layer_scale}
"""


def test_torch_forms_load_a_bare_parameter_and_a_linear_as_a_1x1_conv():
    """torchvision's CNBlock: its layer scale is a bare (C, 1, 1) nn.Parameter named after the module and its
    MLP nn.Linear (out, in) on channels-last values; they load into layer_scale's (C,) weight and 1x1 convs."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Module()
    model.block = nn.Sequential(nn.Identity(), nn.Identity(), nn.Identity(), nn.Linear(4, 8), nn.GELU(),
                                nn.Linear(8, 4))
    model.layer_scale = nn.Parameter(torch.rand(4, 1, 1) + 0.5)
    sd = {f"blk.{k}": v for k, v in model.state_dict().items()}
    assert sd["blk.layer_scale"].shape == (4, 1, 1) and sd["blk.block.3.weight"].shape == (8, 4)
    g = cnngraph.load(CNBLOCK)
    w = W.check(g, sd)
    assert w["blk.layer_scale.weight"].shape == (4,) and w["blk.block.3.weight"].shape == (8, 4, 1, 1)
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32)
    with torch.no_grad():
        want = (model.layer_scale * model.block(torch.from_numpy(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(oracle.run(g, x, w), want, rtol=1e-5, atol=1e-6)


def test_torch_forms_reshape_only_by_trailing_ones():
    g = cnngraph.load(CNBLOCK)
    w = W.init(g)
    ok = {**w, "blk.block.3.weight": w["blk.block.3.weight"].reshape(8, 4), "blk.layer_scale.weight": np.ones((4, 1))}
    assert W.check(g, ok)["blk.block.3.weight"].shape == (8, 4, 1, 1)
    # the same number of values in another shape is no PyTorch form of the array: refused as before
    bad = {**w, "blk.block.3.weight": w["blk.block.3.weight"].reshape(4, 8), "blk.layer_scale.weight": np.ones((1, 4))}
    with pytest.raises(W.WeightsError, match=r"2 problem\(s\) \(2 of the wrong shape\): 'blk\.block\.3\.weight': "
                                             r"expected shape \(8, 4, 1, 1\), got \(4, 8\); "
                                             r"'blk\.layer_scale\.weight'"):
        W.check(g, bad)
    # a bare parameter is taken only for a layer that declares one (layer_scale), never besides its own name
    both = {**w, "blk.layer_scale": np.ones((4, 1, 1))}
    with pytest.raises(W.WeightsError, match=r"1 problem\(s\) \(1 unexpected\): unexpected 'blk\.layer_scale'"):
        W.check(g, both)
    conv = {**{k: v for k, v in w.items() if k != "blk.block.5.bias"}, "blk.block.5": w["blk.block.5.bias"]}
    with pytest.raises(W.WeightsError, match=r"missing 'blk\.block\.5\.bias'.*unexpected 'blk\.block\.5'"):
        W.check(g, conv)

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


# ---- summaries, PyTorch files, values, hostile files (issues 8 and 12) ----------------

RESNET18 = __import__("pathlib").Path(__file__).resolve().parent.parent / "specs" / "resnet18.yaml"


def test_a_mismatch_is_one_line_with_the_first_few_and_a_count():
    g = cnngraph.load(RESNET18)
    w = {f"model.{k}": v for k, v in W.init(g).items()}  # a wrapper's prefix on every name
    with pytest.raises(W.WeightsError) as e:
        W.check(g, w)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 700
    assert msg.startswith("weights do not fit network 'resnet18': 204 problem(s) (102 missing, 102 unexpected): "
                          "missing 'conv1.weight' (64, 3, 7, 7); missing 'bn1.weight' (64,); missing 'bn1.bias' "
                          "(64,); and 201 more")
    assert msg.endswith("the file's names start with 'model.', the network's do not: load it with "
                        "{k.removeprefix('model.'): v for k, v in weights.items()}")
    assert len(e.value.problems) == 204  # all of them, for a program to look at


def test_no_name_matching_at_all_says_how_names_are_made(graph):
    w = {f"layer_{i}": v for i, v in enumerate(W.init(graph).values())}
    with pytest.raises(W.WeightsError, match=r"— no name matches: weights are named '<layer>\.<param>' after the "
                                             r"spec's layers, e\.g\. 'conv1\.weight'$"):
        W.check(graph, w)


@pytest.mark.parametrize("bad, message", [
    (("conv2.weight", (0, 1, 2, 2), np.nan), r"'conv2\.weight': 1 NaN value\(s\) \(the first at index \(0, 1, 2, 2\)\)"),
    (("fc.bias", (3,), -np.inf), r"'fc\.bias': 1 infinite value\(s\) \(the first at index \(3,\)\)"),
    (("fc.bias", (1,), 1e300), r"'fc\.bias': 1 infinite value\(s\).*float64 values beyond float32's range"),
    (("bn1.running_var", (2,), -0.5), (r"'bn1\.running_var': 1 negative value \(the first, -0\.5, at index \(2,\)\) "
                                       r"— a variance is never negative")),
])
def test_nan_inf_and_negative_variances_are_refused(graph, bad, message):
    name, index, value = bad
    w = {k: v.astype(np.float64) for k, v in W.init(graph).items()}
    w[name][index] = value
    with pytest.raises(W.WeightsError, match=message):
        W.check(graph, w)


def test_pytorch_files_load_with_torch(graph, tmp_path):
    torch = pytest.importorskip("torch")
    w = W.init(graph, seed=5)
    sd = {k: torch.from_numpy(v.copy()) for k, v in w.items()}
    sd["bn1.num_batches_tracked"] = torch.tensor(7)
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "checkpoint.pth")
    for name in ("plain.pt", "checkpoint.pth"):
        back = W.resolve(graph, str(tmp_path / name))
        assert all(np.array_equal(back[k], w[k]) for k in w), name
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(W.WeightsError, match=r"empty\.pt: a mapping without tensors \(keys epoch\); expected a "
                                             r"state_dict"):
        W.load(tmp_path / "empty.pt")


def test_pytorch_files_without_torch_say_how_to_convert(tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    (tmp_path / "model.pth").write_bytes(b"PK")
    with pytest.raises(W.WeightsError, match=r"reading .*model\.pth needs PyTorch \(pip install torch\); or "
                                             r"convert it once where PyTorch is: python -c .*safetensors"):
        W.load(tmp_path / "model.pth")


def test_tensors_that_require_grad_or_are_bfloat16(graph):
    torch = pytest.importorskip("torch")
    w = W.init(graph)
    sd = {k: torch.from_numpy(v.copy()).requires_grad_(v.ndim > 1) for k, v in w.items()}
    sd["fc.bias"] = sd["fc.bias"].to(torch.bfloat16)
    got = W.check(graph, sd)
    assert np.array_equal(got["conv1.weight"], w["conv1.weight"])
    assert got["fc.bias"].dtype == np.float32
    np.testing.assert_allclose(got["fc.bias"], w["fc.bias"], rtol=1e-2)  # bfloat16 keeps 8 bits
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    assert cnngraph.reference(graph, x, sd).shape == (1, 4)


def test_npz_zip_bomb_is_refused_before_decompressing(tmp_path):
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, a=np.zeros(1 << 19, np.float32))  # 2 MiB of zeros in about 2 KiB
    assert bomb.stat().st_size < 10_000
    with pytest.raises(W.WeightsError, match=r"bomb\.npz: its arrays unpack to 2,097,280 bytes, more than the "
                                             r"1,048,576 allowed \(a zip bomb"):
        W.load(bomb, max_bytes=1 << 20)
    assert W.load(bomb)["a"].shape == (1 << 19,)


def _zip(path, members):
    import zipfile
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_npz_member_names_and_headers_are_checked(tmp_path):
    import io

    from numpy.lib import format as npy
    _zip(tmp_path / "names.npz", {"a.npy": b"", "../../evil.sh": b"echo"})
    with pytest.raises(W.WeightsError, match=r"member '\.\./\.\./evil\.sh' is not one \.npy array"):
        W.load(tmp_path / "names.npz")
    head = io.BytesIO()
    npy.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9,)})
    _zip(tmp_path / "liar.npz", {"w.npy": head.getvalue() + bytes(16)})
    with pytest.raises(W.WeightsError, match=r"'w' in .*liar\.npz: its header claims 4,000,000,000 bytes of data, "
                                             r"the member holds 16"):
        W.load(tmp_path / "liar.npz")
    head = io.BytesIO()
    npy.write_array_header_1_0(head, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    _zip(tmp_path / "pickle.npz", {"w.npy": head.getvalue() + bytes(8)})
    with pytest.raises(W.WeightsError, match=r"expected numbers, got dtype object"):
        W.load(tmp_path / "pickle.npz")


def test_weights_file_larger_than_the_net_needs_is_refused_by_resolve(graph, tmp_path):
    np.savez(tmp_path / "big.npz", **W.init(graph), extra=np.zeros(20 << 20, np.float32))  # 80 MiB extra
    with pytest.raises(W.WeightsError, match=r"big\.npz: 83,[\d,]+ bytes, more than the 67,108,864 allowed"):
        W.resolve(graph, str(tmp_path / "big.npz"))
