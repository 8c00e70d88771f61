"""Benchmark: the compiled net against ONNX Runtime, OpenVINO (its default precision, which is
bf16 on CPUs with AVX512-BF16 or AMX, and f32) and PyTorch, side by side in one run, on the same
weights, with 1 and 2 threads and batch 1 and 8; every output is checked against the reference.

    python tools/bench.py                          # every case
    python tools/bench.py a resnet18               # some cases
    python tools/bench.py --quick                  # batch 1, shorter timing
    python tools/bench.py resnet50 --peers ort,ov  # some peers (ort, ov, ov-f32, torch)
    python tools/bench.py resnet50 --precision bf16 --peers ov   # ours in bf16 against OpenVINO's default
    python tools/bench.py resnet50 --profile       # and our time and GFLOP/s per fused kernel

Prints milliseconds, our GFLOP/s (2 x MACs / time) and, per peer, its time and the ratio peer
time / our time (above 1: cnngraph is faster). Ours and the peers are timed in alternating rounds
(`--rounds`), each a median of runs; times are the medians over the rounds and a ratio is the
median of the rounds' ratios, so that a shared machine's drifts hit both sides alike. `err` is the largest
difference from the reference relative to the output's scale: the numpy reference where it takes
seconds, else ONNX Runtime's f32 output (itself checked against numpy in the tests); a bf16 output
(ours with `--precision bf16`, OpenVINO's default) is within about 1e-2 of it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cnngraph  # noqa: E402
from cnngraph import oracle  # noqa: E402
from cnngraph.interop import export  # noqa: E402
from cnngraph.interop.runtime import session  # noqa: E402
from cnngraph.interop.torch_exec import forward as torch_forward  # noqa: E402

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
    "g": ("grouped conv3x3 128->128 g=16 @28 +relu (RegNetX)",
          "input: [128, 28, 28]\nlayers: [{conv: {out: 128, kernel: 3, padding: 1, groups: 16}}, {relu: {}}]"),
    "x": ("grouped conv3x3 256->256 g=32 @28 +relu (ResNeXt)",
          "input: [256, 28, 28]\nlayers: [{conv: {out: 256, kernel: 3, padding: 1, groups: 32}}, {relu: {}}]"),
    # issue 10: a squeeze-and-excitation block, transposed convolutions, resampling, channel shuffles
    "se": ("MBConv 40->240->40 @28 SE+SiLU (EffNet)", """
input: [40, 28, 28]
layers:
  - conv: {name: expand, out: 240, kernel: 1, bias: false}
  - batchnorm
  - silu
  - conv: {kernel: 5, padding: 2, groups: depthwise, bias: false}
  - batchnorm
  - silu: {name: h}
  - global_avgpool
  - conv: {out: 10, kernel: 1}
  - silu
  - conv: {out: 240, kernel: 1}
  - sigmoid: {name: gate}
  - mul: {from: [gate, h]}
  - conv: {out: 40, kernel: 1, bias: false}
  - batchnorm: {name: bn}
  - add: {from: [bn, input]}
"""),
    # pointwise convs as GEMMs: ConvNeXt's MLP (stage 3) and ResNet-50's bottleneck expansion (stage 1)
    "p1": ("1x1 384->1536 @14 +gelu (ConvNeXt MLP)",
           "input: [384, 14, 14]\nlayers: [{conv: {out: 1536, kernel: 1}}, gelu]"),
    "p2": ("1x1 64->256 @56 +relu (ResNet-50)",
           "input: [64, 56, 56]\nlayers: [{conv: {out: 256, kernel: 1}}, relu]"),
    "p3": ("1x1 768->3072 @7 (ConvNeXt MLP, stage 4)",
           "input: [768, 7, 7]\nlayers: [{conv: {out: 3072, kernel: 1}}]"),
    "ct": ("conv_transpose 4x4 s2 64->32 @28 +relu",
           "input: [64, 28, 28]\nlayers: [{conv_transpose: {out: 32, kernel: 4, stride: 2, padding: 1}}, relu]"),
    "cu": ("conv_transpose 2x2 s2 128->64 @28 (U-Net)",
           "input: [128, 28, 28]\nlayers: [{conv_transpose: {out: 64, kernel: 2, stride: 2}}]"),
    "up": ("FCN head: 1x1 64->21 @28, bilinear 8x out",
           "input: [64, 28, 28]\nlayers: [{conv: {out: 21, kernel: 1}}, {upsample: {scale: 8, mode: linear}}]"),
    "u2": ("bilinear 2x 64ch @56", "input: [64, 56, 56]\nlayers: [{upsample: {scale: 2, mode: linear}}]"),
    "un": ("FPN top-down: nearest 2x + lateral 1x1 @28", """
