"""Tables, JSON, HTML and Graphviz DOT from an inferred Graph. Every number comes
from the graph (which asked each layer); this module only presents.

Rows can be grouped: a dotted name prefix shared by two or more layers
(`layer1.0.conv1`, `layer1.0.bn1`, ...) is a group with subtotals, labelled with
its block (or `basic x2` for a repeat); `depth` collapses groups below it, as
torchinfo does.

>>> from cnngraph import load
>>> g = load("input: [2]\\nlayers: [{linear: {out: 3}}]")
>>> print(to_json(g)["totals"]["params"])
9
>>> graph_repr(g)
"<Graph 'net': input 2 -> output 3, 1 layer, 9 params, 6 MACs>"
"""

from __future__ import annotations

import enum
import html
import json
from dataclasses import dataclass

from . import units
from .graph import Graph, Node

MACS_CONVENTION = ("MACs: multiply-accumulates of conv and linear layers per sample, bias excluded "
                   "(the torchvision convention)")
INDENT = "  "


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _rf(rf) -> str:
    return "-" if not rf else "x".join(_num(s) for s, _, _ in rf)


@dataclass(frozen=True)
class Row:
    """One line of the table: a layer, or a group of layers with its subtotals."""

    name: str
    op: str
    level: int  # 0 at the top; children are one deeper
    out_shape: tuple
    params: int
    buffers: int
    macs: int
    receptive_field: tuple | None
    layers: int  # 1 for a layer
    group: bool


class Column(enum.Enum):
    """Report columns, in order: (header, right-aligned)."""

    NAME = ("layer", False)
    OP = ("op", False)
    OUTPUT = ("output", False)
    PARAMS = ("params", True)
    MACS = ("MACs", True)
    RF = ("receptive field", False)

    def cell(self, row: Row | Node) -> str:
        if isinstance(row, Node):
            row = _leaf(row, 0)
        if self is Column.NAME:
            return INDENT * row.level + row.name
        if self is Column.OP:
            return row.op
        if self is Column.OUTPUT:
            return _dims(row.out_shape)
        if self is Column.PARAMS:
            return f"{row.params:,}"
        if self is Column.MACS:
            return f"{row.macs:,}"
        return _rf(row.receptive_field)


def _leaf(n: Node, level: int) -> Row:
    return Row(n.name, n.op, level, n.out_shape, n.n_params, n.n_buffers, n.macs, n.receptive_field, 1, False)


def groups(graph: Graph) -> dict[str, dict]:
    """Every group: a name prefix (up to a '.') shared by two or more layers, in order of first
    appearance, with its label (the block, or `block xN` for a repeat, else the layer count),
    members, subtotals and the layer whose output leaves the group.

    >>> from cnngraph import load
    >>> g = load("resnet18")
    >>> info = groups(g)["layer2"]
    >>> info["label"], info["layers"], info["params"], info["exit"]
    ('basic x2', 16, 525568, 'layer2.1.relu2')
    """
    counts: dict[str, int] = {}
    for n in graph.nodes:
        parts = n.name.split(".")
        for i in range(1, len(parts)):
            p = ".".join(parts[:i])
            counts[p] = counts.get(p, 0) + 1
    labels = {}
    for n in graph.nodes:
        for name, label in getattr(n.spec, "groups", ()):
            labels.setdefault(name, label)
    out: dict[str, dict] = {}
    for n in graph.nodes:
        for p in _chain(n.name, counts):
            g = out.setdefault(p, {"label": labels.get(p), "members": [], "params": 0, "buffers": 0, "macs": 0})
            g["members"].append(n.name)
            g["params"] += n.n_params
            g["buffers"] += n.n_buffers
            g["macs"] += n.macs
    for p, g in out.items():
        g["layers"] = len(g["members"])
        g["label"] = g["label"] or units.plural(g["layers"], "layer")
        inside = set(g["members"])
        leaving = [m for m in g["members"] if m == graph.output or any(c not in inside for c in graph.consumers(m))]
        g["exit"] = (leaving or g["members"])[-1]
    return out


def _chain(name: str, counts: dict) -> list[str]:
    """The groups a layer belongs to, outermost first (prefixes shared by 2+ layers)."""
    parts = name.split(".")
    return [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if counts.get(p, 0) >= 2]


def rows(graph: Graph, depth: int | None = None) -> list[Row]:
    """The table's rows: group headers (with subtotals) and layers, indented by level;
    with `depth`, groups at that level are collapsed into one row.

    >>> from cnngraph import load
    >>> [(r.name, r.op, r.layers) for r in rows(load("resnet18"), depth=1)][3:6]
    [('maxpool1', 'maxpool2d', 1), ('layer1', 'basic x2', 14), ('layer2', 'basic x2', 16)]
    """
    if depth is not None and depth < 1:
        raise ValueError(f"expected a depth of at least 1, got {depth}")
    info = groups(graph)
    counts = {p: g["layers"] for p, g in info.items()}
    out, opened = [], set()
    for n in graph.nodes:
        chain = _chain(n.name, counts)
        collapsed = False
        for level, p in enumerate(chain):
            if depth is not None and level + 1 >= depth:  # this group is shown as one row
                if p not in opened:
                    opened.add(p)
                    g = info[p]
                    exit_ = graph.node(g["exit"])
                    out.append(Row(p, g["label"], level, exit_.out_shape, g["params"], g["buffers"], g["macs"],
                                   exit_.receptive_field, g["layers"], True))
                collapsed = True
                break
            if p not in opened:
                opened.add(p)
                g = info[p]
                exit_ = graph.node(g["exit"])
                out.append(Row(p, g["label"], level, exit_.out_shape, g["params"], g["buffers"], g["macs"],
                               exit_.receptive_field, g["layers"], True))
        if not collapsed:
            out.append(_leaf(n, len(chain)))
    return out


