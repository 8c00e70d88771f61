"""From a file to the net's input: images (Pillow), audio (`.wav`) and `.npy` samples,
decoded, resized, cropped, scaled and normalised as the spec's `preprocess:` section says.

    preprocess:
      resize: 256                   # shorter side to 256 (or [H, W]), bilinear as torchvision
      center_crop: 224              # then the middle 224x224 (or [H, W])
      channels: rgb                 # rgb, bgr, grey or rgba: what the input channels hold
      mean: [0.485, 0.456, 0.406]   # after dividing by `scale` (default: 255 for 8-bit, 65535 for 16-bit)
      std: [0.229, 0.224, 0.225]

Without the section, an image whose size and channel count already match the input
is used as it is, scaled to [0, 1]; anything else is refused with the declaration
that would make it fit.

>>> import numpy as np
>>> from cnngraph.spec import loads
>>> spec = loads("input: [1, 2, 3]\\nlayers: [relu]")
>>> prepare(spec, np.array([[0, 51, 255], [102, 0, 0]], np.uint8))
array([[[0. , 0.2, 1. ],
        [0.4, 0. , 0. ]]], dtype=float32)
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import CnnGraphError, Pos, SpecError, clip, did_you_mean, escape

KEYS = ("resize", "center_crop", "channels", "interpolation", "scale", "mean", "std", "sample_rate", "fit")
CHANNELS = {"rgb": 3, "bgr": 3, "grey": 1, "rgba": 4}
INTERPOLATION = ("bilinear", "nearest", "bicubic")
FITS = ("exact", "pad_or_crop")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
AUDIO_EXTENSIONS = (".wav",)
MAX_INPUT_BYTES = 1 << 30  # one decoded input (float32); larger is refused before decoding


class InputError(CnnGraphError):
    """An input that cannot be read or does not fit the net (the message says what to declare)."""


@dataclass(frozen=True)
class Preprocess:
    """A validated `preprocess:` section (see the module doc and docs/spec.md)."""

    resize: int | tuple[int, int] | None = None
    center_crop: tuple[int, int] | None = None
    channels: str | None = None
    interpolation: str = "bilinear"
    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    sample_rate: int | None = None
    fit: str = "exact"


# ---- the spec section -----------------------------------------------------------

def parse_section(section, pos: Pos, input_shape: tuple[int, ...]) -> Preprocess:
    """Validate a `preprocess:` mapping against the input shape; errors name file:line:col.

    >>> from cnngraph.spec import load_yaml
    >>> doc = load_yaml("p: {resize: 256, center_crop: 224, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}")
    >>> parse_section(doc["p"], None, (3, 224, 224))
    Preprocess(resize=256, center_crop=(224, 224), channels=None, interpolation='bilinear', scale=None, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), sample_rate=None, fit='exact')
    """
    if not isinstance(section, dict):
        raise SpecError(f"expected 'preprocess' to be a mapping (resize, center_crop, channels, ...), got "
                        f"{type(section).__name__}", pos=pos)
    where = getattr(section, "val_pos", {})
    for k in section:
        if k not in KEYS:
            raise SpecError(f"unknown key '{escape(k)}' in 'preprocess' (expected {', '.join(KEYS)})",
                            pos=getattr(section, "key_pos", {}).get(k, pos), hint=did_you_mean(k, KEYS))
    c, spatial = input_shape[0], input_shape[1:]

    def err(key, msg, hint=None):
        return SpecError(f"'preprocess' {key}: {msg}", pos=where.get(key, pos), hint=hint)

    def size_pair(key):
        v = section[key]
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
        if (isinstance(v, list) and len(v) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)):
            return tuple(v)
        raise err(key, f"expected a positive integer or [height, width], got {clip(repr(v), 60)}")

    image_keys = [k for k in ("resize", "center_crop", "channels", "interpolation") if k in section]
    audio_keys = [k for k in ("sample_rate", "fit") if k in section]
    if image_keys and len(spatial) != 2:
        raise err(image_keys[0], f"expected an image input [C, H, W] for '{image_keys[0]}', got input "
                                 f"{list(input_shape)}")
    if audio_keys and len(spatial) != 1:
        raise err(audio_keys[0], f"expected an audio input [C, L] for '{audio_keys[0]}', got input "
                                 f"{list(input_shape)}")
    out = {}
    if "resize" in section:
        out["resize"] = size_pair("resize")
    if "center_crop" in section:
        v = size_pair("center_crop")
        out["center_crop"] = (v, v) if isinstance(v, int) else v  # a crop unlike the input is refused per image
    if "channels" in section:
        v = section["channels"]
        if v not in CHANNELS:
            raise err("channels", f"expected one of {', '.join(CHANNELS)}, got {clip(repr(v), 40)}",
                      hint=did_you_mean(v, CHANNELS) if isinstance(v, str) else None)
        if CHANNELS[v] != c:
            raise err("channels", f"'{v}' has {CHANNELS[v]} channel(s), the input has {c}")
        out["channels"] = v
    if "interpolation" in section:
        v = section["interpolation"]
        if v not in INTERPOLATION:
            raise err("interpolation", f"expected one of {', '.join(INTERPOLATION)}, got {clip(repr(v), 40)}")
        out["interpolation"] = v
    if "scale" in section:
        out["scale"] = _positive(section["scale"], lambda m: err("scale", m))
    for key in ("mean", "std"):
        if key in section:
            v = section[key]
            vals = v if isinstance(v, list) else [v]
            nums = tuple(_number(x, lambda m, key=key: err(key, m)) for x in vals)
            if len(nums) not in (1, c):
                raise err(key, f"expected 1 or {c} values (one per channel), got {len(nums)}")
            if key == "std" and any(x <= 0 for x in nums):
                raise err(key, f"expected positive values, got {list(nums)}")
            out[key] = nums
    if "sample_rate" in section:
        v = section["sample_rate"]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise err("sample_rate", f"expected a positive integer (samples per second), got {clip(repr(v), 40)}")
        out["sample_rate"] = v
    if "fit" in section:
        if section["fit"] not in FITS:
            raise err("fit", f"expected one of {', '.join(FITS)}, got {clip(repr(section['fit']), 40)}")
        out["fit"] = section["fit"]
    return Preprocess(**out)


def _number(v, err) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise err(f"expected a number, got {clip(repr(v), 40)}")
    return float(v)


def _positive(v, err) -> float:
    x = _number(v, err)
    if x <= 0:
        raise err(f"expected a positive number, got {v}")
    return x


# ---- applying it ----------------------------------------------------------------

def _spec_of(net):
    """A Graph, a NetSpec or a CompiledNet -> (input shape, Preprocess or None)."""
    spec = getattr(net, "spec", None)
    if spec is None and hasattr(net, "graph"):
        spec = net.graph.spec
    if spec is None:
        spec = net
    if not hasattr(spec, "input_shape"):
        raise TypeError(f"expected a Graph, NetSpec or compiled net, got {type(net).__name__}")
    return tuple(spec.input_shape), getattr(spec, "preprocess", None)


def prepare(net, source) -> np.ndarray:
    """One input for `net` (a Graph, NetSpec or CompiledNet), as float32 `(C, *spatial)`.

    `source`: a path (an image, a `.wav`, or a `.npy` holding one sample), a Pillow
    image, or an integer array holding an image as `(H, W)` or `(H, W, C)`.
    `CompiledNet.preprocess(image)` calls this.

    >>> from cnngraph.spec import loads
    >>> prepare(loads("input: [3, 2, 2]\\nlayers: [relu]"), np.zeros((4, 4, 3), np.uint8))
    Traceback (most recent call last):
    cnngraph.preprocess.InputError: the image is 4x4 RGB, the net takes 3x2x2 — declare it in the spec: preprocess: {resize: [2, 2]}
    """
    shape, pre = _spec_of(net)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npy":
            from .data import read_npy
            return _sample(read_npy(path), shape, path)
        if ext in AUDIO_EXTENSIONS:
            return _audio(pre, shape, path)
        return _image(pre, shape, _open_image(path), path)
    if isinstance(source, np.ndarray):
        if source.dtype.kind in "ub" and source.ndim in (2, 3):
            from PIL import Image
            arr = source.astype(np.uint8) if source.dtype == bool else source
            if arr.dtype == np.uint16 and arr.ndim == 2:
                return _image(pre, shape, Image.fromarray(arr), "the array")
            if arr.dtype != np.uint8:
                raise InputError(f"expected an 8-bit image array, got dtype {arr.dtype}")
            return _image(pre, shape, Image.fromarray(arr), "the array")
        raise InputError(f"expected an image as a uint8 array of shape (H, W) or (H, W, C), got dtype "
                         f"{source.dtype} and shape {source.shape} — a float array is input data: pass it to "
                         f"the net as it is")
    if type(source).__module__.startswith("PIL."):
        return _image(pre, shape, source, "the image")
    raise TypeError(f"expected a path, a Pillow image or an image array, got {type(source).__name__}")


def _sample(x: np.ndarray, shape, name) -> np.ndarray:
    if tuple(x.shape) == shape:
        return np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape and x.shape[0] == 1:
        return np.ascontiguousarray(x[0], dtype=np.float32)
    raise InputError(f"{escape(name)}: expected one sample of shape {shape}, got {tuple(x.shape)}")


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise InputError("reading images needs Pillow: pip install 'cnngraph[images]'") from None
    return Image, ImageOps


def _open_image(path: str):
    Image, _ = _pil()
    try:
        with warnings.catch_warnings():  # a large image: refused below, with the bytes named
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except FileNotFoundError:
        raise InputError(f"no such file: {escape(path)}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # UnidentifiedImageError: OSError
        raise InputError(f"{escape(path)}: cannot decode image: {clip(escape(e), 200)}") from None
    return img


_MODES = {"L": ("grey", 1), "I;16": ("grey16", 1), "I;16B": ("grey16", 1), "I;16L": ("grey16", 1),
          "I;16N": ("grey16", 1), "RGB": ("rgb", 3), "RGBA": ("rgba", 4)}


def _describe(img) -> str:
    w, h = img.size
    names = {"L": "grey", "I;16": "16-bit grey", "I;16B": "16-bit grey", "RGB": "RGB", "RGBA": "RGBA"}
    return f"{w}x{h} {names.get(img.mode, img.mode)}"


def _image(pre: Preprocess | None, shape, img, name: str) -> np.ndarray:
    Image, ImageOps = _pil()
    if len(shape) != 3:
        raise InputError(f"{escape(name)}: an image, but the net takes input {list(shape)} (not [C, H, W])")
    c = shape[0]
    try:
        if any(";16" in str(getattr(t, "args", "")) for t in getattr(img, "tile", []) or []) \
                and img.mode in ("RGB", "RGBA"):
            raise InputError(f"{escape(name)}: a 16-bit colour image, which Pillow reads as 8 bits per channel — "
                             f"save it with 8 bits per channel, or as .npy")
        iw, ih = img.size
        if iw * ih * max(len(img.getbands()), c) * 4 > MAX_INPUT_BYTES:
            raise InputError(f"{escape(name)}: a {iw}x{ih} image needs "
                             f"{iw * ih * max(len(img.getbands()), c) * 4:,} bytes as float32, more than the "
                             f"{MAX_INPUT_BYTES:,} allowed for one input")
        img = ImageOps.exif_transpose(img)  # phones store portrait photos sideways plus a flag
        if img.mode in ("P", "PA"):
            img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
        elif img.mode == "1":
            img = img.convert("L")
        elif img.mode == "I" and np.asarray(img).max(initial=0) <= 65535:
            img = Image.fromarray(np.asarray(img).astype(np.uint16))  # 16-bit PNGs on some Pillow versions
        if pre is None:
            return _as_is(img, shape, name)
        return _declared(pre, img, shape, name)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # truncated or corrupt data
        raise InputError(f"{escape(name)}: cannot decode image: {clip(escape(e), 200)}") from None


def _as_is(img, shape, name) -> np.ndarray:
    """No `preprocess:` section: the image must already fit; it is only scaled to [0, 1]."""
    c, h, w = shape
    kind, bands = _MODES.get(img.mode, (img.mode, len(img.getbands())))
    if bands != c or img.size != (w, h) or kind not in ("grey", "grey16", "rgb", "rgba"):
        want = {1: "grey", 3: "rgb", 4: "rgba"}.get(c)
        decl = []
        if want and bands != c:
            decl.append(f"channels: {want}")
        if img.size != (w, h):
            decl.append(f"resize: [{h}, {w}]")
        hint = f"declare it in the spec: preprocess: {{{', '.join(decl)}}}" if decl and want else \
            "convert the input to what the net takes"
        raise InputError(f"{escape(name)}: the image is {_describe(img)}, the net takes {c}x{h}x{w} — {hint}"
                         if name not in ("the array", "the image") else
                         f"the image is {_describe(img)}, the net takes {c}x{h}x{w} — {hint}")
    arr = np.asarray(img)
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    arr = arr.astype(np.float32) / np.float32(scale)
    return np.ascontiguousarray(arr.reshape(h, w, c).transpose(2, 0, 1))


_RESAMPLE = {"bilinear": 2, "nearest": 0, "bicubic": 3}  # PIL.Image.Resampling values


def _declared(pre: Preprocess, img, shape, name) -> np.ndarray:
    """Channels, resize, centre crop, scale, mean/std: torchvision's order and rules."""
    c, h, w = shape
    target = pre.channels or {1: "grey", 3: "rgb", 4: "rgba"}.get(c)
    if target is None:
        raise InputError(f"{escape(name)}: an image, but the net takes {c} channels; images have 1, 3 or 4")
    sixteen = img.mode.startswith("I;16")
    if sixteen:  # resize and crop in float, keep the 16-bit range
        if target != "grey" and target not in ("rgb", "bgr"):
            raise InputError(f"{escape(name)}: a 16-bit grey image cannot give {target}")
        img = img.convert("I").convert("F") if img.mode != "F" else img
    else:
        mode = {"grey": "L", "rgb": "RGB", "bgr": "RGB", "rgba": "RGBA"}[target]
        if img.mode != mode:
            img = img.convert(mode)  # RGBA -> RGB drops alpha; RGB -> L is ITU-R 601 luma
    resample = _RESAMPLE[pre.interpolation]
    if pre.resize is not None:
        iw, ih = img.size
        if isinstance(pre.resize, int):  # the shorter side, as torchvision.transforms.Resize(int)
            s = pre.resize
            nw, nh = (s, int(s * ih / iw)) if iw <= ih else (int(s * iw / ih), s)
        else:
            nh, nw = pre.resize
        if (nw, nh) != (iw, ih):
            img = img.resize((nw, nh), resample=resample)
    if pre.center_crop is not None:
        ch, cw = pre.center_crop
        iw, ih = img.size
        if ch > ih or cw > iw:
            raise InputError(f"{escape(name)}: the image is {iw}x{ih} after resizing, smaller than the crop "
                             f"{cw}x{ch} — resize it to at least the crop")
        top, left = round((ih - ch) / 2.0), round((iw - cw) / 2.0)  # torchvision's CenterCrop
        img = img.crop((left, top, left + cw, top + ch))
    if img.size != (w, h):
        raise InputError(f"{escape(name)}: the image is {img.size[0]}x{img.size[1]} after preprocessing, the net "
                         f"takes {w}x{h} — declare it in the spec: preprocess: {{resize: [{h}, {w}]}}, or a "
                         f"resize and a center_crop")
    arr = np.asarray(img, dtype=np.float32)
    scale = pre.scale if pre.scale is not None else (65535.0 if sixteen else 255.0)
    arr = arr / np.float32(scale)
    arr = arr.reshape(h, w, -1)
    if sixteen and c == 3:
        arr = np.repeat(arr, 3, axis=2)
    if target == "bgr":
        arr = arr[:, :, ::-1]
    if pre.mean is not None:
        arr = arr - np.asarray(pre.mean, np.float32)
    if pre.std is not None:
        arr = arr / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


