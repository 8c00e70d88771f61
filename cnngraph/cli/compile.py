"""`cnngraph compile net.yaml`: the report, then the compiled net (kernels, compile
time, and a smoke run of the native code).

The smoke run checks the native code against the numpy reference when that is
cheap (at most `CHECK_MACS` multiply-accumulates, well under a second); for a
larger net it runs the native code once and checks that the output is finite,
and `--check` asks for the full comparison (VGG-16's takes about 10 s of numpy).
"""

from __future__ import annotations

import json
import time

import numpy as np

import cnngraph

from .. import report, units
from .. import weights as W
from ..errors import CnnGraphError
from ._common import positive, precision_label, precision_option, status, threads

SMOKE_BATCH = 2
SMOKE_RTOL = {"f32": 1e-4, "bf16": 3e-2}  # of the output's scale; bf16: the documented contract (README)
CHECK_MACS = 300_000_000  # per smoke batch: the numpy reference does this in about half a second
REFERENCE_MACS_PER_S = 1.5e9  # what the numpy reference manages here, for the estimate --check prints


def add_parser(sub):
    p = sub.add_parser("compile", help="report shapes, parameters, MACs, receptive fields; compile to native code",
                       description="Report a network (a spec file, a bundled spec by name such as resnet50, or an "
                                   ".onnx model), then compile it to native code and smoke-run it.")
    p.add_argument("spec", help="a network spec (.yaml), a bundled spec's name (cnngraph specs), or an ONNX model")
    p.add_argument("--json", action="store_true", help="print the report (and compile results) as one JSON document")
    p.add_argument("--dot", metavar="FILE", help="write the graph as Graphviz DOT")
    p.add_argument("--depth", type=positive("a depth"), metavar="N",
                   help="collapse groups of layers (blocks, dotted names) below this depth, as torchinfo")
    p.add_argument("--strict", action="store_true", help="make warnings (untiled strides, an input that looks "
                                                         "batched, layers nothing reads) errors")
    p.add_argument("--no-compile", action="store_true", help="report only")
    p.add_argument("--check", action="store_true", help="compare the native code with the numpy reference even "
                   f"when that takes long (by default only nets up to {units.count(CHECK_MACS)} MACs per batch "
                   f"of {SMOKE_BATCH} are compared)")
    p.add_argument("--no-check", action="store_true", help="skip the smoke run")
    p.add_argument("--weights", metavar="FILE", help=".npz, .safetensors or PyTorch .pt/.pth (default: seeded init)")
    p.add_argument("--seed", type=int, default=0, help="seed of the default initialisation")
    p.add_argument("--threads", type=threads, default=None, metavar="N", help="native threads (default: all cores)")
    precision_option(p)
    p.add_argument("--emit-llvm", metavar="FILE", help="write the LLVM IR")
    p.add_argument("--emit-asm", metavar="FILE", help="write the optimised assembly")
    p.set_defaults(func=main)


