"""Tables, JSON and Graphviz DOT from an inferred Graph. Every number comes
from the graph (which asked each layer); this module only presents.

>>> from cnngraph import load
>>> print(to_json(load("input: [2]\\nlayers: [{linear: {out: 3}}]"))["totals"]["params"])
9
"""

from __future__ import annotations

import enum
import json

from .graph import Graph, Node

MACS_CONVENTION = ("MACs: multiply-accumulates of conv and linear layers per sample, bias excluded "
                   "(the torchvision convention)")


class Column(enum.Enum):
    """Report columns, in order: (header, right-aligned)."""

    NAME = ("layer", False)
    OP = ("op", False)
    OUTPUT = ("output", False)
    PARAMS = ("params", True)
    MACS = ("MACs", True)
    RF = ("receptive field", False)

    def cell(self, node: Node) -> str:
        if self is Column.NAME:
            return node.name
        if self is Column.OP:
            return node.op
        if self is Column.OUTPUT:
            return "x".join(map(str, node.out_shape))
        if self is Column.PARAMS:
            return f"{node.n_params:,}"
        if self is Column.MACS:
            return f"{node.macs:,}"
        rf = node.receptive_field
        return "-" if not rf else "x".join(_num(s) for s, _, _ in rf)


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _rf_json(rf):
    if rf is None:
        return {"size": [], "jump": [], "start": []}
    return {"size": [int(s) for s, _, _ in rf], "jump": [int(j) for _, j, _ in rf],
            "start": [float(st) for _, _, st in rf]}


def to_json(graph: Graph) -> dict:
    """The report as one JSON-ready dict (shapes without the batch dim)."""
    totals = graph.totals()
    return {
        "name": graph.name,
        "input_shape": list(graph.input_shape),
        "output": graph.output,
        "output_shape": list(graph.output_shape),
        "layers": [{
            "name": n.name, "op": n.op, "inputs": list(n.inputs), "output_shape": list(n.out_shape),
            "params": n.n_params, "buffers": n.n_buffers, "macs": n.macs, "activations": n.activations,
            "receptive_field": _rf_json(n.receptive_field),
        } for n in graph.nodes],
        "totals": {**totals, "activation_bytes": 4 * totals["activations"]},
        "conventions": {"macs": MACS_CONVENTION, "activations": "output elements per sample, float32"},
        "warnings": list(graph.warnings),
    }


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.2f} MiB"


def to_text(graph: Graph) -> str:
    """A readable table: one row per layer, then the totals."""
    cols = list(Column)
    rows = [[c.value[0] for c in cols]] + [[c.cell(n) for c in cols] for n in graph.nodes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]

    def line(r):
        return "  ".join(v.rjust(w) if c.value[1] else v.ljust(w) for v, w, c in zip(r, widths, cols)).rstrip()

    t = graph.totals()
    out = [f"network {graph.name}: input {'x'.join(map(str, graph.input_shape))}, "
           f"output {'x'.join(map(str, graph.output_shape))} ('{graph.output}'), {len(graph.nodes)} layers",
           "", line(rows[0]), "-" * (sum(widths) + 2 * (len(cols) - 1))]
    out += [line(r) for r in rows[1:]]
    out += ["-" * (sum(widths) + 2 * (len(cols) - 1)),
            f"params:      {t['params']:,} trainable, {t['buffers']:,} buffers (batchnorm running statistics)",
            f"MACs:        {t['macs']:,} per sample ({t['macs'] / 1e9:.3f} G)",
            f"activations: {t['activations']:,} elements per sample ({_mb(4 * t['activations'])} float32)",
            f"weights:     {_mb(4 * (t['params'] + t['buffers']))} float32",
            MACS_CONVENTION + "."]
    for w in graph.warnings:
        out.append(f"warning: {w}")
    return "\n".join(out)


def to_dot(graph: Graph, detail: bool = False, fusion=None) -> str:
    """Graphviz DOT: one box per layer with its name, op and output shape.

    `detail`: each box also lists the layer's non-default attributes, parameters and MACs, and
    the layers of a block (a dotted name prefix two or more layers share) are drawn as a nested
    cluster. `fusion`: (kernel symbol, layer names) per native step of the compiler's plan; a
    fused kernel is outlined as a cluster (where it nests in the blocks) and its layers filled
    with its kernel family's colour; layers no step covers (concat written in place, flatten)
    are dashed.

    >>> from cnngraph import load
    >>> g = load("input: [1, 8, 8]\\nlayers: [{conv: {out: 2, kernel: 3}}, relu]")
    >>> print(to_dot(g).splitlines()[4])
      "conv1" [label="conv1\\nconv2d\\n2x6x6"];
    >>> text = to_dot(g, detail=True, fusion=[("fused_conv2d_relu", ("conv1", "relu1"))])
    >>> 'subgraph "cluster_k0"' in text and "kernel 3" in text
    True
    """
    if detail or fusion:
        from .dot import rich_dot
        return rich_dot(graph, detail, fusion)

    def q(*parts):  # a quoted DOT string, parts on separate lines
        esc = (str(p).replace("\\", "\\\\").replace('"', '\\"') for p in parts)
        return '"' + "\\n".join(esc) + '"'

    def dims(shape):
        return "x".join(map(str, shape))

    lines = [f"digraph {q(graph.name)} {{", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];',
             f"  {q('input')} [label={q('input', dims(graph.input_shape))}, shape=oval];"]
    lines += [f"  {q(n.name)} [label={q(n.name, n.op, dims(n.out_shape))}];" for n in graph.nodes]
    lines += [f"  {q(i)} -> {q(n.name)};" for n in graph.nodes for i in n.inputs]
    return "\n".join(lines + ["}"]) + "\n"


def dumps(graph: Graph) -> str:
    return json.dumps(to_json(graph), indent=2)
