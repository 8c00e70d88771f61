"""Rows of the composed map computed backwards: whole maps from the output side, and effective
receptive fields of single units."""

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from cnngraph import fcview, load, oracle
from cnngraph import weights as W

SPECS = pathlib.Path(__file__).resolve().parent.parent / "specs"

BRANCHES = """
input: [2, 9, 9]
layers:
  - conv: {name: stem, out: 4, kernel: 3, padding: 1}
  - relu
  - conv: {name: a, out: 4, kernel: 3, padding: 1, from: relu1}
  - conv: {name: b, out: 4, kernel: 1, from: relu1}
  - add: {name: sum, from: [a, b]}
  - add: {name: twice, from: [sum, sum]}
  - maxpool: {name: mp, kernel: 3, stride: 1, padding: 1, from: relu1}
  - concat: {name: cat, from: [twice, mp, relu1]}
  - batchnorm: {name: bn}
  - avgpool: {kernel: 3, stride: 2, ceil_mode: true, count_include_pad: false, padding: 1}
  - global_avgpool
  - flatten
  - linear: {out: 3}
  - softmax
"""


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "cnngraph", *map(str, args)], capture_output=True, text=True,
                       timeout=300, check=False)
    return p.returncode, p.stdout, p.stderr


# ---- the composed map from the output side ------------------------------------------------

@pytest.mark.parametrize("spec", [BRANCHES, SPECS / "lenet5.yaml"], ids=["branches", "lenet5"])
def test_backward_composition_equals_forward(spec):
    g = load(spec)
    prepared = fcview.prepare(g, seed=4)
    fwd = fcview.compose(g, prepared=prepared, direction="forward")
    bwd = fcview.compose(g, prepared=prepared, direction="backward")
    assert bwd.A.shape == fwd.A.shape and bwd.mode == fwd.mode
    assert abs(bwd.A - fwd.A).max() < 1e-12 and np.abs(bwd.c - fwd.c).max() < 1e-12
    assert bwd.max_abs_error < 1e-12
    auto = fcview.compose(g, prepared=prepared)  # fewer outputs than inputs: backwards
    assert abs(auto.A - bwd.A).max() == 0


def test_backward_refuses_early_naming_the_bytes():
    g = load(SPECS / "lenet5.yaml")
    w, _, acts = fcview.prepare(g)
    with pytest.raises(fcview.FCViewError, match=r"backward pass from 'fc3' would need about .* \([\d,]+ bytes"):
        fcview.backward(g, "fc3", np.eye(10), np.zeros(10, int), w, acts, max_bytes=100_000)
    with pytest.raises(fcview.FCViewError, match=r"composed network map would need about .* built backwards"):
        fcview.compose(g, max_bytes=100_000, direction="backward")
    with pytest.raises(fcview.FCViewError, match=r"expected direction 'auto', 'forward' or 'backward', got 'up'"):
        fcview.compose(g, direction="up")


def test_backward_rows_per_sample_use_that_samples_selections():
    g = load("input: [1, 6, 6]\nlayers: [{conv: {out: 2, kernel: 3}}, relu, {maxpool: {kernel: 2}}]")
    w = W.init(g, seed=1)
    xs = np.random.default_rng(2).standard_normal((3, 1, 6, 6))
    acts = oracle.run_all(g, xs, w)
    unit = np.ravel_multi_index((1, 0, 1), g.output_shape)
    rows = np.zeros((3, math.prod(g.output_shape)))
    rows[:, unit] = 1
    got, _, mode = fcview.backward(g, "maxpool1", rows, [0, 1, 2], w, acts)
    assert mode == "piecewise"
    for s in range(3):  # each sample's row equals that sample's own composed map
        want = fcview.compose(g, w, xs[s], direction="forward").A.toarray()[unit]
        np.testing.assert_allclose(got[s], want, atol=1e-14)
    assert not np.allclose(got[0], got[1])


# ---- effective receptive fields ---------------------------------------------------------------

def test_erf_is_the_mean_absolute_row_and_lies_inside_the_theoretical_box():
    spec = ("input: [2, 23, 21]\nlayers: [{conv: {out: 3, kernel: 3, padding: 1}}, relu, {maxpool: {kernel: 2}}, "
            "{conv: {out: 2, kernel: 3, stride: 2, name: top}}]")
    g = load(spec)
    w = W.init(g, seed=3)
    xs = np.random.default_rng(5).standard_normal((4, *g.input_shape))
    e = fcview.erf(g, "top", (1, 2, 3), inputs=xs, weights=w)
    want = np.zeros(g.input_shape[1:])
    unit = np.ravel_multi_index((1, 2, 3), g.node("top").out_shape)
    for x in xs:  # the definition: mean over samples of |row of the composed map|, summed over channels
        row = fcview.compose(g, w, x, direction="forward").A.toarray()[unit].reshape(g.input_shape)
        want += np.abs(row).sum(0) / len(xs)
    np.testing.assert_allclose(e.heat, want, atol=1e-14)
    # theoretical field: conv3 -> pool2 -> conv3/2 gives 3 + (2-1) + (3-1)*2 = 8 px, jump 4
    assert e.theoretical_size == (8.0, 8.0)
    (y0, y1), (x0, x1) = e.box
    inside = np.zeros_like(want, bool)
    inside[y0:y1, x0:x1] = True
    assert (e.heat[~inside] == 0).all() and (e.heat[inside] > 0).mean() > 0.5
    assert 0 < e.radius_50 <= e.radius_95 <= math.hypot(4, 4)
    d = e.as_dict()
    assert d["theoretical"]["size"] == [8.0, 8.0] and d["unit"] == [1, 2, 3] and d["inputs"] == 4


