"""The fusion pass: which graph nodes one native step computes.

Fusion rule (each layer declares its `Fusion` category; nothing is guessed from names):

  An ANCHOR (conv, linear) opens a group and absorbs, along its chain of
  successors, each reading the previous one's value as that value's ONLY
  reader (one input slot of one node) and never past the net's output:
    FOLD      batchnorm right after the anchor -> folded into weights and bias;
              a later one (conv only, one) -> a per-channel affine in the epilogue;
    ELEMWISE  activations, applied to the accumulators in registers, in order;
    MERGE     a two-input merge (add, mul, sub) of operands of one shape whose other operand
              is computed before the group (conv only, one): a residual read in the epilogue;
    POOL      one max/avg pool (conv only) whose windows do not overlap along D and H:
              reduced in registers, the pre-pool tensor is never stored; nothing but
              identities follows it (overlapping rows would be computed once per window:
              a 3x3 stride-2 pool costs its conv 1.5x, more than storing and re-reading);
    FREE      identity layers (dropout) cost nothing; flatten ends the chain.
  Linear anchors take folds and activations only, and so do transposed convolutions
  (each output phase is its own kernel: a pool or residual would span them).
  A gate: a merge whose channel_scale says it multiplies one operand by a function of
  the other, that other being one value per channel (squeeze-and-excitation: x * g,
  g of shape (C, 1, 1)), whose only reader is a convolution (groups 1) reading it as
  its input, joins that conv's group as its prologue: the conv's weights are scaled per
  sample (a GateWeights step) instead of the activation, where the weights are no
  larger than the activation (GATE_RATIO).
  Standalone ELEMWISE, MERGE and FOLD nodes chain the activations that follow them
  the same way (a pre-activation batchnorm + relu is one pass); every other node is
  a group of its own. A layer nothing reads (and
  nothing the output depends on) is not compiled at all.

Because a value with another reader is never absorbed, no value that anything
else reads is ever fused away or overwritten; the verifier checks the result.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..layers.base import Fusion
from ..layers.lowering import Convolution, Identity, Merge, TransposedConvolution
from ..spec import INPUT
from .plan import Group, Plan

GATE_RATIO = 0.5  # fold a gate into the conv's weights where weights <= ratio x the gated activation (floats):
# measured on EfficientNet-B0's SE shapes, 1 thread: 1.04-1.44x faster up to 0.41; 0.87x at 0.57 and beyond (batch 8)


def live_nodes(graph) -> list:
    """The nodes the output depends on, in topological order."""
    need = {graph.output}
    for node in reversed(graph.nodes):
        if node.name in need:
            need.update(node.inputs)
    return [n for n in graph.nodes if n.name in need]


def _is_identity(node) -> bool:
    return node.layer.category is Fusion.FREE and isinstance(node.layer.lower(list(node.in_shapes), {}), Identity)


def overlaps_rows(low) -> bool:
    """A window reduction whose windows share conv rows (along D or H) between pooled rows."""
    w = low.window.as3d()
    return any(w.out[d] > 1 and w.stride[d] < (w.kernel[d] - 1) * w.dilation[d] + 1 for d in (0, 1))


class _Fuser:
    def __init__(self, graph, weights=None):
        self.g = graph
        self.weights = weights or {}
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

    def lowering(self, node):
        return node.layer.lower(list(node.in_shapes),
                                {p: self.weights.get(f"{node.name}.{p}") for p in (*node.params, *node.buffers)})

    def anchor(self, node):
        is_conv = node.layer.category is Fusion.ANCHOR and len(node.in_shapes[0]) > 1 \
            and not isinstance(self.lowering(node), TransposedConvolution)
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
            if len(set(nxt.in_shapes)) != 1:
                return f"{what} broadcasts its operands"
            other = nxt.inputs[1] if nxt.inputs[0] == cur.name else nxt.inputs[0]
            if other == cur.name or other == INPUT or other not in self.produced:
                return f"{what}: its other operand is not computed before this convolution"
            return ""
        if cat is Fusion.POOL:
            if not is_conv:
                return f"{what}: only convolutions fuse a pool"
            if overlaps_rows(self.lowering(nxt)):
                return f"{what}: its windows overlap along rows (fused, the conv would compute them twice)"
            return ""
        return f"{'an' if nxt.op[:1] in 'aeiou' else 'a'} {nxt.op} runs as a kernel of its own"

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

    def gates(self) -> dict:
        """conv name -> the gate folded into its weights (see the rule above)."""
        out = {}
        for node in self.nodes:
            if len(node.inputs) != 2 or node.inputs[0] == node.inputs[1] or len(node.out_shape) < 2 or node.params \
                    or node.buffers:
                continue
            low = node.layer.lower(list(node.in_shapes), {})
            small = [j for j, s in enumerate(node.in_shapes) if tuple(s) != tuple(node.out_shape)]
            if not isinstance(low, Merge) or len(small) != 1:
                continue
            j = small[0]
            if node.in_shapes[j] != (node.out_shape[0], *([1] * (len(node.out_shape) - 1))) \
                    or low.channel_scale[j] is None:
                continue
            conv, _ = self.only_reader(node.name)
            if conv is None or conv.layer.category is not Fusion.ANCHOR or conv.inputs != (node.name,):
                continue
            c = self.lowering(conv)
            if not isinstance(c, Convolution) or c.groups != 1:
                continue
            weights = c.cout * c.cin * math.prod(c.window.kernel)
            if weights <= GATE_RATIO * math.prod(node.out_shape):
                out[conv.name] = node.name
        return out

    def run(self) -> tuple:
        groups, done = [], set()
        gates = self.gates()
        done.update(gates.values())  # computed in their conv's step
        for node in self.nodes:
            if node.name in done:
                continue
            g = self.anchor(node) if node.layer.category is Fusion.ANCHOR else self.standalone(node)
            if node.name in gates:
                g = replace(g, prologue=(gates[node.name],))
            groups.append(g)
            done.update(g.all_nodes)
            self.produced.update(g.all_nodes)
        return tuple(groups)


def fuse(plan: Plan) -> Plan:
    """Plan with `groups`: the fusion rule above applied to the graph."""
    return replace(plan, groups=_Fuser(plan.graph, plan.raw_weights).run())