def _rf_json(rf):
    if rf is None:
        return {"size": [], "jump": [], "start": []}
    def number(v):  # whole where it is; a transposed conv or an upsample makes fractional jumps
        return int(v) if float(v).is_integer() else float(v)
    return {"size": [number(s) for s, _, _ in rf], "jump": [number(j) for _, j, _ in rf],
            "start": [float(st) for _, _, st in rf]}


def to_json(graph: Graph) -> dict:
    """The report as one JSON-ready dict (shapes without the batch dim). `layers` holds every
    layer (their sums are the totals); `groups` the subtotals of each group of layers."""
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
        "groups": [{"name": p, "label": g["label"], "layers": g["layers"], "params": g["params"],
                    "buffers": g["buffers"], "macs": g["macs"], "output": g["exit"],
                    "output_shape": list(graph.node(g["exit"]).out_shape)} for p, g in groups(graph).items()],
        "totals": {**totals, "activation_bytes": 4 * totals["activations"]},
        "conventions": {"macs": MACS_CONVENTION, "activations": "output elements per sample, float32"},
        "warnings": list(graph.warnings),
    }


def _totals_lines(graph: Graph) -> list[str]:
    t = graph.totals()
    buffers = f", {t['buffers']:,} buffers (batchnorm running statistics)" if t["buffers"] else ""
    return [f"params:      {t['params']:,} trainable ({units.count(t['params'])}){buffers}",
            f"MACs:        {t['macs']:,} per sample ({units.count(t['macs'])})",
            f"activations: {t['activations']:,} elements per sample ({units.nbytes(4 * t['activations'])} float32)",
            f"weights:     {units.nbytes(4 * (t['params'] + t['buffers']))} float32",
            MACS_CONVENTION + "."]


def headline(graph: Graph) -> str:
    """`network NAME: input ..., output ... ('layer'), N layers`."""
    return (f"network {graph.name}: input {_dims(graph.input_shape)}, output {_dims(graph.output_shape)} "
            f"('{graph.output}'), {units.plural(len(graph.nodes), 'layer')}")


def to_text(graph: Graph, depth: int | None = None) -> str:
    """A readable table: one row per layer (groups with their subtotals above their layers,
    or collapsed below `depth`), then the totals and the warnings."""
    cols = list(Column)
    table = [[c.value[0] for c in cols]] + [[c.cell(r) for c in cols] for r in rows(graph, depth)]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]

    def line(r):
        return "  ".join(v.rjust(w) if c.value[1] else v.ljust(w) for v, w, c in zip(r, widths, cols)).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(cols) - 1))
    out = [headline(graph), "", line(table[0]), rule]
    out += [line(r) for r in table[1:]]
    out += [rule, *_totals_lines(graph)]
    out += [f"warning: {w}" for w in graph.warnings]
    return "\n".join(out)


def summary(graph: Graph, depth: int | None = None) -> str:
    """`Graph.summary()`: the text report (see `to_text`)."""
    return to_text(graph, depth)


def graph_repr(graph: Graph) -> str:
    """A one-line repr for `Graph` (the dataclass's own repr of ResNet-50 is 167,000 characters)."""
    t = graph.totals()
    return (f"<Graph {graph.name!r}: input {_dims(graph.input_shape)} -> output {_dims(graph.output_shape)}, "
            f"{units.plural(len(graph.nodes), 'layer')}, {units.count(t['params'])} params, "
            f"{units.count(t['macs'])} MACs>")


def to_html(graph: Graph, depth: int | None = None) -> str:
    """A self-contained HTML table for notebooks (`Graph._repr_html_`): the text report's
    rows and totals, groups in bold."""
    e = html.escape
    head = "".join(f"<th style='text-align:{'right' if c.value[1] else 'left'}'>{e(c.value[0])}</th>"
                   for c in Column)
    body = []
    for r in rows(graph, depth):
        cells = []
        for c in Column:
            v = e(c.cell(r).strip())
            if c is Column.NAME:
                v = f"<span style='padding-left:{1.2 * r.level:.1f}em'>{'<b>' + v + '</b>' if r.group else v}</span>"
            cells.append(f"<td style='text-align:{'right' if c.value[1] else 'left'}'>{v}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    foot = "<br>".join(e(x) for x in _totals_lines(graph)[:-1] + [f"warning: {w}" for w in graph.warnings])
    return (f"<div class='cnngraph-report'><p><b>{e(headline(graph))}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p style='font-family:monospace'>{foot}</p></div>")


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
