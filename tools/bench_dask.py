"""Throughput on real files: images per second through decode, preprocess and the compiled net,
in one process (1 and 2 native threads) and on a Dask LocalCluster with 1 and 2 workers.

    python tools/bench_dask.py                       # mobilenet_v2 on 256 generated 320x240 JPEGs
    python tools/bench_dask.py --spec resnet18 --images 512 --repeat 5

Each setup runs once to warm up (compiling, worker start-up), then `--repeat` times; the
table gives the median images/s and the ratio to one process with one thread. Numbers
depend on what else the machine is doing: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cnngraph
from cnngraph import data


def make_images(folder: pathlib.Path, n: int, seed: int = 0) -> list[str]:
    from PIL import Image
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # smooth-ish content compresses like a photo
        img = Image.fromarray(base).resize((320, 240), Image.BILINEAR)
        path = folder / f"img{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def local(spec, paths, threads, batch):
    """One process: `threads` native threads and as many decoding threads (a worker below has one of each)."""
    net = cnngraph.compile(spec, threads=threads)
    count = 0
    for b in data.batches(net, paths, batch, workers=threads):
        if b.names:
            net(b.x)
        count += len(b.names)
    return count


def on_dask(client, spec, paths, batch):
    import dask.bag as db
    n = len(client.scheduler_info()["workers"])
    bag = db.from_sequence(paths, npartitions=max(4 * n, len(paths) // (4 * batch)))
    records = cnngraph.dask.predict(spec, bag, batch=batch, client=client).compute()
    return sum("output" in r for r in records)


def timed(fn, repeat):
    fn()  # warm up: compile, start workers, fill the page cache
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="mobilenet_v2", help="a spec file or bundled name (default: %(default)s)")
    ap.add_argument("--images", type=int, default=256, help="how many JPEGs to generate (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=16, help="images per native call (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per setup; the median is shown")
    args = ap.parse_args(argv)
    from distributed import Client, LocalCluster
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(pathlib.Path(tmp), args.images)
        spec = cnngraph.load(args.spec)
        if spec.spec.preprocess is None:
            raise SystemExit(f"{args.spec} has no preprocess section; pick a spec that reads 224x224 images")
        rows = []
        for threads in (1, 2):
            t = timed(lambda th=threads: local(spec, paths, th, args.batch), args.repeat)
            rows.append((f"one process, {threads} thread{'s' if threads > 1 else ''}", t))
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=40) as cluster, Client(cluster) as client:
                t = timed(lambda c=client: on_dask(c, args.spec, paths, args.batch), args.repeat)
            rows.append((f"dask, {workers} worker{'s' if workers > 1 else ''} x 1 thread", t))
    base = args.images / rows[0][1]
    print(f"{args.spec}: {args.images} JPEGs 320x240 -> preprocess -> net, batch {args.batch}, "
          f"{os.cpu_count()} cores, median of {args.repeat}")
    print(f"{'setup':<32}{'images/s':>10}{'vs one thread':>15}")
    for name, t in rows:
        print(f"{name:<32}{args.images / t:>10.1f}{args.images / t / base:>14.2f}x")
    print(f"2 dask workers / 1 dask worker: {rows[2][1] / rows[3][1]:.2f}x")


if __name__ == "__main__":
    main()