input: [128, 28, 28]
layers:
  - conv: {name: coarse, out: 128, kernel: 1, stride: 2}
  - upsample: {name: up, scale: 2}
  - conv: {name: lateral, from: input, out: 128, kernel: 1}
  - add: {from: [lateral, up]}
"""),
    "sh": ("ShuffleNetV2 units 116ch @28 x3", """
input: [116, 28, 28]
blocks:
  unit:
    layers:
      - split: {name: s, parts: 2}
      - conv: {from: s.1, out: 58, kernel: 1, bias: false}
      - batchnorm
      - relu
      - conv: {kernel: 3, padding: 1, groups: depthwise, bias: false}
      - batchnorm
      - conv: {out: 58, kernel: 1, bias: false}
      - batchnorm
      - relu: {name: b}
      - concat: {from: [s.0, b]}
      - shuffle: {groups: 2}
layers:
  - unit: {repeat: 3}
"""),
}
NETS = ("lenet5", "resnet18", "resnet50", "vgg16", "googlenet", "alexnet", "mobilenet_v2", "densenet121",
        "resnext50_32x4d", "efficientnet_b0", "mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v2_x1_0",
        "regnet_y_400mf", "convnext_tiny", "unet", "fcn_resnet18")
REFERENCE_LIMIT = 3e9  # MACs per row above which the numpy reference is not run
PEERS = ("ort", "ov", "ov-f32", "torch")


def ort_peer(model_path, graph, weights, threads):
    """ONNX Runtime on the exported net (the project's exporter: exact semantics)."""
    sess = session(model_path, threads)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def ov_peer(precision):
    def make(model_path, graph, weights, threads):
        """OpenVINO on the exported net: its default precision (bf16 where the CPU has it), or f32."""
        try:
            import openvino as ov
        except ImportError:
            return None
        config = {"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        compiled = ov.Core().compile_model(model_path, "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x})[0].copy()
    return make


def torch_peer(model_path, graph, weights, threads):
    """PyTorch (eager, torch.nn.functional) on the same weights, or None when not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch_forward(graph, weights)


MAKERS = {"ort": ort_peer, "ov": ov_peer(None), "ov-f32": ov_peer("f32"), "torch": torch_peer}


def median_time(fn, x, min_time=0.3, min_runs=5, max_runs=200):
    fn(x)  # warm up (allocations, first-touch)
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < min_time and len(times) < max_runs):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def interleaved(ours, peers: dict, x, rounds: int, min_time: float):
    """Our median time, each peer's, and each peer's ratio (its time / ours), measured in `rounds`
    alternating rounds (ours, then each peer) so that the machine's slow drifts hit both sides alike:
    the times are the medians of the rounds' medians, a ratio the median of the rounds' ratios.
    Each measurement starts after a pause: a peer's thread pool may keep spinning for a while."""
    ts: dict = {None: []} | {p: [] for p in peers}
    for _ in range(rounds):
        for p, fn in [(None, ours), *peers.items()]:
            time.sleep(0.1)
            ts[p].append(median_time(fn, x, min_time))
    mine = float(np.median(ts[None]))
    return (mine, {p: float(np.median(ts[p])) for p in peers},
            {p: float(np.median([t / o for t, o in zip(ts[p], ts[None])])) for p in peers})


def fmt_ms(t):
    return f"{'-':>8}" if t is None else (f"{t * 1e3:8.3f}" if t < 10 else f"{t * 1e3:8.1f}")


def rel_err(y, ref) -> float:
    return float(np.abs(y.astype(np.float64) - ref).max() / max(float(np.abs(ref).max()), 1e-6))


def print_profile(net, graph, batch, indent, top=12):
    """Our time per fused kernel (the steps that run it, summed) and its GFLOP/s, slowest first."""
    x = np.random.default_rng(0).standard_normal((batch, *graph.input_shape)).astype(np.float32)
    kernels: dict[str, list] = {}
    for r in net.profile(x, threads=1):
        k = kernels.setdefault(r["kernel"], [0.0, 0, 0, r["layers"][0] if r["layers"] else "(layout)"])
        k[0] += r["ms"]
        k[1] += r["macs"]
        k[2] += 1
    total = sum(k[0] for k in kernels.values())
    pad = " " * indent
    print(f"{pad}profile, 1 thread, batch {batch}: {total:.2f} ms in {len(kernels)} kernels; the {top} slowest:")
    for name, (ms, macs, steps, first) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]:
        gf = f"{2 * macs / ms / 1e6:7.1f} GFLOP/s" if macs else f"{'-':>7} GFLOP/s"
        print(f"{pad}  {name[:40]:40s} {ms:8.3f} ms {100 * ms / total:5.1f}%  {gf}  x{steps} ({first}, ...)")


