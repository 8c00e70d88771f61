"""The numpy reference executor: hand-worked cases for every layer kind, and
PyTorch (when installed) as a second oracle over random configurations."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnngraph
from cnngraph import oracle
from cnngraph.layers import REGISTRY, make

RNG = np.random.default_rng(0)


def run_layer(kind, attrs, x, params=None, x2=None):
    layer = make(kind, attrs)
    xs = [x] if x2 is None else [x, x2]
    return layer, layer.reference(xs, params or {})


# ---- hand-worked cases ------------------------------------------------------

def test_conv1d_by_hand():
    x = np.array([[[1, 2, 3, 4, 5]]], np.float32)
    w = np.array([[[1, 0, -1]]], np.float32)
    _, y = run_layer("conv", {"out": 1, "kernel": 3, "padding": 1}, x, {"weight": w, "bias": np.array([10.0])})
    # y[i] = x[i-1] - x[i+1] + 10 with zero padding
    assert y.tolist() == [[[8, 8, 8, 8, 14]]]


def test_conv2d_stride_dilation_by_hand():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    w = np.ones((1, 1, 2, 2), np.float32)
    _, y = run_layer("conv", {"out": 1, "kernel": 2, "dilation": 2, "stride": 2, "bias": False}, x, {"weight": w})
    # windows at (0,0) and (0,2),(2,0),(2,2) read x[r, c], x[r, c+2], x[r+2, c], x[r+2, c+2]
    expect = [[x[0, 0, r, c] + x[0, 0, r, c + 2] + x[0, 0, r + 2, c] + x[0, 0, r + 2, c + 2] for c in (0, 2)]
              for r in (0, 2)]
    assert y[0, 0].tolist() == expect


def test_grouped_conv_keeps_groups_apart():
    x = np.zeros((1, 4, 3, 3), np.float32)
    x[0, 0] = 1.0  # only channel 0 (group 0) is non-zero
    w = np.ones((4, 2, 1, 1), np.float32)
    _, y = run_layer("conv", {"out": 4, "kernel": 1, "groups": 2, "bias": False}, x, {"weight": w})
    assert y[0, :2].min() == 1.0 and np.all(y[0, 2:] == 0)


def test_depthwise_is_per_channel():
    x = RNG.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = RNG.standard_normal((3, 1, 3, 3)).astype(np.float32)
    _, y = run_layer("conv", {"kernel": 3, "groups": "depthwise", "bias": False}, x, {"weight": w})
    for c in range(3):
        _, yc = run_layer("conv", {"out": 1, "kernel": 3, "bias": False}, x[:, c:c + 1], {"weight": w[c:c + 1]})
        np.testing.assert_allclose(y[:, c:c + 1], yc, rtol=1e-5, atol=1e-6)


def test_maxpool_ceil_mode_by_hand():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    _, y = run_layer("maxpool", {"kernel": 2, "ceil_mode": True}, x)
    assert y[0, 0].tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]


def test_avgpool_divisors_by_hand():
    x = np.ones((1, 1, 3, 3), np.float32)
    layer, y = run_layer("avgpool", {"kernel": 2, "stride": 2, "padding": 1}, x)
    # corner window sees 1 real pixel of 4 (padding counts)
    assert y[0, 0].tolist() == [[0.25, 0.5], [0.5, 1.0]]
    _, y = run_layer("avgpool", {"kernel": 2, "stride": 2, "padding": 1, "count_include_pad": False}, x)
    assert y[0, 0].tolist() == [[1, 1], [1, 1]]


def test_batchnorm_by_hand():
    x = np.array([[[2.0], [4.0]]], np.float32)
    p = {"weight": np.array([1.0, 2.0]), "bias": np.array([0.0, 1.0]),
         "running_mean": np.array([1.0, 2.0]), "running_var": np.array([4.0, 1.0])}
    _, y = run_layer("batchnorm", {"eps": 0.0001}, x, p)
    np.testing.assert_allclose(y.ravel(), [(2 - 1) / np.sqrt(4.0001), 2 * (4 - 2) / np.sqrt(1.0001) + 1], rtol=1e-6)


def test_lrn_by_hand():
    x = np.array([[[1.0], [2.0], [3.0]]], np.float32)
    _, y = run_layer("lrn", {"size": 3, "alpha": 3.0, "beta": 1.0, "k": 1.0}, x)
    # channel 1 sees 1+4+9=14: 2 / (1 + 3/3*14)
    assert y[0, 1, 0] == pytest.approx(2 / 15)
    assert y[0, 0, 0] == pytest.approx(1 / (1 + 5))


def test_elementwise_and_merges_by_hand():
    x = np.array([[-2.0, 0.0, 3.0]], np.float32)
    assert run_layer("relu", {}, x)[1].tolist() == [[0, 0, 3]]
    assert run_layer("relu6", {}, np.array([[-1.0, 3.0, 7.0]]))[1].tolist() == [[0, 3, 6]]
    assert run_layer("leaky_relu", {"alpha": 0.5}, x)[1].tolist() == [[-1, 0, 3]]
    np.testing.assert_allclose(run_layer("sigmoid", {}, np.array([[-1000.0, 0.0, 1000.0]]))[1], [[0, 0.5, 1]])
    np.testing.assert_allclose(run_layer("tanh", {}, x)[1], np.tanh(x))
    s = run_layer("softmax", {}, x)[1]
    assert s.sum() == pytest.approx(1.0) and s.argmax() == 2
    assert run_layer("add", {}, x, x2=x)[1].tolist() == [[-4, 0, 6]]
    assert run_layer("concat", {}, x, x2=x)[1].shape == (1, 6)
    assert run_layer("dropout", {}, x)[1] is x


def test_pad_flatten_linear_globals_by_hand():
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    assert run_layer("pad", {"padding": [[0, 1], [1, 0]], "value": -1}, x)[1][0, 0].tolist() == \
        [[-1, 0, 1], [-1, 2, 3], [-1, -1, -1]]
    assert run_layer("flatten", {}, x)[1].tolist() == [[0, 1, 2, 3]]
    assert run_layer("global_avgpool", {}, x)[1].tolist() == [[[[1.5]]]]
    assert run_layer("global_maxpool", {}, x)[1].tolist() == [[[[3.0]]]]
    w = np.array([[1.0, 0, 0, 1]], np.float32)
    assert run_layer("linear", {"out": 1}, x.reshape(1, 4), {"weight": w, "bias": np.array([0.5])})[1].tolist() == \
        [[3.5]]


def test_float64_stays_float64():
    x = RNG.standard_normal((1, 2, 6, 6))
    g = cnngraph.load("input: [2, 6, 6]\nlayers: [{conv: {out: 3, kernel: 3}}, relu, {avgpool: {kernel: 2}}]")
    assert oracle.run(g, x, cnngraph.weights.init(g)).dtype == np.float64


def test_wrong_input_shape_is_a_clear_error():
    g = cnngraph.load("input: [1, 8, 8]\nlayers: [relu]")
    with pytest.raises(ValueError, match=r"expected an input of shape \(N, 1, 8, 8\), got \(1, 8, 8\)"):
        oracle.run(g, np.zeros((1, 8, 8), np.float32), {})
    with pytest.raises(ValueError, match="expected a float32 array, got dtype complex"):
        oracle.run(g, np.zeros((1, 1, 8, 8), np.complex64), {})


# ---- PyTorch as a second oracle ---------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def torch_forward(kind, layer, x, params, in_shape):
    """The same layer in torch.nn.functional (float64), via the project's torch executor."""
    t = _torch()
    from cnngraph.interop.torch_exec import layer_fn
    fn = layer_fn(layer, [in_shape], {k: t.from_numpy(np.asarray(v, np.float64)) for k, v in params.items()})
    return fn(t.from_numpy(x))


