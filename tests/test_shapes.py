"""Shape inference of windowed layers (conv, max/avg pool) against two oracles:
brute-force window counting, and PyTorch's own output shapes when torch is
importable. Random 1D/2D/3D configurations: stride, every padding form
(int, per dim, per side, ONNX begins+ends, same, valid), dilation, groups,
ceil_mode.
"""

import math
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnngraph.errors import LayerError
from cnngraph.layers import make
from cnngraph.shapes import out_size, same_pads

SETTINGS = settings(max_examples=150, deadline=None)


def count_windows(n, k, s, lo, hi, d, ceil_mode=False) -> int:
    """Slide the window by hand over the padded input: how many placements fit.

    In ceil mode the first placement that does not fit is kept too (a partial
    window) if the placement before it (a virtual one at -s for the first)
    left rows uncovered, and it starts inside the input or the left padding.
    """
    length, extent = n + lo + hi, d * (k - 1) + 1
    count, t = 0, 0
    while t + extent <= length:
        count, t = count + 1, t + s
    if ceil_mode and t - s + extent < length and t < n + lo:
        count += 1
    return count


@st.composite
def geometry(draw, pool=False):
    """(spatial, kernel, stride, dilation, padding attr, pads per dim) for a 1D..3D input."""
    nd = draw(st.integers(1, 3))
    sizes = st.integers(1, 12 if nd == 3 else 24)
    spatial = [draw(sizes) for _ in range(nd)]
    kernel = [draw(st.integers(1, 5)) for _ in range(nd)]
    stride = [draw(st.integers(1, 4)) for _ in range(nd)]
    dilation = [1] * nd if pool == "avg" else [draw(st.integers(1, 3)) for _ in range(nd)]
    form = draw(st.sampled_from(["int", "per_dim", "per_side", "onnx", "same", "valid"]))
    if form == "int":
        p = draw(st.integers(0, 3))
        attr, pads = p, [(p, p)] * nd
    elif form == "per_dim":
        attr = [draw(st.integers(0, 3)) for _ in range(nd)]
        pads = [(p, p) for p in attr]
    elif form in ("per_side", "onnx"):
        pads = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(nd)]
        attr = [list(p) for p in pads] if form == "per_side" else [lo for lo, _ in pads] + [hi for _, hi in pads]
        if form == "onnx" and nd == 1:  # [lo, hi] for 1D reads as one pair per dim
            attr = [attr]
    elif form == "same":
        attr = "same"
        pads = [same_pads(n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation)]
    else:
        attr, pads = "valid", [(0, 0)] * nd
    return spatial, kernel, stride, dilation, attr, pads


def expected_spatial(spatial, kernel, stride, dilation, pads, ceil_mode=False):
    return tuple(count_windows(n, k, s, lo, hi, d, ceil_mode)
                 for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads))


# ---- the formula itself -------------------------------------------------------

@SETTINGS
@given(n=st.integers(1, 60), k=st.integers(1, 9), s=st.integers(1, 6), lo=st.integers(0, 4),
       hi=st.integers(0, 4), d=st.integers(1, 4), ceil_mode=st.booleans())
def test_out_size_counts_windows(n, k, s, lo, hi, d, ceil_mode):
    assert max(out_size(n, k, s, lo, hi, d, ceil_mode), 0) == count_windows(n, k, s, lo, hi, d, ceil_mode)


@SETTINGS
@given(n=st.integers(1, 300), k=st.integers(1, 11), s=st.integers(1, 5), d=st.integers(1, 3))
def test_same_padding_gives_ceil_n_over_stride(n, k, s, d):
    lo, hi = same_pads(n, k, s, d)
    assert hi - lo in (0, 1)  # the odd pixel goes at the end
    assert out_size(n, k, s, lo, hi, d) == math.ceil(n / s)


@pytest.mark.parametrize("args, floor, ceil", [
    ((5, 2, 2), 2, 3),          # a trailing partial window in ceil mode
    ((6, 2, 2), 3, 3),          # tiles exactly: no difference
    ((5, 2, 2, 1, 1), 3, 3),    # the extra window would start in the right padding: dropped
    ((112, 3, 2), 55, 56),      # GoogLeNet's ceil-mode pools
    ((10, 2, 5), 2, 2),         # the extra window would start past the input: dropped
])
def test_ceil_mode_rule_by_hand(args, floor, ceil):
    assert (out_size(*args), out_size(*args, ceil_mode=True)) == (floor, ceil)