def graph_of(case):
    if case in MICRO:
        title, text = MICRO[case]
        return cnngraph.load(text), f"({case}) {title}"
    return cnngraph.load(case), case


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    cases = "; ".join(f"{k}: {title}" for k, (title, _) in MICRO.items())
    ap.add_argument("cases", nargs="*", help=f"which cases (default: all): {cases}; nets (bundled specs by name): "
                                             f"{', '.join(NETS)}")
    ap.add_argument("--quick", action="store_true", help="batch 1 only, shorter timing")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated peers (default: {','.join(PEERS)})")
    ap.add_argument("--threads", default="1,2", help="thread counts (default: 1,2)")
    ap.add_argument("--batch", default=None, help="batch sizes (default: 1,8; 1 with --quick)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of ours and the peers; times are "
                                                          "medians over them (default: 5; 2 with --quick)")
    ap.add_argument("--precision", choices=("f32", "bf16", "auto"), default="f32",
                    help="what our convolutions compute in (default: f32)")
    ap.add_argument("--profile", action="store_true",
                    help="after each case, our milliseconds and GFLOP/s per fused kernel (one thread, batch 1 or "
                         "the first batch size)")
    args = ap.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in MAKERS]
    if unknown:
        ap.error(f"unknown peers {unknown}; expected some of {', '.join(PEERS)}")
    cases = args.cases or [*MICRO, *NETS]
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in (args.batch or ("1" if args.quick else "1,8")).split(",")]
    min_time = 0.05 if args.quick else 0.1
    if args.quick and "--rounds" not in (argv if argv is not None else sys.argv):
        args.rounds = 2
    print(f"cnngraph bench  cpu: {os.cpu_count()} cores; ours in {args.precision}; times are medians; "
          f"ratio = peer time / our time (> 1: cnngraph is faster)\n")
    width = max([len(f"({k}) {t}") for k, (t, _) in MICRO.items()] + [len(c) for c in NETS]) + 1
    head = f"{'case':<{width}}{'thr':>4}{'N':>3} {'ours ms':>8} {'GFLOP/s':>8}"
    for p in peers:
        head += f" {p + ' ms':>10} {'ratio':>6}"
    head += f" {'err ours':>9} {'err peers':>9}"
    print(head)
    print("-" * len(head))
    worst: dict[str, tuple] = {}
    for case in cases:
        graph, title = graph_of(case)
        weights = cnngraph.weights.init(graph, seed=0, gain=6 ** 0.5)
        t = time.perf_counter()
        nets = {th: cnngraph.compile(graph, threads=th, weights=weights, precision=args.precision) for th in threads}
        compile_s = time.perf_counter() - t
        macs = graph.totals()["macs"]
        with tempfile.TemporaryDirectory() as tmp:
            model_path = os.path.join(tmp, "net.onnx")
            export(graph, weights, model_path)
            for th in threads:
                for n in batches:
                    x = np.random.default_rng(n).standard_normal((n, *graph.input_shape)).astype(np.float32)
                    ours = nets[th](x)
                    ref = oracle.run(graph, x.astype(np.float64), weights) if macs * n <= REFERENCE_LIMIT else None
                    fns, errs = {}, []
                    for p in peers:
                        fn = MAKERS[p](model_path, graph, weights, th)
                        if fn is not None:
                            y = fns[p] = fn, fn(x)
                            if ref is None and p == "ort":
                                ref = y[1].astype(np.float64)
                            errs.append((p, y[1]))
                    t_ours, t_peer, ratios = interleaved(nets[th], {p: f for p, (f, _) in fns.items()}, x,
                                                         args.rounds, min_time)
                    row = f"{title:<{width}}{th:>4}{n:>3} {fmt_ms(t_ours)} {2 * macs * n / t_ours / 1e9:8.1f}"
                    for p in peers:
                        if p not in fns:
                            row += f" {'-':>10} {'-':>6}"
                            continue
                        ratio = ratios[p]
                        if p not in worst or ratio < worst[p][0]:
                            worst[p] = (ratio, case, th, n)
                        row += f" {fmt_ms(t_peer[p]):>10} {ratio:6.2f}"
                    del fns
                    err_ours = rel_err(ours, ref) if ref is not None else float("nan")
                    err_peers = max((rel_err(y, ref) for _, y in errs), default=float("nan")) \
                        if ref is not None else float("nan")
                    print(f"{row} {err_ours:9.1e} {err_peers:9.1e}", flush=True)
        print(f"{'':<{width}}compile ({len(nets)} nets): {compile_s:.2f}s, cached: {nets[threads[0]].cached}")
        if args.profile:
            print_profile(nets[threads[0]], graph, batches[0], width)
    print()
    for p, (ratio, case, th, n) in worst.items():
        print(f"worst ratio vs {p}: {ratio:.2f} ({case}, {th} thread(s), batch {n})")


if __name__ == "__main__":
    main()
