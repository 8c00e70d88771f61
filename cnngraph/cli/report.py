"""`cnngraph report net.yaml --html report.html`: the network as one page (or its graph as SVG/DOT)."""

from __future__ import annotations

import os

import cnngraph

from .. import html_report, report
from .. import weights as W
from ..errors import CnnGraphError


def add_parser(sub):
    p = sub.add_parser("report", help="an HTML page (graph, fused kernels, receptive fields, FC view) or the "
                                      "graph as SVG/DOT; without an output, the text report")
    p.add_argument("spec", help="a network spec (.yaml) or an ONNX model (.onnx)")
    p.add_argument("--html", metavar="FILE", help="write the self-contained HTML report")
    p.add_argument("--svg", metavar="FILE", help="write the network graph as SVG (needs Graphviz's dot)")
    p.add_argument("--dot", metavar="FILE", help="write the detailed graph (attributes, blocks, kernels) as DOT")
    p.add_argument("--no-fusion", action="store_true", help="leave out the compiler's fused kernels")
    p.add_argument("--no-charts", action="store_true", help="leave the charts out of the HTML page")
    p.add_argument("--weights", metavar="FILE", help=".npz or .safetensors the fusion plan folds (default: seeded "
                   "init; the kernels do not depend on the values)")
    p.add_argument("--strict", action="store_true", help="make warnings (e.g. untiled strides) errors")
    p.set_defaults(func=main)


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path} ({os.path.getsize(path):,} bytes)")


def main(args) -> int:
    graph = cnngraph.load(args.spec, strict=args.strict)
    if not (args.html or args.svg or args.dot):
        print(report.to_text(graph))
        return 0
    if args.svg and html_report.dot_program() is None:  # refuse before any work
        raise CnnGraphError("--svg needs Graphviz's 'dot' program: install Graphviz (e.g. apt-get install "
                            "graphviz), or write --dot and render it elsewhere")
    if args.html and not args.no_charts:
        from .. import pictures
        pictures.pyplot()  # a clear error now rather than after the plan
    fusion = []
    if not args.no_fusion:
        weights = W.resolve(graph, cnngraph.onnx_weights(args.spec, args.weights), 0)
        fusion = html_report.fusion_groups(graph, weights)
    if args.dot:
        _write(args.dot, report.to_dot(graph, detail=True, fusion=fusion))
    if args.svg:
        _write(args.svg, html_report.graph_svg(graph, fusion))
    if args.html:
        _write(args.html, html_report.to_html(graph, fusion=fusion, charts=not args.no_charts))
    return 0
