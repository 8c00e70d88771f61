"""The bundled specs: they build, reproduce the published totals exactly, and the
report (text, JSON, DOT) presents them consistently.

Regenerate the golden CLI reports on purpose with `CNNGRAPH_REGEN=1 pytest tests/test_specs.py`.
"""

import json
import os
import pathlib
import re
import time

import pytest

import cnngraph
import cnngraph.layers
from cnngraph import report
from cnngraph.cli import main
from cnngraph.errors import SpecError

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
ALL = sorted(p.stem for p in SPECS.glob("*.yaml"))

# name: (input shape, trainable params, MACs); torchvision's numbers where it has the net.
TABLE = {
    "lenet5": ((1, 32, 32), 61_706, 416_520),
    "alexnet": ((3, 227, 227), 60_965_224, 724_406_816),
    "vgg16": ((3, 224, 224), 138_357_544, 15_470_264_320),
    "googlenet": ((3, 224, 224), 6_998_552, 1_582_671_872),
    "resnet18": ((3, 224, 224), 11_689_512, 1_814_073_344),
    "resnet50": ((3, 224, 224), 25_557_032, 4_089_184_256),
    "mobilenet_v2": ((3, 224, 224), 3_504_872, 300_774_272),
    "nin": ((3, 224, 224), 7_595_176, 1_100_188_800),
    "densenet121": ((3, 224, 224), 7_978_856, 2_834_161_664),
    "resnext50_32x4d": ((3, 224, 224), 25_028_904, 4_230_479_872),
    "efficientnet_b0": ((3, 224, 224), 5_288_548, 385_814_752),
    "mobilenet_v3_large": ((3, 224, 224), 5_483_032, 216_589_760),
    "mobilenet_v3_small": ((3, 224, 224), 2_542_856, 56_510_400),
    "shufflenet_v2_x1_0": ((3, 224, 224), 2_278_604, 144_907_992),
    "regnet_y_400mf": ((3, 224, 224), 4_344_144, 401_842_848),
    "convnext_tiny": ((3, 224, 224), 28_589_128, 4_455_531_264),
    # segmentation: milesial/Pytorch-UNet's UNet(3, 2); FCN's head on a ResNet-18 trunk (no torchvision
    # number: tests/test_segmentation_specs.py counts both from the PyTorch modules)
    "unet": ((3, 256, 256), 31_037_698, 48_171_581_440),
    "fcn_resnet18": ((3, 224, 224), 11_769_301, 1_842_594_432),
}
# outputs other than ImageNet's 1000 classes
OUTPUTS = {"lenet5": (10,), "unet": (2, 256, 256), "fcn_resnet18": (21, 224, 224)}
# batchnorm running statistics (2 per channel), reported apart from the params
BUFFERS = {"resnet18": 9_600, "resnet50": 53_120, "mobilenet_v2": 34_112, "audio1d": 384,
           "resnext50_32x4d": 68_224, "densenet121": 83_648, "efficientnet_b0": 42_016,
           "mobilenet_v3_large": 24_400, "mobilenet_v3_small": 12_112, "shufflenet_v2_x1_0": 16_180,
           "regnet_y_400mf": 27_152, "unet": 11_776, "fcn_resnet18": 9_856}
# the only expected warning: NIN's 11x11/4 conv on 224 leaves a border row/col (as in Caffe)
WARNINGS = {"nin": ["block1.conv"]}


def spec(name: str) -> pathlib.Path:
    return SPECS / f"{name}.yaml"


@pytest.fixture(scope="module")
def graphs():
    return {name: cnngraph.load(spec(name)) for name in ALL}


