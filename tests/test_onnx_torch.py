"""PyTorch-exported ONNX (TorchScript exporter, dynamic batch) of bundled-like
architectures imports, and the imported spec + weights match ONNX Runtime and
PyTorch itself."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_onnx_export import _close
from torch import nn
from torch.nn import functional as F

import cnngraph
from cnngraph.interop import InteropError, import_onnx
from cnngraph.interop.runtime import run as ort_run


class LeNet5(nn.Module):
    """specs/lenet5.yaml, flattening with x.view(x.size(0), -1) (Shape/Gather/Concat/Reshape in ONNX)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Basic(nn.Module):
    """A torchvision-style ResNet basic block with a projection shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.downsample(x))


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(Basic(8, 16, 2), Basic(16, 16, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layer1(x)), 1))


class Inception(nn.Module):
    """GoogLeNet-like: four branches concatenated on channels, ceil-mode pooling, dropout, softmax."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.MaxPool2d(3, 2, ceil_mode=True))
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b2 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(8, 2, 1), nn.Sigmoid(), nn.Conv2d(2, 4, 5, padding=2), nn.Tanh())
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(8, 4, 1))
        self.pool = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)
        self.pad = nn.ZeroPad2d((1, 0, 0, 1))
        self.drop = nn.Dropout(0.4)
        self.fc = nn.Linear(18 * 8 * 8, 7)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)
        x = self.pad(self.pool(x))
        return F.softmax(self.fc(self.drop(torch.flatten(x, 1))), dim=1)


class Video3d(nn.Module):
    """A video-like 3D net (specs/video3d.yaml's layer kinds)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, (3, 3, 3), stride=(1, 2, 2), padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.gap = nn.AdaptiveMaxPool3d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.gap(self.pool(F.relu(self.bn(self.conv(x))))), 1))


def _randomise_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _export(model, shape, folding=True, opset=17):
    model.eval()
    _randomise_bn(model)
    x = torch.randn(2, *shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=opset,
                          do_constant_folding=folding)
    return onnx.load_from_string(buf.getvalue())


class Audio1d(nn.Module):
    """A 1D net (specs/audio1d.yaml's layer kinds)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 9, stride=4, padding=4)
        self.bn = nn.BatchNorm1d(4)
        self.pool = nn.MaxPool1d(4)
        self.conv2 = nn.Conv1d(4, 6, 3, padding=1, groups=2)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(self.gap(F.relu(self.conv2(x))), 1))


CASES = {"lenet5": (LeNet5, (1, 32, 32)), "resnet": (SmallResNet, (3, 32, 32)),
         "inception": (Inception, (3, 24, 24)), "conv3d": (Video3d, (2, 4, 8, 8)), "audio1d": (Audio1d, (1, 256))}


