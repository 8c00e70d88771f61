"""ONNX import: round trips of every bundled spec, hand-built models for each
operator form the importer folds or maps, readable YAML, clear refusals, and
`.onnx` paths in `cnngraph.load` / `reference` / `compile` and the CLI."""

from __future__ import annotations

import os
import re
import time
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper
from onnx import numpy_helper as nh
from test_onnx_export import LAYER_CASES, SPEC_FILES, SPECS, _close, small_spec

import cnngraph
from cnngraph import weights as W
from cnngraph.cli import main as cli
from cnngraph.interop import InteropError, export, import_onnx, load_onnx
from cnngraph.interop.runtime import run as ort_run

RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _model(nodes, in_shape, out_name, inits=(), opset=17, ir=None, extra_inputs=(), outputs=None):
    """A float32 model with input 'x' of shape in_shape (use 'N' for a dynamic batch)."""
    g = helper.make_graph(nodes, "test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape),
                                          *extra_inputs],
                          outputs or [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
                          initializer=[nh.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir or helper.find_min_ir_version_for(list(m.opset_import))
    return m


def _same_as_ort(model, n=2):
    imp = import_onnx(model)
    g = cnngraph.load(imp.spec)
    x = RNG.standard_normal((n, *g.input_shape)).astype(np.float32)
    _close(cnngraph.reference(g, x, imp.weights), ort_run(model, x))
    return imp


# ---- round trips --------------------------------------------------------------

@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_bundled_spec_round_trip(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = cnngraph.load(small_spec(path))
    w = W.init(graph, seed=2, gain=6 ** 0.5)  # He init: the signal survives to the output
    imp = import_onnx(export(graph, w, None))
    # same layers: names, kinds and attributes; same weights by name
    assert [(ls.name, ls.layer) for ls in imp.spec.layers] == [(n.name, n.layer) for n in graph.nodes]
    assert [ls.inputs for ls in imp.spec.layers] == [n.inputs for n in graph.nodes]
    assert set(imp.weights) == set(w)
    x = RNG.standard_normal((2, *graph.input_shape)).astype(np.float32)
    _close(cnngraph.reference(imp.spec, x, imp.weights), cnngraph.reference(graph, x, w))


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_case_round_trip(name):
    """Including the forms export rewrites: ceil_mode as padding, big pads as Pad, even LRN as a band."""
    graph = cnngraph.load(LAYER_CASES[name])
    w = W.init(graph, seed=4)
    imp = import_onnx(export(graph, w, None))
    x = RNG.standard_normal((2, *graph.input_shape)).astype(np.float32)
    _close(cnngraph.reference(imp.spec, x, imp.weights), cnngraph.reference(graph, x, w))
    if name not in ("maxpool_pad_ge_kernel", "avgpool_ceil_past_padding_1d",
                    "avgpool_ceil_include_pad", "avgpool_asymmetric"):  # exported as Pad + pool
        assert [_norm(ls.layer) for ls in imp.spec.layers] == [_norm(n.layer) for n in graph.nodes]


def _norm(layer):
    """Layer values with a pool's default stride spelled out (the YAML leaves out stride == kernel)."""
    v = layer.values()
    if v.get("stride", 0) is None:
        v["stride"] = v["kernel"]
    return layer.kind, v


def test_pool_padding_is_simplified_only_when_it_means_the_same():
    # floor mode with pads (0, 1) is ceil_mode without padding; no exporter hint here
    m = _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])],
               ["N", 2, 10, 10], "y")
    assert "- maxpool: {name: y, kernel: 3, stride: 2, ceil_mode: true}" in _same_as_ort(m).yaml
    # an average over (0, 1) padding counted in the divisor is not ceil_mode, but it is 'same' here
    m = _model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                 pads=[0, 0, 1, 1], count_include_pad=1)], ["N", 2, 10, 10], "y")
    assert "- avgpool: {name: y, kernel: 3, stride: 2, padding: same}" in _same_as_ort(m).yaml
    # pads (1, 2) whose last window counts two padding columns: neither ceil_mode nor 'same', kept as written
    m = _model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                 pads=[1, 1, 2, 2], count_include_pad=1)], ["N", 2, 10, 10], "y")
    assert "- avgpool: {name: y, kernel: 3, stride: 2, padding: [[1, 2], [1, 2]]}" in _same_as_ort(m).yaml


