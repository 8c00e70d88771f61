"""Weights: seeded PyTorch-style initialisation, checking, `.npz`/`.safetensors`/`.pt` I/O.

Weights are a flat mapping `"<layer>.<param>" -> ndarray` with PyTorch's names
and layouts (conv weight `(out, in/groups, *kernel)`, linear `(out, in)`,
batchnorm `weight`, `bias`, `running_mean`, `running_var`), so a PyTorch
state_dict of the same architecture (same layer names) loads directly; so do
PyTorch's other forms of the same arrays (a bare `nn.Parameter` named after its
module, an `nn.Linear` weight for a 1x1 conv: see `_torch_forms`).

Files are checked before anything large is allocated: an `.npz` member's
declared size and `.npy` header are read first, so a zip bomb or a header that
claims terabytes is refused with the bytes named.

>>> from cnngraph.spec import loads
>>> from cnngraph.graph import build
>>> g = build(loads("input: [4]\\nlayers: [{linear: {out: 2, name: fc}}]"))
>>> sorted((k, v.shape) for k, v in init(g, seed=0).items())
[('fc.bias', (2,)), ('fc.weight', (2, 4))]
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from .errors import CnnGraphError, clip, escape
from .graph import Graph
from .layers import Fusion

IGNORED = ("num_batches_tracked",)  # PyTorch bookkeeping with no effect at inference
MAX_BYTES = 1 << 34  # a weights file's arrays, unpacked (16 GiB); `load(max_bytes=)` changes it
MAX_ARRAYS = 1 << 20
SHOWN = 3  # mismatches spelled out in a message; the rest are counted
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")  # where checkpoints keep it


class WeightsError(CnnGraphError):
    """Weights that do not fit the network (names or shapes), or an unreadable weights file.

    `problems` lists every mismatch; the message shows the first few and counts the rest.
    """

    def __init__(self, msg: str, problems: tuple[str, ...] = ()):
        super().__init__(msg)
        self.problems = problems


def expected(graph: Graph) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer the graph needs, with its shape."""
    out = {}
    for node in graph.nodes:
        for p, shape in {**node.params, **node.buffers}.items():
            out[f"{node.name}.{p}"] = tuple(shape)
    return out