@pytest.mark.parametrize("folding", [True, False], ids=["folded", "unfolded"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_pytorch_export_imports_and_matches(name, folding):
    cls, shape = CASES[name]
    torch.manual_seed(0)
    model = cls()
    m = _export(model, shape, folding)
    imp = import_onnx(m)
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    y = cnngraph.reference(imp.spec, x, imp.weights)
    _close(y, ort_run(m, x))
    with torch.no_grad():
        _close(y, model(torch.from_numpy(x)).numpy())


def test_lenet_imports_as_the_bundled_spec_with_state_dict_names():
    torch.manual_seed(0)
    model = LeNet5()
    imp = import_onnx(_export(model, (1, 32, 32)))
    bundled = cnngraph.load("specs/lenet5.yaml")
    assert [ls.layer for ls in imp.spec.layers] == [n.layer for n in bundled.nodes]
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    assert set(imp.weights) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(imp.weights[k], v)
    # so the bundled spec runs the PyTorch weights directly
    x = np.random.default_rng(2).standard_normal((2, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        _close(cnngraph.reference(bundled, x, sd), model(torch.from_numpy(x)).numpy())


def test_unsupported_pytorch_layer_is_named():
    class WithLRN(nn.Module):  # PyTorch writes LocalResponseNorm as Pad/AveragePool/Pow arithmetic
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.norm = nn.LocalResponseNorm(4)

        def forward(self, x):
            return self.norm(self.conv(x))

    # (its x * x is a mul now: the refusal comes at the 5-D reshape of PyTorch's window sum)
    with pytest.raises(InteropError, match=r"node '/norm/[A-Za-z_0-9]+' \([A-Za-z]+\): .*(is not supported|no cnngraph "
                                           r"layer does that|cnngraph only flattens)"):
        import_onnx(_export(WithLRN(), (3, 8, 8)))


# ---- modern CNN operators as PyTorch's exporter writes them (issue 10) ------------------------------

class LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt LayerNorm2d: nn.LayerNorm applied channels-last."""

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelsFirstLayerNorm(nn.Module):
    """The original ConvNeXt's LayerNorm(data_format="channels_first"), written out."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.rand(c) + 0.5), nn.Parameter(torch.randn(c)), eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """timm's ConvNeXt block with conv_mlp (1x1 convolutions, channels-first): depthwise 7x7, layer norm,
    MLP with GELU, layer scale (gamma), residual."""

    def __init__(self, dim, norm):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = norm
        self.fc1, self.fc2 = nn.Conv2d(dim, 4 * dim, 1), nn.Conv2d(4 * dim, dim, 1)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x):
        y = self.fc2(F.gelu(self.fc1(self.norm(self.dw(x)))))
        return x + y * self.gamma.reshape(1, -1, 1, 1)


class Lambda(nn.Module):
    def __init__(self, f, cin=3, cout=6):
        super().__init__()
        self.conv, self.f = nn.Conv2d(cin, cout, 3, padding=1), f

    def forward(self, x):
        return self.f(self.conv(x))


class Attention(nn.Module):
    """CBAM's spatial attention input (mean and max over channels) and a mean-pooled classifier."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.spatial = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = self.conv(x)
        s = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return F.log_softmax(self.fc(F.elu(self.spatial(s), 0.7).mean((2, 3))), 1)


def _randomised(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.PReLU, nn.LayerNorm)):
            for p in m.parameters():
                p.data.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if isinstance(m, nn.LayerNorm) else 0.0))
    return model


MODERN = {
    "mish": (lambda: Lambda(F.mish), ["conv", "mish"]),
    "elu": (lambda: Lambda(lambda x: F.elu(x, 0.5)), ["conv", "elu"]),
    "selu": (lambda: Lambda(F.selu), ["conv", "selu"]),
    "softplus_beta": (lambda: Lambda(lambda x: F.softplus(x, 2.0)), ["conv", "softplus"]),
    "clamp": (lambda: Lambda(lambda x: x.clamp(-0.5, 0.25)), ["conv", "clip"]),
    "prelu": (lambda: Lambda(nn.PReLU(6)), ["conv", "prelu"]),
    "prelu_shared": (lambda: Lambda(nn.PReLU()), ["conv", "prelu"]),
    "log_softmax": (lambda: Lambda(lambda x: F.log_softmax(x, 1)), ["conv", "log_softmax"]),
    "layer_norm_2d": (lambda: Lambda(LayerNorm2d(6, eps=1e-6)), ["conv", "layer_norm"]),
    "layer_norm_channels_first": (lambda: Lambda(ChannelsFirstLayerNorm(6)), ["conv", "layer_norm"]),
    "layer_norm_flat": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(48, 10), nn.LayerNorm(10), nn.PReLU(10)),
                        ["flatten", "linear", "layer_norm", "prelu"]),
    "convnext_block": (lambda: nn.Sequential(nn.Conv2d(3, 8, 4, 4), LayerNorm2d(8, eps=1e-6),
                                             ConvNeXtBlock(8, LayerNorm2d(8, eps=1e-6))),
                       ["conv", "layer_norm", "conv", "layer_norm", "conv", "gelu", "conv", "add"]),
    "attention": (Attention, ["conv", "reduce_mean", "reduce_max", "concat", "conv", "elu", "reduce_mean", "linear",
                              "log_softmax"]),
}


@pytest.mark.parametrize("opset", [17, 13, 18])
@pytest.mark.parametrize("name", sorted(MODERN))
def test_modern_operators_import_from_pytorch_and_match(name, opset):
    """What torch.onnx.export writes (at opset 17, and before and after: LayerNormalization from 17,
    Mish from 18, ReduceMean's axes an input from 18) imports as these layer kinds and matches ONNX
    Runtime and PyTorch; the folded and unfolded exports alike."""
    make, kinds = MODERN[name]
    for folding in (True, False):
        torch.manual_seed(0)
        model = _randomised(make())
        shape = (3, 4, 4) if name == "layer_norm_flat" else (3, 8, 8)
        m = _export(model, shape, folding, opset)
        imp = import_onnx(m)
        assert [ls.kind for ls in imp.spec.layers] == kinds
        x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32) * 2
        y = cnngraph.reference(imp.spec, x, imp.weights)
        _close(y, ort_run(m, x))
        with torch.no_grad():
            _close(y, model(torch.from_numpy(x)).numpy())
        net = cnngraph.compile(cnngraph.load(imp.spec), weights=imp.weights)
        _close(net(x), y)


def test_convnext_block_compiles_to_fused_kernels():
    """The ConvNeXt block's layer scale folds into the second 1x1 conv and the residual add fuses into it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 4, 4), ConvNeXtBlock(16, LayerNorm2d(16, eps=1e-6)))
    imp = import_onnx(_export(model, (3, 36, 36)))
    net = cnngraph.compile(cnngraph.load(imp.spec), weights=imp.weights)
    assert [s.name for s in net.plan.steps] == ["fused_conv2d", "fused_dwconv2d", "layer_norm", "fused_conv2d_gelu",
                                                "fused_conv2d_add"], net.plan.describe()
    x = np.random.default_rng(0).standard_normal((2, 3, 36, 36)).astype(np.float32)
    with torch.no_grad():
        _close(net(x), model(torch.from_numpy(x)).numpy())
