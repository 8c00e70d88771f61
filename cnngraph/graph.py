"""NetSpec -> Graph: a networkx DiGraph in topological order with every tensor
shape, parameter shape, MAC count and receptive field inferred.

Layer code raises `LayerError`; this driver adds the layer name and the
`file:line:col` of the offending attribute.

>>> from cnngraph.spec import loads
>>> g = build(loads("input: [1, 28, 28]\\nlayers: [{conv: {out: 6, kernel: 5}}, {maxpool: {kernel: 2}}]"))
>>> [(n.name, n.out_shape, n.macs) for n in g.nodes]
[('conv1', (6, 24, 24), 86400), ('maxpool1', (6, 12, 12), 0)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import networkx as nx

from .errors import LayerError, SpecError
from .layers import Layer
from .layers.base import MAX_ELEMENTS
from .spec import INPUT, LayerSpec, NetSpec, batch_like, unread, unread_warning


@dataclass(frozen=True)
class Node:
    """One inferred layer."""

    name: str
    op: str  # display name, e.g. conv2d
    layer: Layer
    inputs: tuple[str, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    params: MappingProxyType  # trainable: name -> shape
    buffers: MappingProxyType  # non-trainable: name -> shape
    macs: int
    receptive_field: tuple | None  # per spatial dim (size, jump, start), None once flat
    spec: LayerSpec

    @property
    def kind(self) -> str:
        return self.layer.kind

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.params.values())

    @property
    def n_buffers(self) -> int:
        return sum(math.prod(s) for s in self.buffers.values())

    @property
    def activations(self) -> int:
        return math.prod(self.out_shape)


@dataclass(frozen=True, repr=False)
class Graph:
    """An inferred network: nodes in topological order (the input excluded)."""

    name: str
    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    output: str
    dag: nx.DiGraph
    spec: NetSpec
    warnings: tuple[str, ...]

    def node(self, name: str) -> Node:
        return self.nodes[self._index[name]]

    # ---- presentation (report.py and html_report.py do the work) ----
    def __repr__(self):
        from . import report
        return report.graph_repr(self)

    def summary(self, depth: int | None = None) -> str:
        """The text report: layers, shapes, parameters, MACs, receptive fields, totals."""
        from . import report
        return report.summary(self, depth)

    def _repr_html_(self) -> str:
        """What a notebook shows: the HTML report (graph, fused kernels, charts, layer table)."""
        from . import html_report, report
        try:
            return html_report.to_html(self, fragment=True)
        except Exception:  # noqa: BLE001 - a notebook shows the plain table rather than nothing
            return report.to_html(self)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == INPUT else self.node(name).out_shape

    @property
    def _index(self) -> dict:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {n.name: i for i, n in enumerate(self.nodes)}
            object.__setattr__(self, "_idx", idx)
        return idx

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shape(self.output)

    def consumers(self, name: str) -> list[str]:
        return list(self.dag.successors(name))

    def frees_after(self) -> dict[str, tuple[str, ...]]:
        """Value liveness, the one place every executor takes it from: for each node, the
        values (inputs and outputs of earlier nodes, never the net's output) that no node
        after it reads, so they can be dropped once it has run. A value read twice by one
        node (`add: {from: [a, a]}`) is freed once, after its last reader.

        >>> from cnngraph.spec import loads
        >>> g = build(loads("input: [2, 4]\\nlayers: [relu, {add: {from: [relu1, relu1]}}, {add: {from: [relu1, add1]}}]"))
        >>> g.frees_after()
        {'relu1': ('input',), 'add1': (), 'add2': ('relu1', 'add1')}
        """
        cached = self.__dict__.get("_frees")
        if cached is not None:
            return cached
        last = {INPUT: self.nodes[0].name if self.nodes else None}
        for node in self.nodes:
            last.setdefault(node.name, node.name)  # a value nobody reads dies where it is made
            for i in node.inputs:
                last[i] = node.name
        out: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for value, at in last.items():
            if value != self.output and at is not None:
                out[at].append(value)
        frozen = {k: tuple(sorted(v, key=lambda n: -1 if n == INPUT else self._index[n])) for k, v in out.items()}
        object.__setattr__(self, "_frees", frozen)
        return frozen

    def totals(self) -> dict:
        """Sums over all layers, the numbers the report prints at the bottom."""
        return {
            "params": sum(n.n_params for n in self.nodes),
            "buffers": sum(n.n_buffers for n in self.nodes),
            "macs": sum(n.macs for n in self.nodes),
            "activations": sum(n.activations for n in self.nodes),
        }


def _dag(spec: NetSpec) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node(INPUT, order=-1)
    for i, ls in enumerate(spec.layers):
        g.add_node(ls.name, order=i)
    for ls in spec.layers:
        for src in ls.inputs:
            g.add_edge(src, ls.name)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return g
    names = [u for u, _ in cycle] + [cycle[0][0]]
    first = next(ls for ls in spec.layers if ls.name == cycle[0][1])
    raise SpecError(f"cyclic reference: {' -> '.join(names)}", pos=first.where("from"), layer=first.name,
                    op=first.kind, hint="'from' must point to layers that do not depend on this one")


def build(spec: NetSpec, strict: bool = False) -> Graph:
    """Infer shapes and costs of every layer; `strict` turns warnings into errors."""
    dag = _dag(spec)
    by_name = {ls.name: ls for ls in spec.layers}
    order = [n for n in nx.lexicographical_topological_sort(dag, key=lambda n: dag.nodes[n]["order"])
             if n != INPUT]
    shapes = {INPUT: spec.input_shape}
    rfs = {INPUT: tuple((1, 1, 0.0) for _ in spec.input_shape[1:]) or None}
    nodes, warnings = [], []
    for name in order:
        ls = by_name[name]
        ins = [shapes[i] for i in ls.inputs]
        layer = ls.layer
        try:
            op = layer.op_name(ins)
        except LayerError:
            op = layer.kind
        try:
            out = tuple(layer.infer_shape(ins))
            node = Node(name, op, layer, ls.inputs, tuple(tuple(s) for s in ins), out,
                        MappingProxyType(layer.param_shapes(ins)), MappingProxyType(layer.buffer_shapes(ins)),
                        layer.macs(ins, out), layer.receptive_field(ins, [rfs[i] for i in ls.inputs]), ls)
            remarks = layer.warnings(ins)
        except LayerError as e:
            hint = e.hint
            if hint is None and len(ls.inputs) > 1:
                hint = "inputs: " + ", ".join(f"'{i}' gives {shapes[i]}" for i in ls.inputs)
            elif hint is None and ls.inputs[0] == INPUT:
                hint = f"the network input has shape {shapes[INPUT]}"
            elif hint is None:
                src = "its input" if "from" in ls.attr_pos else "the previous layer"
                hint = f"{src} '{ls.inputs[0]}' outputs shape {shapes[ls.inputs[0]]}"
            raise SpecError(e.msg, pos=ls.where(e.attr), layer=name, op=op, hint=hint) from None
        if node.n_params > MAX_ELEMENTS:
            raise SpecError(f"expected at most {MAX_ELEMENTS} parameters per layer, got {node.n_params} "
                            f"(too large to be sane)", pos=ls.pos, layer=name, op=op,
                            hint=f"the input is {ins[0] if len(ins) == 1 else ins}")
        if math.prod(out) > MAX_ELEMENTS:
            raise SpecError(f"expected at most {MAX_ELEMENTS} elements per sample, got {math.prod(out)} "
                            f"for shape {out} (too large to be sane)", pos=ls.pos, layer=name, op=op)
        for msg in remarks:
            full = str(SpecError(msg, pos=ls.pos, layer=name, op=op))
            if strict:
                raise SpecError(msg, pos=ls.pos, layer=name, op=op, hint="--strict makes this an error")
            warnings.append(full)
        shapes[name], rfs[name] = out, node.receptive_field
        nodes.append(node)
    # spec-level remarks (spec.py): an input that looks batched, layers that do not affect the output
    ops = {n.name: n.op for n in nodes}
    for e in [batch_like(spec)] + [unread_warning(ls, k, spec.output, ops[ls.name]) for ls, k in unread(spec)]:
        if e is not None and strict:
            raise SpecError(e.msg, pos=e.pos, layer=e.layer, op=e.op, hint=f"{e.hint}; --strict makes this an error")
        if e is not None:
            warnings.append(str(e))
    return Graph(spec.name, spec.input_shape, tuple(nodes), spec.output, dag, spec, tuple(warnings))
