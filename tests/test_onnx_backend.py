"""ONNX's own backend node tests for the operators cnngraph imports.

Each case's model goes through the importer (inputs after the first are the
weights: they become initializers) and runs on `cnngraph.reference`. Cases that
need what cnngraph does not have are listed in EXCLUDED with the reason, and
`test_excluded_cases_are_refused_clearly` checks that the importer refuses each
of them with an error naming the node and the problem (never a wrong answer).
"""

from __future__ import annotations

import glob
import os
import re
import unittest
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx
import onnx.backend.base
import onnx.backend.test

import cnngraph
from cnngraph.interop import InteropError, import_onnx

OPS = ("conv", "maxpool", "averagepool", "globalaveragepool", "globalmaxpool", "relu", "leakyrelu", "sigmoid",
       "tanh", "softmax", "gemm", "matmul", "flatten", "reshape", "concat", "add", "sum", "batchnorm", "lrn",
       "dropout", "constant_pad", "identity", "elu", "selu", "softplus", "prelu", "clip", "logsoftmax", "mish",
       "reduce_mean", "reduce_max", "layer_normalization", "convtranspose", "mul", "sub", "div", "slice", "split",
       "resize", "upsample")
TORCH_MODULES = ("AvgPool", "BatchNorm", "ConstantPad", "Conv", "LeakyReLU", "Linear", "MaxPool", "ReLU",
                 "ReflectionPad", "ReplicationPad", "Sigmoid", "Softmax", "Tanh", "ZeroPad", "softmax", "ELU", "SELU",
                 "PReLU", "Softplus", "LogSoftmax", "log_softmax")
TORCH_OPERATORS = ("add", "addconstant", "addmm", "basic", "concat2", "conv", "flatten", "maxpool", "mm",
                   "non_float_params", "pad", "params", "view", "reduced_mean", "selu")
INCLUDE = (rf"^test_({'|'.join(OPS)})(_.*)?_cpu$|^test_({'|'.join(TORCH_MODULES)})[0-9A-Za-z_]*_cpu$|"
           rf"^test_operator_({'|'.join(TORCH_OPERATORS)})(_.*)?_cpu$")
# Decomposed ('_expanded') variants test other operators (Exp, ReduceSum, Where...); the *Integer ops,
# ConvTranspose and optional/sequence Identity are other operators.
NOT_THESE_OPS = r"_expanded|convinteger|matmulinteger|identity_opt|identity_sequence"

# reason -> (why it is excluded, what the importer's refusal must say)
TWO = ("a second data input: cnngraph networks have one input, so the others become weights, and no layer "
       "takes a constant as a branch", r"expected input 1 \('.*'\) to be an activation|adds a constant")
RANK1 = ("rank-1 data: cnngraph inputs are (batch, channels, ...)", r"expected \(batch, channels, \*spatial\)")
NOT_FLAT = ("a reshape that is not a flatten to (batch, features)",
            r"cnngraph only flattens to \(N, features\)|cannot reshape")
MATMUL_ND = ("MatMul on a rank>2 activation: cnngraph's linear takes (batch, features)",
             r"expected a flat \(batch, features\) input")
NOTHING = ("the output is the input: a network without layers", r"the model computes nothing")
TRANS_A = ("Gemm transA=1 puts the batch in the columns", r"transA=1")
C_PER_ROW = ("Gemm bias C of shape (M, N) differs per batch row", r"varies over the batch")
AVG_DIL = ("dilated average pooling (cnngraph's avgpool has no dilation)", r"has no dilation")
ARGMAX = ("uses MaxPool's Indices output", r"output '.*' is used")
SOFTMAX = ("softmax over a non-channel axis", r"softmax over axis")
TRAIN = ("training mode", r"training_mode")
MASK = ("uses Dropout's mask output", r"output '.*' is used")
DTYPE = ("non-float32 data (double, int)", r"expected a float32 tensor")
UNSQUEEZE = ("1-D pooling exported as Unsqueeze + 2-D pool + Squeeze", r"operator 'Unsqueeze' is not supported")
PAD_MODE = ("reflect/edge padding: cnngraph pads with a constant", r"cnngraph pads with a constant only")
GEMM_C_LIVE = ("Gemm whose bias C is an activation (addmm chain)", r"expected C \(bias\) .* to be a constant")
ELEMWISE = ("adds a (2, 2) constant to the input, then Mul/Neg of activations", r"adds a constant")
LN_AXES = ("layer normalisation over other axes than the channels",
           r"cnngraph's layer_norm normalises over the channels \(axis 1\)")
