"""Benchmark: the compiled net against the numpy reference, ONNX Runtime and (when installed)
PyTorch, on the same weights, with 1 and 2 threads and batch 1 and 8.

    python tools/bench.py                   # every case
    python tools/bench.py a resnet18        # some cases
    python tools/bench.py --quick           # batch 1, shorter timing

Prints milliseconds (the median of several runs), GFLOP/s (2 x MACs / time) and two speed
ratios, ORT time / our time and PyTorch time / our time (above 1: cnngraph is faster). The
numpy reference is timed once per row, and not at all where it would take minutes.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cnngraph
from cnngraph import oracle
from cnngraph import compile as jit_compile
from cnngraph.interop import export
from cnngraph.interop.runtime import session
from cnngraph.interop.torch_exec import forward as torch_forward

MICRO = {  # short cases: one fused kernel each
    "a": ("conv3x3 64->64 @56 +relu+pool",
          "input: [64, 56, 56]\nlayers: [{conv: {out: 64, kernel: 3, padding: 1}}, {relu: {}}, {maxpool: {kernel: 2}}]"),
    "b": ("conv3x3 3->64 @224 +relu+pool",
          "input: [3, 224, 224]\nlayers: [{conv: {out: 64, kernel: 3, padding: 1}}, {relu: {}}, {maxpool: {kernel: 2}}]"),
    "c": ("conv5x5 1->6 @28 +relu+pool (LeNet)",
          "input: [1, 28, 28]\nlayers: [{conv: {out: 6, kernel: 5}}, {relu: {}}, {maxpool: {kernel: 2}}]"),
    "d": ("depthwise 3x3 128ch @56 +relu",
          "input: [128, 56, 56]\nlayers: [{conv: {kernel: 3, padding: 1, groups: depthwise}}, {relu: {}}]"),
    "e": ("conv1d k3 64->64 @4096 +relu+pool",
          "input: [64, 4096]\nlayers: [{conv: {out: 64, kernel: 3, padding: 1}}, {relu: {}}, {maxpool: {kernel: 2}}]"),
}
NETS = ("lenet5", "resnet18", "vgg16", "mobilenet_v2")
REFERENCE_LIMIT = 3e9  # MACs per row above which the numpy reference is not timed


def ort_fn(model, threads):
    """ONNX Runtime on the exported net (the project's exporter: exact semantics)."""
    sess = session(model, threads)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def torch_fn(graph, weights, threads):
    """PyTorch (eager, torch.nn.functional) on the same weights, or None when not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch_forward(graph, weights)


def median_time(fn, x, min_time=0.3, min_runs=5, max_runs=200):
    fn(x)  # warm up (allocations, first-touch)
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < min_time and len(times) < max_runs):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def fmt_ms(t):
    return f"{'-':>9}" if t is None else (f"{t * 1e3:9.3f}" if t < 10 else f"{t * 1e3:9.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    cases = "; ".join(f"{k}: {title}" for k, (title, _) in MICRO.items())
    ap.add_argument("cases", nargs="*", help=f"which cases (default: all): {cases}; nets: {', '.join(NETS)}")
    ap.add_argument("--quick", action="store_true", help="batch 1 only, shorter timing")
    args = ap.parse_args(argv)
    cases = args.cases or [*MICRO, *NETS]
    batches = (1,) if args.quick else (1, 8)
    min_time = 0.1 if args.quick else 0.3
    print(f"cnngraph bench  cpu: {os.cpu_count()} cores; times are medians; "
          f"ratio = peer time / our time (> 1: we are faster)\n")
    width = max(len(f"({k}) {t}") for k, (t, _) in MICRO.items()) + 2
    head = (f"{'case':<{width}}{'thr':>4}{'N':>3} {'ours ms':>9} {'GFLOP/s':>8} {'ORT ms':>9} {'GFLOP/s':>8} "
            f"{'vs ORT':>6} {'torch ms':>9} {'vs torch':>8} {'numpy ms':>9} {'err':>8}")
    print(head)
    print("-" * len(head))
    rows = []
    for case in cases:
        if case in MICRO:
            title, text = MICRO[case]
            graph = cnngraph.load(text)
            title = f"({case}) {title}"
        else:
            graph = cnngraph.load(str(ROOT / "specs" / f"{case}.yaml"))
            title = case
        weights = cnngraph.weights.init(graph, seed=0)
        t = time.perf_counter()
        nets = {th: jit_compile(graph, threads=th, weights=weights) for th in (1, 2)}
        compile_s = time.perf_counter() - t
        model = export(graph, weights)
        macs = graph.totals()["macs"]
        for th in (1, 2):
            for n in batches:
                x = np.random.default_rng(n).standard_normal((n, *graph.input_shape)).astype(np.float32)
                # ours first: ORT's pool threads keep spinning on the cores for a while after a run
                t_ours = median_time(nets[th], x, min_time)
                ort = ort_fn(model, th)
                ours, ref = nets[th](x), ort(x)
                err = float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-6))
                t_ort = median_time(ort, x, min_time)
                del ort
                time.sleep(0.2)
                pt = torch_fn(graph, weights, th)
                t_pt = None if pt is None else median_time(pt, x, min_time)
                t_np = None
                if th == 1 and macs * n <= REFERENCE_LIMIT:
                    t0 = time.perf_counter()
                    oracle.run(graph, x, weights)
                    t_np = time.perf_counter() - t0
                fl = 2 * macs * n
                ratio = t_ort / t_ours
                rows.append((case, th, n, ratio))
                vs_pt = "-" if t_pt is None else f"{t_pt / t_ours:.2f}"
                print(f"{title:<{width}}{th:>4}{n:>3} {fmt_ms(t_ours)} {fl / t_ours / 1e9:8.1f} {fmt_ms(t_ort)} "
                      f"{fl / t_ort / 1e9:8.1f} {ratio:6.2f} {fmt_ms(t_pt)} {vs_pt:>8} {fmt_ms(t_np)} {err:8.1e}",
                      flush=True)
        print(f"{'':<{width}}compile (2 nets): {compile_s:.2f}s, cached: {nets[1].cached}")
    worst = min(rows, key=lambda r: r[3])
    print(f"\nworst ratio vs ORT: {worst[3]:.2f} ({worst[0]}, {worst[1]} thread(s), batch {worst[2]}); "
          f"bar: >= 0.5 everywhere, lenet5 batch 1 > 1")


if __name__ == "__main__":
    main()
