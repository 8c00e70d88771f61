"""The JIT compiler against the numpy reference executor (the oracle).

Bundled specs run at reduced input sizes where the full size would make the
numpy reference slow; random small nets (hypothesis) cover layer configs.
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnngraph
from cnngraph import oracle
from cnngraph import compile as jit_compile
from cnngraph.spec import load as load_spec

SPECS = pathlib.Path(__file__).resolve().parent.parent / "specs"
# input sizes that keep the numpy reference fast; every other spec runs as written
SMALL = {"densenet121": (3, 64, 64), "resnext50_32x4d": (3, 64, 64), "vgg16": (3, 64, 64), "alexnet": (3, 131, 131), "googlenet": (3, 96, 96), "resnet50": (3, 96, 96),
         "resnet18": (3, 96, 96), "mobilenet_v2": (3, 96, 96), "efficientnet_b0": (3, 96, 96),
         "mobilenet_v3_large": (3, 96, 96), "shufflenet_v2_x1_0": (3, 96, 96),
         "regnet_y_400mf": (3, 96, 96), "convnext_tiny": (3, 64, 64), "unet": (3, 32, 32), "fcn_resnet18": (3, 96, 96)}


def rel_err(y, r) -> float:
    """Max |y - r| over max |r|; equal infinities (a dilated pool window wholly in padding) agree."""
    with np.errstate(invalid="ignore"):  # inf - inf where they agree, masked just below
        diff = np.where(y == r, 0.0, np.abs(y - r))
    finite = np.abs(r[np.isfinite(r)])
    return float(diff.max() / max(finite.max() if finite.size else 0.0, 1e-6))


def check(net, batch=(1, 3), seed=0):
    for n in batch:
        x = np.random.default_rng(seed + n).standard_normal((n, *net.input_shape)).astype(np.float32)
        y = net(x)
        r = oracle.run(net.graph, x, net.weights)
        assert y.shape == r.shape
        assert rel_err(y, r) < 1e-4, f"batch {n}: max relative error {rel_err(y, r):.2e}"


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_spec_matches_reference(path):
    spec = load_spec(path)
    if path.stem in SMALL:
        spec = dataclasses.replace(spec, input_shape=SMALL[path.stem])
    graph = cnngraph.load(spec)
    # He init: with PyTorch's default the signal fades and deep nets output little but their last bias
    net = jit_compile(graph, weights=cnngraph.weights.init(graph, gain=6 ** 0.5))
    check(net)


def net(text: str, **kw):
    return jit_compile(text, **kw)


def test_lenet_fuses_conv_relu_pool_into_named_kernels():
    n = jit_compile(str(SPECS / "lenet5.yaml"))
    symbols = [s.name for s in n.plan.steps]
    assert symbols[0] == "fused_conv2d_relu_maxpool2d"
    assert symbols[1].startswith("fused_conv2d_relu_maxpool2d")
    assert symbols[2] == "fused_linear_relu"


def test_resnet_folds_batchnorm_and_fuses_residual_add():
    spec = dataclasses.replace(load_spec(SPECS / "resnet18.yaml"), input_shape=(3, 64, 64))
    n = jit_compile(cnngraph.load(spec))
    kinds = {type(s.kernel).__name__ for s in n.plan.steps}
    assert "Affine" not in kinds and "Eltwise" not in kinds  # no standalone batchnorm or add
    assert any("add_relu" in s.name for s in n.plan.steps)
    check(n, batch=(2,))


BRANCHES = """
input: [{c}, 9, 9]
layers:
  - conv: {{name: a, out: {a}, kernel: 3, padding: 1}}
  - conv: {{name: b, from: input, out: {b}, kernel: 1}}
  - maxpool: {{name: p, from: input, kernel: 3, stride: 1, padding: 1}}
  - concat: {{name: cat, from: [a, b, p]}}
  - relu
