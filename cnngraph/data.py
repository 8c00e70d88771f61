"""Inputs at scale: files, folders and globs in, records out, in bounded memory.

- `expand(patterns)`: PATH | DIR | GLOB -> the files `cnngraph run` reads, sorted;
- `items(paths, shape)`: one item per sample (a `.npy` shard of shape (N, *input) gives N);
- `batches(net, items, batch)`: decoded and preprocessed float32 batches; a file that
  cannot be read becomes a failure record, never an exception;
- `topk`, `load_labels` and writers for `.jsonl`, `.csv` and `.npy` (streamed to disk).

`.npy` files are checked before anything is allocated: the header's shape and dtype
against the file's size (`open_npy`), then mapped, not read, so a shard of any size
streams through a fixed amount of memory.

>>> import numpy as np
>>> topk(np.array([[0.1, 0.7, 0.2]], np.float32), 2, ["cat", "dog", "emu"])
[[{'label': 'dog', 'index': 1, 'score': 0.699999988079071}, {'label': 'emu', 'index': 2, 'score': 0.20000000298023224}]]
"""

from __future__ import annotations

import concurrent.futures
import csv
import glob
import io
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import clip, escape
from .preprocess import MAX_INPUT_BYTES, InputError, is_supported, prepare

GLOB_CHARS = "*?["
MAX_LABELS_BYTES = 64 << 20


# ---- .npy, checked before allocation ----------------------------------------------

