"""The native side: verify and optimise an `llvmlite.ir` module for a Target (new
pass manager, O3), turn it into an object file, cache that on disk, and load
objects into an MCJIT engine.

The object cache holds one entry per kernel (and one for the generic runner),
keyed by what determines the code: the kernel descriptor, the target, llvmlite's
version and this package's compiler and layer sources. An entry is
self-describing and verified before anything native touches it:

    magic | key (64 hex) | HMAC-SHA256(magic | key | payload) | payload (an ELF object)

The HMAC key is a random per-cache secret (`.secret`, mode 0600), so a truncated,
garbage or foreign file (another key's entry under this name, a checksum
recomputed by hand) never verifies; the ELF structure is checked too. Only
regular files are read (no FIFOs, devices or symlinks), never more than
`MAX_ENTRY_BYTES`. A bad entry is removed and rebuilt. Writes go to a temporary
file and are renamed into place; the temporary file is removed on failure. The
cache is bounded (`$CNNGRAPH_CACHE_MAX_BYTES`, default 2 GiB) with
least-recently-used eviction.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import multiprocessing
import os
import re
import secrets
import stat
import struct
import tempfile
import threading
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm

from .target import Target

_LOCK = threading.Lock()
_STATE: dict = {}

MAGIC = b"cnngraph-object-3\n"
MAX_ENTRY_BYTES = 256 << 20
DEFAULT_MAX_CACHE_BYTES = 2 << 30


def init_llvm():
    with _LOCK:
        if "init" not in _STATE:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _STATE["init"] = True


def _new_target_machine(target: Target):
    init_llvm()
    t = llvm.Target.from_default_triple()
    return t.create_target_machine(cpu=target.cpu, features=target.features, opt=3, reloc="static",
                                   codemodel="jitdefault", jit=True)


def target_machine(target: Target):
    """The target machine for compiling (one per target, kept)."""
    key = ("tm", target.key())
    if key not in _STATE:
        _STATE[key] = _new_target_machine(target)
    return _STATE[key]


def code_version() -> str:
    """Everything outside a kernel's descriptor that changes its code: llvmlite and our sources
    (the compiler, and the layer files whose pointwise hooks the emitters evaluate)."""
    if "version" not in _STATE:
        h = hashlib.sha256(llvmlite.__version__.encode())
        pkg = Path(__file__).parent.parent
        for f in sorted([*pkg.joinpath("compiler").glob("*.py"), *pkg.joinpath("layers").glob("*.py")]):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        _STATE["version"] = h.hexdigest()
    return _STATE["version"]


_DEFINE = re.compile(r"^(define .*\))(.*)$", re.MULTILINE)


def _function_attributes(text: str, target: Target) -> str:
    """Vector width preferences on every function (llvmlite.ir has no string attributes)."""
    bits = target.vector_bits
    return _DEFINE.sub(rf'\1\2 "prefer-vector-width"="{bits}" "min-legal-vector-width"="{bits}"', text)


def _optimised(ir_text: str, target: Target):
    """Parse, verify, then optimise (O3, new pass manager) for the target."""
    tm = target_machine(target)
    mod = llvm.parse_assembly(_function_attributes(ir_text, target))
    mod.verify()
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    # the emitters unroll what should be unrolled; LLVM's unroller would copy the tap and
    # channel loops again, multiplying compile time and register pressure
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return tm, mod


def compile_ir(ir_text: str, target: Target) -> bytes:
    """IR text -> optimised object file for the target."""
    tm, mod = _optimised(ir_text, target)
    return tm.emit_object(mod)


def assembly(ir_text: str, target: Target) -> str:
    """IR text -> the optimised assembly (for DEBUG=4)."""
    tm, mod = _optimised(ir_text, target)
    return tm.emit_assembly(mod)


class NativeLib:
    """Loaded object files (linked together); `address(name)` gives a function's entry point."""

    def __init__(self, objs: list[bytes], target: Target):
        # the engine owns (and frees) its target machine, so each gets its own
        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine(target))
        for obj in objs:
            if not elf_ok(obj):  # LLVM aborts the process on a malformed object: never hand it one
                raise ValueError("refusing a malformed object file")
            self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self._engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no native function {name!r} in the compiled objects")
        return addr


