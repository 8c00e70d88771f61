"""Dataset-scale inference on a Dask cluster (`dask.distributed`), when one machine is not enough.

    from distributed import Client
    import cnngraph.dask
    client = Client("tcp://scheduler:8786")            # or LocalCluster() on one machine
    y = cnngraph.dask.predict("resnet50", x, weights="resnet50.pth")   # x: a dask or numpy array
    records = cnngraph.dask.predict("lenet5", dask.bag.from_sequence(paths, npartitions=64))

The weights are scattered to every worker once (`broadcast=True`): a task receives a
handle, never the arrays. Each worker process compiles the net the first time a task
needs it and keeps it (the on-disk object cache makes the second worker's compile
near-instant when workers share a machine); later tasks only run it. `STATS` counts
compiles and weight arrivals per worker process, so the tests can check both.

Files given to a worker are read by the worker: they must be at the same path there
(one machine, or a shared file system).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator

import numpy as np

from .errors import CnnGraphError

KEEP = 4  # compiled nets a worker keeps (most recently used)
STATS = {"compiles": 0, "weights_received": 0}  # per process: what the tests look at with client.run
_NETS: OrderedDict = OrderedDict()
_LOCK = threading.Lock()


class Weights:
    """The checked float32 weights, as one object that travels to each worker once."""

    def __init__(self, arrays: dict, key: str):
        self.arrays, self.key = arrays, key

    def __setstate__(self, state):  # unpickled: it just arrived in this process
        self.__dict__.update(state)
        STATS["weights_received"] += 1


def _keep_freed_memory() -> None:
    """dask.distributed starts workers with MALLOC_TRIM_THRESHOLD_=65536: glibc then maps every
    allocation above 128 KiB afresh and returns it on free, so each batch page-faults its buffers
    again (decoding images ran 2.5x slower). An inference worker reuses the same sizes over and
    over: let glibc keep up to 256 MiB of freed memory, and map only blocks above 64 MiB."""
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_", "")
    if not trim.isdigit() or int(trim) >= 256 << 20 or STATS.get("malloc_tuned"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        STATS["malloc_tuned"] = 1
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _net(source: str, weights: Weights, threads: int | None):
    """This worker's compiled net for (spec, weights, threads): compiled once, then kept."""
    key = (weights.key, threads)
    with _LOCK:
        net = _NETS.get(key)
        if net is None:
            _keep_freed_memory()
            from . import compile, load
            net = compile(load(source), threads=threads, weights=weights.arrays)
            STATS["compiles"] += 1
            _NETS[key] = net
            while len(_NETS) > KEEP:
                _NETS.popitem(last=False)
        _NETS.move_to_end(key)
    return net


def _run_block(source, weights, threads, x):
    return _net(source, weights, threads)(np.ascontiguousarray(x, dtype=np.float32))


def _run_items(source, weights, threads, batch, chunk):
    """Decode, preprocess and run files (or `.npy` rows) on the worker: (names, outputs, failures)."""
    from .data import batches
    net = _net(source, weights, threads)
    names, outs, failures = [], [], []
    for b in batches(net, chunk, batch, workers=1):
        failures += b.failures
        if b.names:
            names += b.names
            outs.append(net(b.x))
    y = np.concatenate(outs) if outs else np.zeros((0, *net.output_shape), np.float32)
    return names, y, failures


def _records(partition, source, weights, threads, batch):
    names, y, failures = _run_items(source, weights, threads, batch, list(partition))
    return [{"file": n, "output": row} for n, row in zip(names, y)] + \
        [{"file": n, "error": msg} for n, msg in failures]


def _client(client):
    if client is not None:
        return client
    try:
        from distributed import get_client
    except ImportError:
        raise CnnGraphError("cnngraph.dask needs Dask: pip install 'cnngraph[dask]'") from None
    try:
        return get_client()
    except ValueError:
        raise CnnGraphError("no Dask client: start one first, e.g. distributed.Client('tcp://scheduler:8786') "
                            "or distributed.Client(distributed.LocalCluster())") from None


def share(spec, weights=None, seed: int = 0, client=None):
    """(source, graph, scattered weights) for tasks: the spec as YAML text (small, sent with each
    task) and the checked weights scattered once to every worker."""
    from . import load, onnx_weights
    from .weights import resolve
    client = _client(client)
    graph = load(spec)
    source = graph.spec.source
    if not source:
        raise CnnGraphError("cnngraph.dask needs the spec as YAML: turn an ONNX model into one first "
                            "(cnngraph import model.onnx -o net.yaml)")
    w = resolve(graph, onnx_weights(spec, weights), seed)
    h = hashlib.blake2b(source.encode(), digest_size=16)
    for k in sorted(w):
        h.update(k.encode())
        h.update(w[k].tobytes())
    handle = client.scatter(Weights(w, h.hexdigest()), broadcast=True, hash=False)
    return source, graph, handle


def predict(spec, data, weights=None, *, seed: int = 0, threads: int | None = 1, batch: int = 32, client=None):
    """Run `spec` over `data` on the current Dask cluster.

    - a dask array (N, *input_shape) -> a dask array (N, *output_shape), lazily;
    - a numpy array -> a numpy array (split into chunks of `batch` rows);
    - a dask bag of file paths -> a bag of records `{"file", "output"}` (or `{"file", "error"}`).

    `weights` as in `cnngraph.compile`; `threads` per task (default 1: one task per worker core).
    """
    import dask
    import dask.array as da
    if not (isinstance(data, (np.ndarray, da.Array)) or hasattr(data, "map_partitions")):
        raise TypeError(f"expected a dask array, a numpy array or a dask bag of paths, got {type(data).__name__}")
    source, graph, handle = share(spec, weights, seed, client)
    shape, out = tuple(graph.input_shape), tuple(graph.output_shape)
    if hasattr(data, "map_partitions") and not isinstance(data, da.Array):  # a dask bag
        return data.map_partitions(_records, source, handle, threads, batch)
    array = data if isinstance(data, da.Array) else da.from_array(data, chunks=(batch, *shape))
    if tuple(array.shape[1:]) != shape:
        raise ValueError(f"expected an array of shape (N, {', '.join(map(str, shape))}), got {array.shape}")
    array = array.rechunk({i: -1 for i in range(1, array.ndim)})  # whole samples per block
    run = dask.delayed(_run_block, pure=True)
    parts = [da.from_delayed(run(source, handle, threads, block), shape=(n, *out), dtype=np.float32)
             for block, n in zip(array.to_delayed().ravel(), array.chunks[0])]
    y = da.concatenate(parts) if parts else da.zeros((0, *out), dtype=np.float32)
    return y if isinstance(data, da.Array) else y.compute()


def stream(client, spec, items: Iterable, weights=None, *, seed: int = 0, threads: int | None = 1,
           batch: int = 32, chunk: int | None = None, window: int | None = None) -> Iterator[tuple]:
    """`cnngraph run --dask`: (names, outputs, failures) per chunk of `items`, in input order,
    with at most `window` chunks in flight (bounded memory on the client and the cluster)."""
    from .data import _take
    source, _, handle = share(spec, weights, seed, client)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    chunk = chunk or batch * 4
    window = window or 4 * workers
    it = iter(items)
    pending = []
    while True:
        while len(pending) < window:
            part = _take(it, chunk)
            if not part:
                break
            pending.append(client.submit(_run_items, source, handle, threads, batch, part, pure=False))
        if not pending:
            return
        future = pending.pop(0)
        yield future.result()
        future.release()
