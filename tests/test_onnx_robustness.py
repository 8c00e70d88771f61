"""ONNX models a user can hand us never crash, hang or read files they should not: refusals
name the node and the operator on one line (issue 8)."""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cnngraph.interop import InteropError, import_onnx  # noqa: E402


def _model(nodes, inits=None, in_shape=("N", 3, 8, 8), out="y", opset=17):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _conv_with_external_weight(folder, location="w.data"):
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"w": np.ones((4, 3, 1, 1), np.float32)})
    path = os.path.join(folder, "m.onnx")
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=location,
              size_threshold=0)
    return path


def test_external_data_is_read_from_the_models_folder(tmp_path):
    imported = import_onnx(_conv_with_external_weight(tmp_path))
    np.testing.assert_array_equal(imported.weights["c.weight"], np.ones((4, 3, 1, 1), np.float32))


def test_external_data_of_bytes_or_a_model_object_is_never_read(tmp_path, monkeypatch):
    path = _conv_with_external_weight(tmp_path)
    monkeypatch.chdir(tmp_path)  # where a careless loader would look
    m = onnx.load(path, load_external_data=False)
    for model in (m, m.SerializeToString()):
        with pytest.raises(InteropError, match=r"tensor 'w' keeps its data in an external file \('w.data'\); "
                                               r"external data is read only for a model loaded from a file"):
            import_onnx(model)


def test_external_data_outside_the_models_folder_is_refused(tmp_path):
    (tmp_path / "secret.data").write_bytes(np.ones(12, np.float32).tobytes())
    inner = tmp_path / "models"
    inner.mkdir()
    path = _conv_with_external_weight(inner)
    m = onnx.load(path, load_external_data=False)
    for location in ("../secret.data", str(tmp_path / "secret.data")):
        for t in m.graph.initializer:
            for kv in t.external_data:
                if kv.key == "location":
                    kv.value = location
        onnx.save(m, path)
        with pytest.raises(InteropError, match=r"tensor 'w' keeps its data at .*, outside the model's folder; refused"):
            import_onnx(path)


def test_a_fifo_or_folder_is_not_read_as_a_model(tmp_path):
    os.mkfifo(tmp_path / "pipe.onnx")
    with pytest.raises(InteropError, match=r"expected an ONNX model file, got something else"):
        import_onnx(tmp_path / "pipe.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(InteropError, match=r"expected an ONNX model file, got something else"):
        import_onnx(tmp_path / "dir.onnx")


def test_strings_that_are_not_utf8_are_decoded():
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="act", doc_string="DOCS")])
    m.graph.name = "GRAPHNAME"
    data = m.SerializeToString().replace(b"GRAPHNAME", b"\xff\xfeAPHNAME").replace(b"DOCS", b"\xfe\xffCS")
    imported = import_onnx(data)
    assert imported.spec.name.endswith("APHNAME")
    assert [ls.kind for ls in imported.spec.layers] == ["relu"]


@pytest.mark.parametrize("node,inits,match", [
    (helper.make_node("MaxPool", ["x"], ["y"], name="p"), {}, r"node 'p' \(MaxPool\): missing attribute 'kernel_shape'"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="c", strides=[0, 1], auto_pad="SAME_UPPER"),
     {"w": np.ones((2, 3, 3, 3), np.float32)}, r"node 'c' \(Conv\): expected 'strides' of 2 positive integers"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=0), {"w": np.ones((2, 3, 3, 3), np.float32)},
     r"node 'c' \(Conv\): expected a positive group count"),
    (helper.make_node("LRN", ["x"], ["y"], name="n", size=0), {}, r"node 'n' \(LRN\): expected a positive integer size"),
    (helper.make_node("AveragePool", ["x"], ["y"], name="a", kernel_shape=[2, 2], pads=[-1, 0, 0, 0]), {},
     r"node 'a' \(AveragePool\): negative pads"),
])
def test_malformed_attributes_are_refused_not_crashed_on(node, inits, match):
    with pytest.raises(InteropError, match=match):
        import_onnx(_model([node], inits))



def test_control_characters_in_names_give_one_line():
    nodes = [helper.make_node("Relu", ["x"], ["r\nx"], name="act\n\x1b[31m"),
             helper.make_node("Mod", ["r\nx", "r\nx"], ["y"], name="bad\nname\x07\u2028")]
    with pytest.raises(InteropError) as e:
        import_onnx(_model(nodes))
    assert "\n" not in str(e.value) and "\x07" not in str(e.value) and "\u2028" not in str(e.value)
    assert r"node 'bad\nname\x07\u2028' (Mod)" in str(e.value)