def test_a_tampered_exporter_hint_is_ignored():
    m = export(cnngraph.load("input: [2, 9, 9]\nlayers: [{conv: {out: 2, kernel: 3, padding: same}}]"))
    assert import_onnx(m).spec.layers[0].layer.padding == "same"
    m.graph.node[0].doc_string = m.graph.node[0].doc_string.replace('"same"', "0")
    assert import_onnx(m).spec.layers[0].layer.padding == 1  # the ONNX attributes decide


def test_round_trip_yaml_is_readable():
    graph = cnngraph.load(SPECS / "lenet5.yaml")
    text = import_onnx(export(graph), source="lenet5.onnx").yaml
    assert text == """\
# Imported from lenet5.onnx by cnngraph (cnngraph 0.1.0, opset 17).
name: lenet5
input: [1, 32, 32]
layers:
  - conv: {out: 6, kernel: 5}
  - relu
  - maxpool: {kernel: 2}
  - conv: {out: 16, kernel: 5}
  - relu
  - maxpool: {kernel: 2}
  - flatten
  - linear: {name: fc1, out: 120}
  - relu
  - linear: {name: fc2, out: 84}
  - relu
  - linear: {name: fc3, out: 10}
"""


def test_branches_write_from_only_where_needed():
    spec = ("input: [4, 6, 6]\nlayers:\n  - conv: {name: a, out: 4, kernel: 3, padding: 1}\n  - relu\n"
            "  - conv: {name: b, from: input, out: 4, kernel: 3, padding: [[0, 1], [1, 0]], stride: 2}\n"
            "  - maxpool: {name: p, from: relu1, kernel: 3, stride: 2, ceil_mode: true}\n"
            "  - concat: {name: cat, from: [b, p]}\n  - avgpool: {kernel: 2, stride: 1, padding: 1, "
            "count_include_pad: false}\n")
    text = import_onnx(export(cnngraph.load(spec))).yaml
    assert text.split("layers:\n")[1] == """\
  - conv: {name: a, out: 4, kernel: 3, padding: 1}
  - relu
  - conv: {name: b, from: input, out: 4, kernel: 3, stride: 2, padding: [[0, 1], [1, 0]]}
  - maxpool: {name: p, from: relu1, kernel: 3, stride: 2, ceil_mode: true}
  - concat: {name: cat, from: [b, p]}
  - avgpool: {kernel: 2, stride: 1, padding: 1, count_include_pad: false}
"""


# ---- operator forms -------------------------------------------------------------

def test_gemm_alpha_beta_and_untransposed_b_fold_into_the_weights():
    b, c = _rand(6, 4), _rand(1, 4)
    m = _model([helper.make_node("Gemm", ["x", "B", "C"], ["y"], alpha=0.5, beta=2.0, name="fc")],
               ["N", 6], "y", {"B": b, "C": c})
    imp = _same_as_ort(m)
    np.testing.assert_allclose(imp.weights["fc.weight"], 0.5 * b.T, rtol=1e-6)
    np.testing.assert_allclose(imp.weights["fc.bias"], 2.0 * c[0], rtol=1e-6)
    assert "# Gemm alpha=0.5 folded into the weight, beta=2 folded into the bias" in imp.yaml


def test_matmul_plus_add_is_one_linear_with_bias():
    m = _model([helper.make_node("Flatten", ["x"], ["f"], name="/Flatten"),
                helper.make_node("MatMul", ["f", "W"], ["mm"], name="/head/MatMul"),
                helper.make_node("Add", ["mm", "b"], ["y"], name="/head/Add")],
               ["N", 2, 3], "y", {"W": _rand(6, 5), "b": _rand(5)})
    imp = _same_as_ort(m)
    assert [(ls.name, ls.kind) for ls in imp.spec.layers] == [("f", "flatten"), ("head", "linear")]
    assert sorted(imp.weights) == ["head.bias", "head.weight"]