LN_STATS = ("uses LayerNormalization's Mean and InvStdDev outputs", r"output 'Mean' is used")
PRELU_SLOPE = ("a PRelu slope that varies over other axes than the channels", r"not one value per channel")
REDUCE_ALL = ("reduces over every axis, the batch included", r"reduces over every axis, the batch included")
REDUCE_CHANNELS = ("drops a reduced channel axis (keepdims=0)", r"would drop the channel axis")
DYNAMIC = ("a data dim of unknown size", r"expected a fixed size")
SELU_CONSTANTS = ("Selu with other constants than PyTorch's", r"Selu with alpha=2, gamma=3 is not selu")
CONST = ("a second data input becomes a constant that is not one value per channel",
         r"(multiplies by|subtracts|divides by) a constant of shape")
CUBIC = ("cubic resampling", r"mode 'cubic': cnngraph resamples with 'nearest' or 'linear' only")
ANTIALIAS = ("anti-aliased resampling", r"antialias=1")
COORDS = ("coordinate mappings PyTorch does not write", r"coordinate_transformation_mode '(half_pixel_symmetric|"
                                                         r"tf_crop_and_resize)'")
ASPECT = ("keep_aspect_ratio_policy", r"keep_aspect_ratio_policy other than 'stretch'")
ALIGN = ("align_corners with a fractional output length (ONNX's mapping then differs from PyTorch's)",
         r"align_corners with scales .* fractional lengths")
SLICE_AXIS = ("slicing other axes than the channels, or with steps", r"cnngraph slices channels")
EMPTY = ("an empty slice", r"keeps no channel")
OUTPUTS = ("several graph outputs", r"expected one graph output")
SEQUENCE = ("sequence outputs", r"operator 'SplitToSequence' is not supported")

