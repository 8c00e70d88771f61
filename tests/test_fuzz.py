"""Differential fuzzing: random networks (tests/netgen.py) compiled and compared with the
float64 numpy reference, with buffers poisoned with NaN so an element no kernel writes
shows up, at batch sizes 1..5 and 1 or 2 threads, each row of a batch also checked alone.

    pytest tests/test_fuzz.py                              # the CI share (a few hundred nets)
    pytest tests/test_fuzz.py --hypothesis-profile=long    # thousands
    python tools/fuzz.py 5000                              # a long run that keeps going and counts

Failures that were found are kept below as regression cases.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnngraph
from cnngraph import oracle
from cnngraph.layers import REGISTRY
import netgen  # tests/ is on sys.path (pytest prepends it)

settings.register_profile("ci", max_examples=int(os.environ.get("CNNGRAPH_FUZZ_EXAMPLES", 250)), deadline=None,
                          suppress_health_check=list(HealthCheck), derandomize=True)
settings.register_profile("long", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))


def test_the_generator_writes_every_layer_kind():
    assert set(netgen.KINDS) == set(REGISTRY), "teach tests/netgen.py the new layer kind"


@settings(settings.get_profile("ci"))
@given(netgen.nets(), st.integers(1, 5), st.sampled_from([1, 2]))
def test_random_nets_match_the_reference(text, batch, threads):
    try:
        cnngraph.load(text)
    except cnngraph.SpecError:
        pytest.skip("not a valid net")  # rare: the generator checks shapes as it goes
    bad = netgen.check_compiled(text, batch, threads)
    assert bad is None, f"{bad}\n{netgen.describe(text)}"


# ---- regressions: nets the fuzzer found (issue 8), each a class of bug --------------

REGRESSIONS = {
    # a 1x1 conv with high-side padding: border positions see only padding (bias + activation)
    "pointwise_conv_high_padding": """
input: [3, 4, 5]
layers:
  - conv: {out: 20, kernel: 1, padding: [[0, 1], [0, 1]]}
  - relu
""",
    "depthwise_1x1_padding_1d": """
input: [4, 5]
layers:
  - conv: {name: l0, out: 4, kernel: 1, dilation: [2], padding: [[0, 2]], groups: depthwise, bias: false}
  - conv: {name: l1, out: 4, kernel: 2, dilation: [2], padding: valid, groups: depthwise, bias: false}
""",
    # a conv and an identity of it concatenated: one tensor read twice, never a copy left unwritten
    "concat_of_a_value_and_its_identity": """
input: [16, 5, 3]
layers:
  - conv: {name: c, out: 16, kernel: 1}
  - dropout: {name: d}
  - concat: {from: [c, d]}
""",
    "concat_of_aliases_and_merges": """
input: [16, 5, 3, 1]
layers:
  - relu6: {name: l0}
  - add: {name: l1, from: [input, l0]}
  - concat: {name: l2, from: [input, input]}
  - dropout: {name: l3, from: input}
  - concat: {name: l4, from: [l2, l1]}
  - concat: {name: l5, from: [l3, l0]}
  - batchnorm: {name: l7, eps: 0.1}
""",
    # a flattened output read from a blocked tensor (written in PyTorch's order)
    "flatten_output": "input: [5, 8]\nlayers: [{flatten: {name: l0}}]",
    # a slice of an in-place concat at a channel offset, with a batch: offsets are per sample
    "inplace_concat_slices_with_a_batch": """
input: [16, 9, 9]
layers:
  - conv: {name: a, out: 32, kernel: 3, padding: 1}
  - conv: {name: b, from: input, out: 16, kernel: 1}
  - maxpool: {name: p, from: input, kernel: 3, stride: 1, padding: 1}
  - concat: {name: cat, from: [a, b, p]}
  - relu
""",
    # the same value read twice by one layer and again later
    "add_of_the_same_value": """
