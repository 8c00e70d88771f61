"""The FC view: every layer (and the whole net) as the sparse matrix it is, checked against the oracle."""

import json
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnngraph import fcview, load, oracle
from cnngraph import weights as W
from cnngraph.errors import CnnGraphError, LayerError
from cnngraph.graph import build
from cnngraph.layers import REGISTRY, make
from cnngraph.spec import loads

SPECS = pathlib.Path(__file__).resolve().parent.parent / "specs"
BUDGET = 40_000_000  # connections per spec in the equivalence test


def small_graph(path):
    """The spec with its input shrunk (the largest spatial dim to the smallest size from half up
    that still builds) until its layers hold at most BUDGET connections in total."""
    text = path.read_text()

    def at(shape):
        new, n = re.subn(r"(?m)^input:.*$", f"input: {list(shape)}", text)
        assert n == 1
        try:
            return build(loads(new, str(path)))
        except CnnGraphError:
            return None

    def size(g):
        return sum(fcview.analytic(node).connections for node in g.nodes)

    graph = load(text)
    while size(graph) > BUDGET:
        shape, smaller = list(graph.input_shape), None
        for d in sorted(range(1, len(shape)), key=lambda i: -shape[i]):
            for cut in range(max(1, shape[d] // 2), shape[d]):  # the smallest that still builds
                if (g := at([*shape[:d], cut, *shape[d + 1:]])) is not None:
                    smaller = g
                    break
            if smaller is not None:
                break
        if smaller is None:
            break
        graph = smaller
    return graph


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "cnngraph", *map(str, args)], capture_output=True, text=True,
                       timeout=300, check=False)
    return p.returncode, p.stdout, p.stderr


# ---- every layer kind, every bundled spec -----------------------------------------

def test_every_registered_kind_has_an_fc_view():
    missing = [k for k, cls in REGISTRY.items() if not (hasattr(cls, "to_matrix") and hasattr(cls, "fc_connections"))]
    assert missing == []


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_layer_of_every_spec_equals_the_reference(path):
    g = small_graph(path)
    prepared = fcview.prepare(g, seed=1)
    _, _, acts = prepared
    seen = []
    for lv, lo in fcview.lower(g, prepared=prepared):
        node = g.node(lv.name)
        assert lv.built and lo is not None, lv.reason
        scale = max(1.0, float(np.abs(acts[node.name]).max()))
        assert lv.max_abs_error <= 1e-9 * scale, (lv.name, lv.max_abs_error)
        assert lo.matrix.shape == (math.prod(node.out_shape), sum(math.prod(s) for s in node.in_shapes))
        assert lo.matrix.dtype == np.float64 and lo.bias.shape == (lo.matrix.shape[0],)
        assert lo.tie.shape == lo.matrix.data.shape
        est = fcview.analytic(node)
        if lo.mode == "linear":  # the analytic count is exact for linear layers, a bound otherwise
            assert lv.connections == est.connections, lv.name
        else:
            assert lv.connections <= est.connections, lv.name
        if node.kind == "linear":
            assert lv.dense_params == lv.params and lv.density == 1.0
        seen.append(node.name)
    assert seen == [n.name for n in g.nodes]


REQUIRED_ATTRS = {"kernel": 2, "out": 3, "padding": 1}


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_kind_lowers_to_its_reference(kind):
    """Generic: any registered kind, with small values for its required attributes."""
    cls = REGISTRY[kind]
    layer = make(kind, {a.name: REQUIRED_ATTRS[a.name] for a in cls.attrs if a.name in REQUIRED_ATTRS})
    n = 1 if cls.n_inputs == 1 else 2
    for shape in [(3, 4, 5), (6,)]:
        try:
            layer.infer_shape([shape] * n)
        except LayerError:
            continue
        break
    shapes = [shape] * n
    rng = np.random.default_rng(0)
    params = {k: v.astype(np.float64) for k, v in layer.init_params(shapes, rng).items()}
    if "running_var" in params:
        params["running_mean"] = rng.standard_normal(params["running_mean"].shape)
        params["running_var"] = rng.uniform(0.5, 2.0, params["running_var"].shape)
    xs = [rng.standard_normal(s) for s in shapes]
    lo = layer.to_matrix(shapes, params, xs)
    assert lo.mode in fcview.MODES and lo.nnz <= layer.fc_connections(shapes)
    assert lo.matrix.shape == (math.prod(layer.infer_shape(shapes)), sum(math.prod(s) for s in shapes))
    np.testing.assert_allclose(lo.matrix @ np.concatenate([x.ravel() for x in xs]) + lo.bias,
                               layer.reference([x[None] for x in xs], params).ravel(), rtol=1e-12, atol=1e-12)


