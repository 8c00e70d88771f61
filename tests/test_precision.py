"""bf16 (compiler/precision.py): the accuracy contract on every bundled spec, random nets within
bf16's rounding, rounding to nearest even exactly as numpy (and PyTorch) round, the plan's dtypes
checked by the verifier, and a clear error where the CPU has no bf16 dot products."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnngraph
from cnngraph.compiler import CompilerBug
from cnngraph.compiler.kernels import Cast, ConvKernel
from cnngraph.compiler.pack import bf16_bits, bf16_round
from cnngraph.compiler.plan import build_plan, replace
from cnngraph.compiler.target import AVX2, host
from cnngraph.compiler.verify import verify
from cnngraph.errors import CnnGraphError
from cnngraph.weights import init
import netgen  # tests/ is on sys.path (pytest prepends it)

BF16 = host().bf16_dot
needs_bf16 = pytest.mark.skipif(not BF16, reason="this CPU has no AVX512-BF16")
CONTRACT = 3e-2  # bf16 output vs f32, relative to the output's scale (README, "Precision")


# ---- the contract on the bundled specs ----

@needs_bf16
@pytest.mark.parametrize("name", sorted(cnngraph.specs()))
def test_bf16_is_within_the_contract_on_every_bundled_spec(name):
    graph = cnngraph.load(name)
    w = init(graph, seed=0, gain=6 ** 0.5)
    x = np.random.default_rng(1).standard_normal((2, *graph.input_shape)).astype(np.float32)
    f32 = cnngraph.compile(graph, weights=w, threads=1)
    bf16 = cnngraph.compile(graph, weights=w, threads=1, precision="bf16")
    assert bf16.precision == "bf16"
    assert any(getattr(s.kernel, "dtype", "f32") == "bf16" for s in bf16.plan.steps), "no conv runs in bf16"
    want, got = f32(x), bf16(x)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= CONTRACT, f"{name}: bf16 differs from f32 by {err:.2e} of the output's scale"
    if want.ndim == 2 and want.shape[1] > 1:  # a classifier: the same top-1 class for every input
        assert (got.argmax(1) == want.argmax(1)).all()


# ---- random nets ----

@needs_bf16
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(netgen.nets(), st.integers(1, 4), st.sampled_from([1, 2]))
def test_random_nets_in_bf16_match_the_reference_within_its_rounding(text, batch, threads):
    try:
        cnngraph.load(text)
    except cnngraph.SpecError:
        pytest.skip("not a valid net")
    bad = netgen.check_compiled(text, batch, threads, precision="bf16")
    assert bad is None, f"{bad}\n{netgen.describe(text)}"


EDGES = {
    # a grouped conv whose groups cut through channel blocks, an output that is not whole blocks
    "unaligned_groups": "input: [24, 9, 9]\nlayers: [relu, {conv: {out: 18, kernel: 3, groups: 3}}, relu, "
                        "{conv: {out: 20, kernel: 3, padding: 1}}]",
    # an odd channel count: its last channel pairs with a padding lane (+0)
    "odd_channels": "input: [5, 8, 8]\nlayers: [relu, {conv: {out: 7, kernel: 3, padding: 1}}, relu, "
                    "{conv: {out: 3, kernel: 1}}]",
    # residuals read as bf16, a stride-2 1x1 downsample, a pool fused along W only
    "residual": """
input: [16, 12, 12]
layers:
  - conv: {name: a, out: 32, kernel: 3, padding: 1}
  - relu: {name: r}
  - conv: {name: b, out: 32, kernel: 3, padding: 1}
  - add: {from: [r, b]}
  - relu
  - conv: {out: 48, kernel: 1, stride: 2}
  - maxpool: {kernel: [1, 2]}
""",
    # convs reading a concat's slice at a block offset (cast on its own) and the concat as a whole
    "concat_slices": """
input: [8, 10, 10]
layers:
  - relu: {name: r}
  - conv: {name: a, out: 16, kernel: 3, padding: 1}
  - conv: {name: b, from: r, out: 24, kernel: 1}
  - concat: {name: c, from: [a, b]}
  - conv: {name: d, from: b, out: 16, kernel: 3, padding: 1}
  - conv: {name: e, from: c, out: 16, kernel: 1}
  - add: {from: [d, e]}
