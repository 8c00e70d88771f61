"""ONNX export: valid models (full checker with shape inference) that ONNX Runtime
runs with the reference's outputs, for every bundled spec and for the layer
semantics where ONNX's operators differ from cnngraph's (ceil_mode, padding,
count_include_pad, even LRN windows)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cnngraph
from cnngraph import weights as W
from cnngraph.cli import main as cli
from cnngraph.interop import DEFAULT_OPSET, InteropError, export
from cnngraph.interop.runtime import run as ort_run

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SPEC_FILES = sorted(SPECS.glob("*.yaml"))
_INPUT = re.compile(r"^input:\s*\[([0-9,\s]+)\]", re.MULTILINE)
# nets whose input / 4 still makes a slow reference: divide by more (U-Net at 256 -> 32)
SHRINK = {"unet": 8}


def small_spec(path) -> str:
    """The spec's text with smaller spatial input dims where the network still builds (keeps tests fast)."""
    text = pathlib.Path(path).read_text()
    m = _INPUT.search(text)
    dims = [int(v) for v in m.group(1).split(",")]
    for div in (SHRINK.get(pathlib.Path(path).stem, 4), 3, 2):
        for extra in range(8):
            sp = [max(1, n // div + extra) for n in dims[1:]]
            if sp == dims[1:]:
                continue
            candidate = text[:m.start(1)] + ", ".join(map(str, [dims[0], *sp])) + text[m.end(1):]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cnngraph.load(candidate)
            except cnngraph.CnnGraphError:
                continue
            return candidate
    return text


def _x(graph, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *graph.input_shape)).astype(np.float32)


def _close(a, b, tol=1e-4):
    """Equal within tol relative to the largest finite value (windows wholly in -inf padding stay -inf)."""
    finite = np.abs(b[np.isfinite(b)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_every_bundled_spec_exports_and_runs_like_the_reference(path):
    graph = cnngraph.load(small_spec(path))
    w = W.init(graph, seed=3, gain=6 ** 0.5)  # He init: the signal survives to the output
    model = export(graph, w, None)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = _x(graph)
    _close(ort_run(model, x), cnngraph.reference(graph, x, w))


LAYER_CASES = {
    "maxpool_ceil": "input: [3, 10, 9]\nlayers: [{maxpool: {kernel: 3, stride: 2, ceil_mode: true}}]",
    "maxpool_ceil_pad": "input: [3, 10, 10]\nlayers: [{maxpool: {kernel: 2, stride: 2, padding: 1, ceil_mode: true}}]",
    "maxpool_dilated_ceil": "input: [3, 11, 11]\nlayers: [{maxpool: {kernel: 3, stride: 2, padding: 1, "
                            "dilation: 2, ceil_mode: true}}]",
    "maxpool_pad_ge_kernel": "input: [3, 10, 10]\nlayers: [{maxpool: {kernel: 2, stride: 2, dilation: 3, "
                             "padding: [[2, 1], [0, 0]]}}]",
    "maxpool_same": "input: [3, 7, 6]\nlayers: [{maxpool: {kernel: 2, padding: same}}]",
    "avgpool_ceil_include_pad": "input: [3, 10, 10]\nlayers: [{avgpool: {kernel: 3, stride: 2, padding: 1, "
                                "ceil_mode: true}}]",
    "avgpool_ceil_exclude_pad": "input: [3, 10, 10]\nlayers: [{avgpool: {kernel: 3, stride: 2, padding: 1, "
                                "ceil_mode: true, count_include_pad: false}}]",
    "avgpool_ceil_past_padding_1d": "input: [3, 5]\nlayers: [{avgpool: {kernel: 2, stride: 2, padding: 1, "
                                    "ceil_mode: true}}]",
    "avgpool_asymmetric": "input: [3, 11, 11]\nlayers: [{avgpool: {kernel: 4, stride: 3, padding: [[1, 2], [0, 1]], "
                          "ceil_mode: true}}]",
    "lrn_odd": "input: [8, 5, 5]\nlayers: [{lrn: {size: 5, alpha: 0.1, beta: 0.75, k: 2}}]",
    "lrn_even": "input: [8, 5, 5]\nlayers: [{lrn: {size: 4, alpha: 0.1, beta: 0.75, k: 2}}]",
    "lrn_even_3d": "input: [6, 3, 4, 4]\nlayers: [{lrn: {size: 2, alpha: 0.5}}]",
    "lrn_flat": "input: [8]\nlayers: [{lrn: {size: 3, alpha: 0.1}}]",
    "softmax_spatial": "input: [5, 3, 4]\nlayers: [softmax]",
    "softmax_3d": "input: [4, 2, 3, 2]\nlayers: [softmax]",
    "conv3d_same_groups_bn_flat": "input: [4, 6, 6, 6]\nlayers: [{conv: {out: 6, kernel: [3, 2, 1], stride: 2, "
                                  "padding: same, groups: 2}}, {batchnorm: {affine: false}}, global_avgpool, flatten, "
                                  "batchnorm, {dropout: {p: 0.3}}, {linear: {out: 3, bias: false}}, softmax]",
    "conv1d_depthwise_pad": "input: [4, 7]\nlayers: [{conv: {out: 4, kernel: 3, groups: depthwise, dilation: 2, "
                            "padding: [[2, 1]]}}, {leaky_relu: {alpha: 0.2}}, {pad: {padding: [[1, 2]], value: 1.5}}, "
                            "global_maxpool, sigmoid, tanh]",
    "branches": "input: [4, 7, 7]\nlayers: [{conv: {name: a, out: 4, kernel: 1}}, {conv: {name: b, out: 4, kernel: 1, "
                "from: input}}, {conv: {name: c, out: 4, kernel: 1, from: input}}, {add: {from: [a, b, c]}}, "
                "{add: {from: [a, b]}}, {concat: {from: [add1, a, add2]}}, {dropout: {p: 1.0}}]",
}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_semantics_survive_export(name):
    graph = cnngraph.load(LAYER_CASES[name])
    w = W.init(graph, seed=1)
    for k in w:  # batchnorm statistics that are not the identity
        if k.endswith("running_var"):
            w[k] = w[k] + np.linspace(0.5, 1.5, w[k].size, dtype=np.float32)
        if k.endswith("running_mean"):
            w[k] = w[k] + np.linspace(-1, 1, w[k].size, dtype=np.float32)
    model = export(graph, w, None)
    onnx.checker.check_model(model, full_check=True)
    x = _x(graph, n=3)
    _close(ort_run(model, x), cnngraph.reference(graph, x, w))


def test_ceil_mode_is_written_as_explicit_padding_and_big_pads_as_a_pad_node():
    g = cnngraph.load("input: [3, 10, 10]\nlayers: [{maxpool: {kernel: 3, stride: 2, ceil_mode: true}}]")
    assert g.output_shape == (3, 5, 5)
    m = export(g)
    (node,) = m.graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert "ceil_mode" not in attrs and attrs["pads"] == [0, 0, 1, 1]
    m = export(cnngraph.load(LAYER_CASES["maxpool_pad_ge_kernel"]))
    assert [n.op_type for n in m.graph.node] == ["Pad", "MaxPool"]


def test_lrn_even_size_is_an_exact_band_not_onnx_lrn():
    m = export(cnngraph.load(LAYER_CASES["lrn_even"]))
    assert [n.op_type for n in m.graph.node] == ["Mul", "Conv", "Pow", "Div"]
    m = export(cnngraph.load(LAYER_CASES["lrn_odd"]))
    assert [n.op_type for n in m.graph.node] == ["LRN"]


def test_names_batch_and_initializers_follow_cnngraph():
    graph = cnngraph.load(SPECS / "lenet5.yaml")
    w = W.init(graph, seed=0)
    m = export(graph, w, None)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    assert set(inits) == set(w)
    for k in w:
        np.testing.assert_array_equal(inits[k], w[k])
    assert [n.name for n in m.graph.node] == [n.name for n in graph.nodes]
    assert m.graph.input[0].name == "input" and m.graph.output[0].name == "fc3"
    assert m.producer_name == "cnngraph" and m.opset_import[0].version == DEFAULT_OPSET
    for n in (1, 5):  # dynamic batch
        x = _x(graph, n=n)
        _close(ort_run(m, x), cnngraph.reference(graph, x, w))


@pytest.mark.parametrize("opset", [13, 18, 21])
def test_other_opsets(opset):
    graph = cnngraph.load(LAYER_CASES["conv3d_same_groups_bn_flat"])
    m = export(graph, None, None, opset=opset, check=True)
    assert m.opset_import[0].version == opset
    x = _x(graph)
    _close(ort_run(m, x), cnngraph.reference(graph, x))


def test_bad_opset_is_refused():
    with pytest.raises(InteropError, match=r"expected an ONNX opset between 13 and \d+, got 9"):
        export(cnngraph.load(SPECS / "lenet5.yaml"), None, None, opset=9)


def test_weights_are_checked_before_writing(tmp_path):
    graph = cnngraph.load(SPECS / "lenet5.yaml")
    w = W.init(graph)
    del w["fc3.bias"]
    with pytest.raises(W.WeightsError, match=r"missing 'fc3.bias'"):
        export(graph, w, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_with_weights_file(tmp_path, capsys):
    graph = cnngraph.load(SPECS / "lenet5.yaml")
    w = W.init(graph, seed=7)
    W.save(w, tmp_path / "w.safetensors")
    out = tmp_path / "net.onnx"
    assert cli(["export", str(SPECS / "lenet5.yaml"), "-o", str(out), "--weights", str(tmp_path / "w.safetensors"),
                "--opset", "18"]) == 0
    assert re.search(r"net\.onnx: 12 ONNX nodes for 12 layers, 61,706 weights, opset 18", capsys.readouterr().out)
    m = onnx.load(str(out))
    x = _x(graph)
    _close(ort_run(m, x), cnngraph.reference(graph, x, w))
    # --seed changes the default weights
    assert cli(["export", str(SPECS / "lenet5.yaml"), "-o", str(tmp_path / "s.onnx"), "--seed", "5"]) == 0
    _close(ort_run(onnx.load(str(tmp_path / "s.onnx")), x), cnngraph.reference(graph, x, seed=5))


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert cli(["export", str(SPECS / "lenet5.yaml"), "-o", str(tmp_path / "x.onnx"), "--opset", "7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: expected an ONNX opset between 13") and "Traceback" not in err
    assert cli(["export", str(SPECS / "lenet5.yaml"), "-o", str(tmp_path / "x.onnx"), "--weights",
                str(tmp_path / "none.npz")]) == 1
    assert "error: no such weights file" in capsys.readouterr().err


def test_missing_onnx_package_gives_a_clear_error(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import cnngraph\nfrom cnngraph.interop import export\n"
            "try:\n    export(cnngraph.load('input: [2]\\nlayers: [relu]'))\n"
            "except cnngraph.CnnGraphError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'cnngraph[onnx]'" in out


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(kind=st.sampled_from(["maxpool", "avgpool"]), n=st.integers(3, 12), k=st.integers(1, 4),
                  s=st.integers(1, 3), lo=st.integers(0, 3), hi=st.integers(0, 3), ceil=st.booleans(),
                  include=st.booleans(), d=st.integers(1, 2))
def test_pool_geometry_property(kind, n, k, s, lo, hi, ceil, include, d):
    """Any valid pooling geometry exports to ONNX Runtime and imports back with the reference's outputs."""
    extra = f"dilation: {d}" if kind == "maxpool" else f"count_include_pad: {str(include).lower()}"
    spec = (f"input: [2, {n}]\nlayers: [{{{kind}: {{kernel: {k}, stride: {s}, padding: [[{lo}, {hi}]], "
            f"ceil_mode: {str(ceil).lower()}, {extra}}}}}]")
    try:
        graph = cnngraph.load(spec)
    except cnngraph.CnnGraphError:
        hypothesis.assume(False)
    # an average window wholly in the padding has no meaning (PyTorch refuses pad > kernel/2)
    hypothesis.assume(kind == "maxpool" or max(lo, hi) < k)
    x = _x(graph, n=2)
    with np.errstate(invalid="ignore"):
        y = cnngraph.reference(graph, x)
    hypothesis.assume(np.isfinite(y).all())  # windows wholly in padding are -inf / 0/0 in every runtime
    from cnngraph.interop import import_onnx
    m = export(graph)
    _close(ort_run(m, x), y)
    imp = import_onnx(m)
    _close(cnngraph.reference(imp.spec, x, imp.weights), y)
