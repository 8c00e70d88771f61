"""The fusion plan: Graph + weights -> a list of native steps over planned buffers.

Fusion rule (each layer declares its `Fusion` category; nothing is guessed from names):

  An ANCHOR (conv, linear) opens a step and absorbs, along its chain of
  single-consumer successors, in this order only:
    FOLD      batchnorm right after the anchor -> folded into weights and bias;
              a later one becomes a per-channel affine in the epilogue;
    ELEMWISE  activations, applied to the accumulators in registers;
    MERGE     a two-input add whose other operand is already computed (so the
              later of the two producers takes it), as a residual read in the
              epilogue; activations after it follow the add;
    POOL      one max/avg pool: reduced in registers, the pre-pool tensor is
              never stored (conv only; it ends the chain);
    FREE      dropout (flatten ends the chain: it changes the layout).
  A chain stops at a layer with several consumers or at the net's output.
  CONCAT is done in place when every input starts on a 16-channel block
  boundary: each conv-step producer writes its own channel slice of the
  concat buffer; other inputs are copied. FREE layers cost nothing (flatten of
  a 1x1 map, or before linear layers, is a relabelling; the linear weights are
  permuted instead). Everything else (standalone pools, global pools, add,
  activations, batchnorm, softmax, LRN, pad) is its own simple native kernel.

Buffers are planned by liveness: a buffer's interval runs from the step that
first writes it to the last step that reads it, and intervals that do not
overlap share workspace (first fit).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..layers.base import Fusion
from ..spec import INPUT
from .irutil import VL
from .kernels import (
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
    cblocks,
)
from .pack import as3d, pack_conv, pad_channels

IN_BUF, OUT_BUF = -1, -2  # the user's input and output arrays


@dataclass(frozen=True)
class Val:
    """Where a graph tensor lives: buffer, channels, 3D dims, and its slice of the buffer."""

    buf: int
    c: int
    dims: tuple
    plain: bool = False  # the user's input, not blocked
    cb_total: int = 0  # channel blocks of the buffer (0: cblocks(c))
    cb_off: int = 0
    flat_of: tuple | None = None  # a flatten of (C, dims) left in blocked order (linear reads it)

    @property
    def spatial(self) -> int:
        return math.prod(self.dims)

    @property
    def total(self) -> int:
        return self.cb_total or cblocks(self.c)


@dataclass(frozen=True)
class Step:
    """One native call: kernel descriptor, its symbol, the graph nodes it covers and its arguments.

    Args: ("buf", id, float offset per sample) | ("w", index) | ("batch",) | None.
    """

    kernel: object
    symbol: str
    nodes: tuple
    args: tuple

    def items(self) -> int:
        return self.kernel.items()


@dataclass
class Plan:
    steps: list = field(default_factory=list)
    buffers: dict = field(default_factory=dict)  # id -> floats per sample
    offsets: dict = field(default_factory=dict)  # id -> float offset per sample in the workspace
    workspace: int = 0  # floats per sample
    weights: list = field(default_factory=list)  # packed arrays
    macs: int = 0

    def describe(self) -> str:
        """One line per step: kernel name and the layers it covers (DEBUG level 2)."""
        return "\n".join(f"{i:3d} {s.symbol:40s} {', '.join(s.nodes)}" for i, s in enumerate(self.steps))

    def key(self) -> str:
        """What determines the generated code (the packed weights do not)."""
        return repr([(s.symbol, s.kernel, s.args) for s in self.steps]) + repr(sorted(self.offsets.items()))


def _act(node):
    return (node.kind, float(getattr(node.layer, "alpha", 0.0)))


def _pool_of(node) -> Pool:
    layer = node.layer
    in_shape = node.in_shapes[0]
    nd = len(in_shape) - 1
    lead = 3 - nd
    if node.kind.startswith("global"):
        dims = as3d(in_shape[1:])
        return Pool("max" if "max" in node.kind else "avg", dims, dims, (1, 1, 1), (0, 0, 0), (0, 0, 0), (1, 1, 1),
                    tuple((n,) for n in dims))
    _, k, s, d, pads = layer.geometry(in_shape)
    counts = ()
    if node.kind == "avgpool":
        counts = ((1,),) * lead + tuple(tuple(int(c) for c in t) for t in layer.divisor_counts(in_shape))
    return Pool("max" if node.kind == "maxpool" else "avg",
                (1,) * lead + tuple(k), (1,) * lead + tuple(s), (1,) * lead + tuple(d),
                (0,) * lead + tuple(p[0] for p in pads), (0,) * lead + tuple(p[1] for p in pads),
                as3d(node.out_shape[1:]), counts)


class _Planner:
    def __init__(self, graph, weights):
        self.g, self.w = graph, weights
        self.plan = Plan()
        self.vals: dict[str, Val] = {}
        self.absorbed: set[str] = set()
        self.symbols: dict = {}  # kernel descriptor -> symbol
        self.names: dict = {}  # base name -> count
        self.inplace: dict[str, tuple] = {}  # concat input node -> (concat name, channel offset)
        self.next_buf = 0
        shape = graph.input_shape
        self.vals[INPUT] = Val(IN_BUF, shape[0], as3d(shape[1:]), plain=True)

    # ---- bookkeeping ----
    def new_buf(self, floats: int) -> int:
        b = self.next_buf
        self.next_buf += 1
        self.plan.buffers[b] = floats
        return b

    def new_val(self, c, dims) -> Val:
        return Val(self.new_buf(cblocks(c) * VL * math.prod(dims)), c, tuple(dims))

    def weight(self, arr) -> tuple:
        self.plan.weights.append(aligned(arr))
        return ("w", len(self.plan.weights) - 1)

    def symbol(self, kernel) -> str:
        if kernel not in self.symbols:
            base = kernel.name
            n = self.names.get(base, 0)
            self.names[base] = n + 1
            self.symbols[kernel] = base if n == 0 else f"{base}_{n}"
        return self.symbols[kernel]

    def forget_symbol(self, kernel):
        """Free the name of a kernel the last step no longer uses (if it was the latest of its name)."""
        if any(s.kernel == kernel for s in self.plan.steps[:-1]):
            return
        base, n = kernel.name, self.names[kernel.name] - 1
        if self.symbols.get(kernel) == (base if n == 0 else f"{base}_{n}"):
            del self.symbols[kernel]
            self.names[base] = n

    def step(self, kernel, nodes, args):
        self.plan.steps.append(Step(kernel, self.symbol(kernel), tuple(nodes), tuple(args)))

    @staticmethod
    def ref(v: Val) -> tuple:
        return ("buf", v.buf, v.cb_off * v.spatial * VL)

    def blocked(self, name) -> Val:
        """The value of `name` in blocked layout (converting the user's input once)."""
        v = self.vals[name]
        if not v.plain:
            return v
        key = INPUT + "#blocked"
        if key not in self.vals:
            out = self.new_val(v.c, v.dims)
            self.step(Reorder("to_blocked", v.c, v.dims), [INPUT], [self.ref(v), self.ref(out)])
            self.vals[key] = out
        return self.vals[key]

    def single_consumer(self, name):
        cons = self.g.consumers(name)
        if len(cons) != 1 or name == self.g.output:
            return None
        return self.g.node(cons[0])

    # ---- the pass ----
    def run(self) -> Plan:
        self.find_inplace_concats()
        for node in self.g.nodes:
            if node.name in self.absorbed:
                continue
            cat = node.layer.category
            if node.kind == "conv":
                self.conv(node)
            elif node.kind == "linear":
                self.linear(node)
            elif cat == Fusion.FREE:
                self.free(node)
            elif cat == Fusion.CONCAT:
                self.concat(node)
            else:
                self.simple(node)
        self.finish()
        return self.plan

    def find_inplace_concats(self):
        for node in self.g.nodes:
            if node.layer.category != Fusion.CONCAT:
                continue
            offs = np.cumsum([0] + [s[0] for s in node.in_shapes])[:-1]
            if all(o % VL == 0 for o in offs) and len(set(node.inputs)) == len(node.inputs):
                for i, o in zip(node.inputs, offs):
                    if i != INPUT and self.g.consumers(i) == [node.name] and i != self.g.output:
                        self.inplace[i] = (node.name, int(o))

    def chain(self, node, is_conv: bool):
        """Absorb successors of an anchor per the fusion rule; returns (last node, parts).

        Linear layers take only folds and activations (their kernel has no residual, affine or pool)."""
        parts = {"fold": [], "pre": [], "residual": None, "post": [], "affine": None, "pool": None, "nodes": [node.name]}
        cur = node
        while True:
            nxt = self.single_consumer(cur.name)
            if nxt is None:
                break
            cat = nxt.layer.category
            ep_started = parts["pre"] or parts["residual"] or parts["post"]
            if cat == Fusion.FOLD:
                if parts["pool"] or parts["affine"] is not None or (ep_started and not is_conv):
                    break
                sc, sh = nxt.layer.scale_shift(self.params(nxt))
                if ep_started:
                    parts["affine"] = (sc, sh)
                else:
                    parts["fold"].append((sc, sh))
            elif cat == Fusion.ELEMWISE:
                if parts["pool"] or parts["affine"] is not None:
                    break
                (parts["post"] if parts["residual"] else parts["pre"]).append(_act(nxt))
            elif cat == Fusion.MERGE:
                if (len(nxt.inputs) != 2 or parts["residual"] or parts["post"] or parts["pool"]
                        or parts["affine"] is not None or not is_conv):
                    break
                other = nxt.inputs[1] if nxt.inputs[0] == cur.name else nxt.inputs[0]
                if other == cur.name or other not in self.vals or self.vals[other].plain:
                    break
                parts["residual"] = self.vals[other]
            elif cat == Fusion.POOL:
                if not is_conv or parts["pool"]:
                    break
                parts["pool"] = _pool_of(nxt)
            elif nxt.kind == "dropout":
                pass
            else:
                break
            parts["nodes"].append(nxt.name)
            self.absorbed.add(nxt.name)
            cur = nxt
        return cur, parts

    def params(self, node) -> dict:
        return {p: self.w[f"{node.name}.{p}"] for p in (*node.params, *node.buffers)}

    def epilogue(self, parts, has_bias) -> Epilogue:
        return Epilogue(bias=has_bias, pre=tuple(parts["pre"]), residual=parts["residual"] is not None,
                        post=tuple(parts["post"]), affine=parts["affine"] is not None)

    def output_for(self, last, c, dims) -> Val:
        """Where a step ending at node `last` writes: a slice of an in-place concat, else a new buffer."""
        if last.name in self.inplace:
            cname, off = self.inplace[last.name]
            if cname not in self.vals:
                cnode = self.g.node(cname)
                self.vals[cname] = self.new_val(cnode.out_shape[0], dims)
            cv = self.vals[cname]
            return Val(cv.buf, c, tuple(dims), cb_total=cblocks(cv.c), cb_off=off // VL)
        return self.new_val(c, dims)

    def conv(self, node):
        layer = node.layer
        in_shape = node.in_shapes[0]
        nd, k, s, d, pads = layer.geometry(in_shape)
        cin, cout, groups = layer.channels(in_shape)
        p = self.params(node)
        w = p["weight"]
        b = p["bias"] if "bias" in p else np.zeros(cout, np.float32)
        last, parts = self.chain(node, is_conv=True)
        for sc, sh in parts["fold"]:
            w = w * sc.astype(np.float32).reshape(-1, *([1] * (w.ndim - 1)))
            b = (b * sc + sh).astype(np.float32)
        src = self.vals[node.inputs[0]]
        lead = 3 - nd
        if (src.plain and groups > 1 and groups == cin == cout and parts["pool"] is None
                and parts["residual"] is None and last.name == self.g.output):
            # depthwise from the user's input to the user's output: both plain, no layout passes
            kern = PlainDWConv(nd, cin, src.dims, (1,) * lead + tuple(k), (1,) * lead + tuple(s),
                               (1,) * lead + tuple(d), (0,) * lead + tuple(pp[0] for pp in pads),
                               as3d(node.out_shape[1:]), self.epilogue(parts, has_bias="bias" in p or bool(parts["fold"])))
            args = [self.ref(src), self.weight(w.reshape(cout, -1)), self.weight(b), ("buf", OUT_BUF, 0),
                    self.weight(np.concatenate([a.astype(np.float32) for a in parts["affine"]]))
                    if parts["affine"] is not None else None, ("batch",)]
            self.step(kern, parts["nodes"], args)
            self.plan.macs += node.macs
            self.vals[last.name] = Val(OUT_BUF, cout, kern.out_dims, plain=True)
            return
        plain = src.plain and cin <= VL and groups == 1
        if not plain:
            src = self.blocked(node.inputs[0])
        lead = 3 - nd
        out_dims = as3d(node.out_shape[1:])
        res = parts["residual"]
        kern_args = {"nd": nd, "cin": cin, "in_dims": src.dims, "in_plain": plain, "cout": cout, "groups": groups,
                     "kernel": (1,) * lead + tuple(k), "stride": (1,) * lead + tuple(s),
                     "dilation": (1,) * lead + tuple(d), "pad_lo": (0,) * lead + tuple(pp[0] for pp in pads),
                     "out_dims": out_dims, "pool": parts["pool"],
                     "epilogue": self.epilogue(parts, has_bias="bias" in p or bool(parts["fold"]))}
        if (not plain and parts["pool"] is None and kern_args["kernel"] == (1, 1, 1)
                and kern_args["stride"] == (1, 1, 1) and kern_args["pad_lo"] == (0, 0, 0)):
            # a pointwise conv is a GEMM over all pixels: one long row, no edges
            flat = (1, 1, math.prod(out_dims))
            kern_args.update(in_dims=flat, out_dims=flat)
        final_dims = parts["pool"].out if parts["pool"] else out_dims
        out = self.output_for(last, cout, final_dims)
        kern = ConvKernel(**kern_args, out_cblocks=out.cb_total, out_cblock_offset=out.cb_off,
                          res_cblocks=res.total if res else 0)
        args = [self.ref(src), self.weight(pack_conv(kern, w)), self.weight(pad_channels(b, cout)),
                self.ref(res) if res else None, ("buf", out.buf, 0),
                self.weight(np.concatenate([pad_channels(a, cout) for a in parts["affine"]]))
                if parts["affine"] is not None else None, ("batch",)]
        self.step(kern, parts["nodes"], args)
        self.plan.macs += node.macs
        self.vals[last.name] = out

    def linear(self, node):
        p = self.params(node)
        w = p["weight"]
        b = p["bias"] if "bias" in p else np.zeros(w.shape[0], np.float32)
        last, parts = self.chain(node, is_conv=False)
        for sc, sh in parts["fold"]:
            w = w * sc.astype(np.float32)[:, None]
            b = (b * sc + sh).astype(np.float32)
        src = self.blocked(node.inputs[0])
        c, dims = src.flat_of if src.flat_of else (src.c, (1, 1, 1))
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
        kern = LinearKernel(fin, cout, self.epilogue(parts, has_bias=True))
        out = self.new_val(cout, (1, 1, 1))
        self.step(kern, parts["nodes"], [self.ref(src), self.weight(wp), self.weight(pad_channels(b, cout)),
                                         self.ref(out), ("batch",)])
        self.plan.macs += node.macs
        self.vals[last.name] = out

    def free(self, node):
        v = self.vals[node.inputs[0]]
        if node.kind == "flatten":
            v = self.blocked(node.inputs[0])
            if v.flat_of:  # already a relabelled flatten
                pass
            elif v.spatial == 1 and v.cb_off == 0:
                v = Val(v.buf, v.c, (1, 1, 1), cb_total=v.cb_total)
            elif all(self.g.node(c).kind == "linear" for c in self.g.consumers(node.name)) and node.name != self.g.output:
                v = Val(v.buf, v.c * v.spatial, (1, 1, 1), flat_of=(v.c, v.dims), cb_off=v.cb_off,
                        cb_total=v.cb_total)
            else:
                out = self.new_val(v.c * v.spatial, (1, 1, 1))
                self.step(Reorder("flatten", v.c, v.dims), [node.name], [self.ref(v), self.ref(out)])
                v = out
        self.vals[node.name] = v

    def concat(self, node):
        total = node.out_shape[0]
        dims = as3d(node.out_shape[1:])
        if node.name not in self.vals:
            self.vals[node.name] = self.new_val(total, dims)
        dst = self.vals[node.name]
        offs = np.cumsum([0] + [s[0] for s in node.in_shapes])[:-1]
        copies = [(i, int(o)) for i, o in zip(node.inputs, offs) if self.inplace.get(i, (None,))[0] != node.name]
        for j, (i, o) in enumerate(copies):
            src = self.blocked(i)
            kern = ConcatCopy(src.c, total, o, math.prod(dims), zero_tail=j == len(copies) - 1 and total % VL != 0)
            self.step(kern, [node.name], [self.ref(src), self.ref(dst)])

    def simple(self, node):
        """Kernels of their own: pools, elementwise, add, batchnorm, softmax, LRN, pad."""
        kind = node.kind
        ins = [self.blocked(i) for i in node.inputs]
        x = ins[0]
        c, dims = node.out_shape[0], as3d(node.out_shape[1:])
        if x.cb_off or x.cb_total not in (0, cblocks(x.c)) or x.flat_of:
            raise NotImplementedError(f"{kind} on a channel slice")
        cat = node.layer.category
        names = [node.name]
        if cat in (Fusion.ELEMWISE, Fusion.MERGE):
            acts, last = [], node
            if cat == Fusion.ELEMWISE:
                acts.append(_act(node))
            while (nxt := self.single_consumer(last.name)) is not None and nxt.layer.category == Fusion.ELEMWISE:
                acts.append(_act(nxt))
                self.absorbed.add(nxt.name)
                names.append(nxt.name)
                last = nxt
            out = self.output_for(last, c, dims)
            if out.cb_off or out.cb_total != cblocks(c):  # elementwise works on whole buffers
                out = self.new_val(c, dims)
                self.inplace.pop(last.name, None)
            kern = Eltwise(len(ins), cblocks(c) * VL * math.prod(dims), tuple(acts))
            self.step(kern, names, [self.ref(out)] + [self.ref(v) for v in ins])
            self.vals[last.name] = out
            return
        self.inplace.pop(node.name, None)
        out = self.new_val(c, dims)
        if cat == Fusion.POOL or kind.startswith("global"):
            kern = PoolOp(x.c, x.dims, _pool_of(node))
            args = [self.ref(x), self.ref(out)]
        elif cat == Fusion.FOLD:
            sc, sh = node.layer.scale_shift(self.params(node))
            kern = Affine(x.c, x.spatial)
            args = [self.ref(x), self.ref(out), self.weight(np.concatenate([pad_channels(sc, c),
                                                                              pad_channels(sh, c)]))]
        elif kind == "softmax":
            kern, args = ChannelOp("softmax", x.c, x.spatial), [self.ref(x), self.ref(out)]
        elif kind == "lrn":
            ly = node.layer
            kern = ChannelOp("lrn", x.c, x.spatial, ly.size, float(ly.alpha), float(ly.beta), float(ly.k))
            args = [self.ref(x), self.ref(out)]
        elif kind == "pad":
            pads = node.layer.pads(node.in_shapes[0])
            lo = (0,) * (3 - len(pads)) + tuple(p[0] for p in pads)
            kern = PadOp(x.c, x.dims, lo, dims, float(node.layer.value))
            args = [self.ref(x), self.ref(out)]
        else:
            raise NotImplementedError(f"no native kernel for layer kind '{kind}'")
        self.step(kern, names, args)
        self.vals[node.name] = out

    def finish(self):
        """Write the result to the user's array and lay out the workspace by liveness."""
        v = self.vals[self.g.output]
        if v.buf == OUT_BUF:  # already written to the user's array
            self.layout()
            return
        if v.plain:
            v = self.blocked(self.g.output)
        producer_only = v.buf >= 0 and sum(1 for s in self.plan.steps for a in s.args
                                           if a and a[0] == "buf" and a[1] == v.buf) == 1
        whole = producer_only and not v.flat_of and v.cb_off == 0 and v.total == cblocks(v.c)
        direct = whole and v.dims == (1, 1, 1) and v.c % VL == 0
        last = self.plan.steps[-1] if self.plan.steps else None
        if (whole and not direct and isinstance(last.kernel, ConvKernel) and last.args[4][1] == v.buf
                and last.kernel.pool is None):
            # the last conv scatters straight into the user's array: no layout pass over the output
            self.forget_symbol(last.kernel)
            kern = dataclasses.replace(last.kernel, out_plain=True)
            args = last.args[:4] + (("buf", OUT_BUF, 0),) + last.args[5:]
            self.plan.steps[-1] = Step(kern, self.symbol(kern), last.nodes, args)
            del self.plan.buffers[v.buf]
        elif direct:  # same bytes as the plain (N, C) output: the last step writes it
            self.plan.steps = [Step(s.kernel, s.symbol, s.nodes, tuple(
                ("buf", OUT_BUF, a[2]) if a and a[0] == "buf" and a[1] == v.buf else a for a in s.args))
                for s in self.plan.steps]
            del self.plan.buffers[v.buf]
        else:
            if v.flat_of:
                c, dims = v.flat_of
                self.step(Reorder("flatten", c, dims), ["output"], [self.ref(v), ("buf", OUT_BUF, 0)])
            else:
                self.step(Reorder("from_blocked", v.c, v.dims), ["output"], [self.ref(v), ("buf", OUT_BUF, 0)])
        self.layout()

    def layout(self):
        first, last = {}, {}
        for i, s in enumerate(self.plan.steps):
            for a in s.args:
                if a and a[0] == "buf" and a[1] >= 0:
                    first.setdefault(a[1], i)
                    last[a[1]] = i
        placed = []  # (offset, size, first, last)
        for b in sorted(first, key=lambda b: (first[b], -self.plan.buffers[b])):
            size = self.plan.buffers[b]
            off = 0
            for o, sz, f, lst in sorted(placed):
                overlap_t = not (lst < first[b] or last[b] < f)
                if overlap_t and off < o + sz and o < off + size:
                    off = o + sz
            placed.append((off, size, first[b], last[b]))
            self.plan.offsets[b] = off
        self.plan.workspace = max((o + sz for o, sz, _, _ in placed), default=0)


def aligned_empty(n: int) -> np.ndarray:
    """n uninitialised float32 starting on a 64-byte boundary: the kernels load whole zmm
    vectors, and a misaligned array splits every one of them across two cache lines."""
    raw = np.empty(n + 16, np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip:skip + n]  # a view: keeps `raw` alive


def aligned(arr) -> np.ndarray:
    """A 64-byte aligned float32 copy of arr (packed weights).

    >>> aligned(np.ones((3, 5))).ctypes.data % 64, aligned(np.ones(3)).dtype
    (0, dtype('float32'))
    """
    arr = np.asarray(arr, np.float32)
    out = aligned_empty(arr.size).reshape(arr.shape)
    out[...] = arr
    return out


def build_plan(graph, weights) -> Plan:
    """Fuse and schedule `graph` with checked float32 `weights` (name -> array).

    >>> import cnngraph
    >>> from cnngraph.weights import init
    >>> g = cnngraph.load("input: [3, 8, 8]\\nlayers: [{conv: {out: 16, kernel: 3}}, {batchnorm: {}}, {relu: {}}]")
    >>> print(build_plan(g, init(g)).describe())
      0 fused_conv2d_relu                        conv1, batchnorm1, relu1
    """
    return _Planner(graph, weights).run()
