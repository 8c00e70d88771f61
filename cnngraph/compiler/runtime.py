"""Running a compiled net from Python: input checks, workspaces, threads.

Packed weights are kept alive here and passed to native code through a pointer
table. A workspace (the planned intermediate buffers for some batch size, plus
the per-call context words and step counters) is taken from a free list for each
call, so concurrent calls from several Python threads never share one, and a
steady caller allocates nothing but its output. ctypes releases the GIL during
native calls; extra native threads are persistent Python threads (shared by all
nets) that each call `net_run` too and take work items from shared counters.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from . import jit
from .emit_net import NET_RUN, SPIN_WAIT, emit_spin_wait
from .jit import NativeLib
from .plan import Plan, aligned_empty

_RUN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
MAX_THREADS = 256
MIN_MACS_PER_THREAD = 500_000  # below this a second thread costs more than it saves (~10 us)
SPIN_ROUNDS = 20_000  # pause instructions an idle helper spins before it sleeps (about 1 ms)


def check_threads(threads):
    """None (all cores) or an int from 1 to MAX_THREADS; anything else is a ValueError."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 1 <= threads <= MAX_THREADS):
        raise ValueError(f"expected threads to be None (all cores) or an integer from 1 to {MAX_THREADS}, "
                         f"got {threads!r}")
    return threads


class _Workspace:
    def __init__(self, floats_per_sample: int, batch: int, counters: int):
        self.batch = batch
        self.raw = aligned_empty(floats_per_sample * batch)
        self.ctx = np.zeros(6, np.uint64)
        self.counters = np.zeros(counters, np.int64)
        self.ctx[2] = self.raw.ctypes.data
        self.ctx[4] = self.counters.ctypes.data
        self.ctx[5] = _WORKERS.seq_addr
        self.ctx_addr = self.ctx.ctypes.data


class _Workers:
    """Persistent helper threads shared by every net in the process.

    run() calls fn(ctx, n, tid, nthreads) on the caller (tid 0) and on nthreads - 1 helpers.
    The native side shares work dynamically, so a helper that wakes late is not
    waited for: once the caller is done the run is closed, and a helper that had
    not started yet skips it. Helpers that did start are waited for, as they may
    still be reading the workspace.
    """

    def __init__(self):
        self._go: list[threading.Semaphore] = []
        self._done = threading.Semaphore(0)
        self._state = threading.Lock()
        self._job = None
        self._open = False
        self._entered = 0
        self._seq = np.zeros(1, np.int64)  # bumped per run by net_run; idle helpers spin on it natively
        self.seq_addr = self._seq.ctypes.data
        self._spin = None
        self.busy = threading.Lock()  # one multi-threaded run at a time; others run on their caller

    def _loop(self, i):
        seen = 0
        while True:
            # a Python wake-up takes ~100 us, longer than many whole runs: spin a little first
            seen = self._spin(self._seq.ctypes.data, seen, SPIN_ROUNDS)
            self._go[i].acquire()
            seen = int(self._seq[0])
            with self._state:
                job = self._job if self._open else None
                if job is not None:
                    self._entered += 1
            if job is not None:
                fn, ctx, n, nthreads = job
                fn(ctx, n, i + 1, nthreads)
                self._done.release()

    def run(self, fn, ctx, n, nthreads):
        """Call with `busy` held."""
        if self._spin is None:
            self._spin = _spin_wait()
        while len(self._go) < nthreads - 1:
            self._go.append(threading.Semaphore(0))
            threading.Thread(target=self._loop, args=(len(self._go) - 1,), daemon=True,
                             name=f"cnngraph-{len(self._go)}").start()
        with self._state:
            self._job, self._open, self._entered = (fn, ctx, n, nthreads), True, 0
        for g in self._go[:nthreads - 1]:
            g.release()
        fn(ctx, n, 0, nthreads)  # bumps self._seq natively, once the GIL is released
        with self._state:
            self._open = False
            entered = self._entered
        for _ in range(entered):
            self._done.acquire()


_WORKERS = _Workers()
_SPIN: list = []  # keeps the spin function's machine code alive