def test_conv_tie_points_at_the_weight_it_uses():
    g = load("input: [4, 9, 8]\nlayers: [{conv: {out: 6, kernel: [3, 2], stride: 2, padding: 1, groups: 2}}]")
    w = W.init(g, seed=3)
    lo = fcview.lower_node(g.nodes[0], w)
    assert lo.tie_param == "weight" and lo.tie.min() >= 0
    np.testing.assert_array_equal(lo.matrix.data, w["conv1.weight"].astype(np.float64).ravel()[lo.tie])
    assert np.bincount(lo.tie).size == w["conv1.weight"].size  # every weight is used
    t = lo.tie_matrix()
    assert t.shape == lo.matrix.shape and t.nnz == lo.nnz and np.shares_memory(t.indices, lo.matrix.indices)


def test_local_layers_give_the_jacobian_and_are_labelled_local():
    rng = np.random.default_rng(0)
    for kind, attrs, shape in [("sigmoid", {}, (3, 4)), ("tanh", {}, (5,)), ("softmax", {}, (6, 2, 3)),
                               ("lrn", {"size": 3, "alpha": 0.5, "beta": 0.75, "k": 1.0}, (5, 3))]:
        layer = make(kind, attrs)
        x = rng.standard_normal(shape)
        lo = layer.to_matrix([shape], {}, [x])
        assert lo.mode == "local"
        jac, eps = lo.matrix.toarray(), 1e-6
        for i in range(x.size):
            d = np.zeros(x.size)
            d[i] = eps
            plus = layer.reference([(x.ravel() + d).reshape(1, *shape)], {}).ravel()
            minus = layer.reference([(x.ravel() - d).reshape(1, *shape)], {}).ravel()
            np.testing.assert_allclose(jac[:, i], (plus - minus) / (2 * eps), atol=1e-7, err_msg=kind)
        # the tangent passes through the point itself
        np.testing.assert_allclose(lo.matrix @ x.ravel() + lo.bias, layer.reference([x[None]], {}).ravel(),
                                   atol=1e-12)


def test_relu_selection_holds_on_the_whole_linear_region():
    x = np.random.default_rng(0).standard_normal((4, 5, 5))
    for kind in ("relu", "leaky_relu"):
        layer = make(kind)
        lo = layer.to_matrix([x.shape], {}, [x])
        assert lo.mode == "piecewise"
        moved = x * 1.5  # same signs: same region
        np.testing.assert_allclose(lo.matrix @ moved.ravel() + lo.bias, layer.reference([moved[None]], {}).ravel())
    assert make("relu").to_matrix([x.shape], {}, [x]).nnz == int((x > 0).sum())


def test_maxpool_selection_picks_each_window_maximum():
    x = np.arange(16.0).reshape(1, 4, 4)
    lo = make("maxpool", {"kernel": 2}).to_matrix([(1, 4, 4)], {}, [x])
    assert lo.mode == "piecewise" and lo.nnz == 4
    assert lo.matrix.indices.tolist() == [5, 7, 13, 15] and set(lo.matrix.data) == {1.0}


def test_nonlinear_layer_without_an_input_is_refused():
    with pytest.raises(LayerError, match="'maxpool' is not linear: .* needs the input sample"):
        make("maxpool", {"kernel": 2}).to_matrix([(1, 4, 4)], {})
    with pytest.raises(LayerError, match="'sigmoid' is not linear"):
        make("sigmoid").to_matrix([(3,)], {})