"""


@pytest.mark.parametrize("c,a,b", [(16, 32, 16), (5, 7, 3)])
def test_concat_in_place_and_copied(c, a, b):
    n = net(BRANCHES.format(c=c, a=a, b=b))
    copies = sum(type(s.kernel).__name__ == "ConcatCopy" for s in n.plan.steps)
    # a conv writes its slice in place where it starts on a 16-channel boundary; the pool is always copied
    assert copies == (1 if c % 16 == 0 else 2)
    check(n)


@pytest.mark.parametrize("layers", [
    "[{conv: {out: 20, kernel: 3}}, {sigmoid: {}}, {batchnorm: {}}, {tanh: {}}]",
    "[{conv: {out: 8, kernel: 3}}, {leaky_relu: {alpha: 0.2}}, {lrn: {size: 3}}, {softmax: {}}]",
    "[{conv: {out: 40, kernel: 1}}, {relu6: {}}, {conv: {kernel: 3, groups: depthwise}}, {relu6: {}}]",
    "[{pad: {padding: [[1, 2], [0, 1]], value: 0.5}}, {conv: {out: 4, kernel: 2}}, {global_maxpool: {}}]",
    "[{avgpool: {kernel: 3, stride: 2, padding: 1, ceil_mode: true, count_include_pad: false}}, {relu: {}}]",
    "[{conv: {out: 16, kernel: 3}}, {flatten: {}}, {batchnorm: {}}, {linear: {out: 7}}, {softmax: {}}]",
    "[{conv: {out: 16, kernel: 3}}, {flatten: {}}, {softmax: {}}]",
    "[{global_avgpool: {}}, {flatten: {}}, {dropout: {}}, {linear: {out: 32, bias: false}}, {batchnorm: {}}]",
    "[{dropout: {}}]",
])
def test_layer_mix(layers):
    check(net(f"input: [3, 11, 10]\nlayers: {layers}"))


def test_add_of_three_and_shared_operand():
    text = """
input: [16, 6, 6]
layers:
  - conv: {name: a, out: 16, kernel: 3, padding: 1}
  - conv: {name: b, from: input, out: 16, kernel: 1}
  - add: {name: s, from: [a, b, input]}
  - add: {name: t, from: [s, s]}
  - relu
"""
    check(net(text))


# ---- random layer configs ---------------------------------------------------

@st.composite
def conv_nets(draw):
    nd = draw(st.integers(1, 3))
    size = {1: (5, 20), 2: (4, 11), 3: (3, 6)}[nd]
    spatial = [draw(st.integers(*size)) for _ in range(nd)]
    groups = draw(st.sampled_from([1, 1, 2, "depthwise"]))
    cin = draw(st.sampled_from([1, 3, 4, 16, 32]))
    if groups == 2 and cin % 2:
        cin *= 2
    cout = cin if groups == "depthwise" else draw(st.sampled_from([2, 6, 16, 32, 48])) * (2 if groups == 2 else 1)
    k = draw(st.integers(1, 3))
    dil = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 2))
    pad = draw(st.integers(0, k // 2 * dil + 1))
    conv = (f"{{conv: {{out: {cout}, kernel: {k}, stride: {stride}, padding: {pad}, dilation: {dil}, "
            f"groups: {groups}, bias: {str(draw(st.booleans())).lower()}}}}}")
    layers = [conv]
    if draw(st.booleans()):
        layers.append("{batchnorm: {}}")
    layers.append(draw(st.sampled_from(["{relu: {}}", "{leaky_relu: {alpha: 0.1}}", "{sigmoid: {}}", "{tanh: {}}",
                                        "{relu6: {}}", "{dropout: {}}"])))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["maxpool", "avgpool"]))
        pk = draw(st.integers(1, 3))
        ps = draw(st.integers(1, 3))
        pp = draw(st.integers(0, pk // 2))
        extra = (f", dilation: {draw(st.integers(1, 2))}" if kind == "maxpool"
                 else f", count_include_pad: {str(draw(st.booleans())).lower()}")
        layers.append(f"{{{kind}: {{kernel: {pk}, stride: {ps}, padding: {pp}, "
                      f"ceil_mode: {str(draw(st.booleans())).lower()}{extra}}}}}")
    return f"input: [{cin}, {', '.join(map(str, spatial))}]\nlayers: [{', '.join(layers)}]"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets())
def test_random_conv_configs_match_reference(text):
    try:
        graph = cnngraph.load(text)
    except cnngraph.SpecError:
        return  # a window that does not fit: the front end's business
    check(jit_compile(graph), batch=(1, 2))


@st.composite
def residual_nets(draw):
    c = draw(st.sampled_from([8, 16, 32]))
    h = draw(st.integers(3, 9))
    act = draw(st.sampled_from(["relu", "tanh"]))
    return f"""
