"""The lowering pass: fusion groups -> steps over planned tensors.

Each group's first layer is asked for its lowering (a mechanism, see
`cnngraph/layers/lowering.py`), and the mechanism picks the kernel: a convolution
with the group's epilogue, a dense layer, a pool, an elementwise map, a channel
reduction, a pad, a concat copy; identity layers and most flattens are views.

Storage decisions made here, each safe by construction:
- a concat is written in place (each producer writes its channel slice) only for an
  input that a conv step writes, starts on a 16-channel boundary, appears once among
  the concat's inputs and has no other reader; every other input is copied;
- identity layers alias their input's tensor, so "a conv and its dropout" are one
  tensor read twice, never two copies of which one goes unwritten;
- the output is written by the last step directly where its layout allows.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import MappingProxyType

import numpy as np

from ..layers.base import Fusion
from ..layers.lowering import (
    Chain,
    ChannelAffine,
    ChannelReduction,
    ChannelSelect,
    Concat,
    ConstantPad,
    Convolution,
    Dense,
    Flatten,
    Identity,
    Merge,
    Pointwise,
    Resample,
    TransposedConvolution,
    WindowReduce,
)
from ..spec import INPUT
from .kernels import (
    VL,
    Act,
    Affine,
    ChannelOp,
    ConcatCopy,
    ConvKernel,
    Eltwise,
    Epilogue,
    LinearKernel,
    PadOp,
    PlainDWConv,
    Pool,
    PoolOp,
    Reorder,
    Residual,
    ScaleShift,
    cblocks,
)
from .lower_more import MoreLowerings, Values
from .pack import as3d, pack_conv, pack_linear, pad_channels
from .plan import (INPUT_T, OUTPUT_T, BatchArg, CompilerBug, ConstArg, PendingWeight, Plan, Step, Tensor, TensorArg,
                   WeightArg, named)


def gemm_rows(pixels: int, out_blocks: int, min_items: int = 16, min_row: int = 64) -> tuple[int, int]:
    """(rows, row length) for a pointwise conv over `pixels`: one long row, unless the work items (output
    block groups x rows) would be too few to share among threads at batch 1; then the fewest rows of at
    least `min_row` pixels that make enough.

    >>> gemm_rows(3136, 24), gemm_rows(3136, 6), gemm_rows(49, 6)
    ((4, 784), (16, 196), (1, 49))
    """
    groups = max(out_blocks // 4, 1)  # output block groups at the widest schedule
    if groups >= min_items:
        return 1, pixels
    for rows in range(2, pixels // min_row + 1):
        if pixels % rows == 0 and groups * rows >= min_items:
            return rows, pixels // rows
    return 1, pixels


class _Lowerer(MoreLowerings):
    def __init__(self, plan: Plan):
        self.plan = plan
        self.g = plan.graph
        self.w = plan.raw_weights
        shape = self.g.input_shape
        self.tensors: dict[int, Tensor] = {INPUT_T: Tensor(INPUT_T, shape[0], as3d(shape[1:]), "plain")}
        self.values: dict[str, int] = Values(self, {INPUT: INPUT_T})  # reading a lazy selection realizes it
        self.virtual: dict[str, tuple] = {}  # lazy channel selections (lower_more.py)
        self.next_id = OUTPUT_T
        self.steps: list[Step] = []
        self.weights: list[PendingWeight] = []
        self.macs = 0
        self.blocked_input: int | None = None
        self.group_of = {n: g for g in plan.groups for n in g.all_nodes}
        self.readers: dict[str, list] = {}
        for g in plan.groups:
            for n in g.all_nodes:
                for i in self.g.node(n).inputs:
                    self.readers.setdefault(i, []).append(n)
        self.virtual_names = self.plan_virtual()
        self.inplace = self.inplace_concats()
        self.storage: dict[str, tuple[int, int]] = {}  # concat -> (root tensor, block offset)

    # ---- bookkeeping ----
    def new_tensor(self, c, dims, **kw) -> int:
        tid = self.next_id = max(self.next_id, OUTPUT_T) + 1
        self.tensors[tid] = Tensor(tid, c, tuple(dims), **kw)
        return tid

    def weight(self, arr, packer=None) -> WeightArg:
        self.weights.append(PendingWeight(np.asarray(arr), packer))
        return WeightArg(len(self.weights) - 1)

    def step(self, kernel, nodes, **args):
        unknown = set(args) - {n for n, _ in kernel.args}
        if unknown:
            raise CompilerBug(f"{kernel.name}: no arguments named {sorted(unknown)}")
        ordered = tuple((n, args.get(n)) for n, _ in kernel.args)
        self.steps.append(Step(kernel, kernel.name, tuple(nodes), ordered))  # display names: `named`, at the end

    def params(self, node) -> dict:
        return {p: self.w[f"{node.name}.{p}"] for p in (*node.params, *node.buffers)}

    def lowering(self, node):
        return node.layer.lower(list(node.in_shapes), self.params(node))

    def blocked(self, name) -> int:
        """The tensor of value `name` in blocked layout (converting the user's input once)."""
        tid = self.values[name]
        if self.tensors[tid].layout == "blocked":
            return tid
        if tid != INPUT_T:
            raise CompilerBug(f"value '{name}' is plain but not the input")
        if self.blocked_input is None:
            t = self.tensors[INPUT_T]
            self.blocked_input = self.new_tensor(t.c, t.dims)
            self.step(Reorder("to_blocked", t.c, t.dims), [INPUT], input=TensorArg(INPUT_T),
                      output=TensorArg(self.blocked_input))
        return self.blocked_input

    def whole(self, tid, who) -> int:
        """The tensor itself, or a copy of a channel view (a slice) for kernels that read whole tensors."""
        t = self.tensors[tid]
        if t.root is not None:
            if t.flat_of:
                raise CompilerBug(f"{who} reads a view of tensor {t.root}")
            return self.materialize(tid)  # lower_more.py
        return tid

    # ---- storage decisions ----
    def reads_views(self, reader: str, value: str) -> bool:
        """Does the kernel of `reader` read `value` where it is when that is a channel slice of a larger
        tensor (a view)? A standalone per-channel affine (DenseNet's batchnorm + relu on a prefix of the
        block), a standalone pool (U-Net's max-pool of the skip its concat holds) and a convolution do,
        when `value` is their input."""
        g = self.group_of.get(reader)
        if g is None or g.nodes[0] != reader:
            return False
        node = self.g.node(reader)
        if tuple(node.inputs[:1]) != (value,) or value in node.inputs[1:]:
            return False
        low = self.lowering(node)
        return isinstance(low, ChannelAffine | WindowReduce) or (isinstance(low, Convolution) and not self.gate_of(g))

    def inplace_concats(self) -> dict[str, tuple[str, int]]:
        """value -> (concat node, channel offset) for the inputs written in place: a conv step's output,
        or a concat itself (nested: DenseNet's growing concats are prefixes of one buffer), on a
        16-channel boundary, once among the concat's inputs, every other reader reading views."""
        out = {}
        for g in self.plan.groups:
            node = self.g.node(g.nodes[0])
            if node.layer.category is not Fusion.CONCAT or node.name in self.virtual_names \
                    or any(i in self.virtual_names for i in node.inputs):  # lazy selections: gathered
                continue
            offs = np.cumsum([0] + [s[0] for s in node.in_shapes])[:-1]
            for v, off in zip(node.inputs, offs):
                prod = self.group_of.get(v)
                if (off % VL or node.inputs.count(v) != 1 or v == self.g.output or prod is None or prod.out != v
                        or not all(r == node.name or self.reads_views(r, v) for r in self.readers.get(v, []))):
                    continue
                first = self.g.node(prod.nodes[0])
                conv = first.layer.category is Fusion.ANCHOR and len(first.in_shapes[0]) > 1
                # a concat of lazy selections is gathered into a tensor of its own (lower_more.concat_virtual)
                nested = (first.layer.category is Fusion.CONCAT and first.out_shape[0] % VL == 0
                          and first.name not in self.virtual_names
                          and not any(i in self.virtual_names for i in first.inputs))
                if conv or nested:
                    out[v] = (node.name, int(off))
        return out

    def concat_storage(self, name) -> tuple[int, int]:
        """(root tensor, block offset) where concat `name` lives: its own root, or its slice of the
        concat it is nested in."""
        if name not in self.storage:
            if name in self.inplace:
                parent, off = self.inplace[name]
                root, base = self.concat_storage(parent)
                self.storage[name] = (root, base + off // VL)
            else:
                node = self.g.node(name)
                self.storage[name] = (self.new_tensor(node.out_shape[0], as3d(node.out_shape[1:])), 0)
        return self.storage[name]

    def concat_tensor(self, name) -> int:
        """The tensor of concat `name`: its root, or a view of the concat it is nested in."""
        if name not in self.values:
            root, off = self.concat_storage(name)
            node = self.g.node(name)
            r = self.tensors[root]
            self.values[name] = root if off == 0 and r.c == node.out_shape[0] else self.new_tensor(
                node.out_shape[0], as3d(node.out_shape[1:]), root=root, cb_off=off, cb_total=cblocks(r.c))
        return self.values[name]

    def output_for(self, value, c, dims) -> int:
        """Where the step producing `value` writes: its slice of an in-place concat, else a new tensor."""
        if value in self.inplace:
            cname, off = self.inplace[value]
            root, base = self.concat_storage(cname)
            return self.new_tensor(c, dims, root=root, cb_off=base + off // VL, cb_total=cblocks(self.tensors[root].c))
        return self.new_tensor(c, dims)

    # ---- the pass ----
    def run(self) -> Plan:
        for g in self.plan.groups:
            node = self.g.node(g.nodes[0])
            low = self.lowering(node)
            handler = {Convolution: self.conv, Dense: self.dense, Identity: self.identity, Flatten: self.flatten,
                       Concat: self.concat, Pointwise: self.eltwise, Merge: self.eltwise,
                       WindowReduce: self.pool, ChannelAffine: self.affine, ChannelReduction: self.channel,
                       ConstantPad: self.pad, Chain: self.chain, ChannelSelect: self.select,
                       TransposedConvolution: self.conv_transpose, Resample: self.resample}.get(type(low))
            if handler is None:
                raise CompilerBug(f"no kernel for the lowering {type(low).__name__} of layer '{node.name}'")
            handler(g, node, low)
        self.finish()
        return replace(self.plan, tensors=MappingProxyType(dict(self.tensors)),
                       values=MappingProxyType({k: v for k, v in self.values.items()}), steps=named(self.steps),
                       weights=tuple(self.weights), macs=self.macs)

    def epilogue_of(self, group, is_conv):
        """Walk the absorbed nodes: folds (into weight and bias), epilogue ops, the residual, the pool."""
        folds, ops, residual, pool, affine = [], [], None, None, None
        slot = 0  # per-channel parameter vectors so far (see act_params)
        for name in group.nodes[1:]:
            node = self.g.node(name)
            low = self.lowering(node)
            if isinstance(low, ChannelAffine):
                if ops:
                    ops.append(ScaleShift(node.kind))
                    affine = low
                else:
                    folds.append(low)
            elif isinstance(low, Pointwise):
                ops.append(Act(low.layer, tuple(n for n, _ in low.params), slot))
                slot += len(low.params)
            elif isinstance(low, Merge):
                mine = node.inputs[0] == self.prev(group, name)
                other = node.inputs[1] if mine else node.inputs[0]
                ops.append(Residual(low.layer, swapped=not mine and not low.commutative))
                residual = other
            elif isinstance(low, WindowReduce):
                pool = Pool.of(low)
            elif not isinstance(low, Identity):
                raise CompilerBug(f"'{name}' ({node.op}) cannot be part of a fused kernel")
        return folds, tuple(ops), residual, pool, affine

    def prev(self, group, name):
        return group.nodes[group.nodes.index(name) - 1]

    def acts_of(self, nodes) -> tuple[Act, ...]:
        """The pointwise layers `nodes` as ops applied in registers, each with the slots of its
        per-channel parameters in `act_params(nodes, c)`."""
        acts, slot = [], 0
        for name in nodes:
            pw = self.lowering(self.g.node(name))
            acts.append(Act(pw.layer, tuple(n for n, _ in pw.params), slot))
            slot += len(pw.params)
        return tuple(acts)

    def act_params(self, nodes, c: int) -> WeightArg | None:
        """The per-channel parameters of the pointwise layers among `nodes` (c channels each), padded
        to whole blocks and concatenated in their slots' order (see kernels.Act); None if there are none."""
        vecs = []
        for name in nodes:
            low = self.lowering(self.g.node(name))
            if isinstance(low, Pointwise):
                vecs += [pad_channels(np.asarray(v, np.float32), c) for _, v in low.params]
        return self.weight(np.concatenate(vecs)) if vecs else None

    def conv(self, group, node, low: Convolution):
        w = np.asarray(low.weight, np.float32)
        b = np.zeros(low.cout, np.float32) if low.bias is None else np.asarray(low.bias, np.float32)
        folds, ops, residual, pool, affine = self.epilogue_of(group, True)
        for f in folds:
            w = w * f.scale.astype(np.float32).reshape(-1, *([1] * (w.ndim - 1)))
            b = (b * f.scale + f.shift).astype(np.float32)
        epilogue = Epilogue(bias=low.bias is not None or bool(folds), ops=ops)
        win = low.window.as3d()
        cin, cout, groups = low.cin, low.cout, low.groups
        gate = self.gate_of(group)  # lower_more.py: a squeeze-and-excitation gate scaling the input channels
        x_name = gate.source if gate else node.inputs[0]
        src = self.values[x_name]
        aff = (lambda: self.weight(np.concatenate([affine.scale, affine.shift]).astype(np.float32))) \
            if affine is not None else (lambda: None)
        if (src == INPUT_T and groups > 1 and groups == cin == cout and pool is None and residual is None
                and group.out == self.g.output and not gate):
            # depthwise from the user's input to the user's output: both plain, no layout passes
            kern = PlainDWConv(low.window.nd, cin, self.tensors[src].dims, win.kernel, win.stride, win.dilation,
                               win.pad_lo, win.out, epilogue)
            self.tensors[OUTPUT_T] = Tensor(OUTPUT_T, cout, win.out, "plain")
            self.step(kern, group.nodes, input=TensorArg(src), weights=self.weight(w.reshape(cout, -1)),
                      bias=self.weight(b), output=TensorArg(OUTPUT_T), affine=aff(), batch=BatchArg(),
                      act_params=self.act_params(group.nodes[1:], cout))
            self.macs += kern.macs()
            self.values[group.out] = OUTPUT_T
            return
        plain = self.tensors[src].layout == "plain" and cin <= VL and groups == 1
        if not plain:
            src = self.blocked(x_name)
            if self.tensors[src].flat_of:  # a channel slice (a view) is read in place; a flat relabelling is not
                src = self.whole(src, node.name)
        in_dims, out_dims = self.tensors[src].dims, win.out
        conv_in, conv_out = in_dims, out_dims
        if (not plain and pool is None and win.kernel == (1, 1, 1) and win.stride == (1, 1, 1)
                and win.pad_lo == (0, 0, 0) and win.pad_hi == (0, 0, 0)):
            # a pointwise conv is a GEMM over all pixels: long rows, no edges
            conv_in = conv_out = (1, *gemm_rows(math.prod(out_dims), cblocks(cout)))
        final_dims = pool.out if pool else out_dims
        out = self.output_for(group.out, cout, final_dims)
        res = None
        if residual is not None:
            res = self.whole(self.values[residual], node.name)
        kern = ConvKernel(low.window.nd, cin, conv_in, plain, cout, groups, win.kernel, win.stride, win.dilation,
                          win.pad_lo, conv_out, epilogue, pool)
        weights, gated = self.weight(w, pack_conv), None
        if gate:  # the gate scales this sample's copy of the packed weights, a step before the conv
            kern, gated = self.gated_weights(kern, gate, w)
            weights = None
        elif kern.shares_cin:  # (a gated conv's per-sample weights are sized by its input channels)
            kern = replace(kern, icb_at_run=True)
        self.step(kern, group.all_nodes, input=TensorArg(src), weights=weights, sample_weights=gated,
                  bias=self.weight(pad_channels(b, cout)), residual=TensorArg(res) if res is not None else None,
                  output=TensorArg(out),
                  affine=self.weight(np.concatenate([pad_channels(affine.scale, cout), pad_channels(affine.shift, cout)]))
                  if affine is not None else None, batch=BatchArg(),
                  out_blocks=ConstArg(self.tensors[out].total_blocks), out_offset=ConstArg(self.tensors[out].cb_off),
                  act_params=self.act_params(group.nodes[1:], cout),
                  in_blocks=ConstArg(self.tensors[src].total_blocks), in_offset=ConstArg(self.tensors[src].cb_off),
                  in_icb=ConstArg(kern.icb_per_group if kern.icb_at_run else 0))
        self.macs += kern.macs()
        self.values[group.out] = out

    def dense(self, group, node, low: Dense):
        w = np.asarray(low.weight, np.float32)
        b = np.zeros(w.shape[0], np.float32) if low.bias is None else np.asarray(low.bias, np.float32)
        folds, ops, residual, pool, affine = self.epilogue_of(group, False)
        if residual is not None or pool is not None or affine is not None:
            raise CompilerBug(f"linear layer '{node.name}' fused with more than folds and activations")
        for f in folds:
            w = w * f.scale.astype(np.float32)[:, None]
            b = (b * f.scale + f.shift).astype(np.float32)
        src = self.blocked(node.inputs[0])
        t = self.tensors[src]
        c, dims = (t.flat_of if t.flat_of else (t.c, (1, 1, 1)))
        S = math.prod(dims)
        fin = cblocks(c) * S * VL
        # storage position of flat feature f = ch * S + s in the blocked (C, S) input
        ch, s = np.divmod(np.arange(c * S), S)
        pos = (ch // VL) * S * VL + s * VL + ch % VL
        cout = w.shape[0]
        wp = np.zeros((cblocks(cout) * VL, fin), np.float32)
        if c * S == fin:  # channels fill whole blocks and nothing is permuted
            wp[:cout] = w if S == 1 else w.reshape(cout, cblocks(c), VL, S).transpose(0, 1, 3, 2).reshape(cout, fin)
        else:
            wp[:cout, pos] = w
        wp = wp.reshape(cblocks(cout), VL, fin).transpose(0, 2, 1)
        kern = LinearKernel(fin, cout, Epilogue(bias=True, ops=ops), c, S)
        out = self.new_tensor(cout, (1, 1, 1))
        self.step(kern, group.nodes, input=TensorArg(src), weights=self.weight(wp, pack_linear),
                  bias=self.weight(pad_channels(b, cout)), output=TensorArg(out), batch=BatchArg(),
                  act_params=self.act_params(group.nodes[1:], cout))
        self.macs += node.macs
        self.values[group.out] = out

    def identity(self, group, node, low):
        self.values[group.out] = self.values[node.inputs[0]]

    def flatten(self, group, node, low):
        src = self.blocked(node.inputs[0])
        t = self.tensors[src]
        if t.flat_of or (t.spatial == 1 and t.cb_off == 0 and t.root is None):
            self.values[node.name] = src  # (C, 1, 1, 1) blocked is already the flat blocked vector
            return
        readers = self.readers.get(node.name, [])
        if node.name == self.g.output or (readers and all(
                isinstance(self.lowering(self.g.node(r)), Dense) for r in readers)):
            # a relabelling: linear layers read the blocked (C, S) order through permuted weights,
            # and the output is written from it in PyTorch's (channel-major) order
            src = self.whole(src, node.name)  # a slice of a concat has the concat as its only reader
            self.values[node.name] = self.new_tensor(t.c * t.spatial, (1, 1, 1), root=src, cb_total=cblocks(t.c),
                                                     flat_of=(t.c, t.dims))
            return
        out = self.new_tensor(t.c * t.spatial, (1, 1, 1))
        self.step(Reorder("to_flat", t.c, t.dims), [node.name], input=TensorArg(self.whole(src, node.name)),
                  output=TensorArg(out))
        self.values[node.name] = out

    def concat(self, group, node, low):
        if self.concat_virtual(group, node):  # lower_more.py: lazy channel selections
            return
        total = node.out_shape[0]
        dims = as3d(node.out_shape[1:])
        self.concat_tensor(node.name)
        root, base = self.concat_storage(node.name)
        offs = np.cumsum([0] + [s[0] for s in node.in_shapes])[:-1]
        copies = [(i, int(o)) for i, o in zip(node.inputs, offs) if self.inplace.get(i, (None,))[0] != node.name]
        for j, (i, o) in enumerate(copies):
            src = self.blocked(i)
            if self.tensors[src].flat_of:  # channel slices (views) are copied from where they are
                src = self.whole(src, node.name)
            # into the root at this concat's place in it (a nested concat has whole blocks: no tail to clear)
            kern = ConcatCopy(self.tensors[src].c, self.tensors[root].c, math.prod(dims))
            self.step(kern, [node.name], input=TensorArg(src), output=TensorArg(root), offset=ConstArg(base * VL + o),
                      zero_tail=ConstArg(int(j == len(copies) - 1 and total % VL != 0)),
                      in_blocks=ConstArg(self.tensors[src].total_blocks), in_offset=ConstArg(self.tensors[src].cb_off))

    def eltwise(self, group, node, low):
        if isinstance(low, Merge) and (len(set(node.in_shapes)) > 1 or not low.finite):
            return self.broadcast(group, node, low)  # lower_more.py
        ins = [self.whole(self.blocked(i), node.name) for i in node.inputs]
        merge = low.layer if isinstance(low, Merge) else None
        acts = self.acts_of(group.nodes[1 if merge else 0:])
        c, dims = node.out_shape[0], as3d(node.out_shape[1:])
        out = self.new_tensor(c, dims)
        kern = Eltwise(len(ins), c, math.prod(dims), tuple(acts), merge)
        extra = {"act_params": self.act_params(group.nodes, c)} if kern.per_block else {}
        self.step(kern, group.nodes, output=TensorArg(out), **{f"input{i}": TensorArg(t) for i, t in enumerate(ins)},
                  **extra)
        self.values[group.out] = out

    def pool(self, group, node, low: WindowReduce):
        src = self.blocked(node.inputs[0])  # may be a view: a channel slice of a larger tensor
        if self.tensors[src].flat_of:
            src = self.whole(src, node.name)
        self.values[group.out] = self.pool_tensor(group.nodes, src, low, as3d(node.out_shape[1:]))

    def pool_tensor(self, nodes, src: int, low: WindowReduce, dims) -> int:
        """A pooled copy of tensor `src`, stored with `dims` (the layer's output shape: a reduction that
        drops size-1 axes keeps the positions' order)."""
        t = self.tensors[src]
        p = Pool.of(low)
        if math.prod(dims) != math.prod(p.out):
            raise CompilerBug(f"a window reduction to {p.out} stored as {dims}")
        out = self.new_tensor(t.c, dims)
        self.step(PoolOp(t.c, t.dims, p), nodes, input=TensorArg(src), output=TensorArg(out),
                  in_blocks=ConstArg(t.total_blocks), in_offset=ConstArg(t.cb_off))
        return out

    def affine(self, group, node, low: ChannelAffine):
        src = self.blocked(node.inputs[0])  # may be a view: a channel slice of a larger tensor
        t = self.tensors[src]
        if t.flat_of:
            src = self.whole(src, node.name)
        out = self.new_tensor(t.c, t.dims)
        sc = np.concatenate([pad_channels(low.scale, t.c), pad_channels(low.shift, t.c)])
        acts = self.acts_of(group.nodes[1:])
        self.step(Affine(t.c, t.spatial, node.kind, acts), group.nodes, input=TensorArg(src), output=TensorArg(out),
                  affine=self.weight(sc), in_blocks=ConstArg(t.total_blocks), in_offset=ConstArg(t.cb_off),
                  blocks=ConstArg(cblocks(t.c)), act_params=self.act_params(group.nodes[1:], t.c))
        self.values[group.out] = out

    def channel(self, group, node, low: ChannelReduction):
        src = self.whole(self.blocked(node.inputs[0]), node.name)
        self.values[group.out] = self.channel_tensor(group.nodes, node, src, low)

    def channel_tensor(self, nodes, node, src: int, low: ChannelReduction) -> int:
        """Layer `node`'s channel reduction of tensor `src` (one channel where it collapses them)."""
        t = self.tensors[src]
        out = self.new_tensor(1 if low.collapse else t.c, t.dims)
        vecs = [pad_channels(np.asarray(v, np.float32), t.c) for _, v in low.params]
        self.step(ChannelOp(low.layer, t.c, t.spatial, low.collapse, tuple(node.in_shapes[0])), nodes,
                  input=TensorArg(src), output=TensorArg(out),
                  params=self.weight(np.concatenate(vecs)) if vecs else None)
        return out

    def chain(self, group, node, low: Chain):
        """The steps one after the other, each on the previous one's tensor."""
        src = self.whole(self.blocked(node.inputs[0]), node.name)
        for i, step in enumerate(low.steps):
            if isinstance(step, ChannelReduction):
                src = self.channel_tensor(group.nodes, node, src, step)
            elif isinstance(step, WindowReduce):
                last = i == len(low.steps) - 1
                src = self.pool_tensor(group.nodes, src, step, as3d(node.out_shape[1:]) if last
                                       else Pool.of(step).out)
            else:
                raise CompilerBug(f"no kernel for the step {type(step).__name__} of layer '{node.name}'")
        self.values[group.out] = src

    def pad(self, group, node, low: ConstantPad):
        src = self.whole(self.blocked(node.inputs[0]), node.name)
        t = self.tensors[src]
        lo = (0,) * (3 - len(low.pads)) + tuple(p[0] for p in low.pads)
        dims = as3d(node.out_shape[1:])
        out = self.new_tensor(t.c, dims)
        self.step(PadOp(t.c, t.dims, lo, dims, low.value), group.nodes, input=TensorArg(src), output=TensorArg(out))
        self.values[group.out] = out

    # ---- the user's output ----
    def finish(self):
        """Write the result into the user's (N, C, *spatial) array."""
        out_shape = self.g.output_shape
        tid = self.values[self.g.output]
        if tid == OUTPUT_T:
            return
        c, dims = out_shape[0], as3d(out_shape[1:])
        self.tensors[OUTPUT_T] = Tensor(OUTPUT_T, c, dims, "plain")
        t = self.tensors[tid]
        if t.flat_of:  # a relabelled flatten: the plain (N, C, S) order of its source is the flat order
            src_c, src_dims = t.flat_of
            self.tensors[OUTPUT_T] = Tensor(OUTPUT_T, src_c, src_dims, "plain")  # the same bytes as (N, C * S)
            self.step(Reorder("from_blocked", src_c, src_dims), ["output"], input=TensorArg(t.root),
                      output=TensorArg(OUTPUT_T))
            self.values[self.g.output] = OUTPUT_T
            return
        if t.layout == "plain":  # the input itself
            tid = self.blocked(self.g.output)
            t = self.tensors[tid]
        if t.root is not None:  # a channel view (a slice): made whole, then written out
            tid = self.whole(tid, "the output")
            t = self.tensors[tid]
        writers = [i for i, s in enumerate(self.steps) if tid in s.tensors("out")]
        readers = [i for i, s in enumerate(self.steps) if tid in s.tensors("in")]
        sole = t.root is None and len(writers) == 1 and not readers and tid != self.blocked_input
        last = self.steps[-1] if self.steps else None
        if sole and writers[0] == len(self.steps) - 1 and ((isinstance(last.kernel, ConvKernel)
                                                            and last.kernel.pool is None)
                                                           or getattr(last.kernel, "writes_plain", False)):
            # the last conv (or resample) writes straight into the user's array: no layout pass over the output
            kern = replace(last.kernel, out_plain=True)
            self.steps[-1] = replace(last, kernel=kern,
                                     args=tuple((n, TensorArg(OUTPUT_T) if n == "output" else a) for n, a in last.args))
            del self.tensors[tid]
        elif sole and t.spatial == 1 and t.c % VL == 0:
            # (N, C) blocked is byte for byte the plain output: the producer writes it directly
            self.tensors[OUTPUT_T] = Tensor(OUTPUT_T, c, dims, "blocked")
            i = writers[0]
            self.steps[i] = replace(self.steps[i], args=tuple(
                (n, TensorArg(OUTPUT_T) if isinstance(a, TensorArg) and a.tensor == tid else a)
                for n, a in self.steps[i].args))
            del self.tensors[tid]
        else:
            self.step(Reorder("from_blocked", t.c, t.dims), ["output"], input=TensorArg(tid),
                      output=TensorArg(OUTPUT_T))
        self.values[self.g.output] = OUTPUT_T


def lower(plan: Plan) -> Plan:
    """Plan with steps, tensors and (unpacked) weights."""
    return _Lowerer(plan).run()