def test_add_and_concat_are_block_matrices_over_their_inputs():
    lo = make("add").to_matrix([(2, 2), (2, 2)], {})
    np.testing.assert_array_equal(lo.matrix.toarray(), np.hstack([np.eye(4), np.eye(4)]))
    lo = make("concat").to_matrix([(1, 2), (2, 2)], {})
    np.testing.assert_array_equal(lo.matrix.toarray(), np.eye(6))


def test_pad_fills_with_its_value_through_the_bias():
    x = np.ones((1, 2, 2))
    lo = make("pad", {"padding": [[1, 0], [0, 1]], "value": -2.0}).to_matrix([(1, 2, 2)], {})
    y = (lo.matrix @ x.ravel() + lo.bias).reshape(3, 3)
    np.testing.assert_array_equal(y, [[-2, -2, -2], [1, 1, -2], [1, 1, -2]])


# ---- hypothesis: random conv and pool configurations -------------------------------

@st.composite
def windowed(draw):
    nd = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
    size = draw(st.integers(1, 7 if nd < 3 else 5))
    spatial = [draw(st.integers(1, size + 3)) for _ in range(nd)]
    kernel = [draw(st.integers(1, 4)) for _ in range(nd)]
    stride = [draw(st.integers(1, 3)) for _ in range(nd)]
    dilation = [draw(st.integers(1, 3)) for _ in range(nd)] if kind != "avgpool" else [1] * nd
    limit = [k // 2 for k in kernel] if kind != "conv" else [3] * nd  # PyTorch: pool pads <= kernel / 2
    form = draw(st.sampled_from(["int", "list", "pairs", "onnx", "same", "valid"]))
    if form == "int":
        padding = draw(st.integers(0, min(limit)))
    elif form == "list":
        padding = [draw(st.integers(0, lim)) for lim in limit]
    elif form == "onnx" and nd > 1:  # all begins, then all ends
        padding = [draw(st.integers(0, lim)) for lim in limit] + [draw(st.integers(0, lim)) for lim in limit]
    elif form in ("pairs", "onnx"):
        padding = [[draw(st.integers(0, lim)), draw(st.integers(0, lim))] for lim in limit]
    else:
        padding = form
    attrs = {"kernel": kernel, "stride": stride, "padding": padding}
    cin = draw(st.integers(1, 4))
    if kind == "conv":
        groups = draw(st.sampled_from([g for g in range(1, cin + 1) if cin % g == 0] + ["depthwise"]))
        g = cin if groups == "depthwise" else groups
        attrs.update(out=g * draw(st.integers(1, 3)), groups=groups, dilation=dilation,
                     bias=draw(st.booleans()))
    else:
        attrs["ceil_mode"] = draw(st.booleans())
        if kind == "maxpool":
            attrs["dilation"] = dilation
        else:
            attrs["count_include_pad"] = draw(st.booleans())
    return kind, attrs, (cin, *spatial)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windowed(), st.integers(0, 2**31 - 1))
def test_windowed_matrix_equals_the_reference(case, seed):
    kind, attrs, shape = case
    try:
        layer = make(kind, attrs)
        layer.infer_shape([shape])
    except LayerError:
        assume(False)
    rng = np.random.default_rng(seed)
    params = {k: v.astype(np.float64) for k, v in layer.init_params([shape], rng).items()}
    x = rng.standard_normal(shape)
    lo = layer.to_matrix([shape], params, [x])
    want = layer.reference([x[None]], params).ravel()
    got = lo.matrix @ x.ravel() + lo.bias
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if kind != "maxpool":
        assert lo.nnz == layer.fc_connections([shape])
    assert lo.matrix.has_sorted_indices and lo.matrix.indices.dtype == np.int32


# ---- the seeds' numbers: AlexNet conv1 ---------------------------------------------

def _first_conv(g):
    return next(n for n in g.nodes if n.kind == "conv")


def test_alexnet_conv1_statistics_analytically():
    g = load(SPECS / "alexnet.yaml")
    s = fcview.analytic(_first_conv(g))
    assert (s.rows, s.cols) == (96 * 55 * 55, 3 * 227 * 227)
    assert s.connections == 105_415_200 == 96 * 55 * 55 * 3 * 11 * 11
    assert s.params == 34_944 and s.tied == 34_848
    assert s.reuse == 55 * 55 and s.sharing == pytest.approx(105_415_200 / 34_944)
    assert s.dense_params == 154_587 * 290_400 + 290_400
    assert s.bytes < 2 * 2**30  # 16 bytes per connection