EXCLUDED = {
    **{n: TWO for n in ("test_add", "test_add_bcast", "test_operator_concat2")},
    **{f"test_concat_{c}": TWO for c in (
        "2d_axis_0", "2d_axis_1", "2d_axis_negative_1", "2d_axis_negative_2",
        "3d_axis_0", "3d_axis_1", "3d_axis_2", "3d_axis_negative_1", "3d_axis_negative_2",
        "3d_axis_negative_3")},
    **{n: RANK1 for n in ("test_matmul_1d_1d", "test_matmul_1d_3d", "test_dropout_default_old", "test_sum_example",
                          "test_sum_two_inputs", "test_sum_one_input", "test_concat_1d_axis_0",
                          "test_concat_1d_axis_negative_1", "test_operator_basic",
                          "test_leakyrelu_example", "test_sigmoid_example", "test_tanh_example",
                          "test_operator_view")},
    **{n: MATMUL_ND for n in ("test_matmul_3d", "test_matmul_4d", "test_matmul_4d_1d", "test_matmul_bcast")},
    "test_identity": NOTHING,
    **{n: TRANS_A for n in ("test_gemm_transposeA", "test_gemm_all_attributes")},
    "test_gemm_default_matrix_bias": C_PER_ROW,
    **{n: AVG_DIL for n in (
        "test_averagepool_2d_dilations", "test_averagepool_3d_dilations_small",
        *(f"test_averagepool_3d_dilations_large_count_include_pad_is_{i}_ceil_mode_is_{c}"
          for i in (0, 1) for c in ("False", "True")))},
    **{n: ARGMAX for n in ("test_maxpool_with_argmax_2d_precomputed_pads",
                           "test_maxpool_with_argmax_2d_precomputed_strides")},
    **{n: SOFTMAX for n in ("test_softmax_axis_0", "test_softmax_axis_2", "test_softmax_default_axis",
                            "test_softmax_negative_axis",
                            "test_softmax_functional_dim3")},
    **{n: NOT_FLAT for n in (
        "test_flatten_axis0", "test_flatten_axis2", "test_flatten_axis3", "test_flatten_negative_axis1",
        "test_flatten_negative_axis2", "test_flatten_negative_axis4",
        "test_reshape_allowzero_reordered", "test_reshape_extended_dims", "test_reshape_negative_dim",
        "test_reshape_negative_extended_dims", "test_reshape_one_dim", "test_reshape_reordered_all_dims",
        "test_reshape_reordered_last_dims", "test_reshape_zero_and_negative_dim", "test_reshape_zero_dim")},
    **{n: TRAIN for n in ("test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode")},
    **{n: MASK for n in ("test_dropout_default_mask", "test_dropout_default_mask_ratio")},
    **{n: DTYPE for n in (
        "test_maxpool_2d_uint8", "test_add_int8", "test_add_int16", "test_add_uint8", "test_add_uint16",
        "test_add_uint32", "test_add_uint64", "test_operator_add_broadcast", "test_operator_add_size1_broadcast",
        "test_operator_add_size1_right_broadcast", "test_operator_add_size1_singleton_broadcast",
        "test_operator_addconstant", "test_operator_non_float_params")},
    **{n: UNSQUEEZE for n in ("test_AvgPool1d", "test_AvgPool1d_stride")},
    **{n: PAD_MODE for n in ("test_ReflectionPad2d", "test_ReplicationPad2d", "test_operator_pad")},
    "test_operator_addmm": GEMM_C_LIVE,
    "test_operator_params": ELEMWISE,
    **{n: RANK1 for n in ("test_clip_default_inbounds", "test_clip_example", "test_clip_inbounds",
                          "test_clip_min_greater_than_max", "test_clip_outbounds", "test_clip_splitbounds",
                          "test_elu_example", "test_mish", "test_selu_example", "test_softplus_example")},
    **{n: DTYPE for n in ("test_clip_default_int8_inbounds", "test_clip_default_int8_max", "test_clip_default_int8_min",
                          "test_reduce_max_bool_inputs", "test_reduce_max_empty_set_bool")},
    **{n: SOFTMAX for n in ("test_logsoftmax_axis_0", "test_logsoftmax_axis_2", "test_logsoftmax_default_axis",
                            "test_logsoftmax_negative_axis", "test_log_softmax_dim3")},
    **{f"test_layer_normalization_{c}": LN_AXES for c in (
        "2d_axis0", "2d_axis_negative_2", "default_axis",
        *(f"3d_axis{a}_epsilon" for a in ("0", "1", "2", "_negative_1", "_negative_2", "_negative_3")),
        *(f"4d_axis{a}" for a in ("0", "1", "2", "3", "_negative_1", "_negative_2", "_negative_3", "_negative_4")))},
    **{n: LN_STATS for n in ("test_layer_normalization_2d_axis1", "test_layer_normalization_2d_axis_negative_1")},
    **{n: PRELU_SLOPE for n in ("test_prelu_broadcast", "test_prelu_example")},
    **{f"test_reduce_{op}_{c}": REDUCE_ALL for op, c in (
        ("max", "default_axes_keepdim_example"), ("max", "default_axes_keepdims_random"),
        ("mean", "default_axes_keepdims_example"), ("mean", "default_axes_keepdims_random"))},
    **{f"test_reduce_{op}_do_not_keepdims_{c}": REDUCE_CHANNELS for op in ("max", "mean") for c in ("example", "random")},
    "test_reduce_max_empty_set": DYNAMIC,
    "test_selu": SELU_CONSTANTS,
    **{f"test_{op}{s}": CONST for op in ("mul", "sub", "div") for s in ("", "_bcast")},
    **{f"test_{op}_example": RANK1 for op in ("mul", "sub", "div")},
    **{f"test_{op}_{t}": DTYPE for op in ("mul", "sub", "div")
       for t in ("int8", "int16", "uint8", "uint16", "uint32", "uint64")},
    "test_div_int32_trunc": DTYPE,
    **{f"test_resize_{c}": CUBIC for c in (
        "downsample_scales_cubic_A_n0p5_exclude_outside", "downsample_scales_cubic_align_corners",
        "downsample_scales_cubic_antialias", "downsample_scales_cubic", "downsample_sizes_cubic_antialias",
        "downsample_sizes_cubic", "upsample_scales_cubic_A_n0p5_exclude_outside", "upsample_scales_cubic_align_corners",
        "upsample_scales_cubic_asymmetric", "upsample_scales_cubic", "upsample_sizes_cubic")},
    **{f"test_resize_downsample_{c}_linear_antialias": ANTIALIAS for c in ("scales", "sizes")},
    **{f"test_resize_{c}": COORDS for c in (
        "downsample_scales_linear_half_pixel_symmetric", "upsample_scales_linear_half_pixel_symmetric",
        "tf_crop_and_resize_axes_2_3", "tf_crop_and_resize_axes_3_2", "tf_crop_and_resize",
        "tf_crop_and_resize_extrapolation_value")},
    **{f"test_resize_{d}_sizes_nearest_{n}": ASPECT for d in ("downsample", "upsample")
       for n in ("not_larger", "not_smaller")},
    "test_resize_downsample_scales_linear_align_corners": ALIGN,
    **{f"test_slice{s}": SLICE_AXIS for s in ("", "_default_axes", "_default_steps", "_neg_steps",
                                               "_negative_axes")},
    "test_slice_start_out_of_bounds": EMPTY,
    **{f"test_split_{c}": RANK1 for c in (
        "1d_uneven_split_opset18", "equal_parts_1d_opset13", "equal_parts_1d_opset18",
        "equal_parts_default_axis_opset13", "equal_parts_default_axis_opset18", "variable_parts_1d_opset13",
        "variable_parts_1d_opset18", "variable_parts_default_axis_opset13", "variable_parts_default_axis_opset18",
        "zero_size_splits_opset13", "zero_size_splits_opset18")},
    **{f"test_split_{c}": OUTPUTS for c in (
        "2d_uneven_split_opset18", "equal_parts_2d", "equal_parts_2d_opset13", "variable_parts_2d_opset13",
        "variable_parts_2d_opset18")},
    **{f"test_split_to_sequence_{c}": SEQUENCE for c in ("1", "2", "nokeepdims")},
}


