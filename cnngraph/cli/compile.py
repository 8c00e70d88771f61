"""`cnngraph compile net.yaml`: the report, then the compiled net (kernels, compile
time, and a smoke run checked against the reference executor)."""

from __future__ import annotations

import json
import time

import cnngraph

from .. import report
from .. import weights as W
from ..errors import CnnGraphError

SMOKE_BATCH = 2
SMOKE_RTOL = 1e-4


def add_parser(sub):
    p = sub.add_parser("compile", help="report shapes, parameters, MACs, receptive fields; compile to native code")
    p.add_argument("spec", help="a network spec (.yaml) or an ONNX model (.onnx)")
    p.add_argument("--json", action="store_true", help="print the report (and compile results) as one JSON document")
    p.add_argument("--dot", metavar="FILE", help="write the graph as Graphviz DOT")
    p.add_argument("--strict", action="store_true", help="make warnings (e.g. untiled strides) errors")
    p.add_argument("--no-compile", action="store_true", help="report only")
    p.add_argument("--weights", metavar="FILE", help=".npz or .safetensors (default: seeded init)")
    p.add_argument("--seed", type=int, default=0, help="seed of the default initialisation")
    p.add_argument("--threads", type=int, default=None, help="native threads (default: all cores)")
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
        print(report.to_text(graph), flush=True)
    if args.no_compile:
        if args.json:
            print(json.dumps(doc, indent=2))
        return 0

    from ..compiler import assembly, llvm_ir, smoke_check
    weights = W.resolve(graph, cnngraph.onnx_weights(args.spec, args.weights), args.seed)
    t0 = time.perf_counter()
    net = cnngraph.compile(graph, threads=args.threads, weights=weights)
    seconds = time.perf_counter() - t0
    if args.emit_llvm:
        with open(args.emit_llvm, "w") as f:
            f.write(llvm_ir(net.plan))
    if args.emit_asm:
        with open(args.emit_asm, "w") as f:
            f.write(assembly(net.plan))
    err = smoke_check(net, SMOKE_BATCH, args.seed)
    check = {"batch": SMOKE_BATCH, "max_rel_error": err, "ok": err <= SMOKE_RTOL}
    kernels = net.plan.kernels()
    unfused = net.plan.unfused()
    if args.json:
        doc["compile"] = {"seconds": seconds, "cached": net.cached, "threads": net.threads,
                          "target": net.target.name, "steps": len(net.plan.steps), "kernels": kernels,
                          "unfused": [{"layer": n, "why": why} for n, why in unfused], "smoke": check}
        print(json.dumps(doc, indent=2))
    else:
        width = max(len(k["name"]) + len(str(k["count"])) + 2 for k in kernels)
        print(f"\ncompiled {len(kernels)} distinct kernels for {len(net.plan.steps)} steps in {seconds:.3f} s "
              f"({'from the cache' if net.cached else 'cold'}), {net.target.name}, {net.threads} thread(s):")
        for k in kernels:
            label = k["name"] + (f" x{k['count']}" if k["count"] > 1 else "")
            layers = "(layout change)" if k["layout"] else ", ".join(k["steps"][0])
            more = f"; and {k['count'] - 1} more like it" if k["count"] > 1 else ""
            print(f"  {label.ljust(width)}  {layers}{more}")
        for n, why in unfused:
            print(f"  not fused: '{n}': {why}")
        print(f"smoke run: batch {check['batch']}, max relative error vs reference {check['max_rel_error']:.2e} "
              f"({'ok' if check['ok'] else 'FAILED'})")
    if not check["ok"]:
        raise CnnGraphError(f"compiled output differs from the reference (max relative error "
                            f"{check['max_rel_error']:.2e} > {SMOKE_RTOL}): a compiler bug, please report it")
    return 0
