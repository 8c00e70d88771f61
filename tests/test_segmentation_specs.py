"""The bundled segmentation specs against the same nets written in PyTorch: `unet` as
milesial/Pytorch-UNet's UNet(3, 2), `fcn_resnet18` as torchvision's FCN (a ResNet-18 trunk,
FCNHead, F.interpolate to the input's size). The PyTorch state_dict loads by name; the numpy
reference gives PyTorch's output and the compiled net the reference's, on small non-square
inputs (the specs' sizes would make the reference slow). The totals of tests/test_specs.py
are counted here from the PyTorch modules: parameter numel, and MACs by hand from the shapes
each conv and transposed conv sees (on the meta device, so the full size costs nothing).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from test_specs import BUFFERS, TABLE  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import cnngraph  # noqa: E402
from cnngraph.spec import load as load_spec  # noqa: E402

SPECS = pathlib.Path(__file__).resolve().parent.parent / "specs"


# ---- U-Net, as milesial/Pytorch-UNet (unet/unet_parts.py, bilinear=False) ---------------

class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x1, x2):
        return self.conv(torch.cat([x2, self.up(x1)], dim=1))


class UNet(nn.Module):
    def __init__(self, n_channels=3, n_classes=2, base=64):
        super().__init__()
        b = base
        self.inc = DoubleConv(n_channels, b)
        self.down1, self.down2 = Down(b, 2 * b), Down(2 * b, 4 * b)
        self.down3, self.down4 = Down(4 * b, 8 * b), Down(8 * b, 16 * b)
        self.up1, self.up2 = Up(16 * b, 8 * b), Up(8 * b, 4 * b)
        self.up3, self.up4 = Up(4 * b, 2 * b), Up(2 * b, b)
        self.outc = nn.Module()
        self.outc.conv = nn.Conv2d(b, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(self.down4(x4), x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        return self.outc.conv(self.up4(x, x1))


# ---- FCN on a ResNet-18 trunk, as torchvision's segmentation.FCN with FCNHead ------------

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Trunk(nn.Module):
    """torchvision's resnet18 up to layer4 (what IntermediateLayerGetter keeps)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [64, 64, 128, 256, 512]
        for i in range(1, 5):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(widths[i - 1], widths[i], stride),
                                                     BasicBlock(widths[i], widths[i])))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class FCN(nn.Module):
    def __init__(self, num_classes=21):
        super().__init__()
        self.backbone = Trunk()
        self.classifier = nn.Sequential(  # FCNHead(512, num_classes): 512 // 4 channels in the middle
            nn.Conv2d(512, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU(), nn.Dropout(0.1),
            nn.Conv2d(128, num_classes, 1))

    def forward(self, x):
        y = self.classifier(self.backbone(x))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


NETS = {"unet": (UNet, (3, 32, 48)), "fcn_resnet18": (FCN, (3, 64, 96))}


def calibrated(cls, x, seed):
    """The module with random weights and batchnorm statistics near those its input gives (so no
    layer's signal fades or explodes), then randomised: a batch statistic is no test of inference."""
    torch.manual_seed(seed)
    model = cls()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0  # the running statistics become the batch's
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x))
        g = torch.Generator().manual_seed(seed + 1)
        for bn in bns:
            c = bn.num_features
            bn.running_mean += 0.2 * bn.running_var.sqrt() * torch.randn(c, generator=g)
            bn.running_var *= 0.5 + torch.rand(c, generator=g)
            bn.weight.copy_(0.5 + torch.rand(c, generator=g))
            bn.bias.copy_(0.2 * torch.randn(c, generator=g))
    return model.eval()


def setup(name, seed=0):
    cls, shape = NETS[name]
    graph = cnngraph.load(dataclasses.replace(load_spec(SPECS / f"{name}.yaml"), input_shape=shape))
    x = np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)
    model = calibrated(cls, x, seed)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    with torch.no_grad():
        want = model.double()(torch.from_numpy(x).double()).numpy()
    return graph, x, state, want


def close(got, want, tol=1e-4):
    """Equal within tol of the output's scale."""
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    assert err <= tol * scale, f"max error {err:.3g} at output scale {scale:.3g}"


@pytest.mark.parametrize("name", sorted(NETS))
def test_reference_and_compiled_net_match_pytorch(name):
    graph, x, state, want = setup(name)
    assert graph.output_shape == want.shape[1:]
    ref = cnngraph.reference(graph, x, state)  # the state_dict by name (num_batches_tracked ignored)
    close(ref, want)
    # the signal survives to the output, and differs across classes and pixels
    assert np.std(want) > 0.1 * np.abs(want).max()
    net = cnngraph.compile(graph, weights=state)
    close(net(x), ref)
    close(net(x[1:]), ref[1:])


def _counts(model, shape):
    """(params, batchnorm buffers, MACs per sample) from the module, MACs as torchvision counts them
    (bias excluded): a conv's output elements x in/groups x kernel taps, a transposed conv's input
    elements x out/groups x kernel taps."""
    macs = []

    def hook(m, inputs, out):
        taps = math.prod(m.kernel_size)
        if isinstance(m, nn.ConvTranspose2d):
            macs.append(inputs[0][0].numel() * m.out_channels // m.groups * taps)
        else:
            macs.append(out[0].numel() * m.in_channels // m.groups * taps)

    meta = copy.deepcopy(model).to("meta").eval()
    for m in meta.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        out = meta(torch.empty(1, *shape, device="meta"))
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for k, b in model.named_buffers() if not k.endswith("num_batches_tracked"))
    return params, buffers, sum(macs), tuple(out.shape[1:])


@pytest.mark.parametrize("name", sorted(NETS))
def test_totals_counted_from_pytorch(name):
    """At the spec's own input size: the report's totals, test_specs.py's table and the module agree."""
    cls, _ = NETS[name]
    graph = cnngraph.load(SPECS / f"{name}.yaml")
    shape, params, macs = TABLE[name]
    assert graph.input_shape == shape
    counted = _counts(cls(), shape)
    t = graph.totals()
    assert counted == (params, BUFFERS[name], macs, graph.output_shape)
    assert (t["params"], t["buffers"], t["macs"]) == counted[:3]
    # every parameter and running statistic of the module has a layer of the same name
    assert set(cnngraph.weights.expected(graph)) == {k for k in cls().state_dict()
                                                      if not k.endswith("num_batches_tracked")}


def test_unet_needs_sides_that_are_multiples_of_16():
    """milesial pads the upsampled tensor to the skip's size; the spec refuses the mismatch instead."""
    spec = dataclasses.replace(load_spec(SPECS / "unet.yaml"), input_shape=(3, 40, 48))
    with pytest.raises(cnngraph.CnnGraphError, match=r"layer 'up1.cat' \(concat\): expected inputs that differ "
                                                     r"only in channels"):
        cnngraph.load(spec)