def test_the_bundle_is_complete():
    assert set(TABLE) <= set(ALL)
    assert {"audio1d", "video3d"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_bundled_spec_builds(graphs, name):
    g = graphs[name]
    assert g.name == name and g.nodes
    assert g.output == g.nodes[-1].name or g.output in {n.name for n in g.nodes}
    # every warning is expected, and names the layer it concerns
    warned = [re.search(r"layer '([^']+)'", w).group(1) for w in g.warnings]
    assert warned == WARNINGS.get(name, [])


@pytest.mark.parametrize("name", sorted(TABLE))
def test_published_totals_reproduced_exactly(graphs, name):
    shape, params, macs = TABLE[name]
    g = graphs[name]
    totals = g.totals()
    assert g.input_shape == shape
    assert (totals["params"], totals["macs"]) == (params, macs)
    assert totals["buffers"] == BUFFERS.get(name, 0)
    assert g.output_shape == OUTPUTS.get(name, (1000,))


def test_one_and_three_dimensional_nets(graphs):
    audio, video = graphs["audio1d"], graphs["video3d"]
    assert audio.input_shape == (1, 16000) and audio.output_shape == (35,)
    assert {n.op for n in audio.nodes} >= {"conv1d", "maxpool1d", "batchnorm1d"}
    assert len(video.input_shape) == 4 and video.output_shape == (101,)
    assert {n.op for n in video.nodes} >= {"conv3d", "maxpool3d"}
    # "small enough" to run through the numpy oracle in tests
    assert video.totals()["macs"] < 1e9


@pytest.mark.parametrize("name", ALL)
def test_rows_sum_to_totals(graphs, name):
    doc = report.to_json(graphs[name])
    for key in ("params", "buffers", "macs", "activations"):
        assert sum(layer[key] for layer in doc["layers"]) == doc["totals"][key], key
    assert doc["totals"]["activation_bytes"] == 4 * doc["totals"]["activations"]


def test_json_report_fields(graphs):
    doc = json.loads(report.dumps(graphs["googlenet"]))
    assert doc["name"] == "googlenet" and doc["input_shape"] == [3, 224, 224]
    assert {"params", "buffers", "macs", "activations"} <= set(doc["totals"])
    for layer in doc["layers"]:
        assert {"name", "op", "output_shape", "params", "macs", "receptive_field"} <= set(layer)
        assert isinstance(layer["receptive_field"]["size"], list)
        assert all(isinstance(v, int) and v >= 0 for v in layer["output_shape"] + [layer["params"], layer["macs"]])
    by_name = {layer["name"]: layer for layer in doc["layers"]}
    assert by_name["inception3a.concat1"]["output_shape"] == [256, 28, 28]
    assert by_name["fc"]["receptive_field"]["size"] == []


def test_receptive_fields(graphs):
    vgg, alex = graphs["vgg16"], graphs["alexnet"]
    assert [size for size, _, _ in vgg.node("features.30").receptive_field] == [212, 212]
    assert [size for size, _, _ in alex.node("features.14").receptive_field] == [195, 195]
    # after a squeeze-and-excitation gate the grid is still the net's: 32 pixels apart at the end
    for name, last in [("efficientnet_b0", "features.8.2"), ("mobilenet_v3_large", "features.16.hardswish"),
                       ("mobilenet_v3_small", "features.12.hardswish")]:
        assert [jump for _, jump, _ in graphs[name].node(last).receptive_field] == [32, 32]
    # the seeds' point: three stacked 3x3 convs see as far as one 7x7
    g = cnngraph.load("input: [1, 16, 16]\nlayers:\n  - conv: {kernel: 3, repeat: 3}")
    assert g.nodes[-1].receptive_field[0][0] == 7 and g.nodes[-1].receptive_field[1][0] == 7
    doc = report.to_json(vgg)
    (pool5,) = [layer for layer in doc["layers"] if layer["name"] == "features.30"]
    # the first output sees 212x212 pixels centred on the middle of the first 32x32 cell
    assert pool5["receptive_field"] == {"size": [212, 212], "jump": [32, 32], "start": [15.5, 15.5]}


def test_torchvision_layer_names(graphs):
    """Names (and so state_dict keys) follow torchvision where it has the net."""
    from cnngraph.weights import expected
    keys = {name: expected(graphs[name]) for name in ("vgg16", "resnet18", "resnet50", "mobilenet_v2")}
    assert keys["vgg16"]["features.28.weight"] == (512, 512, 3, 3)
    assert keys["vgg16"]["classifier.6.weight"] == (1000, 4096)
    assert keys["resnet50"]["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert keys["resnet50"]["layer2.0.conv2.weight"] == (128, 128, 3, 3)  # stride on the 3x3
    assert graphs["resnet50"].node("layer2.0.conv2").layer.stride == 2
    assert "layer1.1.downsample.0.weight" not in keys["resnet50"]
    assert keys["resnet50"]["layer4.2.bn3.running_var"] == (2048,)
    assert keys["resnet18"]["layer3.0.downsample.1.weight"] == (256,)
    assert keys["mobilenet_v2"]["features.1.conv.0.0.weight"] == (32, 1, 3, 3)
    assert keys["mobilenet_v2"]["features.17.conv.2.weight"] == (320, 960, 1, 1)
    assert keys["mobilenet_v2"]["features.18.1.running_mean"] == (1280,)
    # torchvision's resnet50: 161 parameter tensors, 2 running statistics for each of its 53 batchnorms
    assert len(keys["resnet50"]) == 161 + 2 * 53


def test_torchvision_layer_names_of_the_squeeze_excitation_nets(graphs):
    """EfficientNet-B0 and MobileNetV3 number their modules in order, so a block without expansion
    (or without squeeze-and-excitation) numbers the rest from one lower."""
    from cnngraph.weights import expected
    eff, large, small = (expected(graphs[n]) for n in ("efficientnet_b0", "mobilenet_v3_large", "mobilenet_v3_small"))
    assert eff["features.1.0.block.0.0.weight"] == (32, 1, 3, 3)        # depthwise first: no expansion
    assert eff["features.1.0.block.2.0.weight"] == (16, 32, 1, 1)
    assert eff["features.2.0.block.2.fc1.weight"] == (4, 96, 1, 1)      # squeezes to a quarter of the input
    assert eff["features.6.3.block.1.0.weight"] == (1152, 1, 5, 5)
    assert eff["features.7.0.block.3.1.running_var"] == (320,)
    assert large["features.3.block.2.0.weight"] == (24, 72, 1, 1)       # no SE: project is block.2
    assert large["features.4.block.2.fc1.weight"] == (24, 72, 1, 1)     # _make_divisible(72 // 4, 8) = 24
    assert large["features.4.block.3.0.weight"] == (40, 72, 1, 1)
    assert large["classifier.3.weight"] == (1000, 1280)
    assert small["features.1.block.1.fc2.bias"] == (16,)
    assert small["features.12.1.running_mean"] == (576,)
    # torchvision's state_dicts without num_batches_tracked
    assert (len(eff), len(large), len(small)) == (311, 266, 210)


def test_torchvision_layer_names_of_the_newer_nets(graphs):
    """ShuffleNetV2, RegNetY and ConvNeXt: torchvision's state_dict keys (tests/test_modern_specs_b.py
    loads torchvision's models' state_dicts where torchvision is installed)."""
    from cnngraph.weights import expected
    shuffle, regnet, convnext = (expected(graphs[n]) for n in ("shufflenet_v2_x1_0", "regnet_y_400mf",
                                                               "convnext_tiny"))
    assert shuffle["stage2.0.branch1.0.weight"] == (24, 1, 3, 3)    # only the stride-2 unit has branch1
    assert shuffle["stage3.7.branch2.5.weight"] == (116, 116, 1, 1)
    assert not any(k.startswith("stage3.1.branch1") for k in shuffle)
    assert regnet["trunk_output.block2.block2-0.proj.0.weight"] == (104, 48, 1, 1)
    assert regnet["trunk_output.block2.block2-0.f.se.fc1.weight"] == (12, 104, 1, 1)  # 0.25 x the input width
    assert regnet["trunk_output.block4.block4-5.f.b.0.weight"] == (440, 8, 3, 3)       # 8 channels per group
    assert "trunk_output.block2.block2-1.proj.0.weight" not in regnet
    assert convnext["features.7.2.block.3.weight"] == (3072, 768, 1, 1)   # torchvision's Linear: (3072, 768)
    assert convnext["features.1.0.layer_scale.weight"] == (96,)            # torchvision's: (96, 1, 1)
    assert convnext["classifier.0.weight"] == (768,) and convnext["classifier.2.weight"] == (1000, 768)
    # torchvision's state_dicts have 338, 384 and 182 entries: these and a num_batches_tracked per batchnorm
    assert (len(shuffle) + 56, len(regnet) + 53, len(convnext)) == (338, 384, 182)


def test_report_building_is_fast():
    start = time.perf_counter()
    text = json.dumps(report.to_json(cnngraph.load(spec("resnet50"))))
    elapsed = time.perf_counter() - start
    assert json.loads(text)["totals"]["macs"] == TABLE["resnet50"][2]
    assert elapsed < 1.0, f"resnet50 report took {elapsed:.2f} s"


def _parse_dot(text: str):
    """A small structural DOT reader: (graph name, {node: label}, [(src, dst)])."""
    lines = text.strip().splitlines()
    head = re.fullmatch(r'digraph "((?:[^"\\]|\\.)*)" \{', lines[0])
    assert head and lines[-1] == "}"
    q = r'"((?:[^"\\]|\\.)*)"'
    nodes, edges = {}, []
    for line in lines[1:-1]:
        line = line.strip()
        if m := re.fullmatch(q + r" \[label=" + q + r"(?:, shape=\w+)?\];", line):
            assert m.group(1) not in nodes, f"node {m.group(1)} declared twice"
            nodes[m.group(1)] = m.group(2)
        elif m := re.fullmatch(q + " -> " + q + ";", line):
            edges.append((m.group(1), m.group(2)))
        else:
            assert re.fullmatch(r"(rankdir=\w+|node \[.*\]);", line), line
    return head.group(1), nodes, edges


@pytest.mark.parametrize("name", ["googlenet", "resnet18"])
def test_dot_output_is_one_node_per_layer(graphs, name, tmp_path, capsys):
    out = tmp_path / "g.dot"
    assert main(["compile", "--no-compile", str(spec(name)), "--dot", str(out)]) == 0
    capsys.readouterr()
    g = graphs[name]
    title, nodes, edges = _parse_dot(out.read_text())
    assert title == name
    assert set(nodes) == {"input"} | {n.name for n in g.nodes} and len(nodes) == len(g.nodes) + 1
    assert sorted(edges) == sorted((i, n.name) for n in g.nodes for i in n.inputs)
    assert nodes[g.nodes[0].name].split("\\n")[1] == g.nodes[0].op
    try:
        import pydot
    except ImportError:
        return
    (parsed,) = pydot.graph_from_dot_data(out.read_text())
    assert len([n for n in parsed.get_nodes() if n.get_name() not in ("node", "graph", "edge")]) == len(nodes)


@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_cli_text_report_golden(name, capsys):
    assert main(["compile", "--no-compile", str(spec(name))]) == 0
    out = capsys.readouterr().out
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("CNNGRAPH_REGEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(out)
    assert golden.exists(), f"missing {golden}: run with CNNGRAPH_REGEN=1 to create it"
    assert out == golden.read_text(), "report changed; if on purpose, regenerate with CNNGRAPH_REGEN=1"


ALEX224 = spec("alexnet").read_text().replace("input: [3, 227, 227]", "input: [3, 224, 224]")


def test_untiled_stride_warns(tmp_path, capsys):
    assert "[3, 224, 224]" in ALEX224
    g = cnngraph.load(ALEX224)
    first = g.warnings[0]
    assert re.search(r"^<string>:\d+:\d+: layer 'features.0' \(conv2d\): stride 4x4 does not tile the "
                     r"224x224 input: no window sees the last 1 along H and the last 1 along W ", first)
    assert not cnngraph.load(spec("alexnet")).warnings  # 227 is what the strides tile
    # the CLI prints it after the report, and still succeeds
    path = tmp_path / "alex224.yaml"
    path.write_text(ALEX224)
    assert main(["compile", "--no-compile", str(path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^warning: .*alex224.yaml:\d+:\d+: layer 'features.0' \(conv2d\): stride 4x4 does not tile",
                     out, re.MULTILINE)
    assert main(["compile", "--no-compile", str(path), "--json"]) == 0
    assert "features.0" in json.loads(capsys.readouterr().out)["warnings"][0]


def test_strict_turns_the_warning_into_an_error(tmp_path, capsys):
    with pytest.raises(SpecError, match=r"layer 'features.0' \(conv2d\): stride 4x4 does not tile the 224x224 "
                                        r"input.* — --strict makes this an error"):
        cnngraph.load(ALEX224, strict=True)
    path = tmp_path / "alex224.yaml"
    path.write_text(ALEX224)
    assert main(["compile", "--no-compile", str(path), "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:") and "does not tile" in err and "Traceback" not in err
    assert main(["compile", "--no-compile", str(spec("alexnet")), "--strict"]) == 0


# ---- docs/spec.md stays true --------------------------------------------------

DOC = ROOT / "docs" / "spec.md"


def test_spec_doc_layer_reference_is_up_to_date():
    import runpy
    gen = runpy.run_path(str(ROOT / "tools" / "gen_spec_doc.py"), run_name="gen_spec_doc")
    assert gen["render"](DOC.read_text()) == DOC.read_text(), "run python tools/gen_spec_doc.py"
    for kind in cnngraph.layers.REGISTRY:
        assert f"### `{kind}`" in DOC.read_text()


def test_spec_doc_examples_build():
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    full = [b for b in blocks if re.search(r"^input:", b, re.MULTILINE) and re.search(r"^layers:", b, re.MULTILINE)]
    assert len(full) >= 10
    for text in full:
        cnngraph.load(text)  # raises with file:line:col if an example rots