def test_add_of_per_channel_constant_folds_into_conv_bias():
    m = _model([helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3, 3], name="conv"),
                helper.make_node("Add", ["c", "b"], ["y"])],
               ["N", 2, 5, 5], "y", {"W": _rand(3, 2, 3, 3), "b": _rand(3, 1, 1)})
    imp = _same_as_ort(m)
    assert [ls.kind for ls in imp.spec.layers] == ["conv"] and imp.spec.layers[0].layer.bias


def test_shape_arithmetic_reshape_with_dynamic_batch_is_a_flatten():
    # what x.view(x.size(0), -1) exports to
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["r", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W"], ["y"], transB=1)]
    m = _model(nodes, ["N", 2, 3, 4], "y", {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64),
                                             "minus1": np.array([-1], np.int64), "W": _rand(7, 24)})
    imp = _same_as_ort(m, n=3)
    assert [ls.kind for ls in imp.spec.layers] == ["relu", "flatten", "linear"]


def test_static_batch_reshape_and_squeeze_to_flat():
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Squeeze", ["g", "axes"], ["s"]),
             helper.make_node("Reshape", ["s", "shape"], ["y"])]
    m = _model(nodes, [1, 5, 4, 4], "y", {"axes": np.array([2, 3], np.int64), "shape": np.array([1, 5], np.int64)})
    imp = import_onnx(m)
    assert [ls.kind for ls in imp.spec.layers] == ["global_avgpool", "flatten"]
    x = _rand(1, 5, 4, 4)
    _close(cnngraph.reference(imp.spec, x, imp.weights), ort_run(m, x))


@pytest.mark.parametrize("auto_pad,padding", [("SAME_UPPER", "same"), ("SAME_LOWER", [[1, 0], [1, 1]]),
                                              ("VALID", 0)])
def test_auto_pad(auto_pad, padding):
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[2, 3], strides=[2, 1], auto_pad=auto_pad),
             helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], auto_pad=auto_pad)]
    m = _model(nodes, ["N", 2, 7, 6], "y", {"W": _rand(3, 2, 2, 3)})
    imp = _same_as_ort(m)
    conv = imp.spec.layers[0].layer
    assert conv.padding == (padding if isinstance(padding, str) else
                            (padding if isinstance(padding, int) else tuple(tuple(p) for p in padding)))


