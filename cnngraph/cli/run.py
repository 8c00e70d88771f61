"""`cnngraph run net.yaml --input PATH|DIR|GLOB [-o out.jsonl|.csv|.npy|-]`: run a network on data.

Files are decoded, preprocessed (the spec's `preprocess:` section) and run in
batches, so memory stays flat whatever the number of inputs; one record per input
is written as it is computed. An input that cannot be read is reported on stderr
and skipped; the run goes on, and the exit status is 1 if any input was skipped.
"""

from __future__ import annotations

import sys

import numpy as np

import cnngraph

from .. import data, oracle, units
from .. import weights as W
from ..errors import CnnGraphError
from ..preprocess import InputError
from ._common import interactive, positive, precision_option, progress, threads

DEFAULT_BATCH = 16


def add_parser(sub):
    p = sub.add_parser(
        "run", help="run a network on images, audio (.wav) or arrays (.npy): files, folders or globs",
        description="Run a network on inputs and write one record per input. Images go through the spec's "
                    "'preprocess:' section (docs/spec.md); .npy files hold one sample or a batch (N, C, ...).",
        epilog="output: .jsonl (one JSON object per input: {file, top} or {file, output}), .csv (file, label_1, "
               "score_1, ... or file, y_0, y_1, ...), .npy (the raw outputs stacked, in input order), or - "
               "(JSON lines on stdout). Scores are the net's outputs as they are: end the spec with a softmax "
               "layer for probabilities. Exit status: 0 when every input ran, 1 when some were skipped or "
               "nothing could run.")
    p.add_argument("spec", help="a network spec (.yaml), a bundled spec's name, or an ONNX model (.onnx)")
    p.add_argument("--input", "-i", required=True, action="append", metavar="PATH",
                   help="a file, a folder (read recursively) or a glob such as 'photos/*.jpg'; repeatable")
    p.add_argument("--weights", metavar="FILE", help=".npz, .safetensors or PyTorch .pt/.pth (default: seeded "
                                                     "init, or the ONNX model's own)")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line in output order (implies --top 1)")
    p.add_argument("--top", type=positive("--top"), metavar="K", help="write the K largest outputs per input")
    p.add_argument("-o", "--output", default="-", metavar="FILE",
                   help="results: .jsonl, .csv, .npy, or - for JSON lines on stdout (default)")
    p.add_argument("--format", choices=("jsonl", "csv", "npy"), help="the output format when the name does not say")
    p.add_argument("--batch", type=positive("a batch size"), default=DEFAULT_BATCH, metavar="B",
                   help="inputs per native call (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the default initialisation")
    p.add_argument("--threads", type=threads, default=None, metavar="N", help="native threads (default: all cores)")
    precision_option(p)
    p.add_argument("--reference", action="store_true", help="use the numpy reference executor, not native code")
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask cluster (its scheduler's address); the "
                                                     "workers read the files, so they must see the same paths")
    p.add_argument("--strict", action="store_true", help="make spec warnings errors")
    p.set_defaults(func=main)


def main(args) -> int:
    graph = cnngraph.load(args.spec, strict=args.strict)
    paths = data.expand(args.input)
    k = args.top or (1 if args.labels else None)
    out_shape = tuple(graph.output_shape)
    labels = None
    if k is not None and len(out_shape) != 1:
        raise InputError(f"--top and --labels need a flat output (classes,), the net outputs {out_shape}")
    if args.labels:
        labels = data.load_labels(args.labels, out_shape[0])
    weights = cnngraph.onnx_weights(args.spec, args.weights)
    total = _count(paths, graph.input_shape)
    writer = data.Writer(args.output, out_shape, k, args.format)
    done, skipped = 0, []
    bar = progress(total, "input", graph.name)
    try:
        for names, y, failures in _results(args, graph, paths, weights):
            for name, msg in failures:
                skipped.append(name)
                line = f"skipped {msg}" if msg.startswith(name) else f"skipped {name}: {msg}"
                (bar.write if interactive() else print)(line, file=sys.stderr)
            if names:
                writer.write(names, y, data.topk(y, k, labels) if k else None)
            done += len(names)
            bar.update(len(names) + len(failures))
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    writer.close()
    where = "stdout" if args.output == "-" else args.output
    print(f"{where}: {units.plural(done, 'record')} ({units.plural(len(skipped), 'input')} skipped)", file=sys.stderr)
    if skipped:
        raise CnnGraphError(f"{len(skipped):,} of {done + len(skipped):,} inputs could not be read (listed above)")
    return 0


def _count(paths, shape) -> int:
    """How many samples: files, plus the rows of `.npy` batches (their headers only are read)."""
    return sum(1 for _ in data.items(paths, shape))


def _results(args, graph, paths, weights):
    """(names, outputs, failures) per batch, locally or on a Dask cluster."""
    if args.dask:
        try:
            from distributed import Client
        except ImportError:
            raise CnnGraphError("--dask needs Dask: pip install 'cnngraph[dask]'") from None
        from .. import dask as cdask
        client = Client(args.dask, timeout="30s")
        try:
            items = data.items(paths, graph.input_shape)
            yield from cdask.stream(client, graph, items, weights, seed=args.seed, threads=args.threads or 1,
                                    batch=args.batch)
        finally:
            client.close()
        return
    w = W.resolve(graph, weights, args.seed)
    run = (lambda x: oracle.run(graph, x, w)) if args.reference else \
        cnngraph.compile(graph, threads=args.threads, weights=w, precision=args.precision)
    for b in data.batches(graph, paths, args.batch):
        y = run(b.x) if b.names else np.zeros((0, *graph.output_shape), np.float32)
        yield b.names, y, b.failures