input: [{c}, {h}, {h + 1}]
layers:
  - conv: {{name: a, out: {c}, kernel: 3, padding: 1}}
  - batchnorm: {{name: bn}}
  - {act}: {{name: act}}
  - conv: {{name: b, out: {c}, kernel: 3, padding: 1}}
  - add: {{name: s, from: [b, input]}}
  - {act}
  - maxpool: {{kernel: 2, ceil_mode: true}}
"""


@settings(max_examples=10, deadline=None)
@given(residual_nets())
def test_random_residual_blocks(text):
    check(jit_compile(text), batch=(1, 2))


# ---- the runtime --------------------------------------------------------------

LENET = str(SPECS / "lenet5.yaml")


@pytest.fixture(scope="module")
def lenet():
    return jit_compile(LENET)


def test_bad_inputs_raise_value_error_naming_the_shape(lenet):
    with pytest.raises(ValueError, match=r"expected an input of shape \(N, 1, 32, 32\), got \(1, 32, 32\)"):
        lenet(np.zeros((1, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"expected an input of shape \(N, 1, 32, 32\), got \(2, 1, 32, 31\)"):
        lenet(np.zeros((2, 1, 32, 31), np.float32))
    with pytest.raises(ValueError, match="expected a float32 array.*got dtype complex64"):
        lenet(np.zeros((1, 1, 32, 32), np.complex64))
    with pytest.raises(ValueError, match="expected a float32 array.*got dtype <U1"):
        lenet(np.full((1, 1, 32, 32), "a"))


def test_float64_and_strided_inputs_are_converted(lenet):
    x = np.random.default_rng(1).standard_normal((2, 1, 32, 64))
    view = x[:, :, :, ::2]  # float64, not contiguous
    ref = oracle.run(lenet.graph, np.ascontiguousarray(view, np.float32), lenet.weights)
    assert rel_err(lenet(view), ref) < 1e-4
    assert lenet(view.tolist()).shape == (2, 10)
    assert lenet(np.zeros((0, 1, 32, 32), np.float32)).shape == (0, 10)


def test_concurrent_calls_from_python_threads(lenet):
    xs = [np.random.default_rng(i).standard_normal((i % 3 + 1, 1, 32, 32)).astype(np.float32) for i in range(8)]
    want = [lenet(x) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(20):
            got[i] = lenet(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_two_threads_match_one():
    spec = dataclasses.replace(load_spec(SPECS / "resnet18.yaml"), input_shape=(3, 64, 64))
    graph = cnngraph.load(spec)
    one, two = jit_compile(graph, threads=1), jit_compile(graph, threads=2)
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    assert two.threads_for(4) == 2
    np.testing.assert_allclose(two(x), one(x), rtol=1e-5, atol=1e-6)


def test_second_compile_comes_from_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNGRAPH_CACHE", str(tmp_path))
    first = jit_compile(LENET)
    second = jit_compile(LENET)
    assert not first.cached and second.cached
    assert list(tmp_path.iterdir())
    x = np.ones((1, 1, 32, 32), np.float32)
    np.testing.assert_array_equal(first(x), second(x))


def test_corrupt_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNGRAPH_CACHE", str(tmp_path))
    jit_compile(LENET)
    entries = list((tmp_path / "objects").iterdir())
    assert entries
    for f in entries:
        f.write_bytes(b"not an object file")
    again = jit_compile(LENET)
    assert not again.cached
    assert again(np.ones((1, 1, 32, 32), np.float32)).shape == (1, 10)


@pytest.mark.parametrize("threads", [0, -1, 1000, "2", True, 1.5])
def test_threads_must_be_a_sane_positive_int(threads):
    with pytest.raises(ValueError, match=r"expected threads to be None \(all cores\) or an integer from 1 to 256"):
        jit_compile("input: [2]\nlayers: [relu]", threads=threads)


@pytest.mark.parametrize("text", [
    "input: [128, 56, 56]\nlayers: [{conv: {kernel: 3, padding: 1, groups: depthwise}}, {relu: {}}]",
    "input: [5, 13, 37]\nlayers: [{conv: {kernel: 3, padding: 1, stride: 2, groups: depthwise}}, {relu6: {}}]",
    "input: [7, 9, 50]\nlayers: [{conv: {kernel: 5, padding: 2, dilation: 2, groups: depthwise}}, {batchnorm: {}}]",
    "input: [3, 70]\nlayers: [{conv: {kernel: 3, padding: 0, groups: depthwise}}]",
    "input: [4, 5, 6, 21]\nlayers: [{conv: {kernel: 3, padding: 1, groups: depthwise}}, {relu: {}}]",
    ("input: [17, 33, 33]\nlayers: [{conv: {kernel: 3, padding: [0, 2], stride: 2, groups: depthwise}},"
     " {relu: {}}, {batchnorm: {}}]"),
    "input: [2, 3, 5]\nlayers: [{conv: {kernel: 3, padding: 2, groups: depthwise}}]",
])
def test_depthwise_on_plain_input_and_output(text):
    """A depthwise conv from the user's input to the user's output runs on the plain layout, no reorders."""
    for threads in (1, 2):
        n = net(text, threads=threads)
        assert [s.name.split("_")[1] for s in n.plan.steps] in (["dwconv1d"], ["dwconv2d"], ["dwconv3d"])
        assert "plain" in n.plan.steps[0].name
        check(n)


@pytest.mark.parametrize("cin,groups,cout,size", [
    (48, 6, 48, 12),     # RegNetY's group width 8: two groups per block
    (104, 13, 104, 7),   # groups straddle blocks; the last band is clamped inside the tensor
    (128, 32, 128, 9),   # ResNeXt's first stage: 4 channels per group
    (24, 24, 48, 8),     # a channel multiplier (depthwise-like, two outputs per input)
    (20, 5, 40, 6),      # 4 inputs -> 8 outputs per group, a partial last block
    (18, 3, 36, 5),
    (96, 2, 96, 6),      # two groups of 48: each output block reads three or four input blocks
])
def test_unaligned_groups_read_only_their_band(cin, groups, cout, size):
    """A grouped conv whose groups do not own whole channel blocks reads, per group of output
    blocks, only the band of input blocks its channel groups need (not every block, g times the work),
    with and without a squeeze-excitation gate on its input, behind and in front of other layers."""
    text = (f"input: [{cin}, {size}, {size}]\nlayers: [{{conv: {{out: {cout}, kernel: 3, padding: 1, "
            f"groups: {groups}}}}}, {{relu: {{}}}}]")
    n = net(text)
    (k,) = [s.kernel for s in n.plan.steps if s.name.startswith("fused_conv")]
    assert k.icb_per_group < -(-cin // 16) or cin <= 32, k.icb_per_group
    check(n)
    gated = (f"input: [{cin}, {size}, {size}]\nlayers:\n- {{conv: {{out: {cin}, kernel: 1, name: a}}}}\n"
             f"- {{global_avgpool: {{}}}}\n- {{conv: {{out: {cin}, kernel: 1}}}}\n- {{sigmoid: {{name: g}}}}\n"
             f"- {{mul: {{from: [a, g]}}}}\n"
             f"- {{conv: {{out: {cout}, kernel: 3, padding: 1, groups: {groups}}}}}\n- {{relu: {{}}}}\n")
    check(net(gated), batch=(1, 2))


def test_a_skip_read_by_a_pool_and_a_conv_lives_in_its_concat():
    """U-Net's skip: a conv output that a max-pool and another conv also read is written straight into
    its slice of the concat (they read it there), so no step copies it; unwritten elements would show
    as NaN (poison)."""
    text = """input: [16, 8, 8]