# ---- ELF sanity (x86-64 relocatable objects, as LLVM writes them) ------------

def elf_ok(data: bytes) -> bool:
    """A structurally sound little-endian x86-64 ELF relocatable object: every section,
    string, symbol and relocation reference stays inside the file.

    >>> elf_ok(b"not an object"), elf_ok(b"\\x7fELF" + bytes(60))
    (False, False)
    """
    size = len(data)
    if size < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    e_shoff, = struct.unpack_from("<Q", data, 40)
    e_ehsize, _, _, e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHHHHH", data, 52)
    if e_type != 1 or e_machine != 62 or e_shentsize != 64 or not 0 < e_shnum < 65280 or e_shstrndx >= e_shnum:
        return False
    if e_shoff + e_shnum * 64 > size:
        return False
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + 64 * i) for i in range(e_shnum)]
    for name, typ, _, _, off, sz, link, info, _, entsize in sections:
        if typ != 8 and off + sz > size:  # SHT_NOBITS has no bytes in the file
            return False
        if link >= e_shnum:
            return False
        if typ in (2, 11):  # symbol tables
            if entsize != 24 or sz % 24 or sections[link][1] != 3:
                return False
            strsize = sections[link][5]
            for j in range(sz // 24):
                st_name, _, _, st_shndx = struct.unpack_from("<IBBH", data, off + 24 * j)
                if st_name >= max(strsize, 1) or (st_shndx >= e_shnum and st_shndx < 0xFF00):
                    return False
        if typ in (4, 9):  # relocations: their symbol table and target section must exist
            if entsize not in (16, 24) or sz % entsize or info >= e_shnum or sections[link][1] not in (2, 11):
                return False
            nsyms = sections[link][5] // 24
            for j in range(sz // entsize):
                r_info, = struct.unpack_from("<Q", data, off + entsize * j + 8)
                if (r_info >> 32) >= nsyms:
                    return False
    return sections[e_shstrndx][1] == 3


# ---- the object cache ----------------------------------------------------------

def cache_dir() -> Path:
    """Where compiled objects live: $CNNGRAPH_CACHE, else $XDG_CACHE_HOME/cnngraph, else ~/.cache/cnngraph."""
    root = os.environ.get("CNNGRAPH_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "cnngraph")
    return Path(root)


def max_cache_bytes() -> int:
    try:
        return max(int(os.environ.get("CNNGRAPH_CACHE_MAX_BYTES", DEFAULT_MAX_CACHE_BYTES)), 0)
    except ValueError:
        return DEFAULT_MAX_CACHE_BYTES


def _read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file of at most `limit` bytes, else None (never blocks or follows links)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _secret(root: Path) -> bytes:
    """The cache's HMAC key, created once (mode 0600); a per-process key where it cannot be kept."""
    cached = _STATE.get(("secret", str(root)))
    if cached:
        return cached
    path = root / ".secret"
    key = _read_regular(path, 64)
    if key is None or len(key) != 32:
        key = secrets.token_bytes(32)
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
        except FileExistsError:  # another process made it first (or a bad file is there)
            other = _read_regular(path, 64)
            if other is not None and len(other) == 32:
                key = other
            else:
                try:
                    path.unlink()
                except OSError:
                    pass
        except OSError:
            pass
    _STATE[("secret", str(root))] = key
    return key


def _entry_path(root: Path, key: str) -> Path:
    return root / "objects" / f"{key}.o"


def _tag(secret: bytes, key: str, payload: bytes) -> bytes:
    return hmac.new(secret, MAGIC + key.encode() + payload, hashlib.sha256).digest()


def read_entry(key: str) -> bytes | None:
    """The verified object stored under `key`, or None (a bad entry is removed)."""
    root = cache_dir()
    path = _entry_path(root, key)
    data = _read_regular(path, MAX_ENTRY_BYTES)
    if data is None:
        if os.path.lexists(path) and not path.is_file():
            _remove(path)
        return None
    head = len(MAGIC) + 64 + 32
    payload = data[head:]
    ok = (data.startswith(MAGIC) and data[len(MAGIC):len(MAGIC) + 64] == key.encode()
          and hmac.compare_digest(data[len(MAGIC) + 64:head], _tag(_secret(root), key, payload))
          and elf_ok(payload))
    if not ok:
        _remove(path)
        return None
    try:
        os.utime(path)  # recently used: evicted last
    except OSError:
        pass
    return payload


def _remove(path: Path):
    try:
        if path.is_dir() and not path.is_symlink():
            return
        path.unlink()
    except OSError:
        pass


def write_entry(key: str, payload: bytes):
    """Store an object under `key` atomically; failures leave nothing behind."""
    root = cache_dir()
    path = _entry_path(root, key)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + key.encode() + _tag(_secret(root), key, payload) + payload)
        if os.path.lexists(path) and not os.path.isfile(path):
            _remove(path)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def entries() -> list[tuple[Path, int, float]]:
    """(path, bytes, last use) of every cache entry, least recently used first."""
    d = cache_dir() / "objects"
    out = []
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.name.endswith((".o", ".tmp")) and e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out.append((Path(e.path), st.st_size, st.st_mtime))
    except OSError:
        return []
    return sorted(out, key=lambda x: x[2])


def evict(limit: int | None = None) -> int:
    """Remove least recently used entries until the cache holds at most `limit` bytes
    (default: the configured bound); returns the bytes freed."""
    limit = max_cache_bytes() if limit is None else limit
    items = entries()
    total = sum(size for _, size, _ in items)
    freed = 0
    for path, size, _ in items:
        if total - freed <= limit:
            break
        _remove(path)
        freed += size
    return freed


def clear() -> int:
    """Remove every entry; returns the bytes freed."""
    return evict(0)


# ---- building objects, cached --------------------------------------------------

def cached_objects(jobs: dict[str, tuple[str, object]], build, workers: int = 1) -> tuple[dict[str, bytes], int]:
    """Objects for `jobs` (cache key -> (symbol, payload description)), from the cache where
    verified, else `build(list of (symbol, description)) -> list of object bytes` (spread over
    `workers` processes when there is enough to do), stored. Returns ({key: object}, hits)."""
    out, missing = {}, []
    for key, job in jobs.items():
        obj = read_entry(key)
        if obj is not None:
            out[key] = obj
        else:
            missing.append((key, job))
    hits = len(out)
    if missing:
        built = _build(missing, build, workers)
        for (key, _), obj in zip(missing, built):
            write_entry(key, obj)
            out[key] = obj
        evict()
    return out, hits


def _build(missing, build, workers):
    jobs = [job for _, job in missing]
    # a daemonic process (a Dask or multiprocessing worker) may not start processes of its own
    if workers < 2 or len(jobs) < 4 or multiprocessing.current_process().daemon:
        return build(jobs)
    n = min(workers, len(jobs))
    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i][1]))
    groups, load = [[] for _ in range(3 * n)], [0] * (3 * n)
    for i in order:  # more groups than workers: the pool evens out what the cost guess gets wrong
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += _cost(jobs[i][1])
    groups = [g for g in groups if g]
    try:
        ctx = multiprocessing.get_context("fork")  # workers inherit the initialised LLVM
        with concurrent.futures.ProcessPoolExecutor(n, mp_context=ctx) as pool:
            futures = [pool.submit(build, [jobs[i] for i in g]) for g in groups]
            results = [f.result() for f in futures]
    except (OSError, concurrent.futures.process.BrokenProcessPool):  # no processes here: do it serially
        return build(jobs)
    out = [None] * len(jobs)
    for g, objs in zip(groups, results):
        for i, obj in zip(g, objs):
            out[i] = obj
    return out


def _cost(kernel) -> int:
    """Rough compile cost: unrolled conv tiles dominate."""
    sched = getattr(kernel, "schedule", None)
    if sched is not None:
        return 10 + kernel.tile_pixels(sched.tp) * sched.v
    return 2