def init(graph: Graph, seed: int = 0, gain: float = 1.0) -> dict[str, np.ndarray]:
    """PyTorch's default initialisation, reproducible with `seed`.

    `gain` scales conv and linear weights: PyTorch's default shrinks the signal
    about 3x in variance per layer, so deep nets end up printing their last bias;
    `gain=6 ** 0.5` gives He initialisation, which keeps it alive (the tests use it).
    The generator is PCG64DXSM: its float32 draws are 4x faster than PCG64's
    (VGG-16's 138M weights in 0.3 s instead of 1.3 s, which `cnngraph compile` feels).
    """
    rng = np.random.Generator(np.random.PCG64DXSM(seed))
    out = {}
    for node in graph.nodes:
        for p, arr in node.layer.init_params(list(node.in_shapes), rng).items():
            if p == "weight" and node.layer.category is Fusion.ANCHOR and gain != 1.0:
                arr = arr * np.float32(gain)
            out[f"{node.name}.{p}"] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def _as_numpy(v) -> np.ndarray:
    """An array from a numpy array, a number or a torch tensor (also one that requires grad,
    or bfloat16, which numpy lacks), without importing torch."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        v = v.detach().cpu()
        if getattr(v, "is_floating_point", lambda: False)() and str(getattr(v, "dtype", "")) not in (
                "torch.float32", "torch.float64", "torch.float16"):
            v = v.float()
        return v.numpy()
    return np.asarray(v)


def _summary(graph_name: str, problems: list[str], hint: str | None = None) -> str:
    shown = "; ".join(problems[:SHOWN])
    more = f"; and {len(problems) - SHOWN:,} more" if len(problems) > SHOWN else ""
    kinds = {k: sum(p.startswith(k) for p in problems) for k in ("missing", "unexpected")}
    shapes = len(problems) - kinds["missing"] - kinds["unexpected"]
    counts = ", ".join(f"{n:,} {k}" for k, n in (*kinds.items(), ("of the wrong shape", shapes)) if n)
    msg = (f"weights do not fit network '{escape(graph_name)}': {len(problems):,} problem(s) ({counts}): "
           f"{shown}{more}")
    return msg + (f" — {hint}" if hint else "")


def _names_hint(want: dict, missing: list[str], unexpected: list[str]) -> str | None:
    """Why names do not match, when it is one simple thing: a prefix (`module.` from
    DataParallel, `model.` from a wrapper) on one side, or no name matching at all."""
    if not missing or not unexpected:
        return None
    got = set(unexpected)
    for m in missing[:20]:
        for u in unexpected:
            if u.endswith(m) and u != m:
                prefix = u[: len(u) - len(m)]
                if sum(x.startswith(prefix) and x[len(prefix):] in want for x in got) >= len(missing) // 2:
                    return (f"the file's names start with '{escape(prefix)}', the network's do not: load it with "
                            f"{{k.removeprefix('{escape(prefix)}'): v for k, v in weights.items()}}")
            if m.endswith(u) and u != m:
                prefix = m[: len(m) - len(u)]
                return f"the network's names start with '{escape(prefix)}', the file's do not"
    if len(missing) == len(want):
        first = next(iter(want))
        return f"no name matches: weights are named '<layer>.<param>' after the spec's layers, e.g. '{escape(first)}'"
    return None


def check(graph: Graph, weights: Mapping) -> dict[str, np.ndarray]:
    """Validate names, shapes and values; returns contiguous float32 copies.

    Every mismatch is collected (the message shows the first few and counts the rest);
    NaN, infinity and negative batchnorm variances are refused, naming the array.

    >>> from cnngraph import load
    >>> g = load("input: [2]\\nlayers: [{batchnorm: {name: bn}}]")
    >>> w = init(g)
    >>> w["bn.running_var"][1] = -1
    >>> check(g, w)
    Traceback (most recent call last):
    cnngraph.weights.WeightsError: 'bn.running_var': 1 negative value (the first, -1.0, at index (1,)) — a variance is never negative
    """
    if not isinstance(weights, Mapping):
        raise WeightsError(f"expected weights as a mapping of names to arrays, got {type(weights).__name__}")
    want = expected(graph)
    got = {}
    for k, v in weights.items():
        if not isinstance(k, str):
            raise WeightsError(f"expected weight names as strings, got {clip(repr(k), 60)}")
        if k.rsplit(".", 1)[-1] in IGNORED:
            continue
        try:
            got[k] = _as_numpy(v)
        except (TypeError, ValueError, RuntimeError) as e:
            raise WeightsError(f"'{clip(escape(k), 80)}': expected an array, got {type(v).__name__} ({e})") from None
    _torch_forms(graph, want, got)
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    problems = [f"missing '{escape(k)}' {want[k]}" for k in missing]
    problems += [f"'{escape(k)}': expected shape {shape}, got {tuple(got[k].shape)}"
                 for k, shape in want.items() if k in got and tuple(got[k].shape) != shape]
    problems += [f"unexpected '{clip(escape(k), 80)}' {tuple(got[k].shape)}" for k in unexpected]
    if problems:
        raise WeightsError(_summary(graph.name, problems, _names_hint(want, missing, unexpected)), tuple(problems))
    out = {}
    for k in want:
        a = got[k]
        if a.dtype.kind not in "fiub":
            raise WeightsError(f"'{escape(k)}': expected a numeric array, got dtype {a.dtype}")
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused just below
            a = np.ascontiguousarray(a, dtype=np.float32)
        _check_values(k, a)
        out[k] = a
    return out


def _torch_forms(graph: Graph, want: dict, got: dict) -> None:
    """Take PyTorch's forms of the arrays `want` names, in place: a bare parameter named after the layer
    (`features.1.0.layer_scale` for that layer_scale's weight, see `Layer.torch_bare_param`), and
    shapes that differ from the expected ones by trailing 1s only: nn.Linear's (out, in) weight for a
    1x1 conv's (out, in, 1, 1) (a channels-last MLP written as 1x1 convs), a (C, 1, 1) scale for (C,).
    Those hold the same values in the same order, so they are reshaped; nothing else is.

    >>> from cnngraph import load
    >>> g = load("input: [2, 4, 4]\\nlayers: [{conv: {name: fc, out: 3, kernel: 1}}, {layer_scale: {name: ls}}]")
    >>> got = {"fc.weight": np.ones((3, 2)), "fc.bias": np.zeros(3), "ls": np.ones((3, 1, 1))}
    >>> _torch_forms(g, expected(g), got)
    >>> sorted((k, v.shape) for k, v in got.items())
    [('fc.bias', (3,)), ('fc.weight', (3, 2, 1, 1)), ('ls.weight', (3,))]
    """
    for node in graph.nodes:
        p = node.layer.torch_bare_param
        key = f"{node.name}.{p}"
        if p and key in want and key not in got and node.name in got and node.name not in want:
            got[key] = got.pop(node.name)
    for k, shape in want.items():
        a = got.get(k)
        if a is None or tuple(a.shape) == shape:
            continue
        short, long = sorted((tuple(a.shape), shape), key=len)
        if long[: len(short)] == short and all(d == 1 for d in long[len(short):]):
            got[k] = a.reshape(shape)


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _check_values(name: str, a: np.ndarray) -> None:
    finite = np.isfinite(a)
    if not finite.all():
        nan = int(np.isnan(a).sum())
        inf = a.size - int(finite.sum()) - nan
        what = " and ".join(f"{n:,} {w}" for n, w in ((nan, "NaN"), (inf, "infinite")) if n)
        raise WeightsError(f"'{escape(name)}': {what} value(s) (the first at index {_first(~finite)}) — trained "
                           f"weights have none (a diverged training run, or float64 values beyond float32's range)")
    if name.endswith("running_var") and (a < 0).any():
        neg = a < 0
        n = int(neg.sum())
        raise WeightsError(f"'{escape(name)}': {n:,} negative value{'s' if n > 1 else ''} (the first, "
                           f"{float(a[_first(neg)])}, at index {_first(neg)}) — a variance is never negative")


# ---- files ------------------------------------------------------------------------

def _size_check(path: str, max_bytes: int) -> None:
    if not os.path.isfile(path):
        raise WeightsError(f"cannot read weights {escape(path)}: not a regular file")
    size = os.stat(path).st_size
    if size > max_bytes:
        raise WeightsError(f"cannot read weights {escape(path)}: {size:,} bytes, more than the {max_bytes:,} "
                           f"allowed (load(path, max_bytes=...) to raise it)")


def _npz(path: str, max_bytes: int) -> dict[str, np.ndarray]:
    """An `.npz`, checked before anything is decompressed: member names, declared sizes,
    then each member's `.npy` header against its declared size."""
    from .data import npy_header
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if len(infos) > MAX_ARRAYS:
            raise WeightsError(f"cannot read weights {escape(path)}: {len(infos):,} arrays, expected at most "
                               f"{MAX_ARRAYS:,}")
        names = set()
        for info in infos:
            if not info.filename.endswith(".npy") or info.filename in names or info.is_dir():
                raise WeightsError(f"cannot read weights {escape(path)}: member {clip(escape(info.filename), 80)!r} "
                                   f"is not one .npy array")
            names.add(info.filename)
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise WeightsError(f"cannot read weights {escape(path)}: its arrays unpack to {total:,} bytes, more than "
                               f"the {max_bytes:,} allowed (a zip bomb, or load(path, max_bytes=...) to raise it)")
        out = {}
        for info in infos:
            name = info.filename[:-4]
            with z.open(info) as f:
                shape, fortran, dtype = npy_header(f, f"'{name}' in {path}")  # reads the header only
                if dtype.hasobject or dtype.kind not in "fiub":
                    raise WeightsError(f"'{escape(name)}' in {escape(path)}: expected numbers, got dtype {dtype}")
                nbytes = math.prod(shape) * dtype.itemsize
                header = f.tell()
                if header + nbytes != info.file_size:
                    raise WeightsError(f"'{escape(name)}' in {escape(path)}: its header claims {nbytes:,} bytes of "
                                       f"data, the member holds {info.file_size - header:,}")
                data = f.read(nbytes)
            a = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
            out[name] = (a.reshape(shape[::-1]).T if fortran else a.reshape(shape)).copy()
    return out


def _torch(path: str) -> dict[str, np.ndarray]:
    """A PyTorch `.pt`/`.pth`: a state_dict, or a checkpoint holding one under a usual key."""
    try:
        import torch
    except ImportError:
        raise WeightsError(
            f"reading {escape(path)} needs PyTorch (pip install torch); or convert it once where PyTorch is: "
            f"python -c \"import torch, safetensors.torch as s; "
            f"s.save_file(torch.load('{escape(path)}'), 'weights.safetensors')\"") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # no code from the file is run
    except Exception as e:  # pickle, zip and torch errors alike
        raise WeightsError(f"cannot read weights {escape(path)}: {clip(escape(e), 200)} — if it holds a whole "
                           f"model, save model.state_dict() instead") from None
    if hasattr(obj, "state_dict") and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and not any(hasattr(v, "detach") for v in obj.values()):
        inner = next((obj[k] for k in CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise WeightsError(f"cannot read weights {escape(path)}: a mapping without tensors (keys "
                               f"{clip(escape(', '.join(map(str, obj))), 120)}); expected a state_dict")
        obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(f"cannot read weights {escape(path)}: expected a state_dict, got {type(obj).__name__}")
    return {str(k): _as_numpy(v) for k, v in obj.items() if hasattr(v, "detach")}


def load(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> dict[str, np.ndarray]:
    """Read `.npz`, `.safetensors` or PyTorch `.pt`/`.pth` into a name -> array mapping.

    Sizes are checked before reading: the file, and for `.npz` every member's declared
    size and array header (a zip bomb is refused without decompressing it).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsError(f"no such weights file: {escape(path)}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npz", ".safetensors", ".pt", ".pth"):
        raise WeightsError(f"expected a .npz, .safetensors, .pt or .pth weights file, got {escape(path)}")
    try:
        _size_check(path, max_bytes)
        if ext == ".safetensors":
            from safetensors.numpy import load_file
            return dict(load_file(path))
        if ext == ".npz":
            return _npz(path, max_bytes)
        return _torch(path)
    except WeightsError:
        raise
    except Exception as e:  # corrupt files raise many types; report them all the same way
        raise WeightsError(f"cannot read weights {escape(path)}: {clip(escape(e), 200)}") from None


def save(weights: Mapping, path: str | os.PathLike) -> None:
    """Write weights as `.npz` or `.safetensors` (by the file's extension)."""
    path = os.fspath(path)
    arrays = {k: np.ascontiguousarray(_as_numpy(v)) for k, v in weights.items()}
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file
        save_file(arrays, path)
    elif path.endswith(".npz"):
        np.savez(path, **arrays)
    else:
        raise WeightsError(f"expected a .npz or .safetensors path, got {escape(path)}")


def resolve(graph: Graph, weights=None, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights from None (seeded init), a path, or a mapping; always checked against the graph.

    A file may hold at most 8x the graph's float32 weights (float64 arrays and a few
    extras fit; a zip bomb does not).
    """
    if weights is None:
        return init(graph, seed)
    if isinstance(weights, (str, os.PathLike)):
        need = 4 * sum(math.prod(s) for s in expected(graph).values())
        weights = load(weights, max_bytes=max(8 * need, 64 << 20))
    return check(graph, weights)