def test_small_conv_build_has_the_analytic_count():
    # AlexNet's conv1 geometry on a smaller image, plus padding and groups
    g = load("input: [4, 35, 31]\nlayers: [{conv: {out: 6, kernel: 11, stride: 4, padding: [3, 1], groups: 2}}]")
    node = g.nodes[0]
    (lv, lo), = fcview.lower(g)
    assert lo.nnz == lv.connections == fcview.analytic(node).connections
    # by hand: valid taps per dim times in/groups channels times out channels
    taps = [sum(1 for o in range(out) for k in range(11) if 0 <= o * 4 - pad + k < n)
            for n, out, pad in [(35, node.out_shape[1], 3), (31, node.out_shape[2], 1)]]
    assert lo.nnz == 6 * 2 * taps[0] * taps[1]
    assert lv.max_abs_error < 1e-12


def test_alexnet_conv1_cli_prints_the_numbers():
    code, out, err = cli("fcview", SPECS / "alexnet.yaml", "--layer", _first_conv(load(SPECS / "alexnet.yaml")).name,
                         "--json")
    assert code == 0, err
    (layer,) = json.loads(out)["layers"]
    assert layer["connections"] == 105_415_200 and layer["params"] == 34_944
    assert layer["dense_params"] == 44_892_355_200 and layer["reuse"] == 3025.0
    assert layer["built"] and layer["max_abs_error"] < 1e-10


# ---- the whole network as one map ---------------------------------------------------

def test_lenet5_composed_map_reproduces_the_reference():
    g = load(SPECS / "lenet5.yaml")
    w = W.init(g, seed=0)
    x = np.random.default_rng(5).standard_normal(g.input_shape).astype(np.float32)
    net = fcview.compose(g, w, x)
    assert net.A.shape == (10, 1024) and net.mode == "piecewise"
    y32 = oracle.run(g, x[None], w)[0]  # the float32 reference
    np.testing.assert_allclose(net.A @ x.astype(np.float64).ravel() + net.c, y32.ravel(), atol=1e-5)
    assert net.max_abs_error < 1e-10


def test_composed_map_through_branches_add_and_concat():
    spec = """
input: [2, 9, 9]
layers:
  - conv: {name: stem, out: 4, kernel: 3, padding: 1}
  - relu
  - conv: {name: a, out: 4, kernel: 3, padding: 1, from: relu1}
  - conv: {name: b, out: 4, kernel: 1, from: relu1}
  - add: {name: sum, from: [a, b]}
  - maxpool: {name: mp, kernel: 3, stride: 1, padding: 1, from: relu1}
  - concat: {name: cat, from: [sum, mp, relu1]}
  - batchnorm: {name: bn}
  - avgpool: {kernel: 3, stride: 2, ceil_mode: true, count_include_pad: false, padding: 1}
  - global_avgpool
  - flatten
  - linear: {out: 3}
  - softmax
"""
    g = load(spec)
    net = fcview.compose(g, seed=2)
    assert net.mode == "local" and net.A.shape == (3, 162)
    assert net.max_abs_error < 1e-12


def test_network_too_large_is_refused_early_naming_the_bytes():
    g = load(SPECS / "alexnet.yaml")
    with pytest.raises(fcview.FCViewError, match=r"composed network map would need about [\d.]+ GiB \([\d,]+ bytes\)"):
        fcview.compose(g)
    v = fcview.view(load(SPECS / "lenet5.yaml"), max_bytes=100_000)
    assert not v.network.built and "would need" in v.network.reason


def test_layer_too_large_is_refused_naming_the_bytes():
    g = load("input: [3, 64, 64]\nlayers: [{conv: {out: 16, kernel: 5, name: c}}, {relu: {}}]")
    need = fcview.layer_bytes(g.nodes[0])
    with pytest.raises(fcview.FCViewError, match=rf"layer 'c' \(conv2d\): .* would need .* \({need:,} bytes\)"):
        list(fcview.lower(g, names=["c"], max_bytes=need - 1))
    views = [lv for lv, _ in fcview.lower(g, max_bytes=need - 1)]
    assert not views[0].built and views[0].connections == 16 * 75 * 60 * 60 and views[1].built


