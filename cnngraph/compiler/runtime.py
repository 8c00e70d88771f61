"""Running a compiled net from Python: input checks, workspaces, threads.

A `CompiledNet` is immutable. Packed weights are kept alive here and passed to
native code through a pointer table; the step table (`abi.py`) holds each step's
kernel address and arguments. A workspace (the planned intermediate buffers for
some batch size) is taken from a free list for each call, so concurrent calls
from several Python threads never share one; the per-step counters are sized
for each call's thread count. ctypes releases the GIL during native calls; extra
native threads are persistent Python threads (shared by all nets) that each call
`net_run` too and take work items from shared counters.

Nothing reaches native code unchecked: the input is the real array (not what a
subclass claims), converted to C-contiguous float32 of the declared shape, and
every size is checked against the machine's memory before anything is allocated.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading

import numpy as np

from .. import units
from ..errors import CnnGraphError
from ..oracle import real_array
from . import jit
from .abi import CONTEXT, ArgKind, step_table
from .plan import INPUT_T, OUTPUT_T, BatchArg, ConstArg, Plan, TensorArg, WeightArg, aligned_empty
from .runner import COUNTER_WORDS, NET_RUN, SPIN_WAIT

_RUN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
MAX_THREADS = 256
MIN_MACS_PER_THREAD = 500_000  # below this a second thread costs more than it saves (~10 us)
SPIN_ROUNDS = 20_000  # pause instructions an idle helper spins before it sleeps (about 1 ms)


def step_counters(steps: int, nthreads: int) -> np.ndarray:
    """Zeroed atomic counters for `steps` steps on `nthreads` threads (runner._shared_step), each on a
    64-byte cache line of its own."""
    counters = aligned_empty(steps * (nthreads + 1) * COUNTER_WORDS, np.int64)
    counters[:] = 0
    return counters


class CompileError(CnnGraphError):
    """A network that cannot be compiled or run here (too large for this machine, ...)."""


def memory_limit() -> int:
    """Bytes a net may use: $CNNGRAPH_MAX_BYTES, else the machine's physical memory."""
    env = os.environ.get("CNNGRAPH_MAX_BYTES")
    if env:
        try:
            return int(env)
        except ValueError:
            pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def format_bytes(n: float) -> str:
    """Human-readable bytes (the package's one formatter, units.nbytes).

    >>> format_bytes(3 << 30), format_bytes(1500)
    ('3.0 GiB', '1.5 KiB')
    """
    return units.nbytes(n)