# ---- through the layers -------------------------------------------------------

@SETTINGS
@given(geo=geometry(), g=st.integers(1, 3), cin_per=st.integers(1, 3), cout_per=st.integers(1, 3))
def test_conv_shape_matches_window_count(geo, g, cin_per, cout_per):
    spatial, kernel, stride, dilation, attr, pads = geo
    cin, cout = g * cin_per, g * cout_per
    conv = make("conv", {"out": cout, "kernel": kernel, "stride": stride, "dilation": dilation,
                         "padding": attr, "groups": g})
    want = expected_spatial(spatial, kernel, stride, dilation, pads)
    if min(want) < 1:
        with pytest.raises(LayerError, match=r"kernel \d+ \(dilation \d+, extent \d+\) is larger than the "
                                             r"padded input \d+ along spatial dim \d"):
            conv.infer_shape([(cin, *spatial)])
        return
    shape = conv.infer_shape([(cin, *spatial)])
    assert shape == (cout, *want)
    assert conv.param_shapes([(cin, *spatial)])["weight"] == (cout, cin_per, *kernel)
    assert conv.macs([(cin, *spatial)], shape) == math.prod(shape) * cin_per * math.prod(kernel)


@SETTINGS
@given(geo=geometry(pool="max"), kind=st.sampled_from(["maxpool", "avgpool"]), ceil_mode=st.booleans(),
       default_stride=st.booleans())
def test_pool_shape_matches_window_count(geo, kind, ceil_mode, default_stride):
    spatial, kernel, stride, dilation, attr, pads = geo
    if attr == "same":
        return  # 'same' pads depend on stride; covered for conv
    attrs = {"kernel": kernel, "padding": attr, "ceil_mode": ceil_mode}
    if default_stride:
        stride = kernel  # a pool's stride defaults to its kernel
    else:
        attrs["stride"] = stride
    if kind == "maxpool":
        attrs["dilation"] = dilation
    else:
        dilation = [1] * len(spatial)
    pool = make(kind, attrs)
    want = expected_spatial(spatial, kernel, stride, dilation, pads, ceil_mode)
    if min(want) < 1:
        with pytest.raises(LayerError, match="is larger than the padded input"):
            pool.infer_shape([(2, *spatial)])
        return
    if padding_only_window(spatial, kernel, stride, dilation, pads, want):
        with pytest.raises(LayerError, match=r"leaves windows along spatial dim \d that see only padding"):
            pool.infer_shape([(2, *spatial)])
        return
    assert pool.infer_shape([(2, *spatial)]) == (2, *want)


def padding_only_window(spatial, kernel, stride, dilation, pads, out) -> bool:
    """Brute force: does any pooling window hold no real input element?"""
    return any(not any(0 <= j * s - lo + t * d < n for t in range(k))
               for n, k, s, d, (lo, _), o in zip(spatial, kernel, stride, dilation, pads, out) for j in range(o))


@pytest.mark.parametrize("attrs, shape, message", [
    ({"out": 4, "kernel": 3, "groups": 2}, (3, 8, 8), r"groups=2 does not divide the 3 input channels"),
    ({"out": 3, "kernel": 3, "groups": 2}, (4, 8, 8), r"groups=2 does not divide the 3 output channels"),
    ({"out": 4, "kernel": [3, 3]}, (3, 8), r"attribute 'kernel': expected 1 or 1 values for a 1D input, got 2"),
    ({"out": 4, "kernel": 3, "padding": [1, 1, 1]}, (3, 8, 8), r"expected 1 or 2 entries for a 2D input, got 3"),
    ({"out": 4, "kernel": 3}, (48,), r"expected an input with 1 to 3 spatial dims \(C, \*spatial\), got shape"),
    ({"out": 4, "kernel": 9}, (3, 8, 8), r"kernel 9 \(dilation 1, extent 9\) is larger than the padded input 8"),
    ({"out": 4, "kernel": 3, "dilation": 4}, (3, 8, 8), r"kernel 3 \(dilation 4, extent 9\) is larger"),
])
def test_conv_geometry_errors(attrs, shape, message):
    with pytest.raises(LayerError, match=message):
        make("conv", attrs).infer_shape([shape])