def npy_header(f, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an open `.npy` stream, with numpy's own header
    readers (which bound the header's size); nothing else is read."""
    from numpy.lib import format as npy
    try:
        version = npy.read_magic(f)
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = reader(f)
    except (ValueError, OSError, SyntaxError, TypeError) as e:
        raise InputError(f"{escape(name)}: not a valid .npy file ({clip(escape(e), 160)})") from None
    return tuple(int(s) for s in shape), bool(fortran), dtype


def open_npy(path: str) -> np.ndarray:
    """A read-only memory map of an `.npy` file after checking that its header tells the truth:
    a numeric dtype, and a shape whose bytes are exactly what the file holds.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(p, np.arange(6, dtype=np.float32).reshape(2, 3))
    >>> open_npy(p)[1]
    memmap([3., 4., 5.], dtype=float32)
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            shape, _, dtype = npy_header(f, path)  # np.load handles Fortran order
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise InputError(f"no such file: {escape(path)}") from None
    except IsADirectoryError:
        raise InputError(f"{escape(path)}: a folder, not an .npy file") from None
    except OSError as e:
        raise InputError(f"cannot read {escape(path)}: {clip(escape(e.strerror or e), 120)}") from None
    if dtype.hasobject or dtype.kind not in "fiub":
        raise InputError(f"{escape(path)}: expected numbers, got dtype {dtype} (pickled objects are never loaded)")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes != size:
        raise InputError(f"{escape(path)}: its header claims shape {shape} of {dtype}, {nbytes:,} bytes, but the "
                         f"file holds {size - offset:,} bytes of data")
    if nbytes == 0:
        return np.zeros(shape, dtype)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def read_npy(path: str, max_bytes: int = MAX_INPUT_BYTES) -> np.ndarray:
    """An `.npy` file in memory, refused before reading when it holds more than `max_bytes`."""
    m = open_npy(path)
    if m.nbytes > max_bytes:
        raise InputError(f"{escape(path)}: {m.nbytes:,} bytes of data, more than the {max_bytes:,} read at once")
    return np.array(m)


# ---- which files ------------------------------------------------------------------

def expand(patterns: Iterable[str]) -> list[str]:
    """Files, folders (walked, sorted, hidden entries skipped) and globs -> file paths.

    A folder contributes the files `cnngraph run` can read (images, `.wav`, `.npy`); a file
    named explicitly is always kept, so that a bad one is reported rather than ignored.
    """
    out: list[str] = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if os.path.isdir(pattern):
            found = []
            for root, dirs, files in os.walk(pattern):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".") and is_supported(f)]
            if not found:
                raise InputError(f"{escape(pattern)}: no images, .wav or .npy files in this folder")
            out += found
        elif os.path.exists(pattern):
            out.append(pattern)
        elif any(c in pattern for c in GLOB_CHARS):
            found = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not found:
                raise InputError(f"{escape(pattern)}: matches no file")
            out += found
        else:
            raise InputError(f"no such file or folder: {escape(pattern)}")
    return out


@dataclass(frozen=True)
class Item:
    """One sample to run: its display name, the file, and the row of a `.npy` shard (or None)."""

    name: str
    path: str
    row: int | None = None


def items(paths: Iterable[str], shape: tuple[int, ...]) -> Iterator[Item | tuple[str, str]]:
    """One `Item` per sample; `(name, message)` for a `.npy` that cannot be read at all."""
    for path in paths:
        if not path.lower().endswith(".npy"):
            yield Item(path, path)
            continue
        try:
            m = open_npy(path)
        except InputError as e:
            yield (path, str(e))
            continue
        if tuple(m.shape) == tuple(shape):
            yield Item(path, path)
        elif m.ndim == len(shape) + 1 and tuple(m.shape[1:]) == tuple(shape):
            for i in range(m.shape[0]):
                yield Item(f"{path}[{i}]", path, i)
        else:
            yield (path, (f"{escape(path)}: expected shape {tuple(shape)} or (N, {', '.join(map(str, shape))}), "
                          f"got {tuple(m.shape)}"))


@dataclass
class Batch:
    """Decoded samples ready for the net, and the inputs that could not be read."""

    names: list[str]
    x: np.ndarray  # (len(names), *input_shape) float32
    failures: list[tuple[str, str]]  # (name, message)


class _Shards:
    """The `.npy` shard being read, mapped once (rows come in order)."""

    def __init__(self):
        self.path, self.map = None, None

    def row(self, path: str, i: int) -> np.ndarray:
        if path != self.path:
            self.path, self.map = path, open_npy(path)
        return np.asarray(self.map[i], dtype=np.float32)


def batches(net, source: Iterable, batch: int = 32, workers: int | None = None) -> Iterator[Batch]:
    """Decode and preprocess `source` (paths, or what `items()` gives) in batches of `batch`
    for `net` (a Graph, NetSpec or compiled net). Memory stays at a few batches whatever the
    input's size: the next batch is decoded on threads while the caller runs the current one.

    >>> from cnngraph.spec import loads
    >>> [b.failures for b in batches(loads("input: [1, 4, 4]\\nlayers: [relu]"), ["nothing.png"])]
    [[('nothing.png', 'no such file: nothing.png')]]
    """
    from .preprocess import _spec_of
    shape, _ = _spec_of(net)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"expected a batch size of at least 1, got {batch!r}")
    stream = iter(source)
    first = next(stream, None)
    if first is None:
        return
    stream = _chain(first, stream)
    if isinstance(first, (str, os.PathLike)):
        stream = items((os.fspath(p) for p in stream), shape)
    shards = _Shards()
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="cnngraph-decode") \
        if workers > 1 else None
    ahead = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cnngraph-prefetch") if pool else None

    def decode(item):
        try:
            if item.row is not None:
                return shards.row(item.path, item.row)
            return prepare(net, item.path)
        except InputError as e:
            return e
        except (OSError, ValueError, MemoryError) as e:  # anything a broken file makes a decoder say
            return InputError(f"{escape(item.name)}: cannot read: {clip(escape(e), 200)}")

    def gather(chunk) -> Batch:
        failures = [it for it in chunk if isinstance(it, tuple)]
        todo = [it for it in chunk if not isinstance(it, tuple)]
        files = [t for t in todo if t.row is None]
        decoded = dict(zip(map(id, files), pool.map(decode, files) if pool else map(decode, files)))
        names, arrays = [], []
        for it in todo:  # shard rows share one map: read here, in order
            r = decoded[id(it)] if it.row is None else decode(it)
            if isinstance(r, InputError):
                failures.append((it.name, str(r)))
            else:
                names.append(it.name)
                arrays.append(r)
        x = np.stack(arrays) if arrays else np.zeros((0, *shape), np.float32)
        return Batch(names, x, failures)

    try:
        chunk = _take(stream, batch)
        pending = (ahead.submit(gather, chunk) if ahead else _Ready(gather(chunk))) if chunk else None
        while pending is not None:
            chunk = _take(stream, batch)
            nxt = (ahead.submit(gather, chunk) if ahead else None) if chunk else None
            yield pending.result()
            pending = nxt if nxt is not None or not chunk else _Ready(gather(chunk))
    finally:
        for ex in (ahead, pool):
            if ex is not None:
                ex.shutdown(wait=True, cancel_futures=True)


class _Ready:
    """A computed value with a future's `result()`."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _chain(first, rest):
    yield first
    yield from rest


def _take(it, n) -> list:
    out = []
    for x in it:
        out.append(x)
        if len(out) == n:
            break
    return out


# ---- labels, top-k ------------------------------------------------------------------

def load_labels(path: str, classes: int) -> list[str]:
    """One label per line (blank lines at the end ignored); their count must match the output."""
    try:
        if os.path.getsize(path) > MAX_LABELS_BYTES:
            raise InputError(f"{escape(path)}: more than {MAX_LABELS_BYTES:,} bytes for a labels file")
        with open(path, encoding="utf-8") as f:
            labels = f.read().splitlines()
    except FileNotFoundError:
        raise InputError(f"no such labels file: {escape(path)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read labels {escape(path)}: {clip(escape(e), 160)}") from None
    while labels and not labels[-1].strip():
        labels.pop()
    if len(labels) != classes:
        raise InputError(f"{escape(path)}: {len(labels):,} labels, the net has {classes:,} outputs — one label "
                         f"per line, in output order")
    return [s.strip() for s in labels]


def topk(y: np.ndarray, k: int, labels: list[str] | None = None) -> list[list[dict]]:
    """The k largest outputs of each row, largest first (ties: the lower index first)."""
    k = min(k, y.shape[1])
    idx = np.argsort(-y, axis=1, kind="stable")[:, :k]
    out = []
    for row, ids in zip(y, idx):
        out.append([{**({"label": labels[i]} if labels else {}), "index": int(i), "score": float(row[i])}
                    for i in ids])
    return out


# ---- writers --------------------------------------------------------------------------

class Writer:
    """Records out, one per input: `.jsonl`, `.csv`, `.npy` (raw outputs), or `-` (JSON lines
    on stdout). `write(names, y, top)` per batch; `close()` at the end."""

    def __init__(self, path: str, output_shape: tuple[int, ...], k: int | None, fmt: str | None = None):
        self.path, self.shape, self.k = path, tuple(output_shape), k
        self.fmt = fmt or ("jsonl" if path == "-" else os.path.splitext(path)[1].lower().lstrip("."))
        if self.fmt not in ("jsonl", "csv", "npy", "json"):
            raise InputError(f"expected an output ending in .jsonl, .csv or .npy (or '-'), got {escape(path)}")
        self.fmt = "jsonl" if self.fmt == "json" else self.fmt
        self.rows = 0
        if self.fmt == "npy":
            if path == "-":
                self.file = sys.stdout.buffer
                self.tmp = tempfile.TemporaryFile()
            else:
                self.file = None
                d = os.path.dirname(os.path.abspath(path))
                self.tmp = tempfile.NamedTemporaryFile(dir=d, prefix=".cnngraph-", suffix=".part", delete=False)
        else:
            self.file = sys.stdout if path == "-" else open(path, "w", encoding="utf-8", newline="")
            self.csv = csv.writer(self.file) if self.fmt == "csv" else None
            if self.csv is not None:
                n = math.prod(self.shape)
                head = ["file"] + ([c for i in range(1, k + 1) for c in (f"label_{i}", f"score_{i}")] if k
                                   else [f"y_{i}" for i in range(n)])
                self.csv.writerow(head)

    def write(self, names: list[str], y: np.ndarray, top: list[list[dict]] | None) -> None:
        self.rows += len(names)
        if self.fmt == "npy":
            self.tmp.write(np.ascontiguousarray(y, np.float32).tobytes())
            return
        for i, name in enumerate(names):
            if self.fmt == "jsonl":
                rec = {"file": name, "top": top[i]} if top is not None else \
                    {"file": name, "output": y[i].tolist()}
                self.file.write(json.dumps(rec) + "\n")
            else:
                row = [name]
                if top is not None:
                    for t in top[i]:
                        row += [t.get("label", t["index"]), f"{t['score']:.6g}"]
                else:
                    row += [f"{v:.6g}" for v in y[i].ravel()]
                self.csv.writerow(row)
        self.file.flush()

    def close(self) -> None:
        if self.fmt != "npy":
            if self.file is not sys.stdout:
                self.file.close()
            return
        from numpy.lib import format as npy
        header = io.BytesIO()
        npy.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                            "shape": (self.rows, *self.shape)})
        self.tmp.flush()
        self.tmp.seek(0)
        if self.path == "-":
            self.file.write(header.getvalue())  # magic and header
            shutil.copyfileobj(self.tmp, self.file)
            self.file.flush()
            self.tmp.close()
            return
        with open(self.tmp.name + ".npy", "wb") as out:
            out.write(header.getvalue())
            shutil.copyfileobj(self.tmp, out)
        self.tmp.close()
        os.replace(self.tmp.name + ".npy", self.path)
        os.unlink(self.tmp.name)

    def abort(self) -> None:
        """Leave no partial `.npy` behind."""
        if self.fmt == "npy" and self.path != "-":
            self.tmp.close()
            for p in (self.tmp.name, self.tmp.name + ".npy"):
                if os.path.exists(p):
                    os.unlink(p)
        elif self.fmt != "npy" and self.file is not sys.stdout:
            self.file.close()