def check_threads(threads, what: str = "threads"):
    """None (all cores) or an int from 1 to MAX_THREADS; anything else is a ValueError."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or not 1 <= threads <= MAX_THREADS):
        raise ValueError(f"expected {what} to be None (all cores) or an integer from 1 to {MAX_THREADS}, "
                         f"got {threads!r}")
    return None if threads is None else int(threads)


_INPUT, _OUTPUT, _COUNTERS = CONTEXT.index("input"), CONTEXT.index("output"), CONTEXT.index("counters")


class _Workspace:
    def __init__(self, nbytes: int, batch: int):
        self.batch = batch
        self.raw = aligned_empty(max(nbytes, 64) // 4)
        self.counters: dict[int, np.ndarray] = {}  # thread count -> per-step counters
        self.ctx: np.ndarray | None = None  # the run context (one net's workspace: its words fixed)


class _Workers:
    """Persistent helper threads shared by every net in the process.

    run() calls fn(ctx, n, tid, nthreads) on the caller (tid 0) and on helpers 1..nthreads-1.
    The native side shares work dynamically, so a helper that wakes late is not waited for:
    once the caller is done the run is closed, and a helper that had not started yet skips
    it. Helpers that did start are waited for, as they may still be reading the workspace.
    A helper sees each run at most once (a generation number, not a count of wake-ups), so
    nothing accumulates after a burst of calls: idle helpers spin about a millisecond, then sleep.
    """

    def __init__(self):
        self._cv = threading.Condition()
        self._done = threading.Semaphore(0)
        self._job = None
        self._open = False
        self._entered = 0
        self._gen = 0
        self._helpers = 0
        self._seq = np.zeros(1, np.int64)  # bumped per run by net_run; idle helpers spin on it natively
        self.seq_addr = self._seq.ctypes.data
        self._spin = None
        self.busy = threading.Lock()  # one multi-threaded run at a time; others run on their caller

    def _loop(self, tid):
        seen_seq, seen_gen = 0, 0
        while True:
            # a Python wake-up takes ~100 us, longer than many whole runs: spin a little first
            seen_seq = self._spin(self.seq_addr, seen_seq, SPIN_ROUNDS)
            with self._cv:
                while self._gen == seen_gen:
                    self._cv.wait()
                seen_gen = self._gen
                job = self._job if self._open and tid < self._job[3] else None
                if job is not None:
                    self._entered += 1
            seen_seq = int(self._seq[0])
            if job is not None:
                fn, ctx, n, nthreads = job
                try:
                    fn(ctx, n, tid, nthreads)
                finally:
                    self._done.release()

    def run(self, fn, ctx, n, nthreads):
        """Call with `busy` held."""
        if self._spin is None:
            self._spin = _spin_wait()
        while self._helpers < nthreads - 1:
            self._helpers += 1
            threading.Thread(target=self._loop, args=(self._helpers,), daemon=True,
                             name=f"cnngraph-{self._helpers}").start()
        with self._cv:
            self._job, self._open, self._entered = (fn, ctx, n, nthreads), True, 0
            self._gen += 1
            self._cv.notify_all()
        try:
            fn(ctx, n, 0, nthreads)  # bumps self._seq natively, once the GIL is released
        finally:
            with self._cv:
                self._open = False
                entered = self._entered
            for _ in range(entered):
                self._done.acquire()


_WORKERS = _Workers()
_KEEP: list = []  # keeps the spin function's machine code alive


def _spin_wait():
    """The native spin_wait(word, seen, rounds), compiled (or loaded from the cache) once."""
    from . import runner
    from .target import select
    target = select()
    key = jit.hashlib.sha256(f"spin|{jit.code_version()}|{target.key()}".encode()).hexdigest()
    objs, _ = jit.cached_objects({key: (SPIN_WAIT, None)},
                                 lambda jobs: [jit.compile_ir(runner.emit_spin_wait(), target) for _ in jobs])
    lib = jit.NativeLib([objs[key]], target)
    _KEEP.append(lib)
    return ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(lib.address(SPIN_WAIT))


class CompiledNet:
    """A network compiled to native code: `y = net(x)` for x of shape (N, *input_shape);
    `net(x, threads=2)` picks the thread count for one call.

    Attributes (read-only): `graph`, `weights` (the float32 weights it was built from),
    `plan`, `input_shape`, `output_shape`, `threads`, `cached` (kernels loaded from the disk
    cache), `target`, `precision` ('f32' or 'bf16': what its convolutions compute in).
    """

    __slots__ = ("graph", "weights", "plan", "input_shape", "output_shape", "threads", "cached", "poison",
                 "target", "_lib", "_run", "_table_w", "_steps", "_lock", "_free", "_limit", "__weakref__")

    def __init__(self, graph, weights, plan: Plan, lib, symbols: dict, threads: int | None, cached: bool,
                 poison: bool = False):
        s = object.__setattr__
        s(self, "graph", graph)
        s(self, "weights", weights)
        s(self, "plan", plan)
        s(self, "input_shape", tuple(graph.input_shape))
        s(self, "output_shape", tuple(graph.output_shape))
        s(self, "threads", check_threads(threads) or os.cpu_count() or 1)
        s(self, "cached", cached)
        s(self, "poison", bool(poison))
        s(self, "target", plan.target)
        s(self, "_lib", lib)  # owns the machine code
        s(self, "_run", _RUN(lib.address(NET_RUN)))
        for w in plan.weights:
            w.flags.writeable = False
        s(self, "_table_w", np.array([w.ctypes.data for w in plan.weights] or [0], np.uint64))
        addresses = {k: lib.address(sym) for k, sym in symbols.items()}
        s(self, "_steps", _step_table(plan, lambda step: addresses[step.kernel]))
        s(self, "_lock", threading.Lock())
        s(self, "_free", [])
        s(self, "_limit", memory_limit())

    @property
    def precision(self) -> str:
        return self.plan.precision

    def __setattr__(self, key, value):
        raise AttributeError(f"a CompiledNet is immutable (cannot set '{key}'); pass threads= per call instead")

    def __delattr__(self, key):
        raise AttributeError("a CompiledNet is immutable")

    def __repr__(self):
        return (f"CompiledNet({self.graph.name!r}, input (N, {', '.join(map(str, self.input_shape))}), "
                f"{len(self.plan.steps)} native steps, threads={self.threads}, target={self.target.name}, "
                f"precision={self.precision})")

    def check_input(self, x) -> np.ndarray:
        """x as a C-contiguous float32 array of shape (N, *input_shape), else ValueError."""
        if (type(x) is np.ndarray and x.dtype == np.float32 and x.shape[1:] == self.input_shape
                and x.ndim == len(self.input_shape) + 1 and x.flags.c_contiguous):
            return x  # the common case, checked in one go
        want = "(N, " + ", ".join(map(str, self.input_shape)) + ")"
        x = real_array(x)
        if x.dtype != np.float32 and x.dtype.kind not in "fiub":
            raise ValueError(f"expected a float32 array of shape {want}, got dtype {x.dtype}")
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected an input of shape {want}, got {tuple(x.shape)}")
        self._check_batch(x.shape[0])  # before any conversion allocates a copy
        return np.ascontiguousarray(x, dtype=np.float32)

    def _check_batch(self, n: int):
        """Refuse a batch whose buffers (workspace, output and a converted input) exceed the memory limit."""
        need = n * (self.plan.workspace + 4 * (math.prod(self.output_shape) + math.prod(self.input_shape)))
        if need > self._limit:
            raise ValueError(f"a batch of {n} needs {format_bytes(need)} ({need:,} bytes) of buffers, more than "
                             f"the {format_bytes(self._limit)} this machine allows; run smaller batches")

    def _acquire(self, n: int) -> _Workspace:
        with self._lock:
            for i, ws in enumerate(self._free):
                if ws.batch >= n:
                    return self._free.pop(i)
        return _Workspace(self.plan.workspace * n, n)

    def _release(self, ws: _Workspace):
        with self._lock:
            self._free.append(ws)
            if len(self._free) > 4:  # keep the largest few
                self._free.sort(key=lambda w: -w.batch)
                del self._free[4:]

    def threads_for(self, n: int, threads: int | None = None) -> int:
        """Threads worth using for a batch of n (at most `threads`, default the net's)."""
        cap = threads or self.threads
        return max(1, min(cap, (self.plan.macs * n) // MIN_MACS_PER_THREAD))

    def __call__(self, x, threads: int | None = None) -> np.ndarray:
        check_threads(threads)
        x = self.check_input(x)
        n = x.shape[0]
        self._check_batch(n)
        out = np.empty((n, *self.output_shape), np.float32)
        if n == 0:
            return out
        ws = self._acquire(n)
        try:
            if self.poison:  # unwritten outputs and buffers show up as NaN
                out.fill(np.nan)
                ws.raw.fill(np.nan)
            nthreads = self.threads_for(n, threads)
            ctx = self._context(x, out, ws, nthreads)
            if nthreads > 1 and _WORKERS.busy.acquire(blocking=False):
                try:
                    _WORKERS.run(self._run, ctx.ctypes.data, n, nthreads)
                finally:
                    _WORKERS.busy.release()
            else:
                self._run(ctx.ctypes.data, n, 0, 1)
        finally:
            self._release(ws)
        return out

    def _context(self, x, out, ws, nthreads) -> np.ndarray:
        """The run context for this call: the workspace's own (its constant words written once),
        with this call's input, output and counters."""
        ctx = ws.ctx
        if ctx is None:
            ctx = ws.ctx = np.zeros(CONTEXT.words, np.uint64)
            ctx[CONTEXT.index("workspace")] = ws.raw.ctypes.data
            ctx[CONTEXT.index("weights")] = self._table_w.ctypes.data
            ctx[CONTEXT.index("steps")] = self._steps.ctypes.data
            ctx[CONTEXT.index("nsteps")] = self._steps.shape[0]
            ctx[CONTEXT.index("step_words")] = self._steps.shape[1]
            ctx[CONTEXT.index("run_seq")] = _WORKERS.seq_addr
        ctx[_INPUT] = x.ctypes.data
        ctx[_OUTPUT] = out.ctypes.data
        if nthreads > 1:
            counters = ws.counters.get(nthreads)
            if counters is None:
                counters = ws.counters[nthreads] = step_counters(len(self.plan.steps), nthreads)
            counters[:] = 0
            ctx[_COUNTERS] = counters.ctypes.data
        else:
            ctx[_COUNTERS] = 0
        return ctx

    def profile(self, x, threads: int | None = None, min_time: float = 0.05) -> list[dict]:
        """Time each step on its own (after one whole run fills the workspace): per step its kernel,
        layers, median milliseconds, MACs and GFLOP/s. The run context is pointed at one row of the
        step table at a time, so the code timed is the code that runs.

        >>> import numpy as np, cnngraph
        >>> net = cnngraph.compile("input: [3, 16, 16]\\nlayers: [{conv: {out: 16, kernel: 3}}, relu]")
        >>> [r["kernel"] for r in net.profile(np.ones((1, 3, 16, 16), np.float32))]
        ['fused_conv2d_relu']
        """
        import time
        x = self.check_input(x)
        n = x.shape[0]
        nthreads = self.threads_for(n, threads)
        out = np.empty((n, *self.output_shape), np.float32)
        ws = self._acquire(n)
        rows = []
        try:
            ctx = self._context(x, out, ws, nthreads).copy()
            self._run(ctx.ctypes.data, n, 0, 1)  # every buffer written once
            row_bytes = self._steps.shape[1] * 8
            for i, step in enumerate(self.plan.steps):
                ctx[CONTEXT.index("steps")] = self._steps.ctypes.data + i * row_bytes
                ctx[CONTEXT.index("nsteps")] = 1
                times = []
                start = time.perf_counter()
                while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < 1000):
                    t = time.perf_counter()
                    if nthreads > 1 and _WORKERS.busy.acquire(blocking=False):
                        try:
                            ws.counters[nthreads][:] = 0
                            _WORKERS.run(self._run, ctx.ctypes.data, n, nthreads)
                        finally:
                            _WORKERS.busy.release()
                    else:
                        self._run(ctx.ctypes.data, n, 0, 1)
                    times.append(time.perf_counter() - t)
                ms = float(np.median(times)) * 1e3
                macs = getattr(step.kernel, "macs", lambda: 0)() * n
                rows.append({"kernel": step.name, "layers": list(step.nodes), "ms": ms, "macs": macs,
                             "gflops": 2 * macs / ms / 1e6 if ms > 0 else 0.0})
        finally:
            self._release(ws)
        return rows

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample of the compiled convs and linear layers."""
        return self.plan.macs

    @property
    def workspace_bytes(self) -> int:
        """Intermediate memory per sample after liveness-based reuse."""
        return self.plan.workspace

    def preprocess(self, image):
        """An image (path, PIL image or array) as this net's input batch of one, per the spec's
        `preprocess:` section (see cnngraph.preprocess.prepare)."""
        from ..preprocess import prepare
        return prepare(self, image)

    def summary(self) -> str:
        """The kernels and what each covers, one line per distinct kernel."""
        from collections import Counter
        counts = Counter(s.name for s in self.plan.steps)
        lines = [f"{self!r}", f"{len(counts)} distinct kernels in {len(self.plan.steps)} steps "
                 f"({format_bytes(self.plan.workspace)} workspace per sample)"]
        for name, k in counts.items():
            lines.append(f"  {name}" + (f" x{k}" if k > 1 else ""))
        return "\n".join(lines)


def _step_table(plan: Plan, address_of) -> np.ndarray:
    steps = []
    max_args = max((len(s.args) for s in plan.steps), default=1)
    for s in plan.steps:
        args = []
        for _, a in s.args:
            if a is None:
                args.append((ArgKind.NULL, 0))
            elif isinstance(a, TensorArg):
                # a view is passed as its root: a batch stores each root's samples one after the
                # other, so a slice's offset is per sample and the kernel applies it (its descriptor
                # has the slice), never the runner
                root = plan.root(a.tensor)
                if root.id == INPUT_T:
                    args.append((ArgKind.INPUT, 0))
                elif root.id == OUTPUT_T:
                    args.append((ArgKind.OUTPUT, 0))
                else:
                    args.append((ArgKind.WORKSPACE, plan.offsets[root.id]))
            elif isinstance(a, WeightArg):
                args.append((ArgKind.WEIGHT, a.index))
            elif isinstance(a, BatchArg):
                args.append((ArgKind.BATCH, 0))
            elif isinstance(a, ConstArg):
                args.append((ArgKind.CONST, a.value))
            else:
                raise CompileError(f"step {s.name}: argument {a!r} cannot be passed to native code")
        steps.append((address_of(s), s.kernel.items(), s.kernel.unit, args))
    return step_table(steps, max_args)