def test_erf_radius_holds_the_asked_mass():
    heat = np.zeros((21, 21))
    heat[10, 10] = 1.0
    assert fcview._radius(heat, (10, 10), 0.95) == 0.0
    heat[10, 13] = 1.0
    assert fcview._radius(heat, (10, 10), 0.5) == 0.0 and fcview._radius(heat, (10, 10), 0.95) == 3.0


def test_erf_shrinks_relative_to_the_theoretical_field_with_depth():
    """Luo et al. 2016: the theoretical field grows linearly with depth, the effective one slower."""
    ratios = []
    for depth in (2, 4, 8):
        layers = ", ".join(["{conv: {out: 4, kernel: 3, padding: 1}}", "relu"] * depth)
        g = load(f"input: [1, 41, 41]\nlayers: [{layers}]")
        e = fcview.erf(g, f"conv{depth}", inputs=4)
        assert e.theoretical_size == (2 * depth + 1.0,) * 2 and e.centre == (20.0, 20.0)
        ratios.append(e.radius_95 / (e.theoretical_size[0] / 2 * math.sqrt(2)))
    assert ratios[0] > ratios[1] > ratios[2]


def test_erf_of_a_unit_no_input_reaches_is_refused():
    # a dead unit: its bias is so negative that the ReLU never passes
    g = load("input: [1, 9, 9]\nlayers: [{conv: {out: 1, kernel: 3, name: c}}, relu, {conv: {kernel: 1, name: d}}]")
    w = W.init(g, seed=0)
    w["c.bias"][:] = -1e6
    with pytest.raises(fcview.FCViewError, match=r"row of d\[0,3,3\] is zero on all 2 input\(s\)"):
        fcview.erf(g, "d", inputs=2, weights=w)


def test_erf_input_errors():
    g = load(SPECS / "lenet5.yaml")
    with pytest.raises(fcview.FCViewError, match=r"no layer named 'conv9' in network 'lenet5' — did you mean"):
        fcview.parse_unit("conv9", g)
    with pytest.raises(fcview.FCViewError, match=r"layer 'conv2' outputs shape \(16, 10, 10\): expected 3 indices"):
        fcview.parse_unit("conv2:1,2", g)
    with pytest.raises(fcview.FCViewError, match=r"index 10 of 'conv2:0,10,0' is outside .* \(dim 1 has 10\)"):
        fcview.parse_unit("conv2:0,10,0", g)
    with pytest.raises(fcview.FCViewError, match=r"expected LAYER or LAYER:c,y,x with integer indices, got 'conv2:a'"):
        fcview.parse_unit("conv2:a", g)
    with pytest.raises(fcview.FCViewError, match=r"expected inputs of shape \(N, 1, 32, 32\), got \(2, 32, 32\)"):
        fcview.erf(g, "conv2", inputs=np.zeros((2, 32, 32)))
    with pytest.raises(fcview.FCViewError, match=r"activations of 3 sample\(s\) up to 'conv2' would need .* bytes"):
        fcview.erf(g, "conv2", inputs=3, max_bytes=10_000)
    with pytest.raises(fcview.FCViewError, match=r"needs an input with spatial dims"):
        fcview.erf(load("input: [4]\nlayers: [{linear: {out: 2}}]"), "linear1")


def test_erf_unit_of_a_flat_layer_sees_the_whole_input():
    g = load(SPECS / "lenet5.yaml")
    e = fcview.erf(g, *fcview.parse_unit("fc3:3", g), inputs=2)
    assert e.unit == (3,) and e.theoretical_size == (32.0, 32.0) and e.box == ((0, 32), (0, 32))


# ---- command line ---------------------------------------------------------------------------

def test_cli_erf_json_and_png(tmp_path):
    png = tmp_path / "erf.png"
    code, out, err = cli("fcview", SPECS / "lenet5.yaml", "--erf", "conv2:3,5,4", "--inputs", "3", "--json",
                         "--png", png)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layer"] == "conv2" and doc["unit"] == [3, 5, 4] and doc["inputs"] == 3
    assert doc["theoretical"]["size"] == [14.0, 14.0]
    eff = doc["effective"]
    assert 0 < eff["radius_50"] <= eff["radius_95"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = cli("fcview", SPECS / "lenet5.yaml", "--erf", "conv2")
    assert code == 0, err
    assert "theoretical: 14x14 input px" in out and "95% within r =" in out


def test_cli_erf_with_given_inputs(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = cli("fcview", SPECS / "lenet5.yaml", "--erf", "conv1:0,3,3", "--input", tmp_path / "x.npy",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["inputs"] == 2


@pytest.mark.parametrize("args, message", [
    (["--erf", "conv9"], r"no layer named 'conv9'"),
    (["--erf", "conv2:0,99,0"], r"index 99 of 'conv2:0,99,0' is outside"),
    (["--erf", "conv2", "--inputs", "0"], r"expected --inputs of at least 1, got 0"),
    (["--inputs", "3"], r"--inputs goes with --erf"),
    (["--erf", "conv2", "--layer", "conv1"], r"--erf takes no --layer"),
])
def test_cli_erf_errors_are_one_line(args, message):
    code, out, err = cli("fcview", SPECS / "lenet5.yaml", *args)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
