"""Squeeze-and-excitation gates (mul broadcasting (C, H, W) by (C, 1, 1), folded into the conv that reads
the gated tensor), channel slices, split, shuffle and concat of slices (views, not copies), and the
ONNX patterns PyTorch's exporter writes for them (torchvision's blocks, written out here)."""

from __future__ import annotations

import netgen  # tests/ is on sys.path (pytest prepends it)
import numpy as np
import pytest

import cnngraph
from cnngraph import oracle
from cnngraph.errors import SpecError

# ---- the spec language: split --------------------------------------------------------------

SHUFFLE_UNIT = """
input: [64, 6, 7]
blocks:
  unit:  # ShuffleNetV2's basic unit: half the channels pass, half go through the branch, then shuffle
    args: {c: ~}
    layers:
      - split: {name: s, parts: 2}
      - conv: {from: s.1, out: "${c // 2}", kernel: 1, bias: false}
      - relu
      - conv: {kernel: 3, padding: 1, groups: depthwise, bias: false}
      - conv: {name: b, out: "${c // 2}", kernel: 1}
      - concat: {from: [s.0, b]}
      - shuffle: {groups: 2}
layers:
  - unit: {name: u1, c: 64}
  - unit: {name: u2, c: 64}
"""


def test_split_names_its_parts_and_reads_them_inside_blocks():
    g = cnngraph.load(SHUFFLE_UNIT)
    names = [n.name for n in g.nodes]
    assert names[:2] == ["u1.s.0", "u1.s.1"] and "u2.s.1" in names
    assert g.node("u1.s.1").layer.values() == {"start": None, "end": None, "part": 1, "parts": 2}
    assert g.node("u2.concat1").inputs == ("u2.s.0", "u2.b")
    sizes = cnngraph.load("input: [10, 4]\nlayers: [{split: {name: s, sizes: [3, 7]}}, {relu: {from: s.1}}]")
    assert [(n.name, n.out_shape) for n in sizes.nodes] == [("s.0", (3, 4)), ("s.1", (7, 4)), ("relu1", (7, 4))]


@pytest.mark.parametrize("text,message", [
    ("input: [4, 3]\nlayers: [{split: {name: s, parts: 2}}, relu]",
     (r"<string>:2:40: layer 'relu1' \(relu\): 's' is a split into 2 parts, not one value: read one of s.0, s.1 — "
      r"write 'from: s.0'")),
    ("input: [4, 3]\nlayers: [{split: {name: s, part: 2}}]",
     r"<string>:2:28: layer 's' \(split\): unknown attribute 'part' \(expected parts, sizes\) — did you mean 'parts'"),
    ("input: [4, 3]\nlayers: [{split: {name: s}}]",
     r"layer 's' \(split\): expected either 'parts' \(equal parts\) or 'sizes'"),
    ("input: [4, 3]\nlayers: [{split: {name: s, sizes: [2, 0]}}]",
     (r"<string>:2:35: layer 's' \(split\): attribute 'sizes': expected a list of positive channel counts, got "
      r"\[2, 0\]")),
    ("input: [5, 3]\nlayers: [{split: {name: s, parts: 2}}, {relu: {from: s.1}}]",
     r"<string>:2:35: layer 's.0' \(slice\): 5 channels do not split into 2 equal parts"),
    ("input: [5, 3]\nlayers: [{split: {name: s, sizes: [2, 2]}}, {concat: {from: [s.0, s.1]}}]",
     r"layer 'concat1' \(concat\): expected 5 channels|s.1"),
    ("input: [4, 3]\nblocks: {split: {layers: [relu]}}\nlayers: [relu]", r"block name 'split' shadows"),
])
def test_split_errors_name_the_place(text, message):
    if "concat1" in message:  # sizes that do not add up are fine: the rest is simply not read
        cnngraph.load(text)
        return
    with pytest.raises(SpecError, match=message):
        cnngraph.load(text)


def test_slices_on_block_boundaries_are_views_and_a_concat_of_the_parts_is_no_copy():
    text = """
input: [32, 5, 6]
layers:
  - conv: {name: c, out: 48, kernel: 1}
  - split: {name: s, sizes: [16, 32]}
  - conv: {name: a, from: s.1, out: 8, kernel: 3, padding: 1}
  - concat: {name: back, from: [s.0, s.1]}
  - conv: {name: b, from: back, out: 8, kernel: 1}
  - add: {from: [a, b]}
"""
    assert netgen.check_compiled(text, 3, 2) is None
    plan = cnngraph.compile(cnngraph.load(text)).plan
    assert [s.name for s in plan.steps if s.name.startswith(("channel_gather", "concat"))] == []
    conv_a = next(s for s in plan.steps if "a" in s.nodes)
    view = plan.tensors[conv_a.arg("input").tensor]
    assert view.root is not None and view.cb_off == 1  # s.1 read in place, from the second block
    # unaligned: a gather (vector shuffles), and still the reference's result
    text2 = text.replace("sizes: [16, 32]", "sizes: [13, 35]")
    assert netgen.check_compiled(text2, 2, 1) is None
    assert any(s.name.startswith("channel_gather") for s in cnngraph.compile(cnngraph.load(text2)).plan.steps)


