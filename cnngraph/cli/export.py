"""`cnngraph export net.yaml -o net.onnx`: the network and its weights as an ONNX model."""

from __future__ import annotations

from .. import load, onnx_weights
from ..interop import DEFAULT_OPSET, export


def add_parser(sub):
    p = sub.add_parser("export", help="write a network and its weights as an ONNX model")
    p.add_argument("spec", help="a network spec (.yaml)")
    p.add_argument("-o", "--output", required=True, metavar="NET.onnx", help="the ONNX file to write")
    p.add_argument("--weights", metavar="FILE", help=".npz or .safetensors (default: seeded init)")
    p.add_argument("--seed", type=int, default=0, help="seed of the default weights")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version (default: %(default)s)")
    p.add_argument("--no-check", action="store_true", help="skip onnx.checker (full check with shape inference)")
    p.set_defaults(func=main)


def main(args) -> int:
    graph = load(args.spec)
    model = export(graph, onnx_weights(args.spec, args.weights), args.output, opset=args.opset, seed=args.seed, check=not args.no_check)
    n_params = sum(graph.totals()[k] for k in ("params", "buffers"))
    print(f"{args.output}: {len(model.graph.node)} ONNX nodes for {len(graph.nodes)} layers, "
          f"{n_params:,} weights, opset {args.opset}, input 'input' (N, {', '.join(map(str, graph.input_shape))})")
    return 0
