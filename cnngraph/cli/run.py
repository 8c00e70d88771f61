"""`cnngraph run net.yaml --input x.npy -o y.npy`: run a network on data."""

from __future__ import annotations

import numpy as np

from .. import load
from .. import oracle
from .. import weights as W
from ..errors import CnnGraphError


def add_parser(sub):
    p = sub.add_parser("run", help="run a network on an input array (.npy)")
    p.add_argument("spec")
    p.add_argument("--input", required=True, metavar="X.npy", help="input batch (N, C, *spatial)")
    p.add_argument("--weights", metavar="FILE", help=".npz or .safetensors (default: seeded init)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, metavar="Y.npy")
    p.add_argument("--reference", action="store_true", help="use the numpy reference executor")
    p.set_defaults(func=main)


def main(args) -> int:
    graph = load(args.spec)
    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CnnGraphError(f"cannot read input {args.input}: {e}") from None
    w = W.resolve(graph, args.weights, args.seed)
    y = oracle.run(graph, x, w)
    np.save(args.output, y)
    print(f"{args.output}: {y.shape} float32")
    return 0