def test_shufflenet_units_compile_and_match():
    assert netgen.check_compiled(SHUFFLE_UNIT, 3, 2) is None


# ---- gates: folded into the conv that reads the gated tensor -----------------------------------

MBCONV = """
input: [24, 28, 28]
layers:
  - relu: {name: r}
  - conv: {name: expand, out: 96, kernel: 1, bias: false}
  - batchnorm
  - silu
  - conv: {name: dw, kernel: 3, padding: 1, groups: depthwise, bias: false}
  - batchnorm
  - silu: {name: h}
  - global_avgpool
  - conv: {name: se_reduce, out: 6, kernel: 1}
  - silu
  - conv: {name: se_expand, out: 96, kernel: 1}
  - sigmoid: {name: gate}
  - mul: {name: gated, from: [gate, h]}
  - conv: {name: project, out: 24, kernel: 1, bias: false}
  - batchnorm: {name: bn}
  - add: {from: [bn, r]}
"""


def test_a_squeeze_excitation_gate_is_folded_into_the_projection_conv():
    assert netgen.check_compiled(MBCONV, 3, 2) is None
    assert netgen.check_compiled(MBCONV, 1, 1) is None
    plan = cnngraph.compile(cnngraph.load(MBCONV)).plan
    fused = {s.name: s.nodes for s in plan.steps}
    assert fused["gate_weights_mul"] == ("gated",)
    assert fused["fused_mul_conv2d_add"] == ("gated", "project", "bn", "add1")  # gate, conv, bn, residual
    assert not any(s.name.startswith("broadcast") for s in plan.steps)


def test_a_gated_tensor_keeps_its_grid_in_the_receptive_field():
    """The gate saw the whole map, so the window is the largest path's; but the output is on the gated
    tensor's grid (jump 1 here), not the gate's (jump 28): with the gate's, every later 3x3 conv added
    2 x 28 and the bundled SE nets reported receptive fields of 10^11 pixels."""
    g = cnngraph.load(MBCONV + "  - conv: {name: after, out: 8, kernel: 3, padding: 1}\n")
    assert g.node("gate").receptive_field == ((30, 28, 13.5),) * 2  # 3 + 27 pixels of the dw conv's grid
    assert g.node("gated").receptive_field == ((30, 1, 0.0),) * 2
    assert g.node("add1").receptive_field == ((30, 1, 0.0),) * 2
    assert g.node("after").receptive_field == ((32, 1, 0.0),) * 2


def test_a_gate_on_a_small_map_with_a_large_conv_stays_a_broadcast_multiply():
    """Folding pays where the conv's weights are no larger than the gated activation (GATE_RATIO)."""
    text = MBCONV.replace("[24, 28, 28]", "[24, 4, 4]").replace("out: 24, kernel: 1, bias: false", "out: 64, kernel: 1")
    text = text.replace("  - add: {from: [bn, r]}\n", "")
    assert netgen.check_compiled(text, 2, 1) is None
    names = [s.name for s in cnngraph.compile(cnngraph.load(text)).plan.steps]
    assert "broadcast_mul" in names and "gate_weights_mul" not in names


def test_division_keeps_the_padding_lanes_finite():
    """0 / 0 in the padding lanes of a 3-channel block would reach the next conv as NaN * 0 = NaN."""
    text = """
input: [3, 5, 5]
layers:
  - conv: {name: a, out: 3, kernel: 1}
  - conv: {name: b, from: input, out: 3, kernel: 1}
  - div: {from: [a, b]}
  - conv: {out: 20, kernel: 1}
"""
    assert netgen.check_compiled(text, 2, 1) is None


def test_nan_propagates_only_where_the_reference_has_it():
    text = """
input: [20, 4, 6]
layers:
  - global_avgpool: {name: g}
  - mul: {name: m, from: [input, g]}
  - shuffle: {groups: 2}
  - upsample: {mode: linear}
  - slice: {start: 2, end: 11}
"""
    g = cnngraph.load(text)
    x = np.random.default_rng(0).standard_normal((2, 20, 4, 6)).astype(np.float32)
    x[0, 3, 1, 2] = np.nan
    want = oracle.run(g, x, {})
    assert np.isnan(want).any() and not np.isnan(want).all()
    got = cnngraph.compile(g)(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,kernel", [((8, 12, 12), 3), ((20, 40), 3), ((5, 4, 6, 7), [1, 3, 3]),
                                          ((40, 9, 9), 1)])
def test_gates_in_1d_2d_3d_and_on_the_plain_input(shape, kernel):
    """The gated conv reading the user's input itself (plain, up to 16 channels) or a blocked tensor."""
    text = f"""
input: {list(shape)}
layers:
  - global_avgpool
  - conv: {{out: {shape[0]}, kernel: 1}}
  - sigmoid: {{name: g}}
  - mul: {{from: [input, g]}}
  - conv: {{out: 4, kernel: {kernel}, padding: 1}}
"""
    assert netgen.check_compiled(text, 3, 2) is None
    names = [s.name for s in cnngraph.compile(cnngraph.load(text)).plan.steps]
    assert any(n.startswith("fused_mul_conv") for n in names) and "gate_weights_mul" in names