def test_depthwise_groups():
    conv = make("conv", {"kernel": 3, "padding": 1, "groups": "depthwise"})
    assert conv.infer_shape([(32, 7, 7)]) == (32, 7, 7)
    assert conv.param_shapes([(32, 7, 7)])["weight"] == (32, 1, 3, 3)


# ---- against PyTorch ------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _torch_input(torch, c, spatial):
    return torch.zeros((1, c, *spatial))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@SETTINGS
@given(geo=geometry(), g=st.integers(1, 3))
def test_conv_shape_matches_torch(geo, g):
    torch = _torch()
    import torch.nn.functional as F
    spatial, kernel, stride, dilation, attr, pads = geo
    nd = len(spatial)
    conv = make("conv", {"out": 2 * g, "kernel": kernel, "stride": stride, "dilation": dilation,
                         "padding": attr, "groups": g})
    x = _torch_input(torch, g, spatial)
    w = torch.zeros((2 * g, 1, *kernel))
    fn = getattr(F, f"conv{nd}d")
    if attr == "same" and all(s == 1 for s in stride):
        x_pad, pad_arg = x, "same"  # torch's own 'same' (stride 1 only)
    else:
        flat = [p for lo_hi in reversed(pads) for p in lo_hi]  # F.pad: last dim first
        x_pad, pad_arg = F.pad(x, flat), 0
    try:
        want = tuple(fn(x_pad, w, stride=stride, padding=pad_arg, dilation=dilation, groups=g).shape[1:])
    except RuntimeError as e:
        assert "larger than" in str(e) or "Kernel size can't be greater" in str(e), e
        with pytest.raises(LayerError, match="is larger than the padded input"):
            conv.infer_shape([(g, *spatial)])
        return
    assert conv.infer_shape([(g, *spatial)]) == want


@SETTINGS
@given(geo=geometry(pool="max"), kind=st.sampled_from(["max", "avg"]), ceil_mode=st.booleans())
def test_pool_shape_matches_torch(geo, kind, ceil_mode):
    torch = _torch()
    import torch.nn.functional as F
    spatial, kernel, stride, dilation, attr, pads = geo
    nd = len(spatial)
    if kind == "avg":
        dilation = [1] * nd
    # torch pools take symmetric padding of at most half the kernel
    assume(attr != "same" and all(lo == hi <= k // 2 for (lo, hi), k in zip(pads, kernel)))
    attrs = {"kernel": kernel, "stride": stride, "padding": attr, "ceil_mode": ceil_mode}
    if kind == "max":
        attrs["dilation"] = dilation
    layer = make(f"{kind}pool", attrs)
    x = _torch_input(torch, 2, spatial)
    padding = [lo for lo, _ in pads]
    kw = {"dilation": dilation} if kind == "max" else {}
    want = expected_spatial(spatial, kernel, stride, dilation, pads, ceil_mode)
    try:
        y = getattr(F, f"{kind}_pool{nd}d")(x, kernel, stride, padding, ceil_mode=ceil_mode, **kw)
    except RuntimeError as e:
        assert re.search(r"too small|smaller than kernel|output size", str(e)), e
        # torch's 3D avg pool compares the kernel with the unpadded input: a stricter check, not a shape
        assume(min(want) < 1)
        with pytest.raises(LayerError, match="is larger than the padded input"):
            layer.infer_shape([(2, *spatial)])
        return
    if padding_only_window(spatial, kernel, stride, dilation, pads, want):
        # torch returns -inf (max) for such a window; cnngraph refuses it
        with pytest.raises(LayerError, match="that see only padding"):
            layer.infer_shape([(2, *spatial)])
        return
    assert layer.infer_shape([(2, *spatial)]) == tuple(y.shape[1:]) == (2, *want)
