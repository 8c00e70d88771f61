"""The native side: verify and optimise an `llvmlite.ir` module for this CPU
(new pass manager, O3), turn it into an object file, cache that on disk, and
load it into an MCJIT engine.

The cache key is built by the caller from what determines the code (kernel
descriptors, options) plus `host_key()` (CPU, features, llvmlite version and
this package's source), so a stale object is never loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import threading
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm

_LOCK = threading.Lock()
_STATE: dict = {}


def _new_target_machine():
    with _LOCK:
        if "init" not in _STATE:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _STATE["init"] = True
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, reloc="static", codemodel="jitdefault", jit=True)


def target_machine():
    """The host target machine for compiling: host CPU name and features, O3."""
    if "tm" not in _STATE:
        _STATE["tm"] = _new_target_machine()
    return _STATE["tm"]


def host_key() -> str:
    """Everything outside the spec that changes the generated code."""
    if "host" not in _STATE:
        h = hashlib.sha256()
        h.update(llvm.get_host_cpu_name().encode())
        h.update(llvm.get_host_cpu_features().flatten().encode())
        h.update(llvmlite.__version__.encode())
        for f in sorted(Path(__file__).parent.glob("*.py")):
            h.update(f.read_bytes())
        _STATE["host"] = h.hexdigest()
    return _STATE["host"]


def cache_dir() -> Path:
    """Where compiled objects live: $CNNGRAPH_CACHE, else ~/.cache/cnngraph."""
    root = os.environ.get("CNNGRAPH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cnngraph")
    return Path(root)


_MAGIC = b"cnngraph-objects-2\n"
_DEFINE = re.compile(r"^(define .*\))(.*)$", re.MULTILINE)


def _wide_vectors(text: str) -> str:
    """Ask for 512-bit vectors in loops LLVM vectorises itself (llvmlite.ir has no string attributes)."""
    return _DEFINE.sub(r'\1\2 "prefer-vector-width"="512" "min-legal-vector-width"="512"', text)


def _optimised(ir_text: str):
    """Parse, verify, then optimise (O3, new pass manager) for the host CPU."""
    tm = target_machine()
    mod = llvm.parse_assembly(_wide_vectors(ir_text))
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


def compile_ir(ir_text: str) -> bytes:
    """IR text -> optimised object file for this CPU."""
    tm, mod = _optimised(ir_text)
    return tm.emit_object(mod)


def assembly(ir_text: str) -> str:
    """IR text -> the optimised assembly (for `--emit-asm` and DEBUG=4)."""
    tm, mod = _optimised(ir_text)
    return tm.emit_assembly(mod)


class NativeLib:
    """Loaded object files (linked together); `address(name)` gives a function's entry point."""

    def __init__(self, objs: list[bytes]):
        # the engine owns (and frees) its target machine, so each gets its own
        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine())
        for obj in objs:
            self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self._engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no native function {name!r} in the compiled object")
        return addr


def _pack(objs: list[bytes]) -> bytes:
    payload = b"".join(struct.pack("<Q", len(o)) + o for o in objs)
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def _unpack(data: bytes) -> list[bytes] | None:
    """The objects of a cache file, or None if it is not one of ours or is damaged."""
    head = len(_MAGIC) + 32
    payload = data[head:]
    if not data.startswith(_MAGIC) or data[len(_MAGIC):head] != hashlib.sha256(payload).digest():
        return None
    objs, i = [], 0
    while i < len(payload):
        (n,) = struct.unpack_from("<Q", payload, i)
        objs.append(payload[i + 8:i + 8 + n])
        i += 8 + n
    return objs


def load_or_build(key: str, build) -> tuple[NativeLib, bool]:
    """The objects for `key` from the disk cache, else `build()` (a list of object files), stored.

    Returns (library, was_cached). A damaged or unwritable cache is ignored:
    LLVM aborts the process on a malformed object, so files carry a checksum.
    """
    path = cache_dir() / f"{key}.o"
    try:
        objs = _unpack(path.read_bytes())
        if objs:
            return NativeLib(objs), True
    except OSError:
        pass
    objs = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(_pack(objs))
        os.replace(tmp, path)  # atomic: concurrent compiles never see half a file
    except OSError:
        pass
    return NativeLib(objs), False
