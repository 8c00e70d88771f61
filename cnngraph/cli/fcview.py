"""`cnngraph fcview net.yaml`: every layer as the sparse FC matrix it is, checked against the reference."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys


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
    p.add_argument("--png", metavar="FILE", help="draw the connectivity, or with --erf the effective receptive "
                   "field (needs matplotlib)")
    p.add_argument("--erf", metavar="LAYER[:c,y,x]", help="the effective receptive field of one unit (default: "
                   "channel 0 at the centre): its row of the composed map, computed backwards, over the input")
    p.add_argument("--inputs", type=int, default=None, metavar="N", help="with --erf: average over N random "
                   "normal inputs (default 1; --input gives them instead)")
    p.add_argument("--no-network", action="store_true", help="skip the composed whole-network map")
    p.add_argument("--max-memory", type=float, default=fcview.DEFAULT_MAX_BYTES / 2**30, metavar="GiB",
                   help="refuse any matrix needing more (default: %(default)g)")
    p.set_defaults(func=main)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CnnGraphError("--png needs matplotlib: pip install 'cnngraph[plot]'") from None


def erf_main(args, graph, x) -> int:
    if args.layer or args.npz or args.no_network:
        raise CnnGraphError("--erf takes no --layer, --npz or --no-network: it follows one unit back to the input")
    if args.png:
        _matplotlib()
    if x is not None and args.inputs is not None:
        raise CnnGraphError("give either --input (the samples) or --inputs N (random samples), not both")
    if x is not None and x.shape == tuple(graph.input_shape):
        x = x[None]
    name, unit = fcview.parse_unit(args.erf, graph)
    n = 1 if args.inputs is None else args.inputs
    e = fcview.erf(graph, name, unit, inputs=x if x is not None else n, weights=args.weights,
                   seed=args.seed, max_bytes=int(args.max_memory * 2**30))
    if args.png:
        from .. import pictures
        pictures.save_png(pictures.erf_figure(e), args.png)
    if args.json:
        json.dump(e.as_dict(), sys.stdout, indent=2)
        print()
    else:
        d = e.as_dict()
        print(f"{graph.name}: effective receptive field of {e.layer}[{','.join(map(str, e.unit))}] ({e.op}), "
              f"mean |row of the composed map| over {e.inputs} input(s) ({e.mode})")
        print(f"theoretical: {'x'.join(f'{s:g}' for s in e.theoretical_size)} input px centred at "
              f"({', '.join(f'{c:g}' for c in e.centre)}), box {' x '.join(f'[{lo}, {hi})' for lo, hi in e.box)} "
              f"in the {'x'.join(map(str, graph.input_shape[1:]))} input")
        print(f"effective: 50% of the mass within r = {e.radius_50:.1f} px, 95% within r = {e.radius_95:.1f} px "
              f"(95% diameter / theoretical size = {d['effective']['diameter_95_over_theoretical']:.2f})")
    return 0


def main(args) -> int:
    graph = load(args.spec)
    x = None
    if args.input:
        from ..data import read_npy
        x = read_npy(args.input)  # the header is checked against the file before anything is read
    if args.erf:
        return erf_main(args, graph, x)
    if args.inputs is not None:
        raise CnnGraphError("--inputs goes with --erf")
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
        _matplotlib()
    panels = []

    def on_layer(lv, lo):
        if args.npz:
            fcview.save_npz(single or os.path.join(args.npz, _safe(lv.name) + ".npz"), lo)
        if args.png:
            panels.append(fcview.layer_panel(f"{lv.name} ({lv.op}, {lo.mode})", lo, graph.node(lv.name)))

    def on_network(nm):
        if args.npz:
            fcview.save_npz(single or os.path.join(args.npz, "network.npz"), nm)
        if args.png:
            panels.extend(fcview.network_panels(nm, graph.input_shape))

    v = fcview.view(graph, weights=args.weights, x=x, seed=args.seed, names=args.layer, network=network,
                    max_bytes=int(args.max_memory * 2**30), on_layer=on_layer, on_network=on_network)
    if args.layer and v.network is not None and not v.network.built:
        v = fcview.FCView(v.name, v.input_shape, v.seed, v.layers,
                          fcview.NetworkView(False, "not requested (--layer)"))
    if args.png:
        fcview.plot(panels, args.png, title=f"{graph.name}: the FC view at a {'x'.join(map(str, graph.input_shape))} "
                    f"input (seed {args.seed})")
    if args.json:
        json.dump(fcview.to_json(v), sys.stdout, indent=2)
        print()
    else:
        print(fcview.format_table(v))
    return 0