class _Rep(onnx.backend.base.BackendRep):
    def __init__(self, model):
        self.model = model

    def run(self, inputs, **kwargs):
        spec, weights = bind_and_import(self.model, inputs)
        return (cnngraph.reference(spec, np.asarray(inputs[0]), weights),)


def bind_and_import(model, inputs):
    """Inputs after the first become initializers; then the importer turns the model into a spec."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    data = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    for vi, value in zip(data[1:], inputs[1:]):
        m.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), vi.name))
    imported = import_onnx(m)
    return imported.spec, imported.weights


class CnnGraphBackend(onnx.backend.base.Backend):
    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        onnx.checker.check_model(model)
        return _Rep(model)

    @classmethod
    def supports_device(cls, device):
        return device == "CPU"


def _excluded(test: str) -> str | None:
    return next((f"{why}" for name, (why, _) in EXCLUDED.items() if test == f"{name}_cpu"), None)


with warnings.catch_warnings():  # ONNX's case generators overflow casts on purpose
    warnings.simplefilter("ignore", RuntimeWarning)
    _backend = onnx.backend.test.BackendTest(CnnGraphBackend, __name__)
for _cls in _backend.test_cases.values():
    for _test in [t for t in vars(_cls) if t.startswith("test_")]:
        if not re.search(INCLUDE, _test) or re.search(NOT_THESE_OPS, _test):
            delattr(_cls, _test)  # another operator: not collected at all
        elif _excluded(_test):
            setattr(_cls, _test, unittest.skip(f"excluded: {_excluded(_test)}")(getattr(_cls, _test)))
    if any(t.startswith("test_") for t in vars(_cls)):
        globals()[_cls.__name__] = _cls
del _cls  # a unittest class under a second name would be collected twice


def _case(name: str):
    """(model, inputs) of a backend case, generated (node cases) or stored (PyTorch cases)."""
    from onnx.backend.test.loader import load_node_model_tests
    for case in load_node_model_tests():
        if case.name == name:
            return case.model, [np.asarray(v) for v in case.data_sets[0][0]]
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for kind in ("pytorch-converted", "pytorch-operator"):
        d = os.path.join(root, kind, name)
        if os.path.isdir(d):
            inputs = []
            for f in sorted(glob.glob(os.path.join(d, "test_data_set_0", "input_*.pb"))):
                t = onnx.TensorProto()
                with open(f, "rb") as fh:
                    t.ParseFromString(fh.read())
                inputs.append(onnx.numpy_helper.to_array(t))
            return onnx.load(os.path.join(d, "model.onnx")), inputs
    raise LookupError(name)


def test_every_excluded_case_exists_and_is_included_by_the_op_filter():
    classes = [c for c in globals().values() if isinstance(c, type) and issubclass(c, unittest.TestCase)]
    collected = {t[:-len("_cpu")] for c in classes for t in vars(c) if t.startswith("test_")}
    assert set(EXCLUDED) <= collected
    assert len(collected) - len(EXCLUDED) >= 100  # the cases that do run


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_excluded_cases_are_refused_clearly(name):
    model, inputs = _case(name)
    why, message = EXCLUDED[name]
    with pytest.raises(InteropError, match=message):
        bind_and_import(model, inputs)