def main(args) -> int:
    graph = cnngraph.load(args.spec, strict=args.strict)
    if args.dot:
        with open(args.dot, "w") as f:
            f.write(report.to_dot(graph))
    doc = report.to_json(graph) if args.json else None
    if not args.json:
        print(report.to_text(graph, args.depth), flush=True)
    if args.no_compile:
        if args.json:
            print(json.dumps(doc, indent=2))
        return 0

    from ..compiler import assembly, llvm_ir
    with status("loading weights" if args.weights else "initialising weights"):
        weights = W.resolve(graph, cnngraph.onnx_weights(args.spec, args.weights), args.seed)
    t0 = time.perf_counter()
    with status(f"compiling {graph.name}"):
        net = cnngraph.compile(graph, threads=args.threads, weights=weights, precision=args.precision)
    seconds = time.perf_counter() - t0
    if args.emit_llvm:
        with open(args.emit_llvm, "w") as f:
            f.write(llvm_ir(net.plan))
    if args.emit_asm:
        with open(args.emit_asm, "w") as f:
            f.write(assembly(net.plan))
    check = None if args.no_check else smoke(net, args.check, args.seed)
    kernels = net.plan.kernels()
    unfused = net.plan.unfused()
    if args.json:
        doc["compile"] = {"seconds": seconds, "cached": net.cached, "threads": net.threads,
                          "target": net.target.name, "precision": net.precision, "steps": len(net.plan.steps), "kernels": kernels,
                          "unfused": [{"layer": n, "why": why} for n, why in unfused], "smoke": check}
        print(json.dumps(doc, indent=2))
    else:
        how = "native code from the cache" if net.cached else "cold: native code built and cached"
        print(f"\ncompiled {len(kernels)} distinct kernels for {units.plural(len(net.plan.steps), 'step')} in "
              f"{units.seconds(seconds)} ({how}), {net.target.name}, {precision_label(net)}, "
              f"{units.plural(net.threads, 'thread')}:")
        print("\n".join(kernel_lines(kernels, unfused)))
        if check is not None:
            print(smoke_line(check))
    if check is not None and not check["ok"]:
        raise CnnGraphError(check["problem"])
    return 0


def kernel_lines(kernels: list[dict], unfused: list) -> list[str]:
    """The distinct kernels (how many steps run each, the layers of the first), then why the layers
    that run on their own were not fused."""
    width = max(len(k["name"]) + len(str(k["count"])) + 2 for k in kernels)
    lines = []
    for k in kernels:
        label = k["name"] + (f" x{k['count']}" if k["count"] > 1 else "")
        layers = "(layout change)" if k["layout"] else ", ".join(k["steps"][0])
        more = f"; and {k['count'] - 1} more like it" if k["count"] > 1 else ""
        lines.append(f"  {label.ljust(width)}  {layers}{more}")
    return lines + [f"  not fused: '{n}': {why}" for n, why in unfused]


def smoke(net, full: bool, seed: int) -> dict:
    """Run the native code once on random data; compare with the reference when cheap or asked."""
    from ..compiler import smoke_check
    macs = net.graph.totals()["macs"] * SMOKE_BATCH
    estimate = macs / REFERENCE_MACS_PER_S
    if full or macs <= CHECK_MACS:
        with status(f"checking against the numpy reference (about {units.seconds(max(estimate, 0.1))})"):
            t = time.perf_counter()
            err = smoke_check(net, SMOKE_BATCH, seed)
            took = time.perf_counter() - t
        tol = SMOKE_RTOL[net.precision]
        ok = err <= tol
        return {"batch": SMOKE_BATCH, "reference": True, "max_rel_error": err, "ok": ok, "seconds": took,
                "problem": None if ok else (f"compiled output differs from the reference (max relative error "
                                            f"{err:.2e} > {tol}): a compiler bug, please report it")}
    x = np.random.default_rng(seed).standard_normal((1, *net.input_shape)).astype(np.float32)
    t = time.perf_counter()
    y = net(x)
    took = time.perf_counter() - t
    finite = bool(np.isfinite(y).all())
    return {"batch": 1, "reference": False, "max_rel_error": None, "ok": finite, "seconds": took,
            "skipped_reference": f"{units.count(macs)} MACs for a batch of {SMOKE_BATCH}, about "
                                 f"{units.seconds(estimate)} of numpy",
            "problem": None if finite else "the compiled net gave NaN or infinity on random normal input"}


def smoke_line(check: dict) -> str:
    if check["reference"]:
        return (f"smoke run: batch {check['batch']}, max relative error vs reference {check['max_rel_error']:.2e} "
                f"({'ok' if check['ok'] else 'FAILED'})")
    return (f"smoke run: batch 1 in {units.seconds(check['seconds'])}, output "
            f"{'finite (ok)' if check['ok'] else 'NOT finite (FAILED)'}; reference check skipped "
            f"({check['skipped_reference']}; --check runs it)")
