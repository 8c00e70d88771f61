"""conv_transpose: the transpose of the matching convolution (in the FC view, literally), its output size,
its phases, the compiled kernel, and PyTorch's exports."""

from __future__ import annotations

import netgen  # tests/ is on sys.path (pytest prepends it)
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cnngraph
from cnngraph import oracle
from cnngraph.errors import LayerError
from cnngraph.layers import make
from cnngraph.shapes import TransposedWindow, out_size, transposed_out_size


@st.composite
def transposed(draw):
    nd = draw(st.integers(1, 3))
    dims = lambda lo, hi: [draw(st.integers(lo, hi)) for _ in range(nd)]
    k, s, d = dims(1, 4), dims(1, 3), dims(1, 2)
    attrs = {"kernel": k, "stride": s, "dilation": d, "padding": [[draw(st.integers(0, 3)), draw(st.integers(0, 3))]
                                                                  for _ in range(nd)],
             "output_padding": [draw(st.integers(0, ss - 1)) for ss in s]}
    g = draw(st.sampled_from([1, 2]))
    cin, cout = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    return {**attrs, "out": cout, "groups": g}, (cin, *dims(1, 5))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(transposed())
def test_its_matrix_is_the_transpose_of_the_matching_convs(case):
    """The seeds' argument backwards: M_convT == M_conv.T with the same weight array, the conv going from
    the transposed conv's output back to its input."""
    attrs, shape = case
    ct = make("conv_transpose", attrs)
    try:
        out = ct.infer_shape([shape])
    except LayerError:
        assume(False)
    conv = make("conv", {"out": shape[0], "kernel": attrs["kernel"], "stride": attrs["stride"],
                         "dilation": attrs["dilation"], "padding": attrs["padding"], "groups": attrs["groups"],
                         "bias": False})
    assert conv.infer_shape([out]) == tuple(shape)  # output_padding < stride: the sizes match exactly
    w = ct.init_params([shape], np.random.default_rng(0))
    assert w["weight"].shape == conv.param_shapes([out])["weight"]  # one array, read both ways
    m_t = ct.to_matrix([shape], w)
    m_c = conv.to_matrix([out], {"weight": w["weight"]})
    assert (m_t.matrix != m_c.matrix.T).nnz == 0
    assert (m_t.tie_matrix() != m_c.tie_matrix().T).nnz == 0  # the same weight on each connection
    assert ct.fc_connections([shape]) == m_t.nnz == conv.fc_connections([out])
    # and the reverse: rows of the convT (g @ M) are the conv of g; rows of the conv are the convT of g
    g = np.random.default_rng(1).standard_normal((2, m_t.matrix.shape[0]))
    rows, _, mode = ct.fc_rows([shape], w, None, g)
    np.testing.assert_allclose(rows, (m_t.matrix.T @ g.T).T, atol=1e-12)
    assert mode == "linear"
    x = np.random.default_rng(2).standard_normal((2, *shape))
    as_rows, _, _ = conv.fc_rows([out], {"weight": w["weight"]}, None, x.reshape(2, -1))
    want = ct.reference([x], {**w, "bias": np.zeros(out[0], np.float32)}).reshape(2, -1)
    np.testing.assert_allclose(as_rows, want, rtol=1e-5, atol=1e-6)


@given(st.integers(1, 20), st.integers(1, 6), st.integers(1, 4), st.integers(0, 4), st.integers(0, 4),
       st.integers(1, 3), st.integers(0, 3))
def test_the_two_size_formulas_undo_each_other(n, k, s, lo, hi, d, op):
    assume(op < s)
    m = transposed_out_size(n, k, s, lo, hi, d, op)
    assume(m >= 1)
    assert out_size(m, k, s, lo, hi, d) == n
    assert TransposedWindow.of((n,), (k,), (s,), (d,), ((lo, hi),), (op,)).matching().out == (n,)


def test_phases_tile_the_output_once():
    w = TransposedWindow.of((5, 4), (4, 3), (2, 3), (1, 2), ((1, 2), (0, 1)), (1, 0))
    for dim, phases in enumerate(w.phases()):
        covered = sorted(p.first + w.stride[dim] * q for p in phases for q in range(p.count))
        assert covered == list(range(w.out[dim]))
    # kernel 1, stride 3: two of three phases receive no input (bias only)
    (phases,) = TransposedWindow.of((4,), (1,), (3,), (1,), ((0, 0),), (0,)).phases()
    assert [p.taps for p in phases] == [(0,), (), ()]


def test_attributes_are_checked():
    with pytest.raises(LayerError, match=r"output_padding 2 along spatial dim 0 must be less than the stride 2"):
        make("conv_transpose", {"out": 2, "kernel": 3, "stride": 2, "output_padding": 2}).infer_shape([(3, 5)])
    with pytest.raises(LayerError, match=r"padding \[3, 3\] crops all 5 outputs along spatial dim 0"):
        make("conv_transpose", {"out": 2, "kernel": 3, "padding": 3}).infer_shape([(3, 3)])
    with pytest.raises(LayerError, match=r"groups=2 does not divide the 3 input channels"):
        make("conv_transpose", {"out": 2, "kernel": 3, "groups": 2}).infer_shape([(3, 3)])
    assert make("conv_transpose", {"out": 2, "kernel": 4, "stride": 2, "padding": "same"}).infer_shape([(3, 5, 6)]) \
        == (2, 10, 12)


def test_compiled_phases_with_a_folded_batchnorm_an_activation_and_an_in_place_concat():
    text = """
input: [24, 7, 9]
layers:
  - conv: {name: skip, out: 16, kernel: 3, stride: 1, padding: 1}
  - conv_transpose: {name: up, from: input, out: 16, kernel: 3, stride: 1, padding: 1}
  - batchnorm
  - relu: {name: r}
  - concat: {from: [skip, r]}
  - conv_transpose: {name: up2, out: 20, kernel: 4, stride: 2, padding: 1}
"""
    assert netgen.check_compiled(text, 3, 2) is None
    g = cnngraph.load(text)
    plan = cnngraph.compile(g).plan
    steps = {s.nodes: s.name for s in plan.steps}
    assert steps[("up", "batchnorm1", "r")] == "fused_conv_transpose2d_relu"
    assert sum(s.nodes == ("up2",) for s in plan.steps) == 4  # stride 2 x 2: four phases
    assert not any("concat1" in s.nodes for s in plan.steps)  # skip and r written in place


def test_onnx_output_shape_and_auto_pad_become_pads():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    from cnngraph.interop import import_onnx
    from cnngraph.interop.runtime import run as ort_run
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32)
    for attrs in ({"output_shape": [9, 10]}, {"auto_pad": "SAME_UPPER"}, {"auto_pad": "VALID"}):
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], **attrs)
        g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [nh.from_array(w, "w")])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        imp = import_onnx(model)
        x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)
        want = ort_run(model, x)
        np.testing.assert_allclose(oracle.run(cnngraph.load(imp.spec), x, imp.weights), want, rtol=1e-5, atol=1e-5)
