"""The fusion pass: which graph nodes one native step computes.

Fusion rule (each layer declares its `Fusion` category; nothing is guessed from names):

  An ANCHOR (conv, linear) opens a group and absorbs, along its chain of
  successors, each reading the previous one's value as that value's ONLY
  reader (one input slot of one node) and never past the net's output:
    FOLD      batchnorm right after the anchor -> folded into weights and bias;
              a later one (conv only, one) -> a per-channel affine in the epilogue;
    ELEMWISE  activations, applied to the accumulators in registers, in order;
    MERGE     a two-input add whose other operand is computed before the group
              (conv only, one): a residual read in the epilogue;
    POOL      one max/avg pool (conv only): reduced in registers, the pre-pool
              tensor is never stored; nothing but identities follows it;
    FREE      identity layers (dropout) cost nothing; flatten ends the chain.
  Linear anchors take folds and activations only.
  Standalone ELEMWISE, MERGE and FOLD nodes chain the activations that follow them
  the same way (a pre-activation batchnorm + relu is one pass); every other node is
  a group of its own. A layer nothing reads (and
  nothing the output depends on) is not compiled at all.

Because a value with another reader is never absorbed, no value that anything
else reads is ever fused away or overwritten; the verifier checks the result.
"""

from __future__ import annotations

from dataclasses import replace

from ..layers.base import Fusion
from ..layers.lowering import Identity
from ..spec import INPUT
from .plan import Group, Plan


def live_nodes(graph) -> list:
    """The nodes the output depends on, in topological order."""
    need = {graph.output}
    for node in reversed(graph.nodes):
        if node.name in need:
            need.update(node.inputs)
    return [n for n in graph.nodes if n.name in need]


def _is_identity(node) -> bool:
    return node.layer.category is Fusion.FREE and isinstance(node.layer.lower(list(node.in_shapes), {}), Identity)


class _Fuser:
    def __init__(self, graph):
        self.g = graph
        self.nodes = live_nodes(graph)
        self.by_name = {n.name: n for n in self.nodes}
        self.readers: dict[str, list] = {INPUT: []}
        for n in self.nodes:
            self.readers.setdefault(n.name, [])
            for i in n.inputs:
                self.readers[i].append(n.name)
        self.produced = {INPUT}

    def only_reader(self, name):
        """The node that is `name`'s only reader, or (None, why not)."""
        if name == self.g.output:
            return None, f"'{name}' is the net's output"
        r = self.readers[name]
        if len(r) != 1:
            return None, f"'{name}' has {len(r)} readers" if r else f"nothing reads '{name}'"
        return self.by_name[r[0]], ""

    def anchor(self, node):
        is_conv = node.layer.category is Fusion.ANCHOR and len(node.in_shapes[0]) > 1
        nodes, cur, stop = [node.name], node, ""
        started = pooled = residual = affine = False
        while True:
            nxt, stop = self.only_reader(cur.name)
            if nxt is None:
                break
            cat = nxt.layer.category
            why = self.refuse(nxt, cur, cat, is_conv, started, pooled, residual, affine)
            if why:
                stop = why
                break
            if cat is Fusion.FOLD:
                affine = affine or started
            elif cat is Fusion.ELEMWISE:
                started = True
            elif cat is Fusion.MERGE:
                started = residual = True
            elif cat is Fusion.POOL:
                pooled = True
            nodes.append(nxt.name)
            cur = nxt
        return Group(tuple(nodes), cur.name, stop)

    def refuse(self, nxt, cur, cat, is_conv, started, pooled, residual, affine) -> str:
        """Why `nxt` cannot join the group ('' if it can)."""
        what = f"'{nxt.name}' ({nxt.op})"
        if cat is Fusion.FREE:
            return "" if _is_identity(nxt) else f"{what} changes the layout"
        if pooled:
            return f"{what} follows a fused pool"
        if cat is Fusion.FOLD:
            if started and not is_conv:
                return f"{what} after an activation of a linear layer"
            return f"{what} is a second unfolded batchnorm" if affine and started else ""
        if cat is Fusion.ELEMWISE:
            return ""
        if cat is Fusion.MERGE:
            if not is_conv:
                return f"{what}: only convolutions take a residual"
            if residual:
                return f"{what}: a second residual"
            if len(nxt.inputs) != 2:
                return f"{what} has {len(nxt.inputs)} operands"
            other = nxt.inputs[1] if nxt.inputs[0] == cur.name else nxt.inputs[0]
            if other == cur.name or other == INPUT or other not in self.produced:
                return f"{what}: its other operand is not computed before this convolution"
            return ""
        if cat is Fusion.POOL:
            return "" if is_conv else f"{what}: only convolutions fuse a pool"
        return f"a {nxt.op} runs as a kernel of its own"

    def standalone(self, node):
        nodes, cur, stop = [node.name], node, ""
        if node.layer.category in (Fusion.ELEMWISE, Fusion.MERGE, Fusion.FOLD):
            while True:
                nxt, stop = self.only_reader(cur.name)
                if nxt is None:
                    break
                if nxt.layer.category is not Fusion.ELEMWISE:
                    stop = f"'{nxt.name}' ({nxt.op}) is not elementwise"
                    break
                nodes.append(nxt.name)
                cur = nxt
        return Group(tuple(nodes), cur.name, stop)

    def run(self) -> tuple:
        groups, done = [], set()
        for node in self.nodes:
            if node.name in done:
                continue
            g = self.anchor(node) if node.layer.category is Fusion.ANCHOR else self.standalone(node)
            groups.append(g)
            done.update(g.nodes)
            self.produced.update(g.nodes)
        return tuple(groups)


def fuse(plan: Plan) -> Plan:
    """Plan with `groups`: the fusion rule above applied to the graph."""
    return replace(plan, groups=_Fuser(plan.graph).run())