def test_old_ir_with_initializers_as_inputs_and_attribute_forms():
    """IR 3 / opset 9: weights listed as graph inputs, Pad/Dropout with attributes, 2-D softmax."""
    w, b = _rand(4, 3, 3, 3), _rand(4)
    bn = [np.abs(_rand(4)) + 0.5, _rand(4), _rand(4), np.abs(_rand(4)) + 0.5]
    fc, fcb = _rand(5, 36), _rand(5)
    inits = {"w": w, "b": b, "s": bn[0], "bb": bn[1], "m": bn[2], "v": bn[3], "fc": fc, "fcb": fcb}
    nodes = [helper.make_node("Pad", ["x"], ["p"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0),
             helper.make_node("Conv", ["p", "w", "b"], ["c"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["mp"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["g"], transB=1),
             helper.make_node("Dropout", ["g"], ["d"], ratio=0.25),
             helper.make_node("Softmax", ["d"], ["y"], axis=1)]
    extra = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in inits.items()]
    m = _model(nodes, ["N", 3, 12, 12], "y", inits, opset=9, ir=3, extra_inputs=extra)
    imp = _same_as_ort(m)
    assert [ls.kind for ls in imp.spec.layers] == ["pad", "conv", "batchnorm", "relu", "maxpool", "flatten",
                                                   "linear", "dropout", "softmax"]
    assert imp.spec.layers[7].layer.p == 0.25 and imp.spec.layers[2].layer.eps == 1e-3


def test_constant_subgraphs_fold_into_weights():
    nodes = [helper.make_node("Constant", [], ["w0"], value=nh.from_array(_rand(3, 2, 1, 1))),
             helper.make_node("Identity", ["w0"], ["w"]),
             helper.make_node("Constant", [], ["shape"], value_ints=[3]),
             helper.make_node("ConstantOfShape", ["shape"], ["b"], value=nh.from_array(np.array([0.5], np.float32))),
             helper.make_node("Conv", ["x", "w", "b"], ["c"]),
             helper.make_node("Constant", [], ["k"], value_float=2.0),
             helper.make_node("Mul", ["k", "k"], ["k2"]),  # constants only: folded, not a layer
             helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT)]
    imp = _same_as_ort(_model(nodes, ["N", 2, 4, 4], "y"))
    assert [ls.kind for ls in imp.spec.layers] == ["conv"]
    np.testing.assert_array_equal(imp.weights["c.bias"], np.full(3, 0.5, np.float32))


def test_pad_with_axes_input_and_lrn_and_leaky_relu():
    nodes = [helper.make_node("Pad", ["x", "pads", "val", "axes"], ["p"], mode="constant"),
             helper.make_node("LRN", ["p"], ["l"], size=3, alpha=0.01, beta=0.5, bias=1.5),
             helper.make_node("LeakyRelu", ["l"], ["y"], alpha=0.3)]
    m = _model(nodes, ["N", 4, 5, 5], "y", {"pads": np.array([1, 0, 2, 3], np.int64),
                                             "val": np.array(0.5, np.float32), "axes": np.array([2, -1], np.int64)},
               opset=18)
    imp = _same_as_ort(m)
    assert "- pad: {name: p, padding: [[1, 2], [0, 3]], value: 0.5}" in imp.yaml
    assert "- lrn: {name: l, size: 3, alpha: 0.01, beta: 0.5, k: 1.5}" in imp.yaml
    assert "- leaky_relu: {name: y, alpha: 0.3}" in imp.yaml


def test_torch_style_names_are_cleaned():
    nodes = [helper.make_node("Conv", ["x", "onnx::Conv_12"], ["/features/features.0/Conv_output_0"],
                              name="/features/features.0/Conv", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["/features/features.0/Conv_output_0"], ["/features/features.1/Relu_output_0"],
                              name="/features/features.1/Relu"),
             helper.make_node("Relu", ["/features/features.1/Relu_output_0"], ["y"], name="Relu_7")]
    imp = import_onnx(_model(nodes, ["N", 2, 3, 3], "y", {"onnx::Conv_12": _rand(2, 2, 1, 1)}))
    assert [ls.name for ls in imp.spec.layers] == ["features.0", "features.1", "y"]  # Relu_7 says nothing
    assert set(imp.weights) == {"features.0.weight"}


# ---- refusals: the node and the problem, never a silent change ------------------------

def _refused(nodes, inits, match, in_shape=("N", 3, 4, 4), **kw):
    with pytest.raises(InteropError, match=match):
        import_onnx(_model(nodes, list(in_shape), nodes[-1].output[0], inits, **kw))


def test_unsupported_operator_names_node_and_op():
    _refused([helper.make_node("Relu", ["x"], ["r"], name="act"), helper.make_node("Mod", ["r", "r"], ["y"],
                                                                                   name="rem")], {},
             r"node 'rem' \(Mod\): operator 'Mod' is not supported on activations "
             r"\(cnngraph imports Add, AveragePool, .*Conv, .*Tanh, .*and constant subgraphs\)$")
    _refused([helper.make_node("LpPool", ["x"], ["y"], name="lp", kernel_shape=[2, 2])], {},
             r"node 'lp' \(LpPool\): operator 'LpPool' is not supported")
    # activations whose shapes do not broadcast: refused naming the node, the op and the shapes
    _refused([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Mul", ["x", "c"], ["y"],
                                                                                           name="gate")],
             {"w": _rand(2, 3, 1, 1)}, r"node 'gate' \(Mul\): as cnngraph 'mul': expected inputs whose shapes "
                                       r"broadcast .*got \(3, 4, 4\), \(2, 4, 4\)")


