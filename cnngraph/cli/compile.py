"""`cnngraph compile net.yaml`: the report, then (when available) the compiled net."""

from __future__ import annotations

import json
import sys

from .. import load, report


def add_parser(sub):
    p = sub.add_parser("compile", help="report shapes, parameters, MACs, receptive fields; compile")
    p.add_argument("spec", help="a network spec (.yaml)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument("--dot", metavar="FILE", help="write the graph as Graphviz DOT")
    p.add_argument("--strict", action="store_true", help="make warnings (e.g. untiled strides) errors")
    p.set_defaults(func=main)


def main(args) -> int:
    graph = load(args.spec, strict=args.strict)
    if args.dot:
        with open(args.dot, "w") as f:
            f.write(report.to_dot(graph))
    if args.json:
        json.dump(report.to_json(graph), sys.stdout, indent=2)
        print()
    else:
        print(report.to_text(graph))
    return 0