layers:
  - {conv: {out: 32, kernel: 3, padding: 1, name: a}}
  - {relu: {name: r}}
  - {maxpool: {kernel: 2, name: p}}
  - {conv: {out: 16, kernel: 3, padding: 1, name: b, from: r}}
  - {conv_transpose: {out: 16, kernel: 2, stride: 2, from: p, name: u}}
  - {concat: {from: [r, b, u]}}
"""
    n = net(text, poison=True)
    assert not [s.name for s in n.plan.steps if s.name.startswith("concat")]
    check(n)


# ---- per-channel parameters of pointwise layers (prelu) in every kernel that applies them ----

PARAM_EPILOGUES = {
    # kernel the prelu must land in: the spec
    "fused_dwconv2d_plain_prelu": "input: [40, 9, 9]\nlayers: [{conv: {out: 40, kernel: 3, padding: 1, "
                                  "groups: depthwise}}, prelu]",
    "fused_conv2d_prelu_elu_prelu_batchnorm": "input: [5, 9, 9]\nlayers: [{conv: {out: 70, kernel: 3}}, prelu, "
                                              "{elu: {alpha: 0.3}}, {prelu: {shared: true}}, batchnorm]",
    "fused_conv2d_prelu_maxpool2d": "input: [5, 9, 9]\nlayers: [{conv: {out: 33, kernel: 3}}, prelu, "
                                    "{maxpool: {kernel: 2}}]",
    "fused_conv3d_add_prelu": "input: [16, 3, 5, 4]\nlayers: [{conv: {name: a, out: 20, kernel: 1}}, "
                              "{conv: {name: b, out: 20, kernel: 3, padding: 1}}, {add: {from: [a, b]}}, prelu, "
                              "{conv: {out: 4, kernel: 1}}]",
    "fused_linear_prelu_softplus_prelu": "input: [30]\nlayers: [{linear: {out: 50}}, prelu, softplus, "
                                         "{prelu: {shared: true}}]",
    "relu_prelu_prelu": "input: [37, 5, 3]\nlayers: [relu, prelu, {prelu: {name: p2}}, {add: {from: [p2, input]}}, "
                        "prelu, mish]",
}


@pytest.mark.parametrize("kernel", sorted(PARAM_EPILOGUES))
def test_per_channel_parameters_in_every_epilogue(kernel):
    """A prelu's slopes reach the conv (blocked, plain depthwise, with a pool or a residual), linear and
    elementwise kernels channel by channel: random slopes per channel, several channel blocks."""
    import netgen
    text = PARAM_EPILOGUES[kernel]
    g = cnngraph.load(text)
    w = netgen.random_weights(g, 1)
    assert all(np.unique(v).size > 1 for k, v in w.items() if k.endswith(".weight") and "prelu" in k and v.size > 1)
    compiled = jit_compile(g, weights=w, threads=2, poison=True)
    assert kernel in [s.name for s in compiled.plan.steps], compiled.plan.describe()
    for batch in (1, 3):
        assert netgen.check_compiled(text, batch, 2, seed=1) is None