def test_gemm_trans_a_and_even_lrn_and_reflect_pad_are_refused():
    _refused([helper.make_node("Gemm", ["x", "b"], ["y"], transA=1)], {"b": _rand(3, 2)},
             r"node 'y' \(Gemm\): transA=1", in_shape=(3, 3))
    _refused([helper.make_node("LRN", ["x"], ["y"], size=4)], {}, r"size=4 is even")
    _refused([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")], {"p": np.zeros(8, np.int64)},
             r"mode 'reflect'")


def test_non_channel_constant_add_and_batch_dependent_constants_are_refused():
    _refused([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "k"], ["y"])],
             {"w": _rand(2, 3, 1, 1), "k": _rand(1, 2, 4, 4)}, r"adds a constant of shape \(1, 2, 4, 4\)")
    _refused([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ConstantOfShape", ["s"], ["z"]),
              helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "z"], ["y"])], {},
             r"depends on the batch size")


def test_a_square_that_is_no_lrn_window_is_a_mul():
    c = 4
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Relu", ["sq"], ["y"], name="r")]
    assert [ls.kind for ls in _same_as_ort(_model(nodes, ["N", 3, 4, 4], "y")).spec.layers] == ["mul", "relu"]
    # a conv of x * x whose weights are no LRN window: the square is a mul, the conv a conv
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Conv", ["sq", "w", "k"], ["y"])]
    imp = _same_as_ort(_model(nodes, ["N", 3, 4, 4], "y", {"w": _rand(c, 3, 1, 1), "k": np.ones(c, np.float32)}))
    assert [ls.kind for ls in imp.spec.layers] == ["mul", "conv"]


def test_graph_level_refusals():
    two = [helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 3, 4, 4])]
    with pytest.raises(InteropError, match=r"expected exactly one data input .* got 2: x, x2"):
        import_onnx(_model([helper.make_node("Add", ["x", "x2"], ["y"])], ["N", 3, 4, 4], "y", extra_inputs=two))
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "b")]
    with pytest.raises(InteropError, match=r"expected one graph output .* got 2: a, b"):
        import_onnx(_model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"])],
                           ["N", 3, 4, 4], "a", outputs=outs))
    with pytest.raises(InteropError, match=r"input 'x': dim 2 is 'H', expected a fixed size"):
        import_onnx(_model([helper.make_node("Relu", ["x"], ["y"])], ["N", 3, "H", 4], "y"))
    with pytest.raises(InteropError, match=r"no such file: .*nothing\.onnx"):
        import_onnx("nothing.onnx")
    with pytest.raises(InteropError, match=r"cannot parse ONNX bytes"):
        import_onnx(b"\x01\x02garbage")


def test_cross_check_with_onnx_shape_inference_refuses_a_changed_meaning():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], ["N", 3, 4, 4], "y",
               outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 5])])
    with pytest.raises(InteropError, match=r"ONNX infers shape \(N, 3, 4, 5\) but cnngraph's layer gives "
                                           r"\(N, 3, 4, 4\)"):
        import_onnx(m)


# ---- .onnx paths in the library and the CLI ------------------------------------------------

@pytest.fixture
def lenet_onnx(tmp_path):
    graph = cnngraph.load(SPECS / "lenet5.yaml")
    w = W.init(graph, seed=11)
    path = tmp_path / "lenet.onnx"
    export(graph, w, path)
    return path, graph, w


def test_load_and_reference_use_the_models_weights(lenet_onnx):
    path, graph, w = lenet_onnx
    g = cnngraph.load(str(path))
    assert g.name == "lenet5" and g.output_shape == (10,)
    x = RNG.standard_normal((3, 1, 32, 32)).astype(np.float32)
    y = cnngraph.reference(str(path), x)
    _close(y, ort_run(onnx.load(str(path)), x))
    _close(y, cnngraph.reference(graph, x, w))
    # explicit weights still win
    _close(cnngraph.reference(path.as_posix(), x, W.init(graph, seed=1)), cnngraph.reference(graph, x, seed=1))
    spec, weights = load_onnx(path)
    assert set(weights) == set(w)


