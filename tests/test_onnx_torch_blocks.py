"""PyTorch's exports (torch.onnx.export, TorchScript exporter, opset 17, dynamic batch) of the blocks issue 10's
kinds come from, written out as torchvision and timm write them: EfficientNet's MBConv, MobileNetV3's
bottleneck, RegNetY's block (squeeze-and-excitation gates), ShuffleNetV2's units (chunk, cat, channel
shuffle), hand-written SiLU and products, timm's TF-"same" padding, transposed convolutions and
F.interpolate in every mode. Each imports, compiles and matches PyTorch and ONNX Runtime."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from torch import nn
from torch.nn import functional as F

import cnngraph
from cnngraph import oracle
from cnngraph.interop import import_onnx
from cnngraph.interop.runtime import run as ort_run

# ---- squeeze-and-excitation, channel structure --------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: scale = sigmoid(fc2(act(fc1(avgpool(x))))); scale * x."""

    def __init__(self, c, squeeze, act=nn.ReLU, scale=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = act(), scale()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


def _cbn(cin, cout, k, stride=1, groups=1, act=nn.SiLU):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act()] if act else []))


class MBConv(nn.Module):
    """torchvision's EfficientNet MBConv (expand, depthwise, SE with SiLU, project, residual) and, with
    hardswish and hardsigmoid, MobileNetV3's bottleneck."""

    def __init__(self, c, expand, k, mobilenet=False):
        super().__init__()
        act = nn.Hardswish if mobilenet else nn.SiLU
        e = c * expand
        se = SqueezeExcitation(e, max(1, c // 4), nn.ReLU, nn.Hardsigmoid) if mobilenet else \
            SqueezeExcitation(e, max(1, c // 4), nn.SiLU)
        self.block = nn.Sequential(_cbn(c, e, 1, act=act), _cbn(e, e, k, groups=e, act=act), se,
                                   _cbn(e, c, 1, act=None))

    def forward(self, x):
        return self.block(x) + x


class RegNetYBlock(nn.Module):
    """RegNetY's bottleneck: 1x1, grouped 3x3, SE (ReLU, sigmoid), 1x1, residual, ReLU."""

    def __init__(self, c, groups):
        super().__init__()
        self.a = _cbn(c, c, 1, act=nn.ReLU)
        self.b = _cbn(c, c, 3, groups=groups, act=nn.ReLU)
        self.se = SqueezeExcitation(c, c // 4)
        self.c = _cbn(c, c, 1, act=None)

    def forward(self, x):
        return F.relu(self.c(self.se(self.b(self.a(x)))) + x)


def channel_shuffle(x, groups):
    """torchvision's, as written."""
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class ShuffleUnit(nn.Module):
    """torchvision's ShuffleNetV2 InvertedResidual, stride 1 (chunk, branch, cat, shuffle) or 2 (two branches)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        b = cout // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(_cbn(cin, cin, 3, stride, groups=cin, act=None), _cbn(cin, b, 1, act=nn.ReLU))
        self.branch2 = nn.Sequential(_cbn(cin if stride > 1 else b, b, 1, act=nn.ReLU),
                                     _cbn(b, b, 3, stride, groups=b, act=None), _cbn(b, b, 1, act=nn.ReLU))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def _randomise_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _export(model, shape):
    torch.manual_seed(0)
    model.eval()
    _randomise_bn(model)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, *shape),), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    return buf.getvalue()


def _check(model, shape, kinds):
    raw = _export(model, shape)
    imp = import_onnx(raw)
    got = [ls.kind for ls in imp.spec.layers]
    for kind, n in kinds.items():
        assert got.count(kind) == n, (kind, got)
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(ort_run(onnx.load_from_string(raw), x), want, atol=1e-4 * scale)
    np.testing.assert_allclose(cnngraph.reference(imp.spec, x, imp.weights), want, atol=1e-4 * scale)
    net = cnngraph.compile(imp.spec, weights=imp.weights, threads=2)
    np.testing.assert_allclose(net(x), want, atol=1e-4 * scale)
    return imp, net


def test_efficientnet_mbconv_exported_by_pytorch():
    model = nn.Sequential(nn.Conv2d(16, 16, 1), MBConv(16, 6, 3))  # a stem: the residual is an activation
    _, net = _check(model, (16, 14, 14), {"mul": 1, "silu": 3, "sigmoid": 1, "add": 1})
    assert any(s.name == "fused_mul_conv2d_add" for s in net.plan.steps)  # gate, projection, residual


def test_mobilenet_v3_bottleneck_exported_by_pytorch():
    _check(MBConv(16, 4, 5, mobilenet=True), (16, 14, 14), {"mul": 1, "hardswish": 2, "hardsigmoid": 1})


def test_regnet_y_block_exported_by_pytorch():
    _check(RegNetYBlock(32, 4), (32, 8, 8), {"mul": 1, "add": 1})


def test_shufflenet_v2_units_exported_by_pytorch():
    model = nn.Sequential(ShuffleUnit(24, 48, 2), ShuffleUnit(48, 48, 1), ShuffleUnit(48, 48, 1))
    _check(model, (24, 12, 12), {"shuffle": 3, "slice": 4, "concat": 3})


def test_silu_written_as_a_product_and_a_product_of_two_tensors():
    class Products(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1)

        def forward(self, x):
            y = self.a(x)
            z = self.c(y * torch.sigmoid(y))  # SiLU by hand: one silu layer
            g = torch.sigmoid(self.b(x))
            return z * g - z / (1 + g * g)

    _check(Products(), (3, 6, 6), {"silu": 1, "mul": 2, "sub": 1, "div": 1})


def test_tf_same_padding_from_shape_arithmetic_imports():
    """timm's tf_* models pad from x.size(): Shape(x)[2] is a spatial dim, not the batch."""
    class TfSameConv(nn.Conv2d):
        def forward(self, x):
            ih, iw = x.size()[-2:]
            pads = [torch.clamp(((torch.as_tensor(n) / s).ceil() - 1) * s + (k - 1) * d + 1 - n, min=0)
                    for n, k, s, d in zip((ih, iw), self.kernel_size, self.stride, self.dilation)]
            if not torch.jit.is_tracing():
                pads = [int(p) for p in pads]
            x = F.pad(x, [pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    imp, _ = _check(TfSameConv(3, 8, 3, stride=2), (3, 15, 16), {"pad": 1, "conv": 1})
    assert imp.spec.layers[0].layer.padding == ((1, 1), (0, 1))


def test_a_channel_shuffle_that_does_not_reshape_back_is_refused():
    class Half(nn.Module):
        def forward(self, x):
            b, c, h, w = x.size()
            return torch.transpose(x.view(b, 2, c // 2, h, w), 1, 2).reshape(b, c // 2, 2 * h, w)

    with pytest.raises(cnngraph.CnnGraphError, match=r"\(Reshape\): reshapes transposed channel groups to .* not back "
                                                     r"to \(N, 8, 3, 3\): no channel shuffle"):
        import_onnx(_export(Half(), (8, 3, 3)))


def test_sizes_of_the_split_kinds_export_and_import_back():
    text = "input: [20, 3, 3]\nlayers: [{split: {name: s, sizes: [5, 15]}}, {shuffle: {from: s.1, groups: 3}}]"
    from cnngraph.interop import export
    g = cnngraph.load(text)
    back = import_onnx(export(g))
    assert [(ls.kind, ls.layer.values()) for ls in back.spec.layers] == [
        ("slice", {"start": 5, "end": None, "part": None, "parts": None}), ("shuffle", {"groups": 3})]
    assert math.prod(cnngraph.load(back.spec).output_shape) == 15 * 9


# ---- channels-last islands: x.permute(0, 2, 3, 1), layers over the last axis, .permute(0, 3, 1, 2) -----------


class CNBlock(nn.Module):
    """torchvision's ConvNeXt block, as written: depthwise 7x7, then channels-last LayerNorm, Linear, GELU,
    Linear, back to channels-first, layer scale, residual."""

    def __init__(self, dim):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute([0, 2, 3, 1]),
                                   nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(),
                                   nn.Linear(4 * dim, dim), Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.rand(dim, 1, 1) + 0.5)

    def forward(self, x):
        return self.layer_scale * self.block(x) + x


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


class ChannelsLastMLP1d(nn.Module):
    """The original ConvNeXt's block on a sequence (rank 3): its gamma multiplies channels-last, and a
    ReLU and a scalar product run on the transposed tensor too."""

    def __init__(self, dim):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x):
        y = self.conv(x).permute(0, 2, 1)
        y = self.fc2(F.relu(self.fc1(y)) * 0.5)
        return x + (self.gamma * y).permute(0, 2, 1)


def test_torchvision_convnext_block_imports_channels_first_without_copies():
    """The channels-last island becomes layer_norm, 1x1 convs and a gelu on the channels-first tensor: the
    transposes are gone (no copy), the biases and the layer scale folded into the convs."""
    model = nn.Sequential(nn.Conv2d(3, 16, 2, 2), CNBlock(16), CNBlock(16))
    imp, net = _check(model, (3, 12, 12), {"conv": 7, "layer_norm": 2, "gelu": 2, "add": 2})
    assert {ls.kind for ls in imp.spec.layers} == {"conv", "layer_norm", "gelu", "add"}
    assert [s.name for s in net.plan.steps][:5] == ["fused_conv2d", "fused_dwconv2d", "layer_norm",
                                                    "fused_conv2d_gelu", "fused_conv2d_add"], net.plan.describe()
    assert [ls.name for ls in imp.spec.layers][2:5] == ["1.block.2", "1.block.3", "1.block.4"]


def test_a_channels_last_mlp_of_rank_3_with_a_channels_last_scale_imports():
    _check(ChannelsLastMLP1d(8), (8, 10), {"conv": 3, "relu": 1, "add": 1})


def test_a_channels_last_view_read_by_an_operator_without_a_channels_first_form_is_refused():
    """Softmax over the channels-last axis has no rewrite: the island stays as written and the reader is
    refused, naming it (never imported wrongly)."""
    class SoftmaxLast(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.fc = nn.LayerNorm(4), nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.norm(x.permute(0, 2, 3, 1))).softmax(-1).permute(0, 3, 1, 2)

    with pytest.raises(cnngraph.CnnGraphError, match=r"node '/norm/LayerNormalization' \(LayerNormalization\): .*"
                                                     r"channels-last .*is used by node '/fc/MatMul' \(MatMul\)"):
        import_onnx(_export(SoftmaxLast(), (4, 3, 3)))


# ---- transposed convolutions --------------------------------------------------------------------------------


def _export_at(model, x, opset=17):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=opset)
    return buf.getvalue()


@pytest.mark.parametrize("module,shape", [
    (lambda: torch.nn.ConvTranspose1d(3, 4, 5, stride=3, padding=2, output_padding=1), (3, 9)),
    (lambda: torch.nn.ConvTranspose2d(8, 4, 2, stride=2), (8, 5, 6)),  # U-Net's up-convolution
    (lambda: torch.nn.ConvTranspose2d(6, 6, 3, stride=2, padding=1, output_padding=1, groups=3, dilation=2),
     (6, 4, 5)),
    (lambda: torch.nn.ConvTranspose3d(2, 3, (2, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), (2, 3, 4, 5)),
])
def test_pytorch_export_imports_compiles_and_matches(module, shape):
    pytest.importorskip("onnxruntime")
    from cnngraph.interop import import_onnx
    from cnngraph.interop.runtime import run as ort_run
    torch.manual_seed(0)
    m = module()
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    model = _export_at(m, torch.from_numpy(x))
    imp = import_onnx(model)
    assert [ls.kind for ls in imp.spec.layers] == ["conv_transpose"]
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    y = cnngraph.compile(imp.spec, weights=imp.weights)(x)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ort_run(onnx.load_from_string(model), x), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(oracle.run(cnngraph.load(imp.spec), x, imp.weights), want, rtol=1e-4, atol=1e-5)


# ---- F.interpolate ------------------------------------------------------------------------------------------


class Interpolate(torch.nn.Module):
    def __init__(self, like=False, **kw):
        super().__init__()
        self.kw, self.like = kw, like

    def forward(self, x):
        if self.like:  # a size read from the tensor itself: Shape/Gather/Mul arithmetic in the export
            return F.interpolate(x, size=(x.shape[2] * 2, x.shape[3] + 3), **self.kw)
        return F.interpolate(x, **self.kw)


CASES = [({"scale_factor": 2, "mode": "nearest"}, (3, 5, 6)), ({"scale_factor": 3, "mode": "nearest"}, (2, 4, 3)),
         ({"scale_factor": 1.5, "mode": "nearest"}, (2, 6, 7)), ({"size": (9, 4), "mode": "nearest"}, (2, 5, 6)),
         ({"scale_factor": 2, "mode": "bilinear"}, (17, 5, 6)),
         ({"scale_factor": 2, "mode": "bilinear", "align_corners": True}, (3, 5, 6)),
         ({"size": (7, 9), "mode": "bilinear"}, (3, 5, 6)),
         ({"size": (1, 9), "mode": "bilinear", "align_corners": True}, (3, 5, 6)),
         ({"scale_factor": 2, "mode": "linear"}, (3, 7)), ({"scale_factor": 2, "mode": "trilinear"}, (2, 2, 3, 4)),
         ({"scale_factor": (1, 2, 2), "mode": "nearest"}, (2, 2, 3, 4)),
         ({"scale_factor": 0.5, "mode": "bilinear"}, (3, 8, 9))]


@pytest.mark.parametrize("kw,shape", CASES, ids=[f"{k}" for k, _ in CASES])
def test_pytorch_interpolate_exports_import_and_match(kw, shape):
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    m = Interpolate(**kw)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.from_numpy(x),), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    imp = import_onnx(buf.getvalue())
    assert [ls.kind for ls in imp.spec.layers] == ["upsample"]
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    g = cnngraph.load(imp.spec)
    np.testing.assert_allclose(oracle.run(g, x, imp.weights), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cnngraph.compile(g)(x), want, rtol=1e-5, atol=1e-6)
    # and the spec's layer is PyTorch's F.interpolate again (the second oracle)
    from cnngraph.interop.torch_exec import forward
    np.testing.assert_allclose(forward(g, {})(x), want, rtol=1e-5, atol=1e-6)


def test_a_size_computed_from_the_input_shape_is_no_batch_dependence():
    """Shape(x)[2] * 2 is a spatial size: folded twice with two batch placeholders it does not change."""
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 6)).astype(np.float32)
    m = Interpolate(like=True, mode="bilinear")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.from_numpy(x),), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    imp = import_onnx(buf.getvalue())
    (ls,) = imp.spec.layers
    assert ls.layer.size == (10, 9)
    with torch.no_grad():
        np.testing.assert_allclose(cnngraph.reference(imp.spec, x, imp.weights), m(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-6)