def _spin_wait():
    """The native spin_wait(word, seen, rounds), compiled (or loaded from the cache) once."""
    lib, _ = jit.load_or_build("spin-" + jit.host_key(), lambda: [jit.compile_ir(emit_spin_wait())])
    _SPIN.append(lib)
    return ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(lib.address(SPIN_WAIT))


class CompiledNet:
    """A network compiled to native code: `y = net(x)` for x of shape (N, *input_shape).

    Attributes: `graph`, `weights` (the float32 weights it was built from),
    `plan` (the fusion plan), `input_shape`, `output_shape`, `threads`, `cached`
    (whether the native code came from the disk cache).
    """

    def __init__(self, graph, weights, plan: Plan, lib: NativeLib, threads: int | None, cached: bool):
        self.graph, self.weights, self.plan = graph, weights, plan
        self.input_shape = tuple(graph.input_shape)
        self.output_shape = tuple(graph.output_shape)
        self.threads = check_threads(threads) or os.cpu_count() or 1
        self.cached = cached
        self._lib = lib  # owns the machine code
        self._run = _RUN(lib.address(NET_RUN))
        self._table = np.array([w.ctypes.data for w in plan.weights] or [0], np.uint64)
        self._lock = threading.Lock()
        self._free: list[_Workspace] = []

    def __repr__(self):
        return (f"CompiledNet({self.graph.name!r}, input (N, {', '.join(map(str, self.input_shape))}), "
                f"{len(self.plan.steps)} native steps, threads={self.threads})")

    def check_input(self, x) -> np.ndarray:
        """x as a C-contiguous float32 array of shape (N, *input_shape), else ValueError."""
        if (type(x) is np.ndarray and x.dtype == np.float32 and x.shape[1:] == self.input_shape
                and x.ndim == len(self.input_shape) + 1 and x.flags.c_contiguous):
            return x  # the common case, checked in one go
        want = "(N, " + ", ".join(map(str, self.input_shape)) + ")"
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as e:
                raise ValueError(f"expected an array of shape {want}, got {type(x).__name__}: {e}") from None
        if x.dtype != np.float32:
            if x.dtype.kind not in "fiu":
                raise ValueError(f"expected a float32 array of shape {want}, got dtype {x.dtype}")
            x = x.astype(np.float32)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected an input of shape {want}, got {tuple(x.shape)}")
        return np.ascontiguousarray(x)

    def _acquire(self, n: int) -> _Workspace:
        with self._lock:
            for i, ws in enumerate(self._free):
                if ws.batch >= n:
                    return self._free.pop(i)
        return _Workspace(self.plan.workspace, n, len(self.plan.steps) * (self.threads + 1))

    def _release(self, ws: _Workspace):
        with self._lock:
            self._free.append(ws)
            if len(self._free) > 4:  # keep the largest few
                self._free.sort(key=lambda w: -w.batch)
                del self._free[4:]

    def threads_for(self, n: int) -> int:
        """Threads worth using for a batch of n."""
        return max(1, min(self.threads, (self.plan.macs * n) // MIN_MACS_PER_THREAD))

    def __call__(self, x) -> np.ndarray:
        x = self.check_input(x)
        n = x.shape[0]
        out = np.empty((n, *self.output_shape), np.float32)
        if n == 0:
            return out
        ws = self._acquire(n)
        try:
            ws.ctx[0] = x.ctypes.data
            ws.ctx[1] = out.ctypes.data
            ws.ctx[3] = self._table.ctypes.data
            nthreads = self.threads_for(n)
            if nthreads > 1 and _WORKERS.busy.acquire(blocking=False):
                try:
                    ws.counters[:] = 0
                    _WORKERS.run(self._run, ws.ctx_addr, n, nthreads)
                finally:
                    _WORKERS.busy.release()
            else:
                self._run(ws.ctx_addr, n, 0, 1)
        finally:
            self._release(ws)
        return out

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample of the compiled convs and linear layers."""
        return self.plan.macs

    @property
    def workspace_bytes(self) -> int:
        """Intermediate memory per sample after liveness-based reuse."""
        return 4 * self.plan.workspace
