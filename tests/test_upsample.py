"""upsample / ONNX Resize: every coordinate mapping and rounding against ONNX Runtime, PyTorch's modes
against PyTorch (its own ONNX exports included), the compiled kernel against the reference."""

from __future__ import annotations

import itertools

import netgen  # tests/ is on sys.path (pytest prepends it)
import numpy as np
import pytest

import cnngraph
from cnngraph import oracle
from cnngraph.errors import LayerError
from cnngraph.layers import make


def test_attributes_are_checked():
    with pytest.raises(LayerError, match=r"expected either 'scale' or 'size', got both"):
        make("upsample", {"scale": 2, "size": 4})
    with pytest.raises(LayerError, match=r"align_corners applies to mode 'linear' only"):
        make("upsample", {"align_corners": True})
    with pytest.raises(LayerError, match=r"scale 0.1 leaves no output pixel of the 5 along spatial dim 0"):
        make("upsample", {"scale": 0.1}).infer_shape([(3, 5, 20)])
    assert make("upsample").infer_shape([(3, 5, 6)]) == (3, 10, 12)  # alone, it doubles


@pytest.mark.parametrize("mode,extra", list(itertools.product(["nearest", "linear"], [{}, {"size": [3, 11]}])))
def test_compiled_with_odd_channels_and_a_batch(mode, extra):
    attrs = {"mode": mode, **extra}
    text = f"input: [19, 5, 6]\nlayers: [{{conv: {{out: 19, kernel: 1}}}}, {{upsample: {attrs}}}, relu]"
    assert netgen.check_compiled(text, 3, 2) is None



onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from cnngraph.interop import import_onnx
from cnngraph.interop.runtime import run as ort_run


def _resize_model(in_shape, attrs, scales=None, sizes=None, opset=17):
    inputs = ["x", "", "scales" if scales is not None else ""] + (["sizes"] if sizes is not None else [])
    inits = [nh.from_array(np.asarray(scales, np.float32), "scales")] if scales is not None else []
    inits += [nh.from_array(np.asarray(sizes, np.int64), "sizes")] if sizes is not None else []
    g = helper.make_graph([helper.make_node("Resize", inputs, ["y"], name="resize", **attrs)], "t",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, *in_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


MAPPINGS = ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners"]
ROUNDING = ["floor", "ceil", "round_prefer_floor", "round_prefer_ceil"]


@pytest.mark.parametrize("coords", MAPPINGS)
@pytest.mark.parametrize("how", ["scale 2", "scale 1.5 x 3", "size 7 x 1", "scale 0.5"])
def test_every_onnx_mapping_and_rounding_matches_onnx_runtime(coords, how):
    shape = (3, 6, 5)
    given = {"scale 2": ([1, 1, 2, 2], None), "scale 1.5 x 3": ([1, 1, 1.5, 3], None),
             "size 7 x 1": (None, [2, 3, 7, 1]), "scale 0.5": ([1, 1, 0.5, 0.5], None)}[how]
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    for mode, rounding in [("linear", None)] + [("nearest", r) for r in ROUNDING]:
        attrs = {"mode": mode, "coordinate_transformation_mode": coords}
        if rounding:
            attrs["nearest_mode"] = rounding
        model = _resize_model(shape, attrs, *given)
        if coords == "align_corners" and how == "scale 0.5":  # 5 * 0.5: ONNX maps with the length 2.5
            with pytest.raises(cnngraph.CnnGraphError, match=r"align_corners with scales \[0.5, 0.5\] that make "
                                                             r"fractional lengths \[3.0, 2.5\]"):
                import_onnx(model)
            continue
        imp = import_onnx(model)
        (ls,) = imp.spec.layers
        assert ls.kind == "upsample"
        want = ort_run(model, x)
        got = oracle.run(cnngraph.load(imp.spec), x, imp.weights)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{mode} {rounding} {coords} {how}")
        net = cnngraph.compile(imp.spec, weights=imp.weights)
        np.testing.assert_allclose(net(x), got, rtol=1e-5, atol=1e-6)


def test_a_size_that_really_depends_on_the_batch_is_refused():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["f", "k"], ["q"]), helper.make_node("Cast", ["q"], ["sizes"], to=TensorProto.INT64),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="r", mode="nearest")]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [nh.from_array(np.array([0.5, 1, 0.5, 0.5], np.float32), "k")])  # 2 N
    with pytest.raises(cnngraph.CnnGraphError, match=r"node 'r' \(Resize\): sizes \('sizes'\) depends on the batch"):
        import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def test_unsupported_resize_forms_are_refused_naming_the_node():
    for attrs, match in [({"mode": "cubic"}, r"mode 'cubic'"),
                         ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
                          r"coordinate_transformation_mode 'tf_crop_and_resize'")]:
        with pytest.raises(cnngraph.CnnGraphError, match=r"node 'resize' \(Resize\): " + match):
            import_onnx(_resize_model((3, 4, 4), attrs, [1, 1, 2, 2]))
    with pytest.raises(cnngraph.CnnGraphError, match=r"scales the batch or channel dim"):
        import_onnx(_resize_model((3, 4, 4), {"mode": "nearest"}, [1, 2, 2, 2]))