# ---- the command line ----------------------------------------------------------------

def test_cli_json_lists_every_layer_and_the_network():
    code, out, err = cli("fcview", SPECS / "lenet5.yaml", "--json", "--seed", "3")
    assert code == 0, err
    doc = json.loads(out)
    assert [lv["name"] for lv in doc["layers"]] == [n.name for n in load(SPECS / "lenet5.yaml").nodes]
    for lv in doc["layers"]:
        assert {"name", "op", "connections", "params", "sharing", "density", "dense_params",
                "max_abs_error"} <= set(lv)
        assert lv["max_abs_error"] < 1e-10
    conv1 = doc["layers"][0]
    assert conv1["connections"] == 6 * 28 * 28 * 25 and conv1["params"] == 156
    net = doc["network"]
    assert net["built"] and net["shape"] == [10, 1024] and net["max_abs_error"] < 1e-10
    assert net["nnz"] <= 10 * 1024 and net["bytes"] > 0


def test_cli_text_table(tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = cli("fcview", SPECS / "lenet5.yaml", "--input", tmp_path / "x.npy")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split()[:4] == ["layer", "op", "mode", "matrix"]
    assert re.search(r"^conv1\s+conv2d\s+linear\s+4704x1024\s+117,600\s+156\s", out, re.MULTILINE)
    assert re.search(r"^network: y = A x \+ c, A 10x1,024, .* piecewise linear", out, re.MULTILINE)


def test_cli_npz_single_file_and_directory(tmp_path):
    one = tmp_path / "conv2.npz"
    assert cli("fcview", SPECS / "lenet5.yaml", "--layer", "conv2", "--npz", one)[0] == 0
    m = sp.load_npz(one)
    assert m.shape == (1600, 1176) and m.nnz == 240_000
    with np.load(one) as f:
        assert f["tie"].shape == (240_000,) and str(f["tie_param"]) == "weight" and f["bias"].shape == (1600,)
    d = tmp_path / "all"
    assert cli("fcview", SPECS / "lenet5.yaml", "--npz", d)[0] == 0
    names = sorted(p.name for p in d.iterdir())
    assert "network.npz" in names and "fc3.npz" in names and len(names) == 13
    assert sp.load_npz(d / "network.npz").shape == (10, 1024)


def test_cli_png(tmp_path):
    png = tmp_path / "c.png"
    code, _, err = cli("fcview", SPECS / "lenet5.yaml", "--png", png)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lo = make("conv", {"out": 2, "kernel": 2}).to_matrix([(1, 3, 3)], {"weight": np.ones((2, 1, 2, 2)),
                                                                      "bias": np.zeros(2)})
    small = fcview.connectivity_image("t", lo.matrix, lo.tie)
    assert small.kind == "tie" and small.image.shape == (8, 9)
    assert np.nansum(small.image == 0) == 4 and np.isnan(small.image).sum() == 8 * 9 - 8 * 4  # 4 taps per row
    assert fcview.connectivity_image("v", lo.matrix).kind == "value"
    big = fcview.connectivity_image("d", sp.eye(1000, format="csr"), bins=10)
    assert big.kind == "density" and big.image.shape == (10, 10)
    np.testing.assert_array_equal(big.image, np.eye(10) * 100)


def test_composition_guard_refuses_before_forming_a_product(monkeypatch):
    monkeypatch.setattr(fcview, "estimate_network", lambda graph: (0, None, 0))
    with pytest.raises(fcview.FCViewError, match=r"would need up to .* bytes\) at layer 'conv1' \(conv2d\)"):
        fcview.compose(load(SPECS / "lenet5.yaml"), max_bytes=10_000, direction="forward")


@pytest.mark.parametrize("args, message", [
    (["--layer", "conv9"], r"no layer named 'conv9' in network 'lenet5' — did you mean 'conv[12]'\?"),
    (["--npz", "x.npz"], r"--npz x.npz holds one matrix, but 12 layer\(s\) and the network are selected"),
    (["--layer", "conv1", "--max-memory", "0.0001"], r"layer 'conv1' \(conv2d\): .* would need .* bytes"),
])
def test_cli_errors_are_one_line(args, message, tmp_path):
    code, out, err = cli("fcview", SPECS / "lenet5.yaml", *args)
    assert code == 1 and out == ""
    assert re.match(r"error: " + message, err) and "Traceback" not in err


def test_cli_rejects_a_wrong_input_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 32, 32), np.float32))
    code, _, err = cli("fcview", SPECS / "lenet5.yaml", "--input", tmp_path / "x.npy")
    assert code == 1 and "expected one input sample of shape (1, 32, 32)" in err


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windowed(), st.integers(0, 2**31 - 1))
def test_fc_rows_equal_rows_times_the_matrix(case, seed):
    """The matrix-free facet (a transposed convolution for conv) against the matrix it stands for."""
    kind, attrs, shape = case
    try:
        layer = make(kind, attrs)
        layer.infer_shape([shape])
    except LayerError:
        assume(False)
    rng = np.random.default_rng(seed)
    params = {k: v.astype(np.float64) for k, v in layer.init_params([shape], rng).items()}
    x = rng.standard_normal(shape)
    lo = layer.to_matrix([shape], params, [x])
    g = rng.standard_normal((3, lo.matrix.shape[0]))
    rows, const, mode = layer.fc_rows([shape], params, [x], g)
    np.testing.assert_allclose(rows, (lo.matrix.T @ g.T).T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(const, g @ np.nan_to_num(lo.bias, neginf=0.0), rtol=1e-12, atol=1e-12)
    assert mode == lo.mode


def _example_point(kind, i, seed=0):
    """(layer, shapes, float64 params with random values, inputs) for example i of `kind`."""
    cls = REGISTRY[kind]
    attrs, shapes = cls.examples[i]
    layer, shapes = make(kind, attrs), [tuple(s) for s in shapes]
    rng = np.random.default_rng(seed)
    params = {k: v.astype(np.float64) + rng.uniform(0.1, 0.5, v.shape) for k, v in layer.init_params(shapes, rng).items()}
    if "running_var" in params:
        params["running_var"] = rng.uniform(0.5, 2.0, params["running_var"].shape)
    return layer, shapes, params, [rng.standard_normal(s) for s in shapes]


def _mode(kind, i):
    layer, shapes, params, xs = _example_point(kind, i)
    return layer.to_matrix(shapes, params, xs).mode


NONLINEAR = [(k, i, mode) for k, cls in sorted(REGISTRY.items()) for i in range(len(cls.examples))
             if (mode := _mode(k, i)) != "linear"]


@pytest.mark.parametrize("kind,i,mode", NONLINEAR)
def test_nonlinear_matrices_are_the_tangent_at_the_input(kind, i, mode):
    """Every example whose FC view depends on the input: 'local' matrices are the derivative there
    (central differences), 'piecewise' ones hold exactly in a neighbourhood; both pass through the point."""
    layer, shapes, params, xs = _example_point(kind, i)
    lo = layer.to_matrix(shapes, params, xs)
    x = np.concatenate([v.ravel() for v in xs])

    def f(flat):
        parts, at = [], 0
        for s in shapes:
            n = math.prod(s)
            parts.append(flat[at:at + n].reshape(1, *s))
            at += n
        return layer.reference(parts, params).ravel()

    np.testing.assert_allclose(lo.matrix @ x + lo.bias, f(x), rtol=1e-10, atol=1e-10)
    rng = np.random.default_rng(1)
    if mode == "piecewise":
        d = rng.standard_normal(x.size) * 1e-7  # too small to cross a kink of the random input
        np.testing.assert_allclose(lo.matrix @ (x + d) + lo.bias, f(x + d), rtol=1e-9, atol=1e-12)
    else:
        jac, eps = lo.matrix.toarray(), 1e-6
        for j in rng.choice(x.size, size=min(x.size, 40), replace=False):
            d = np.zeros(x.size)
            d[j] = eps
            np.testing.assert_allclose(jac[:, j], (f(x + d) - f(x - d)) / (2 * eps), atol=2e-6,
                                       err_msg=f"column {j}")
