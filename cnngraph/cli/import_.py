"""`cnngraph import model.onnx -o net.yaml`: an ONNX model as a readable spec plus weights."""

from __future__ import annotations

import math
import os
import sys

from ..interop import import_onnx
from ..weights import save


def add_parser(sub):
    p = sub.add_parser("import", help="turn an ONNX model into a spec (.yaml) and weights")
    p.add_argument("model", help="an ONNX model (.onnx)")
    p.add_argument("-o", "--output", metavar="NET.yaml", help="the spec to write (default: print it)")
    p.add_argument("--weights-out", metavar="FILE", help=".safetensors or .npz for the weights "
                   "(default with -o: the spec's name with .safetensors)")
    p.add_argument("--name", help="the network's name (default: the model file's name)")
    p.set_defaults(func=main)


def main(args) -> int:
    imported = import_onnx(args.model, name=args.name)
    wpath = args.weights_out
    if wpath is None and args.output:
        wpath = os.path.splitext(args.output)[0] + ".safetensors"
    if wpath is not None:
        save(imported.weights, wpath)  # checks the extension before writing the spec
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(imported.yaml)
        n = sum(math.prod(v.shape) for v in imported.weights.values())
        print(f"{args.output}: {len(imported.spec.layers)} layers from {args.model}"
              + (f"; weights {wpath} ({n:,} values)" if wpath else ""))
    else:
        sys.stdout.write(imported.yaml)
        if wpath:
            print(f"# weights: {wpath}", file=sys.stderr)
    return 0