""",
    # a max pool fused over rows (combined in the bf16 output row) after channels that are not whole blocks
    "maxpool_rows": "input: [6, 11, 11]\nlayers: [relu, {conv: {out: 20, kernel: 3, padding: 1}}, relu, "
                    "{maxpool: {kernel: 2, ceil_mode: true}}, {conv: {out: 16, kernel: 3, padding: 1}}]",
    "dilated_3d": "input: [4, 6, 7, 7]\nlayers: [relu, {conv: {out: 18, kernel: 3, dilation: 2, padding: 2}}, relu, "
                  "{conv: {out: 16, kernel: [1, 3, 3], stride: [1, 2, 2]}}]",
}


@needs_bf16
@pytest.mark.parametrize("name", sorted(EDGES))
@pytest.mark.parametrize("batch,threads", [(1, 1), (3, 2)])
def test_bf16_edge_cases_match_the_reference(name, batch, threads):
    bad = netgen.check_compiled(EDGES[name], batch, threads, precision="bf16")
    assert bad is None, bad
    plan = build_plan(cnngraph.load(EDGES[name]), init(cnngraph.load(EDGES[name])), precision="bf16")
    assert any(getattr(s.kernel, "dtype", "") == "bf16" for s in plan.steps)


@needs_bf16
def test_a_slice_at_an_offset_is_cast_where_it_lies():
    g = cnngraph.load(EDGES["concat_slices"])
    casts = [s for s in build_plan(g, init(g), precision="bf16").steps if isinstance(s.kernel, Cast)]
    assert any(s.consts()["in_offset"] > 0 for s in casts)


# ---- rounding ----

def test_numpy_rounding_is_to_nearest_even():
    one = np.float32(1.0)
    ulp = 2.0 ** -7  # of bf16 at 1.0
    x = np.array([one + ulp / 2, one + 3 * ulp / 2, one + ulp / 2 + 2 ** -20, -(one + ulp / 2), np.nan, -np.inf],
                 np.float32)
    got = bf16_round(x)
    assert got[0] == 1.0 and got[1] == np.float32(one + 2 * ulp)  # ties to the even neighbour
    assert got[2] == np.float32(one + ulp) and got[3] == -1.0
    assert np.isnan(got[4]) and got[5] == -np.inf
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(0).standard_normal(100_000).astype(np.float32) * np.float32(1e3)
    want = torch.from_numpy(r).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert (bf16_bits(r) == want).all()


@needs_bf16
def test_compiled_code_rounds_activations_as_numpy_does():
    # relu, then a 1x1 identity conv in bf16: each output is the bf16 rounding of its input, exactly
    c = 16
    graph = cnngraph.load(f"input: [{c}, 4, 50]\nlayers: [relu, {{conv: {{out: {c}, kernel: 1, bias: false}}}}]")
    w = {"conv1.weight": np.eye(c, dtype=np.float32).reshape(c, c, 1, 1)}
    net = cnngraph.compile(graph, weights=w, precision="bf16")
    assert [s.kernel.dtype for s in net.plan.steps if isinstance(s.kernel, ConvKernel)] == ["bf16"]
    rng = np.random.default_rng(3)
    x = np.abs(rng.standard_normal((2, c, 4, 50))).astype(np.float32) * np.float32(37.0)
    # ties: a half-ulp above values whose bf16 mantissa ends in 0 and in 1
    x[0, 0, 0, :4] = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 3 + 2 ** -7, 1e30]
    np.testing.assert_array_equal(net(x), bf16_round(x))


# ---- the plan ----

def small_net():
    return cnngraph.load("input: [3, 12, 12]\nlayers: [{conv: {out: 32, kernel: 3}}, relu, "
                         "{conv: {out: 32, kernel: 3}}, relu, {conv: {out: 16, kernel: 3}}]")


def test_f32_plans_hold_no_bf16():
    g = small_net()
    plan = build_plan(g, init(g))
    assert plan.precision == "f32"
    assert all(t.dtype == "f32" for t in plan.tensors.values())
    assert not any(isinstance(s.kernel, Cast) for s in plan.steps)


@needs_bf16
def test_the_verifier_refuses_a_tensor_of_the_wrong_dtype():
    g = small_net()
    plan = build_plan(g, init(g), precision="bf16")
    halves = [t for t in plan.tensors.values() if t.dtype == "bf16"]
    assert halves, "expected a bf16 tensor between the convs"
    bad = dict(plan.tensors)
    bad[halves[0].id] = replace(halves[0], dtype="f32")
    with pytest.raises(CompilerBug, match="expects bf16 elements, but tensor"):
        verify(replace(plan, tensors=bad))


def test_bf16_needs_a_cpu_with_bf16_dot_products():
    g = small_net()
    with pytest.raises(CnnGraphError, match=r"precision 'bf16' needs a CPU with AVX512-BF16.*avx2"):
        build_plan(g, init(g), target=AVX2, precision="bf16")
    assert build_plan(g, init(g), target=AVX2, precision="auto").precision == "f32"
    with pytest.raises(ValueError, match="expected a precision of f32, bf16, auto, got 'fp16'"):
        build_plan(g, init(g), precision="fp16")


@needs_bf16
def test_auto_picks_bf16_here_and_says_so(capsys):
    from cnngraph.cli import main
    assert main(["compile", "lenet5", "--precision", "auto", "--check"]) == 0
    out = capsys.readouterr().out
    assert "bf16 (AVX512-BF16 dot products, f32 accumulation)" in out
    assert "max relative error vs reference" in out and "(ok)" in out
