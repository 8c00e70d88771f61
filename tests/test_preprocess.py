"""The spec's `preprocess:` section and `cnngraph.prepare`: torchvision's rules for resize and
centre crop, channels, scale, mean/std; grey, RGBA, 16-bit and EXIF-rotated images handled or
refused with the declaration that would fit; errors with file:line:col."""

import io
import re
import struct
import zlib

import numpy as np
import pytest

import cnngraph
from cnngraph.errors import SpecError
from cnngraph.preprocess import InputError, Preprocess

Image = pytest.importorskip("PIL.Image")

IMAGENET = """
input: [3, 224, 224]
preprocess:
  resize: 256
  center_crop: 224
  mean: [0.485, 0.456, 0.406]
  std: [0.229, 0.224, 0.225]
layers: [relu]
"""


def png(img) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def save(tmp_path, name, img, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_the_section_is_parsed_and_kept():
    g = cnngraph.load(IMAGENET)
    assert g.spec.preprocess == Preprocess(resize=256, center_crop=(224, 224), mean=(0.485, 0.456, 0.406),
                                           std=(0.229, 0.224, 0.225))
    assert cnngraph.load("input: [3, 8, 8]\nlayers: [relu]").spec.preprocess is None


def test_imagenet_pipeline_follows_torchvision(tmp_path):
    """Resize(256) makes the shorter side 256, CenterCrop(224) takes the middle, then (x/255 - mean)/std."""
    g = cnngraph.load(IMAGENET)
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50  # a flat colour survives resizing exactly
    x = cnngraph.prepare(g, save(tmp_path, "flat.png", Image.fromarray(rgb)))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    want = (np.array([200, 100, 50]) / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[:, 0, 0], want, rtol=1e-6)
    assert np.ptp(x.reshape(3, -1), axis=1).max() < 1e-6
    # the crop window: 300x400 -> 256x341 (int(256 * 400 / 300)), then left = round(117 / 2) = 58, top = 16
    ramp = np.tile((np.arange(400) % 256).astype(np.uint8)[None, :, None], (300, 1, 3))
    img = Image.fromarray(ramp)
    want = np.asarray(img.resize((341, 256), Image.BILINEAR), np.float32)[16:240, 58:282, 0] / 255
    got = cnngraph.prepare(g, img)[0] * 0.229 + 0.485
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_exact_fit_needs_no_section_and_anything_else_says_what_to_declare(tmp_path):
    g = cnngraph.load("input: [1, 4, 6]\nlayers: [relu]")
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    np.testing.assert_array_equal(cnngraph.prepare(g, save(tmp_path, "g.png", Image.fromarray(grey)))[0],
                                  grey.astype(np.float32) / 255)
    with pytest.raises(InputError, match=r"rgb\.png: the image is 6x4 RGB, the net takes 1x4x6 — declare it in the "
                                         r"spec: preprocess: \{channels: grey\}$"):
        cnngraph.prepare(g, save(tmp_path, "rgb.png", Image.new("RGB", (6, 4))))
    with pytest.raises(InputError, match=r"big\.png: the image is 12x8 grey, the net takes 1x4x6 — declare it in the "
                                         r"spec: preprocess: \{resize: \[4, 6\]\}$"):
        cnngraph.prepare(g, save(tmp_path, "big.png", Image.new("L", (12, 8))))


def test_grey_rgba_bgr_and_palette(tmp_path):
    rgb_net = cnngraph.load("input: [3, 2, 2]\npreprocess: {channels: rgb}\nlayers: [relu]")
    grey = Image.fromarray(np.array([[0, 51], [102, 255]], np.uint8))
    x = cnngraph.prepare(rgb_net, grey)
    assert np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])  # grey -> three equal channels
    np.testing.assert_allclose(x[0], [[0, 0.2], [0.4, 1]], rtol=1e-6)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    np.testing.assert_array_equal(cnngraph.prepare(rgb_net, Image.fromarray(rgba))[:, 0, 0], [1, 0, 0])  # alpha dropped
    with pytest.raises(InputError, match=r"the image is 2x2 RGBA, the net takes 3x2x2 — declare it in the spec: "
                                         r"preprocess: \{channels: rgb\}"):
        cnngraph.prepare(cnngraph.load("input: [3, 2, 2]\nlayers: [relu]"), Image.fromarray(rgba))
    bgr_net = cnngraph.load("input: [3, 2, 2]\npreprocess: {channels: bgr, scale: 1}\nlayers: [relu]")
    np.testing.assert_array_equal(cnngraph.prepare(bgr_net, Image.fromarray(rgba))[:, 0, 0], [0, 0, 255])
    pal = Image.fromarray(rgba[..., :3]).convert("P")
    np.testing.assert_array_equal(cnngraph.prepare(rgb_net, pal)[:, 0, 0], [1, 0, 0])


def test_exif_orientation_is_applied(tmp_path):
    """A phone's portrait photo: stored 3 wide and 2 high, with orientation 6 (rotate 90 degrees clockwise)."""
    pixels = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "portrait.png", img, exif=exif.tobytes())
    x = cnngraph.prepare(cnngraph.load("input: [1, 3, 2]\nlayers: [relu]"), path)
    np.testing.assert_array_equal(x[0] * 255, np.rot90(pixels, -1).astype(np.float32))


