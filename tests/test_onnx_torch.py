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


def _export(model, shape, folding=True):
    model.eval()
    _randomise_bn(model)
    x = torch.randn(2, *shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17,
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

    with pytest.raises(InteropError, match=r"node '/norm/[A-Za-z_0-9]+' \([A-Za-z]+\): .*(is not supported|no cnngraph "
                                           r"layer does that)"):
        import_onnx(_export(WithLRN(), (3, 8, 8)))
