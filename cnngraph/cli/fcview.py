"""`cnngraph fcview net.yaml`: every layer as the sparse FC matrix it is, checked against the reference."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

from .. import fcview, load
from ..errors import CnnGraphError

COLUMNS_HELP = """\
columns of the table (one row per layer; layer(x).ravel() == M @ x.ravel() + b):
  mode          linear: M is exact for every input (conv, linear, pools' averages, batchnorm);
                piecewise: exact in the region of this input (ReLU keeps or drops, max-pool selects);
                local: the tangent at this input (sigmoid, tanh, softmax, LRN)
  matrix        rows x cols of M: output elements x input elements, per sample
  connections   non-zeros of M: input-output pairs really connected (padding taps not counted)
  params        trainable parameters of the layer (weights and bias)
  sharing       connections per parameter: how often each weight is used (a conv's kernel slides)
  reuse         connections per distinct tied weight entry (for a conv: the output positions)
  density       connections / (rows x cols): how far from fully connected the layer is
  dense params  what an unshared fully-connected layer between the same input and output would
                need: in x out (+ out biases where the layer has a bias)
  max error     max |M x + b - reference(x)| in float64 at the checked input: the matrix is right
The total line sums connections, params and dense params over the layers; identity-like layers
(batchnorm, ReLU, dropout) count their in x out dense params too. See docs/spec.md, "The FC view".
"""


def add_parser(sub):
    p = sub.add_parser("fcview", help="each layer (and the whole net) as a sparse fully-connected matrix",
                       epilog=COLUMNS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="a network spec (.yaml)")
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="only this layer (repeatable); skips the whole-network map")
    p.add_argument("--input", metavar="X.npy", help="the input sample (C, *spatial) or (1, C, *spatial) "
                   "the piecewise-linear and local layers are lowered at (default: random normal with --seed)")
    p.add_argument("--weights", metavar="FILE", help=".npz or .safetensors (default: seeded init)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the random input")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--npz", metavar="PATH", help="save the matrices (scipy.sparse.load_npz reads them): a .npz "
                   "file for a single matrix, else a directory with <layer>.npz and network.npz")
    p.add_argument("--png", metavar="FILE", help="draw the connectivity (needs matplotlib)")
    p.add_argument("--no-network", action="store_true", help="skip the composed whole-network map")
    p.add_argument("--max-memory", type=float, default=fcview.DEFAULT_MAX_BYTES / 2**30, metavar="GiB",
                   help="refuse any matrix needing more (default: %(default)g)")
    p.set_defaults(func=main)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def main(args) -> int:
    graph = load(args.spec)
    x = None
    if args.input:
        try:
            x = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CnnGraphError(f"cannot read input {args.input}: {e}") from None
    network = not args.no_network and not args.layer
    n_layers = len(args.layer) if args.layer else len(graph.nodes)
    single = None  # the .npz file when exactly one matrix is saved
    if args.npz:
        if args.npz.endswith(".npz"):
            if n_layers + network != 1:
                raise CnnGraphError(f"--npz {args.npz} holds one matrix, but {n_layers} layer(s)"
                                    f"{' and the network' if network else ''} are selected — give a directory, "
                                    f"or one --layer NAME")
            single = args.npz
        else:
            os.makedirs(args.npz, exist_ok=True)
    if args.png:  # fail before the work, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CnnGraphError("--png needs matplotlib: pip install 'cnngraph[plot]'") from None
    panels = []

    def on_layer(lv, lo):
        if args.npz:
            fcview.save_npz(single or os.path.join(args.npz, _safe(lv.name) + ".npz"), lo)
        if args.png:
            panels.append(fcview.connectivity_image(f"{lv.name} ({lv.op})", lo.matrix, lo.tie))

    def on_network(nm):
        if args.npz:
            fcview.save_npz(single or os.path.join(args.npz, "network.npz"), nm)
        if args.png:
            panels.append(fcview.connectivity_image("network y = A x + c", nm.A))

    v = fcview.view(graph, weights=args.weights, x=x, seed=args.seed, names=args.layer, network=network,
                    max_bytes=int(args.max_memory * 2**30), on_layer=on_layer, on_network=on_network)
    if args.layer and v.network is not None and not v.network.built:
        v = fcview.FCView(v.name, v.input_shape, v.seed, v.layers,
                          fcview.NetworkView(False, "not requested (--layer)"))
    if args.png:
        fcview.plot(panels, args.png)
    if args.json:
        json.dump(fcview.to_json(v), sys.stdout, indent=2)
        print()
    else:
        print(fcview.format_table(v))
    return 0