def png16_rgb(arr) -> bytes:
    """A 16-bit RGB PNG, written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_sixteen_bit_grey_is_read_fully_and_sixteen_bit_colour_is_refused(tmp_path):
    deep = (np.arange(12).reshape(3, 4) * 5000).astype(np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(png(Image.fromarray(deep)))
    x = cnngraph.prepare(cnngraph.load("input: [1, 3, 4]\nlayers: [relu]"), path)
    np.testing.assert_allclose(x[0], deep / 65535, rtol=1e-6)  # 16 bits, not 8
    x = cnngraph.prepare(cnngraph.load("input: [1, 3, 2]\npreprocess: {resize: [3, 2]}\nlayers: [relu]"), path)
    assert x.shape == (1, 3, 2) and x.max() > 0.5  # resized in float, still scaled by 65535
    (tmp_path / "deep-rgb.png").write_bytes(png16_rgb(np.full((2, 2, 3), 40000, np.uint16)))
    with pytest.raises(InputError, match=r"deep-rgb\.png: a 16-bit colour image, which Pillow reads as 8 bits per "
                                         r"channel — save it with 8 bits per channel, or as \.npy"):
        cnngraph.prepare(cnngraph.load("input: [3, 2, 2]\nlayers: [relu]"), tmp_path / "deep-rgb.png")


def test_corrupt_truncated_and_bomb_images_are_refused(tmp_path):
    g = cnngraph.load("input: [3, 8, 8]\nlayers: [relu]")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match=r"junk\.jpg: cannot decode image: "):
        cnngraph.prepare(g, tmp_path / "junk.jpg")
    whole = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)))
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut\.png: cannot decode image"):
        cnngraph.prepare(g, tmp_path / "cut.png")
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(InputError, match=r"bomb\.png: cannot decode image: Image size \(10000000000 pixels\) exceeds "
                                         r"limit"):  # Pillow's own check, before any pixel is decoded
        cnngraph.prepare(g, tmp_path / "bomb.png")


def test_a_crop_unlike_the_input_is_refused_per_image():
    g = cnngraph.load("input: [1, 8, 8]\npreprocess: {center_crop: 6}\nlayers: [relu]")
    with pytest.raises(InputError, match=r"the image is 6x6 after preprocessing, the net takes 8x8 — declare it in "
                                         r"the spec: preprocess: \{resize: \[8, 8\]\}, or a resize and a center_crop"):
        cnngraph.prepare(g, np.zeros((10, 10), np.uint8))


def test_arrays_and_other_sources():
    g = cnngraph.load("input: [3, 1, 2]\nlayers: [relu]")
    hwc = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_array_equal(cnngraph.prepare(g, hwc), [[[1, 0]], [[0, 0]], [[0, 1]]])
    with pytest.raises(InputError, match=r"expected an image as a uint8 array of shape \(H, W\) or \(H, W, C\), got "
                                         r"dtype float32 .* pass it to the net as it is"):
        cnngraph.prepare(g, hwc.astype(np.float32))
    with pytest.raises(TypeError, match=r"expected a path, a Pillow image or an image array, got int"):
        cnngraph.prepare(g, 3)


@pytest.mark.parametrize("section, message", [
    ("{resise: 256}", r"3:14: unknown key 'resise' in 'preprocess' \(expected resize, .*\) — did you mean 'resize'\?"),
    ("{channels: grey}", r"3:24: 'preprocess' channels: 'grey' has 1 channel\(s\), the input has 3"),
    ("{channels: RGB}", (r"3:24: 'preprocess' channels: expected one of rgb, bgr, grey, rgba, got 'RGB' — did you "
                         r"mean 'rgb'\?")),
    ("{mean: [0.5, 0.5]}", r"3:20: 'preprocess' mean: expected 1 or 3 values \(one per channel\), got 2"),
    ("{std: 0}", r"3:19: 'preprocess' std: expected positive values, got \[0\.0\]"),
    ("{resize: [256]}", r"3:22: 'preprocess' resize: expected a positive integer or \[height, width\], got \[256\]"),
    ("{sample_rate: 16000}", (r"3:27: 'preprocess' sample_rate: expected an audio input \[C, L\] for "
                              r"'sample_rate', got input \[3, 224, 224\]")),
    ("[resize]", r"3:13: expected 'preprocess' to be a mapping"),
])
def test_section_mistakes_name_the_position(section, message):
    text = f"input: [3, 224, 224]\nlayers: [relu]\npreprocess: {section}\n"
    with pytest.raises(SpecError, match="^<string>:" + message):
        cnngraph.load(text)


def test_bundled_imagenet_specs_declare_torchvision_preprocessing():
    for name in ("resnet18", "resnet50", "vgg16", "mobilenet_v2", "googlenet"):
        pre = cnngraph.load(name).spec.preprocess
        assert (pre.resize, pre.center_crop, pre.mean, pre.std) == (
            256, (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), name
    assert re.search(r"^preprocess:", cnngraph.load("lenet5").spec.source, re.MULTILINE) is None


def test_prepare_takes_a_compiled_net_too():
    """`CompiledNet.preprocess(image)` delegates here: the net's graph carries the spec's section."""
    net = cnngraph.compile("input: [1, 2, 2]\npreprocess: {scale: 16}\nlayers: [relu]")
    np.testing.assert_array_equal(cnngraph.prepare(net, np.array([[0, 16], [8, 4]], np.uint8)),
                                  [[[0, 1], [0.5, 0.25]]])
