"""Spec language semantics: chaining, names, from, blocks, args, expressions, repeat, when, output."""

import numpy as np
import pytest

import cnngraph
from cnngraph.errors import SpecError
from cnngraph.spec import loads


def names_inputs(text):
    return [(layer.name, layer.inputs) for layer in loads(text).layers]


def test_implicit_chain_and_auto_names():
    assert names_inputs("input: [1, 8, 8]\nlayers: [relu, relu, {conv: {out: 2, kernel: 1}}]") == [
        ("relu1", ("input",)), ("relu2", ("relu1",)), ("conv1", ("relu2",))]


def test_from_makes_branches():
    text = """
input: [4, 8, 8]
layers:
  - conv: {name: a, out: 2, kernel: 1}
  - conv: {name: b, from: input, out: 3, kernel: 3, padding: 1}
  - concat: {from: [a, b]}
"""
    assert names_inputs(text)[-1] == ("concat1", ("a", "b"))
    assert cnngraph.load(text).output_shape == (5, 8, 8)


BLOCKS = """
input: [8, 16, 16]
blocks:
  res:
    args: {out: ~, stride: 1, project: false}
    layers:
      - conv: {name: c1, out: $out, kernel: 3, stride: $stride, padding: 1}
      - relu
      - conv: {name: c2, out: "${out * 2 // 2}", kernel: 3, padding: 1}
      - conv: {name: proj, from: $input, out: $out, kernel: 1, stride: $stride, when: $project}
      - add: {from: [c2, proj]}
layers:
  - res: {name: s1, out: 8, repeat: 2}
  - res: {name: s2, out: 16, stride: 2, project: true}
"""


def test_blocks_expand_with_scoped_names_and_shortcuts():
    layers = {layer.name: layer for layer in loads(BLOCKS).layers}
    # first repetition reads the network input, the second the first's output
    assert layers["s1.0.c1"].inputs == ("input",)
    assert layers["s1.1.c1"].inputs == ("s1.0.add1",)
    # `when: false` makes the projection the identity: add reads the block input
    assert layers["s1.0.add1"].inputs == ("s1.0.c2", "input")
    assert "s1.0.proj" not in layers
    assert layers["s2.proj"].inputs == ("s1.1.add1",)
    assert layers["s2.add1"].inputs == ("s2.c2", "s2.proj")
    assert layers["s2.c1"].layer.stride == 2 and layers["s2.c2"].layer.out == 16
    assert cnngraph.load(BLOCKS).output_shape == (16, 8, 8)


def test_output_key_and_block_output():
    text = """
input: [2, 4, 4]
output: mid
blocks:
  two:
    output: first
    layers: [{relu: {name: first}}, {tanh: {name: second}}]
layers:
  - two: {name: mid}
  - sigmoid
"""
    g = cnngraph.load(text)
    assert g.output == "mid.first"
    x = np.array([[[[-1.0]] * 4] * 4] * 2, np.float32).reshape(1, 2, 4, 4)
    assert np.all(cnngraph.reference(g, x) == 0)


def test_repeat_on_a_plain_layer_and_references_to_it():
    text = "input: [1, 9, 9]\nlayers:\n  - conv: {name: c, out: 1, kernel: 3, repeat: 3}\n  - relu: {from: c}"
    assert names_inputs(text) == [("c.0", ("input",)), ("c.1", ("c.0",)), ("c.2", ("c.1",)),
                                  ("relu1", ("c.2",))]
    # the seeds' point: three stacked 3x3 convs see 7x7
    assert cnngraph.load(text).node("c.2").receptive_field[0][0] == 7


def test_yaml_anchors_are_plain_values():
    text = "input: [3, 8, 8]\nlayers:\n  - conv: &c {out: 4, kernel: 3, padding: 1}\n  - conv: *c"
    assert cnngraph.load(text).output_shape == (4, 8, 8)


@pytest.mark.parametrize("text, message", [
    ("input: [1, 4]\nblocks: {b: {args: {n: ~}, layers: [relu]}}\nlayers: [b]",
     r"<string>:3:10: layer 'b1': missing required argument 'n' for block 'b'"),
    ("input: [1, 4]\nblocks: {b: {args: {n: 1}, layers: [relu]}}\nlayers: [{b: {m: 2}}]",
     r"3:15: layer 'b1': unknown argument 'm' for block 'b' \(expected n\)"),
    ("input: [1, 4]\nblocks: {b: {args: {n: 1}, layers: [{conv: {kernel: $k}}]}}\nlayers: [b]",
     r"2:53: layer 'b1.conv1' \(conv\): unknown block argument '\$k'"),
    ("input: [1, 4]\nblocks: {b: {args: {n: 1}, layers: [{conv: {kernel: '${n + __import__}'}}]}}\nlayers: [b]",
     r"unknown block argument '__import__'"),
    ("input: [1, 4]\nblocks: {b: {args: {n: 1}, layers: [{conv: {kernel: '${n.real}'}}]}}\nlayers: [b]",
     r"expected arithmetic on numbers and block arguments"),
    ("input: [1, 4]\nblocks: {b: {layers: [b]}}\nlayers: [b]", r"2:23: layer 'b1.b1' \(b\): block 'b' uses itself \(b -> b\)"),
    ("input: [1, 4]\nblocks: {relu: {layers: [tanh]}}\nlayers: [relu]", r"shadows the built-in layer kind"),
])
def test_block_mistakes(text, message):
    with pytest.raises(SpecError, match=message):
        cnngraph.load(text)