def test_load_onnx_cache_follows_the_file(lenet_onnx):
    path, graph, _ = lenet_onnx
    spec1, w1 = load_onnx(path)
    w2 = W.init(graph, seed=99)
    time.sleep(0.01)
    export(graph, w2, path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    _, w = load_onnx(path)
    np.testing.assert_array_equal(w["fc3.bias"], w2["fc3.bias"])
    assert not np.array_equal(w1["fc3.bias"], w2["fc3.bias"])


def test_compile_accepts_an_onnx_path(lenet_onnx):
    compiler = pytest.importorskip("cnngraph.compiler")
    if not hasattr(compiler, "compile"):
        pytest.skip("the compiler is not built yet")
    path, graph, w = lenet_onnx
    net = cnngraph.compile(str(path), threads=1)
    x = RNG.standard_normal((2, 1, 32, 32)).astype(np.float32)
    _close(np.asarray(net(x)), ort_run(onnx.load(str(path)), x))


def test_cli_import_writes_spec_and_weights(lenet_onnx, tmp_path, capsys):
    path, graph, w = lenet_onnx
    out = tmp_path / "net.yaml"
    assert cli(["import", str(path), "-o", str(out), "--weights-out", str(tmp_path / "w.npz")]) == 0
    assert re.search(r"net\.yaml: 12 layers from .*lenet\.onnx; weights .*w\.npz \(61,706 values\)",
                     capsys.readouterr().out)
    x = RNG.standard_normal((2, 1, 32, 32)).astype(np.float32)
    _close(cnngraph.reference(str(out), x, str(tmp_path / "w.npz")), cnngraph.reference(graph, x, w))
    # default weights path next to the spec; --name
    assert cli(["import", str(path), "-o", str(tmp_path / "b.yaml"), "--name", "mynet"]) == 0
    assert (tmp_path / "b.safetensors").exists()
    assert cnngraph.load(str(tmp_path / "b.yaml")).name == "mynet"
    # without -o: the YAML on stdout
    capsys.readouterr()
    assert cli(["import", str(path)]) == 0
    assert capsys.readouterr().out.startswith("# Imported from lenet.onnx")


def test_cli_import_and_compile_errors(tmp_path, capsys, lenet_onnx):
    m = _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mod", ["r", "r"], ["y"], name="rem")],
               ["N", 3, 4, 4], "y")
    onnx.save(m, str(tmp_path / "bad.onnx"))
    assert cli(["import", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "bad.yaml")]) == 1
    err = capsys.readouterr().err
    assert re.match(r"error: .*bad\.onnx: node 'rem' \(Mod\): operator 'Mod' is not supported", err)
    assert "Traceback" not in err and not (tmp_path / "bad.yaml").exists()
    path, _, _ = lenet_onnx
    assert cli(["compile", str(path)]) == 0
    assert "network lenet5: input 1x32x32, output 10" in capsys.readouterr().out


# ---- ONNX model zoo architectures shipped with onnx ("light": weights are constants) -------------------

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


@pytest.mark.parametrize("name,kinds", [
    ("bvlc_alexnet", {"conv": 5, "lrn": 2, "maxpool": 3, "linear": 3, "dropout": 2, "softmax": 1}),
    ("inception_v1", {"concat": 9, "lrn": 2, "softmax": 1}),
    ("resnet50", {"conv": 53, "batchnorm": 53, "add": 16}),
    ("squeezenet", {"concat": 8, "global_avgpool": 1}),
    ("densenet121", {"concat": 58, "batchnorm": 121, "conv": 121, "avgpool": 3}),
    ("zfnet512", {"lrn": 2, "linear": 3}),
])
def test_light_model_zoo_networks_import(name, kinds):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    imp = import_onnx(path)
    got = [ls.kind for ls in imp.spec.layers]
    for kind, n in kinds.items():
        assert got.count(kind) == n, kind
    x = np.random.default_rng(0).random((1, 3, 224, 224), np.float32)
    expected = nh.to_array(onnx.load_tensor(os.path.join(LIGHT, f"light_{name}_output_0.pb")))
    y = cnngraph.reference(path, x)
    assert y.shape == expected.shape
    _close(y, ort_run(onnx.load(path), x))