def _pads(draw, nd, k):
    form = draw(st.sampled_from(["int", "per_dim", "per_side", "same", "valid"]))
    if form == "int":
        return draw(st.integers(0, min(k) // 2))
    if form == "per_dim":
        return [draw(st.integers(0, kk // 2)) for kk in k]
    if form == "per_side":
        return [[draw(st.integers(0, kk // 2)), draw(st.integers(0, kk // 2))] for kk in k]
    return form


@st.composite
def windowed_case(draw):
    kind = draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
    nd = draw(st.integers(1, 3))
    k = [draw(st.integers(1, 4)) for _ in range(nd)]
    attrs = {"kernel": k, "stride": [draw(st.integers(1, 3)) for _ in range(nd)]}
    if kind == "conv":
        g = draw(st.sampled_from([1, 2, 3]))
        attrs.update(out=g * draw(st.integers(1, 3)), groups=g, bias=draw(st.booleans()),
                     dilation=[draw(st.integers(1, 2)) for _ in range(nd)], padding=_pads(draw, nd, k))
        cin = g * draw(st.integers(1, 2))
    else:
        # torch pools take symmetric padding of at most half the kernel
        attrs["padding"] = [draw(st.integers(0, kk // 2)) for kk in k]
        attrs["ceil_mode"] = draw(st.booleans())
        if kind == "avgpool":
            attrs["count_include_pad"] = draw(st.booleans())
        elif draw(st.booleans()):
            attrs["dilation"] = [draw(st.integers(1, 2)) for _ in range(nd)]
        cin = draw(st.integers(1, 3))
    spatial = [draw(st.integers(5, 9 if nd < 3 else 6)) for _ in range(nd)]
    return kind, attrs, (cin, *spatial), draw(st.integers(1, 2))


def _params(layer, in_shape):
    p = layer.init_params([in_shape], np.random.default_rng(1))
    if "running_var" in p:
        p["running_var"] = np.random.default_rng(2).uniform(0.5, 2, p["running_var"].shape).astype(np.float32)
        p["running_mean"] = np.random.default_rng(3).standard_normal(p["running_mean"].shape).astype(np.float32)
    return p


@settings(max_examples=150, deadline=None)
@given(windowed_case())
def test_windowed_layers_match_torch(case):
    _torch()
    kind, attrs, in_shape, n = case
    layer = make(kind, attrs)
    from cnngraph.errors import LayerError
    try:
        layer.infer_shape([in_shape])
    except LayerError:
        return  # the kernel does not fit: shape inference says so (tested elsewhere)
    x = np.random.default_rng(4).standard_normal((n, *in_shape))
    params = _params(layer, in_shape)
    y = layer.reference([x], params)
    want = torch_forward(kind, layer, x, params, in_shape).numpy()
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_kind_matches_torch(kind):
    """Every registered layer kind, in 1D, 2D and 3D where it has spatial dims."""
    _torch()
    attrs = {"conv": {"out": 4, "kernel": 3, "padding": 1}, "maxpool": {"kernel": 2},
             "avgpool": {"kernel": 3, "stride": 2, "padding": 1}, "linear": {"out": 5},
             "lrn": {"size": 3, "k": 2.0}, "pad": {"padding": 1, "value": 0.5}, "leaky_relu": {"alpha": 0.2},
             "conv_transpose": {"out": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
             "shuffle": {"groups": 3}, "upsample": {"scale": 2, "mode": "linear"}}
    for in_shape in ([(3, 7)], [(3, 6, 7)], [(3, 4, 5, 6)], [(12,)]):
        layer = make(kind, attrs.get(kind, {}))
        spatial_only = kind in ("conv", "maxpool", "avgpool", "pad", "global_avgpool", "global_maxpool",
                                "conv_transpose", "upsample")
        if (kind == "linear") != (len(in_shape[0]) == 1) or (spatial_only and len(in_shape[0]) == 1):
            continue
        n_in = 1 if layer.n_inputs == 1 else 2
        x = np.random.default_rng(5).standard_normal((2, *in_shape[0]))
        params = _params(layer, in_shape[0])
        y = layer.reference([x] * n_in, params)
        if n_in > 1:  # the same input twice, through the kind's own torch_fn
            t = _torch()
            from cnngraph.interop.torch_exec import layer_fn
            want = layer_fn(layer, [in_shape[0]] * n_in, {})(*[t.from_numpy(x)] * n_in).numpy()
        else:
            want = torch_forward(kind, layer, x, params, in_shape[0]).numpy()
        np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12, err_msg=f"{kind} {in_shape}")


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "googlenet", "mobilenet_v2", "audio1d", "video3d"])
def test_whole_networks_match_torch(name):
    """The bundled nets (small inputs) run layer by layer in PyTorch give the oracle's output."""
    _torch()
    import dataclasses
    import pathlib

    from cnngraph.interop.torch_exec import forward
    from cnngraph.spec import load as load_spec
    small = {"resnet18": (3, 64, 64), "googlenet": (3, 96, 96), "mobilenet_v2": (3, 64, 64),
             "video3d": (3, 8, 32, 32)}
    spec = load_spec(pathlib.Path(__file__).parent.parent / "specs" / f"{name}.yaml")
    g = cnngraph.load(dataclasses.replace(spec, input_shape=small.get(name, spec.input_shape)))
    w = cnngraph.weights.init(g, seed=1, gain=6 ** 0.5)
    x = np.random.default_rng(2).standard_normal((2, *g.input_shape))
    want = forward(g, w, np.float64)(x)
    np.testing.assert_allclose(oracle.run(g, x, w), want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def test_a_layer_reading_the_same_input_twice_is_right_everywhere():
    """`add: {from: [s, s]}` with `s` read again later: the reference, the FC view and the
    compiler agree (the value is freed once, after its last reader)."""
    from cnngraph import fcview
    from cnngraph import compile as jit_compile
    g = cnngraph.load("input: [3, 5]\nlayers: [relu, {add: {from: [relu1, relu1]}}, {add: {from: [relu1, add1]}}]")
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    want = 3 * np.maximum(x, 0)
    np.testing.assert_allclose(oracle.run(g, x, {}), want, rtol=1e-6)
    np.testing.assert_allclose(jit_compile(g)(x), want, rtol=1e-6)
    v = fcview.view(g, x=x[0])
    assert v.network.built and v.network.max_abs_error < 1e-12
    assert all(lv.max_abs_error < 1e-12 for lv in v.layers)