input: [3, 5]
layers: [relu, {add: {from: [relu1, relu1]}}, {add: {from: [relu1, add1]}}]
""",
    # a layer nothing reads is not compiled
    "unread_layer": "input: [4, 6]\nlayers: [{conv: {name: a, out: 3, kernel: 3}}, {relu: {from: input}}]",
    # a concat of a slice (a lazy selection, so gathered into a tensor of its own) nested in another concat:
    # it was planned in place in the outer one, which then lacked its channels (caught by the verifier)
    "gathered_concat_nested": """
input: [8, 1, 1, 4]
layers:
  - {slice: {name: l0, part: 0, parts: 1}}
  - {softmax: {name: l1, from: input}}
  - {hardswish: {name: l2, from: input}}
  - {concat: {name: l3, from: [l0, l1]}}
  - {concat: {name: l5, from: [l2, l2, l3]}}
  - {conv_transpose: {out: 32, kernel: 2, stride: 3, groups: depthwise, output_padding: [1, 1, 0]}}
""",
    # a prelu fused into a transposed conv: its phases were given no slopes (a null pointer: SIGSEGV);
    # the verifier now refuses a step without the arguments its code reads
    "conv_transpose_prelu": """
input: [18, 3, 3]
layers:
  - {conv_transpose: {out: 34, kernel: 3, stride: 2, dilation: 2, bias: false, output_padding: [1, 1]}}
  - {prelu: {}}
  - {conv_transpose: {out: 16, kernel: 2, stride: 2, groups: 2, padding: 1}}
  - {prelu: {shared: true}}
""",
    # prelus after a standalone batchnorm and after a broadcasting merge: those kernels applied them
    # without their slopes (TypeError at compile); each now reads its slopes per channel block
    "batchnorm_prelu": """
input: [20, 6, 9]
layers:
  - {batchnorm: {}}
  - {prelu: {}}
  - {elu: {}}
  - {prelu: {}}
  - {conv_transpose: {out: 12, kernel: [2, 1], dilation: 2, padding: [[1, 1], [3, 0]], groups: 2, output_padding: [0, 1]}}
""",
    "broadcast_mul_prelu": """
input: [20, 6, 9]
layers:
  - {conv: {name: a, out: 20, kernel: 3, padding: 1}}
  - {global_avgpool: {name: g}}
  - {mul: {from: [a, g]}}
  - {prelu: {}}
  - {prelu: {shared: true}}
""",
    # x / batchnorm(x) near a zero of the batchnorm: float32 cannot be exact there (the folded x * s + t differs
    # from (x - mean) / std * gamma + beta by 5e-4 of the output); the check allows what rounding can move
    "division_by_a_cancelling_batchnorm": """
input: [5, 23]
layers:
  - {relu: {name: l1}}
  - {batchnorm: {name: l2, from: input}}
  - {hardsigmoid: {name: l3, from: l1}}
  - {div: {name: l4, from: [l3, l2]}}
  - {maxpool: {name: l5, kernel: [3], ceil_mode: true, padding: [[4, 2]], dilation: [2]}}
""",
}


def test_the_rounding_allowance_does_not_hide_a_wrong_answer():
    """The allowance for ill-conditioned outputs is what float32 rounding of the input and weights moves
    the float64 reference: on an ordinary net it is tiny, so an error of 1e-3 of the output still fails."""
    text = "input: [4, 9]\nlayers: [{conv: {out: 6, kernel: 3}}, batchnorm, relu, {div: {from: [relu1, conv1]}}]"
    graph = cnngraph.load(text)
    w = netgen.random_weights(graph, 0)
    x = np.random.default_rng(1).standard_normal((2, *graph.input_shape))
    want = oracle.run(graph, x, w)
    slack = netgen.rounding_sensitivity(graph, x, w, want)
    assert netgen.mismatch(want.astype(np.float32), want, slack=slack) is None
    wrong = (want + 1e-3 * np.abs(want).max()).astype(np.float32)
    assert netgen.mismatch(wrong, want, slack=slack) is not None


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
@pytest.mark.parametrize("batch,threads", [(1, 1), (3, 2)])
def test_regressions(name, batch, threads):
    assert netgen.check_compiled(REGRESSIONS[name], batch, threads) is None