def test_repeat_index_makes_a_stage_one_line():
    """`repeat: {count, index}`: the first unit of a stage strides and projects, the others do not."""
    text = BLOCKS.replace("  - res: {name: s1, out: 8, repeat: 2}\n  - res: {name: s2, out: 16, stride: 2, project: true}\n",
                          '  - res: {name: s, out: 16, repeat: {count: 3, index: i}, stride: "${2 if i == 0 else 1}",\n'
                          '          project: "${i == 0}"}\n')
    layers = {layer.name: layer for layer in loads(text).layers}
    assert layers["s.0.c1"].layer.stride == 2 and layers["s.1.c1"].layer.stride == 1
    assert "s.0.proj" in layers and "s.1.proj" not in layers and "s.2.proj" not in layers
    assert layers["s.1.c1"].inputs == ("s.0.add1",) and layers["s.2.add1"].inputs == ("s.2.c2", "s.1.add1")
    assert cnngraph.load(text).output_shape == (16, 8, 8)


def test_repeat_index_in_plain_layers_and_when():
    text = ('input: [1, 16]\nlayers:\n  - conv: {name: c, out: "${i + 1}", kernel: 1, repeat: {count: 4, index: i},\n'
            '            when: "${i % 2 == 0}"}\n  - relu: {from: c}\n')
    got = names_inputs(text)
    # c.1 and c.3 are skipped: c.2 reads c.0, and `c` (the last repetition) means c.2
    assert got == [("c.0", ("input",)), ("c.2", ("c.0",)), ("relu1", ("c.2",))]
    assert [layer.layer.out for layer in loads(text).layers[:2]] == [1, 3]


def test_repeated_names_record_their_groups():
    layers = {layer.name: layer for layer in loads(BLOCKS).layers}
    assert layers["s1.1.c1"].groups == (("s1", "res x2"), ("s1.1", "res"))
    assert layers["s2.c1"].groups == (("s2", "res"),)


def test_block_defaults_may_compute_from_earlier_arguments():
    text = """
input: [64, 8, 8]
blocks:
  squeeze:
    args: {ch: ~, ratio: 4, mid: "${max(8, ch // ratio)}"}
    layers:
      - conv: {name: down, out: $mid, kernel: 1}
      - conv: {name: up, out: $ch, kernel: 1}
layers:
  - squeeze: {name: a, ch: 64}
  - squeeze: {name: b, ch: 64, ratio: 16}
  - squeeze: {name: c, ch: 64, mid: 5}
"""
    layers = {layer.name: layer for layer in loads(text).layers}
    assert [layers[f"{n}.down"].layer.out for n in "abc"] == [16, 8, 5]


@pytest.mark.parametrize("expr, args, value", [
    ("2 if i == 0 else 1", {"i": 0}, 2),
    ("2 if i == 0 else 1", {"i": 3}, 1),
    ("i > 0 and not last", {"i": 1, "last": False}, True),
    ("1 <= i < 3", {"i": 3}, False),
    ("min(c, 4) * 2", {"c": 9}, 8),
    ("-(c // 4) % 3", {"c": 9}, 1),
])
def test_expressions(expr, args, value):
    from cnngraph.spec import _eval
    assert _eval(expr, args, None) == value


def test_flow_style_templating_works_when_quoted():
    text = "input: [3, 8, 8]\nblocks: {b: {args: {c: 4}, layers: [{conv: {out: \"${2 * c}\", kernel: 3}}]}}\nlayers: [b]\n"
    assert cnngraph.load(text).output_shape == (8, 6, 6)


def test_bundled_resnets_use_the_repeat_index():
    """The bundled ResNets write each stage in one entry; totals are checked in test_specs."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent / "specs"
    for name, stages in (("resnet18", 4), ("resnet50", 4)):
        text = (root / f"{name}.yaml").read_text()
        assert text.count("index: i") == stages - (name == "resnet18")
        layers = {layer.name: layer for layer in loads(text).layers}
        assert layers["layer2.0.conv1" if name == "resnet18" else "layer2.0.conv2"].layer.stride == 2
        assert "layer2.0.downsample.0" in layers and "layer2.1.downsample.0" not in layers


def test_a_skipped_merge_passes_its_first_input():
    text = """
input: [4, 5]
blocks:
  unit:
    args: {residual: true}
    layers:
      - conv: {name: c, out: 4, kernel: 1}
      - add: {name: r, from: [c, $input], when: $residual}
layers:
  - unit: {name: a}
  - unit: {name: b, residual: false}
  - relu
"""
    g = cnngraph.load(text)
    assert [(n.name, n.inputs) for n in g.nodes] == [("a.c", ("input",)), ("a.r", ("a.c", "input")),
                                                     ("b.c", ("a.r",)), ("relu1", ("b.c",))]
