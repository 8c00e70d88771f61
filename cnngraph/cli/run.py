"""`cnngraph run net.yaml --input x.npy -o y.npy`: run a network on data."""

from __future__ import annotations

import numpy as np

import cnngraph

from .. import oracle
from .. import weights as W
from ..errors import CnnGraphError


def add_parser(sub):
    p = sub.add_parser("run", help="run a network on an input array (.npy)")
    p.add_argument("spec", help="a network spec (.yaml) or an ONNX model (.onnx)")
    p.add_argument("--input", required=True, metavar="X.npy", help="input batch (N, C, *spatial)")
    p.add_argument("--weights", metavar="FILE", help=".npz or .safetensors (default: seeded init, or the "
                                                     "ONNX model's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the default initialisation")
    p.add_argument("-o", "--output", required=True, metavar="Y.npy")
    p.add_argument("--threads", type=int, default=None, help="native threads (default: all cores)")
    p.add_argument("--reference", action="store_true", help="use the numpy reference executor, not native code")
    p.set_defaults(func=main)


def main(args) -> int:
    graph = cnngraph.load(args.spec)
    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CnnGraphError(f"cannot read input {args.input}: {e}") from None
    w = W.resolve(graph, cnngraph.onnx_weights(args.spec, args.weights), args.seed)
    if args.reference:
        y = oracle.run(graph, x, w)
    else:
        y = cnngraph.compile(graph, threads=args.threads, weights=w)(x)
    np.save(args.output, y)
    print(f"{args.output}: {y.shape} {y.dtype}")
    return 0