def test_per_channel_mul_sub_div_fold_into_layers_or_become_a_batchnorm():
    c = 3
    nodes = [helper.make_node("Mul", ["x", "s0"], ["m0"], name="pre_scale"),   # on the input: a batchnorm
             helper.make_node("Sub", ["m0", "b0"], ["a0"], name="pre_shift"),  # folded into that batchnorm
             helper.make_node("Conv", ["a0", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
             helper.make_node("Div", ["c", "s1"], ["d"], name="conv_scale"),   # folded into the conv
             helper.make_node("Relu", ["d"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Mul", ["f", "s2"], ["y"], name="head_scale")]  # on a flat tensor: a batchnorm
    inits = {"s0": _rand(1, 2, 1, 1), "b0": _rand(2, 1, 1), "w": _rand(c, 2, 3, 3), "s1": np.abs(_rand(c, 1, 1)) + 1,
             "s2": _rand(c)}
    imp = _same_as_ort(_model(nodes, ["N", 2, 6, 6], "y", inits))
    assert [(ls.name, ls.kind) for ls in imp.spec.layers] == [
        ("pre_scale", "batchnorm"), ("conv", "conv"), ("relu", "relu"), ("gap", "global_avgpool"),
        ("flat", "flatten"), ("head_scale", "batchnorm")]
    assert "# ONNX Mul by a per-channel constant" in imp.yaml
    _refused([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "k"], ["y"], name="m")],
             {"k": _rand(1, 3, 4, 1)}, r"node 'm' \(Mul\): multiplies by a constant of shape \(1, 3, 4, 1\) that is "
                                        r"not one value per channel")
    _refused([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sub", ["k", "r"], ["y"], name="s")],
             {"k": _rand(3, 1, 1)}, r"node 's' \(Sub\): expected input 0 \('k'\) to be an activation")


def test_clip_zero_six_is_relu6_and_round_trips():
    nodes = [helper.make_node("Mul", ["x", "scale"], ["s"]),
             helper.make_node("Clip", ["s", "lo", "hi"], ["y"])]
    m = _model(nodes, ["N", 3, 4, 4], "y", {"scale": np.full((1, 3, 1, 1), 8.0, np.float32),
                                             "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)})
    imp = _same_as_ort(m, n=3)  # inputs ~N(0, 8): below 0, inside and above 6
    assert [ls.kind for ls in imp.spec.layers] == ["batchnorm", "relu6"]
    g = cnngraph.load("input: [3, 4, 4]\nlayers: [{conv: {out: 3, kernel: 1}}, relu6]")
    w = {"conv1.weight": np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1) * 8, "conv1.bias": np.zeros(3, np.float32)}
    model = export(g, w, None)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Clip"]
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    _close(ort_run(model, x), cnngraph.reference(g, x, w))
    assert [ls.kind for ls in import_onnx(model).spec.layers] == ["conv", "relu6"]


def test_clip_to_other_bounds_is_a_clip():
    """Clip is relu or relu6 where its bounds are theirs, else the clip layer; a missing bound is none."""
    for lo, hi in ((-1.0, 1.0), (None, 0.5), (-0.5, None), (2.0, 1.0)):  # min above max: max everywhere, as ONNX
        inits = {k: np.array(v, np.float32) for k, v in (("lo", lo), ("hi", hi)) if v is not None}
        nodes = [helper.make_node("Clip", ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""],
                                  ["y"], name="clamp")]
        imp = _same_as_ort(_model(nodes, ["N", 3, 4, 4], "y", inits))
        assert [(ls.kind, ls.layer.min, ls.layer.max) for ls in imp.spec.layers] == [("clip", lo, hi)]
    imp = import_onnx(_model([helper.make_node("Clip", ["x", "lo"], ["y"])], ["N", 3, 4], "y",
                             {"lo": np.array(0.0, np.float32)}))
    assert [ls.kind for ls in imp.spec.layers] == ["relu"]


def test_reductions_over_the_batch_or_every_axis_are_refused():
    for axes, opset, match in (([0, 2], 17, r"node 'r' \(ReduceMean\): axes \[0, 2\] include the batch axis 0"),
                               ([-3], 18, r"node 'r' \(ReduceMean\): axes \[-3\] include the batch axis 0"),
                               (None, 17, r"node 'r' \(ReduceMean\): reduces over every axis, the batch included")):
        if opset >= 18:
            node, inits = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="r"), {"axes": np.array(axes)}
        else:
            node, inits = helper.make_node("ReduceMean", ["x"], ["y"], name="r", **({"axes": axes} if axes else {})), {}
        _refused([node], inits, match, in_shape=("N", 3, 4), opset=opset)
    imp = import_onnx(_model([helper.make_node("ReduceMax", ["x"], ["y"], noop_with_empty_axes=1),
                              helper.make_node("Relu", ["y"], ["z"])], ["N", 3, 4], "z", opset=18))
    assert [ls.kind for ls in imp.spec.layers] == ["relu"]  # no axes and noop: the identity




# ---- channels-last islands (see _Importer.channels_first) ----------------------------------------------

def _island_3d(last="back"):
    """Conv3d, then channels-last: MatMul + bias, Relu, Mul by a per-channel gamma, then (last) back."""
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"], name="/stem/Conv"),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 4, 1]),
             helper.make_node("MatMul", ["t", "w1"], ["m"], name="/fc/MatMul"),
             helper.make_node("Add", ["b1", "m"], ["a"], name="/fc/Add"),
             helper.make_node("Relu", ["a"], ["r"], name="/act/Relu"),
             helper.make_node("Mul", ["r", "gamma"], ["g"], name="/gamma/Mul")]
    if last == "back":
        nodes.append(helper.make_node("Transpose", ["g"], ["y"], perm=[0, 4, 1, 2, 3]))
    elif last == "softmax":
        nodes += [helper.make_node("Softmax", ["g"], ["s"], name="/soft/Softmax", axis=-1),
                  helper.make_node("Transpose", ["s"], ["y"], perm=[0, 4, 1, 2, 3])]
    inits = {"w0": _rand(4, 3, 1, 1, 1), "w1": _rand(4, 6), "b1": _rand(6), "gamma": _rand(6) + 2}
    return _model(nodes, ["N", 3, 2, 3, 4], nodes[-1].output[0], inits)


def test_a_channels_last_island_of_rank_5_imports_channels_first():
    """MatMul over the last axis is a 1x1x1 conv (the bias folds into it), Relu and the per-channel gamma
    run on the channels-first twin."""
    imp = _same_as_ort(_island_3d())
    assert [(ls.kind, ls.name) for ls in imp.spec.layers] == [("conv", "stem"), ("conv", "fc"), ("relu", "act"),
                                                              ("batchnorm", "gamma")]
    assert imp.spec.layers[1].layer.kernel == 1


def test_a_channels_last_island_that_does_not_end_channels_first_is_refused():
    """A view read by an operator without a channels-first form (Softmax), or one that is the output,
    leaves the island as written: the transpose is refused, naming it and the reader."""
    with pytest.raises(InteropError, match=r"node 't' \(Transpose\): moves the channels last, and the channels-last "
                                           r"values are read by node '/soft/Softmax' \(Softmax\), which has no "
                                           r"channels-first form \(cnngraph imports .*\)$"):
        import_onnx(_island_3d("softmax"))
    with pytest.raises(InteropError, match=r"node 't' \(Transpose\): .*channels-last values are the graph output"):
        import_onnx(_island_3d("output"))