# ---- audio ----------------------------------------------------------------------

def _audio(pre: Preprocess | None, shape, path: str) -> np.ndarray:
    """A `.wav` file as (channels, samples) in [-1, 1]: PCM via the standard library,
    float WAV through soundfile when it is installed."""
    import wave
    if len(shape) != 2:
        raise InputError(f"{escape(path)}: audio, but the net takes input {list(shape)} (not [C, L])")
    c, length = shape
    try:
        with wave.open(path, "rb") as f:
            channels, width, rate, frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            if frames * channels * 4 > MAX_INPUT_BYTES:
                raise InputError(f"{escape(path)}: {frames:,} frames of {channels} channel(s) need "
                                 f"{frames * channels * 4:,} bytes as float32, more than the {MAX_INPUT_BYTES:,} "
                                 f"allowed for one input")
            raw = f.readframes(frames)
    except FileNotFoundError:
        raise InputError(f"no such file: {escape(path)}") from None
    except (wave.Error, EOFError, OSError) as e:
        if "unknown format: 3" in str(e):  # IEEE float WAV: the wave module reads PCM only
            data, rate = _soundfile(path)
            channels = data.shape[0]
        else:
            raise InputError(f"{escape(path)}: cannot decode audio: {clip(escape(e), 200)}") from None
    else:
        if len(raw) != frames * channels * width:
            raise InputError(f"{escape(path)}: cannot decode audio: {len(raw):,} bytes of samples, the header "
                             f"says {frames * channels * width:,}")
        data = _pcm(raw, width).reshape(-1, channels).T
    if pre is not None and pre.sample_rate is not None and rate != pre.sample_rate:
        raise InputError(f"{escape(path)}: {rate} samples per second, the spec declares {pre.sample_rate} — "
                         f"resample the file (cnngraph does not)")
    if channels != c:
        raise InputError(f"{escape(path)}: {channels} channel(s), the net takes {c}")
    n = data.shape[1]
    if n != length:
        if pre is None or pre.fit == "exact":
            raise InputError(f"{escape(path)}: {n:,} samples, the net takes {length:,} — declare "
                             f"'preprocess: {{fit: pad_or_crop}}' to zero-pad or cut at the end")
        data = data[:, :length] if n > length else np.pad(data, ((0, 0), (0, length - n)))
    data = data.astype(np.float32)
    if pre is not None:
        if pre.scale is not None:
            data = data / np.float32(pre.scale)
        if pre.mean is not None:
            data = data - np.asarray(pre.mean, np.float32)[:, None]
        if pre.std is not None:
            data = data / np.asarray(pre.std, np.float32)[:, None]
    return np.ascontiguousarray(data, dtype=np.float32)


def _pcm(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM samples -> float64 in [-1, 1) (8-bit WAV is unsigned)."""
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, "<i2") / 32768.0
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)
    if width == 4:
        return np.frombuffer(raw, "<i4") / float(1 << 31)
    raise InputError(f"expected 8, 16, 24 or 32-bit PCM samples, got {8 * width}-bit")


def _soundfile(path):
    try:
        import soundfile
    except ImportError:
        raise InputError(f"{escape(path)}: a floating-point WAV file; reading it needs soundfile "
                         f"(pip install soundfile), or save it as 16-bit PCM") from None
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except RuntimeError as e:
        raise InputError(f"{escape(path)}: cannot decode audio: {clip(escape(e), 200)}") from None
    return data.T, rate


def is_supported(path: str) -> bool:
    """Whether `cnngraph run` reads files with this extension.

    >>> is_supported("a/b.JPG"), is_supported("notes.txt")
    (True, False)
    """
    ext = os.path.splitext(path)[1].lower()
    return ext in IMAGE_EXTENSIONS or ext in AUDIO_EXTENSIONS or ext == ".npy"

