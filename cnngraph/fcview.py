"""The FC view: every layer, and the whole network, as the sparse fully-connected map it is.

The seeds draw a convolution as a partially connected fully-connected layer whose
connections share weights, and conclude that a whole CNN is one neural network.
This module makes that literal with `scipy.sparse`:

- per layer, `M` and `b` with `layer(x).ravel() == M @ x.ravel() + b` (each layer's
  `to_matrix` facet; ReLU and max-pool give the selection their input realises;
  sigmoid, tanh, softmax and LRN give their tangent at the input, labelled 'local');
- per layer, the numbers of the seeds' argument: connections, parameters, sharing,
  density, and what an unshared FC layer would need (`dense_params`);
- the whole network at an input as one composed map `y = A x + c`, where it fits;
- every matrix checked against the numpy reference executor (`max_abs_error`).

Memory is proportional to the non-zeros (16 bytes each: float64 value, int32
column, int32 tie); sizes are estimated first and refused, naming the bytes, above
`max_bytes`.

>>> from cnngraph import load
>>> v = view(load("input: [1, 8, 8]\\nlayers: [{conv: {out: 2, kernel: 3}}, {relu: {}}]"))
>>> [(lv.name, lv.connections, lv.params, lv.max_abs_error < 1e-12) for lv in v.layers][0]
('conv1', 648, 20, True)
>>> relu = v.layers[1]  # one connection per output its input keeps (> 0)
>>> relu.params, 0 < relu.connections < 72, relu.max_abs_error < 1e-12
(0, True, True)
>>> v.network.shape, v.network.max_abs_error < 1e-12
((72, 64), True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import oracle
from . import weights as W
from .errors import CnnGraphError, LayerError, did_you_mean
from .graph import Graph, Node
from .layers.base import Lowered, fc_identity
from .spec import INPUT

BYTES_PER_NNZ = 16  # a layer matrix: float64 value + int32 column + int32 tie
MAP_BYTES_PER_NNZ = 12  # a composed map: float64 value + int32 column (no ties)
DEFAULT_MAX_BYTES = 4 << 30
MODES = ("linear", "piecewise", "local")  # in order of weakness: the network takes the weakest

__all__ = ["BYTES_PER_NNZ", "DEFAULT_MAX_BYTES", "FCView", "FCViewError", "LayerView", "Lowered", "NetworkMap",
           "NetworkView", "analytic", "compose", "connectivity_image", "estimate_network", "format_bytes",
           "format_table", "layer_bytes", "lower", "lower_node", "plot", "prepare", "save_npz", "to_json", "view"]


class FCViewError(CnnGraphError):
    """A layer or network whose FC view cannot be built (too large, unknown layer, bad input)."""


def format_bytes(n: float) -> str:
    """Human-readable bytes.

    >>> format_bytes(1_686_643_208), format_bytes(512)
    ('1.6 GiB', '512 B')
    """
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


# ---- per-layer statistics ---------------------------------------------------

@dataclass(frozen=True)
class LayerView:
    """The FC-view numbers of one layer.

    connections: stored non-zeros of M (real connections; padding taps excluded).
    params: trainable parameters of the layer (weights and bias).
    sharing: connections per parameter (None without parameters).
    reuse: connections per distinct tied weight entry (e.g. output positions for a conv).
    density: connections / (rows * cols).
    dense_params: an unshared FC layer between the same input and output: in * out (+ out bias
    where the layer has a bias).
    max_abs_error: max |M x + b - reference(x)| at the checked input; None when not built.
    """

    name: str
    op: str
    mode: str | None
    rows: int
    cols: int
    connections: int
    params: int
    tied: int | None
    sharing: float | None
    reuse: float | None
    density: float
    dense_params: int
    bytes: int
    max_abs_error: float | None = None
    built: bool = False
    reason: str | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "mode": self.mode, "shape": [self.rows, self.cols],
                "connections": self.connections, "params": self.params, "tied": self.tied,
                "sharing": self.sharing, "reuse": self.reuse, "density": self.density,
                "dense_params": self.dense_params, "bytes": self.bytes, "max_abs_error": self.max_abs_error,
                "built": self.built, "reason": self.reason}


def _layer(node: Node):
    if not hasattr(node.layer, "to_matrix"):
        raise FCViewError(f"layer '{node.name}' ({node.op}): layer kind '{node.kind}' has no FC view (to_matrix)")
    return node.layer


def _sizes(node: Node) -> tuple[int, int]:
    return math.prod(node.out_shape), sum(math.prod(s) for s in node.in_shapes)


def _stats(node: Node, connections: int, mode, tied, nbytes) -> dict:
    rows, cols = _sizes(node)
    params = node.n_params
    has_bias = "bias" in node.params
    return {"name": node.name, "op": node.op, "mode": mode, "rows": rows, "cols": cols,
            "connections": connections, "params": params, "tied": tied,
            "sharing": connections / params if params else None,
            "reuse": connections / tied if tied else None, "density": connections / (rows * cols),
            "dense_params": rows * cols + (rows if has_bias else 0), "bytes": nbytes}


def layer_bytes(node: Node) -> int:
    """Bytes the layer's `Lowered` needs (from the analytic connection count)."""
    rows, _ = _sizes(node)
    return _layer(node).fc_connections(list(node.in_shapes)) * BYTES_PER_NNZ + rows * 16


def analytic(node: Node) -> LayerView:
    """The statistics without building the matrix (exact for linear layers, an upper bound of
    the connections where the input decides: relu keeps only its positive inputs).

    >>> from cnngraph import load
    >>> g = load("input: [3, 227, 227]\\nlayers: [{conv: {out: 96, kernel: 11, stride: 4}}]")
    >>> s = analytic(g.nodes[0])
    >>> s.connections, s.params, s.reuse
    (105415200, 34944, 3025.0)
    """
    layer = _layer(node)
    conn = int(layer.fc_connections(list(node.in_shapes)))
    tie_param = "weight" if "weight" in node.params else None
    tied = math.prod(node.params[tie_param]) if tie_param else None
    return LayerView(**_stats(node, conn, getattr(layer, "fc_mode", None), tied, layer_bytes(node)))


# ---- lowering and checking --------------------------------------------------

def prepare(graph: Graph, weights=None, x=None, seed: int = 0):
    """(weights, x, activations): checked weights, one float64 input sample (random normal with
    `seed` unless given), and every layer's reference output at it (float64, batch of 1)."""
    w = W.resolve(graph, weights, seed)
    if x is None:
        x = np.random.default_rng(seed).standard_normal(graph.input_shape)
    x = np.asarray(x)
    shape = tuple(graph.input_shape)
    if x.shape == (1, *shape):
        x = x[0]
    if x.shape != shape:
        raise FCViewError(f"expected one input sample of shape {shape} or (1, {', '.join(map(str, shape))}), "
                          f"got {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise FCViewError(f"expected a real-valued input, got dtype {x.dtype}")
    x = x.astype(np.float64)
    acts = oracle.run_all(graph, x[None], w)
    return w, x, acts


def lower_node(node: Node, weights, acts=None) -> Lowered:
    """One layer's `Lowered`, taken at the layer's inputs in `acts` (needed for piecewise and local ones)."""
    layer = _layer(node)
    xs = None if acts is None else [acts[i][0] for i in node.inputs]
    try:
        return layer.to_matrix(list(node.in_shapes), oracle.params_of(node, weights), xs)
    except LayerError as e:
        raise FCViewError(f"layer '{node.name}' ({node.op}): {e.msg}") from None


def _deviation(got, want) -> float:
    """Max |got - want|, with equal infinities (max-pool over padding only) counting as 0."""
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(np.where(got == want, 0.0, got - want))))


def check_node(node: Node, lo: Lowered, acts) -> float:
    """max |M x + b - reference| at the activations `acts`."""
    xin = np.concatenate([acts[i][0].ravel() for i in node.inputs])
    return _deviation(lo.matrix @ xin + lo.bias, acts[node.name][0].ravel())


def _built_view(node: Node, lo: Lowered, err: float) -> LayerView:
    tied = None
    if lo.tie_param is not None:
        seen = np.zeros(math.prod(node.params[lo.tie_param]) + 1, bool)
        seen[lo.tie] = True  # -1 (fixed coefficients) lands in the extra last slot
        tied = int(np.count_nonzero(seen[:-1]))
    return LayerView(**_stats(node, lo.nnz, lo.mode, tied, lo.nbytes), max_abs_error=err, built=True)


def _select(graph: Graph, names) -> list[Node]:
    if not names:
        return list(graph.nodes)
    known = {n.name for n in graph.nodes}
    for name in names:
        if name not in known:
            hint = did_you_mean(name, known)
            raise FCViewError(f"no layer named '{name}' in network '{graph.name}'" + (f" — {hint}" if hint else ""))
    return [n for n in graph.nodes if n.name in set(names)]


def lower(graph: Graph, weights=None, x=None, seed: int = 0, names=None,
          max_bytes: int = DEFAULT_MAX_BYTES, prepared=None) -> Iterator[tuple[LayerView, Lowered | None]]:
    """Lower, check and measure layer after layer, one matrix alive at a time.

    Yields (LayerView, Lowered) per layer; a layer above `max_bytes` yields its analytic view
    with `built=False`, the reason and no matrix (an explicitly named layer raises instead).
    """
    w, _, acts = prepared or prepare(graph, weights, x, seed)
    for node in _select(graph, names):
        need = layer_bytes(node)
        if need > max_bytes:
            rows, cols = _sizes(node)
            reason = (f"layer '{node.name}' ({node.op}): its {rows:,}x{cols:,} matrix would need "
                      f"{format_bytes(need)} ({need:,} bytes), above the {format_bytes(max_bytes)} limit")
            if names:
                raise FCViewError(reason + " — raise it with --max-memory or use a smaller input")
            yield LayerView(**{**analytic(node).__dict__, "reason": reason}), None
            continue
        lo = lower_node(node, w, acts)
        yield _built_view(node, lo, check_node(node, lo, acts)), lo


# ---- the whole network as one map -------------------------------------------

@dataclass(frozen=True)
class NetworkMap:
    """y = A x + c for one sample: A (CSR, output x input), c, the weakest mode of its layers
    and max |A x + c - reference(x)|."""

    A: sp.csr_matrix
    c: np.ndarray
    mode: str
    max_abs_error: float

    @property
    def nbytes(self) -> int:
        return self.A.data.nbytes + self.A.indices.nbytes + self.A.indptr.nbytes + self.c.nbytes


def _map_bytes(rows: int, nnz: int) -> int:
    return nnz * MAP_BYTES_PER_NNZ + rows * 16


def _row_bound(node: Node, n_in: int, input_shape) -> int:
    """Upper estimate of the non-zeros per row of a node's map from the input: its receptive
    field (clipped to the input) times the input channels, or dense once flat."""
    rf = node.receptive_field
    if rf is None or len(input_shape) < 2 or len(node.out_shape) < 2:
        return n_in
    window = math.prod(min(math.ceil(size), n) for (size, _, _), n in zip(rf, input_shape[1:]))
    return min(n_in, input_shape[0] * window)


def estimate_network(graph: Graph) -> tuple[int, str | None, int]:
    """(peak bytes, layer at the peak, that layer's map non-zeros) of composing the network,
    estimated from receptive fields before anything is built."""
    n_in = math.prod(graph.input_shape)
    live = {INPUT: _map_bytes(n_in, n_in)}
    frees = graph.frees_after()
    peak, where, where_nnz = live[INPUT], None, 0
    for node in graph.nodes:
        rows = math.prod(node.out_shape)
        nnz = rows * _row_bound(node, n_in, graph.input_shape)
        here = sum(live.values()) + _map_bytes(rows, nnz) + layer_bytes(node)
        if here > peak:
            peak, where, where_nnz = here, node.name, nnz
        live[node.name] = _map_bytes(rows, nnz)
        for i in frees[node.name]:
            del live[i]
    return peak, where, where_nnz


def compose(graph: Graph, weights=None, x=None, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES,
            prepared=None) -> NetworkMap:
    """The network at input x as one sparse affine map, composed through the DAG: every node
    keeps its map from the input (A_node, c_node) while a consumer still needs it; a layer with
    inputs i1..ik and block matrix [M1 ... Mk] gets A = sum Mj A_ij, c = sum Mj c_ij + b.

    Refuses (FCViewError naming the bytes) when the estimate, or before each product the
    bound rows(M) x row-nnz(A), exceeds `max_bytes`.

    >>> from cnngraph import load
    >>> net = compose(load("input: [4]\\nlayers: [{linear: {out: 3}}, {relu: {}}, {linear: {out: 2}}]"))
    >>> net.A.shape, net.max_abs_error < 1e-12
    ((2, 4), True)
    """
    peak, where, nnz = estimate_network(graph)
    if peak > max_bytes:
        node = graph.node(where)
        raise FCViewError(f"the composed network map would need about {format_bytes(peak)} ({peak:,} bytes), "
                          f"above the {format_bytes(max_bytes)} limit; at layer '{where}' ({node.op}) the map is "
                          f"{math.prod(node.out_shape):,}x{math.prod(graph.input_shape):,} with up to "
                          f"{nnz:,} non-zeros — use a smaller input or raise --max-memory")
    w, x, acts = prepared or prepare(graph, weights, x, seed)
    n_in = x.size
    maps = {INPUT: (fc_identity(n_in).matrix, np.zeros(n_in))}
    frees = graph.frees_after()
    mode = 0
    for node in graph.nodes:
        lo = lower_node(node, w, acts)
        mode = max(mode, MODES.index(lo.mode))
        ins = [maps[i] for i in node.inputs]
        a_in = ins[0][0] if len(ins) == 1 else sp.vstack([a for a, _ in ins], format="csr")
        c_in = np.concatenate([c for _, c in ins])
        # bound the product before forming it: each row of M touches the rows of A it reads
        pattern = sp.csr_matrix((np.ones(lo.nnz), lo.matrix.indices, lo.matrix.indptr), shape=lo.matrix.shape)
        bound = int(np.minimum(pattern @ np.diff(a_in.indptr).astype(np.float64), n_in).sum())
        live = sum(_map_bytes(a.shape[0], a.nnz) for a, _ in maps.values())
        need = live + lo.nbytes + _map_bytes(lo.matrix.shape[0], bound)
        if need > max_bytes:
            raise FCViewError(f"the composed network map would need up to {format_bytes(need)} ({need:,} bytes) "
                              f"at layer '{node.name}' ({node.op}), above the {format_bytes(max_bytes)} limit")
        a = (lo.matrix @ a_in).tocsr()
        maps[node.name] = (a, lo.matrix @ c_in + lo.bias)
        del lo, a_in, pattern
        for i in frees[node.name]:
            del maps[i]
    a, c = maps[graph.output]
    err = _deviation(a @ x.ravel() + c, acts[graph.output][0].ravel())
    return NetworkMap(a, c, MODES[mode], err)


# ---- the whole report ---------------------------------------------------------

@dataclass(frozen=True)
class NetworkView:
    """The composed map's size and error, or why it was not built."""

    built: bool
    reason: str | None = None
    mode: str | None = None
    shape: tuple[int, int] | None = None
    nnz: int | None = None
    bytes: int | None = None
    max_abs_error: float | None = None

    def as_dict(self) -> dict:
        return {"built": self.built, "reason": self.reason, "mode": self.mode,
                "shape": list(self.shape) if self.shape else None, "nnz": self.nnz, "bytes": self.bytes,
                "max_abs_error": self.max_abs_error}


@dataclass(frozen=True)
class FCView:
    name: str
    input_shape: tuple[int, ...]
    seed: int
    layers: list[LayerView] = field(default_factory=list)
    network: NetworkView | None = None


def view(graph: Graph, weights=None, x=None, seed: int = 0, names=None, network: bool = True,
         max_bytes: int = DEFAULT_MAX_BYTES,
         on_layer: Callable[[LayerView, Lowered], None] | None = None,
         on_network: Callable[[NetworkMap], None] | None = None) -> FCView:
    """Lower and check the layers (all, or `names`) and, unless `network=False`, compose the
    whole network; `on_layer`/`on_network` see each matrix before it is dropped (saving, plotting)."""
    prepared = prepare(graph, weights, x, seed)
    layers = []
    for lv, lo in lower(graph, names=names, max_bytes=max_bytes, prepared=prepared):
        layers.append(lv)
        if lo is not None and on_layer is not None:
            on_layer(lv, lo)
        del lo
    if not network:
        net = NetworkView(False, "not requested")
    else:
        try:
            nm = compose(graph, max_bytes=max_bytes, prepared=prepared)
        except FCViewError as e:
            net = NetworkView(False, str(e))
        else:
            net = NetworkView(True, None, nm.mode, nm.A.shape, int(nm.A.nnz), nm.nbytes, nm.max_abs_error)
            if on_network is not None:
                on_network(nm)
    return FCView(graph.name, tuple(graph.input_shape), seed, layers, net)


def to_json(v: FCView) -> dict:
    """JSON-ready dict: `layers` (one entry per layer) and `network`."""
    return {"name": v.name, "input": list(v.input_shape), "seed": v.seed,
            "layers": [lv.as_dict() for lv in v.layers],
            "network": v.network.as_dict() if v.network else None}


def _g(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


COLUMNS = (  # header, cell, right-aligned
    ("layer", lambda s: s.name, False),
    ("op", lambda s: s.op, False),
    ("mode", lambda s: s.mode or "-", False),
    ("matrix", lambda s: f"{s.rows}x{s.cols}", True),
    ("connections", lambda s: f"{s.connections:,}", True),
    ("params", lambda s: f"{s.params:,}", True),
    ("sharing", lambda s: _g(s.sharing, ".1f"), True),
    ("reuse", lambda s: _g(s.reuse, ".1f"), True),
    ("density", lambda s: f"{s.density:.3g}", True),
    ("dense params", lambda s: f"{s.dense_params:,}", True),
    ("max error", lambda s: _g(s.max_abs_error, ".1e") if s.built else "not built", True),
)


def format_table(v: FCView) -> str:
    """The per-layer table, refusals, and the network line."""
    rows = [[cell(s) for _, cell, _ in COLUMNS] for s in v.layers]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, (h, _, _) in enumerate(COLUMNS)]

    def line(cells):
        return "  ".join(c.rjust(wd) if right else c.ljust(wd)
                         for c, wd, (_, _, right) in zip(cells, widths, COLUMNS)).rstrip()

    out = [(f"{v.name}: FC view at a {'x'.join(map(str, v.input_shape))} input (seed {v.seed}); "
            "max error = max |M x + b - reference(x)| in float64"),
           line([h for h, _, _ in COLUMNS])]
    out += [line(r) for r in rows]
    out += [f"not built: {s.reason}" for s in v.layers if not s.built and s.reason]
    if v.layers:
        conn = sum(s.connections for s in v.layers)
        params = sum(s.params for s in v.layers)
        dense = sum(s.dense_params for s in v.layers)
        out.append(f"total: {conn:,} connections, {params:,} parameters; unshared FC layers would need "
                   f"{dense:,} parameters")
    n = v.network
    if n is not None:
        if n.built:
            what = {"linear": "linear", "piecewise": "piecewise linear (exact on this input's region)",
                    "local": "local linearisation (tangent at this input)"}[n.mode]
            out.append(f"network: y = A x + c, A {n.shape[0]:,}x{n.shape[1]:,}, {n.nnz:,} non-zeros "
                       f"({format_bytes(n.bytes)}), {what}; max error {n.max_abs_error:.1e}")
        else:
            out.append(f"network: not built: {n.reason}")
    return "\n".join(out)


# ---- saving and drawing ---------------------------------------------------------

def save_npz(path, lo: Lowered | NetworkMap) -> None:
    """Write a matrix in `scipy.sparse.save_npz` layout (so `load_npz` reads it), plus `bias` and,
    for a layer, `tie`, `tie_param` and `mode` as extra arrays."""
    m = lo.matrix if isinstance(lo, Lowered) else lo.A
    extra = ({"bias": lo.bias, "tie": lo.tie, "tie_param": np.array(lo.tie_param or ""),
              "mode": np.array(lo.mode)} if isinstance(lo, Lowered) else {"bias": lo.c, "mode": np.array(lo.mode)})
    np.savez(os.fspath(path), format=np.array(b"csr"), shape=np.array(m.shape), data=m.data, indices=m.indices,
             indptr=m.indptr, **extra)


@dataclass(frozen=True)
class Panel:
    """A small picture of one matrix: 'tie' (cell = tied parameter index, -1 fixed, NaN absent),
    'value' (cell = coefficient, NaN absent; a map without ties) or 'density' (connections per
    block of rows x columns)."""

    title: str
    kind: str
    image: np.ndarray
    shape: tuple[int, int]


def connectivity_image(title: str, m, tie=None, small: int = 1 << 16, bins: int = 256,
                       chunk: int = 1 << 22) -> Panel:
    """The connectivity of `m` as a small image: per cell the tied parameter where rows x cols <=
    `small`, else a density map of at most bins x bins blocks (built in row chunks)."""
    rows, cols = m.shape
    if rows * cols <= small:
        img = np.full((rows, cols), np.nan)
        r = np.repeat(np.arange(rows), np.diff(m.indptr))
        img[r, m.indices] = m.data if tie is None else tie
        return Panel(title, "tie" if tie is not None else "value", img, (rows, cols))
    br, bc = min(rows, bins), min(cols, bins)
    counts = np.zeros(br * bc, np.int64)
    step = max(1, chunk // max(1, int(m.nnz // max(rows, 1))))
    for r0 in range(0, rows, step):
        sub = m[r0:r0 + step]
        r = np.repeat(np.arange(r0, r0 + sub.shape[0]), np.diff(sub.indptr))
        counts += np.bincount((r * br // rows) * bc + sub.indices.astype(np.int64) * bc // cols,
                              minlength=br * bc)
    return Panel(title, "density", counts.reshape(br, bc).astype(np.float64), (rows, cols))


def plot(panels: list[Panel], path) -> None:
    """Draw the panels into one PNG (matplotlib, the optional `plot` extra)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FCViewError("--png needs matplotlib: pip install 'cnngraph[plot]'") from None
    if not panels:
        raise FCViewError("nothing to draw: no layer matrix was built")
    n = len(panels)
    ncols = min(n, max(1, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 4 * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, p in zip(axes.ravel(), panels):
        rows, cols = p.shape
        if p.kind == "tie":
            img = np.ma.masked_invalid(p.image)
            fixed = np.ma.masked_where(img != -1, img)
            tied = np.ma.masked_where(img < 0, img)
            cmap = plt.get_cmap("tab20").copy()
            cmap.set_bad("white")
            ax.imshow(np.ma.filled(fixed * 0, np.nan), cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                      aspect="auto")
            if tied.count():
                ax.imshow(tied % 20, cmap=cmap, vmin=0, vmax=19, interpolation="nearest", aspect="auto")
            ax.set_title(f"{p.title}\n{rows}x{cols}, colour = tied parameter, black = fixed", fontsize=8)
        elif p.kind == "value":
            lim = float(np.nanmax(np.abs(p.image))) if np.isfinite(p.image).any() else 1.0
            cmap = plt.get_cmap("coolwarm").copy()
            cmap.set_bad("white")
            im = ax.imshow(np.ma.masked_invalid(p.image), cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest",
                           aspect="auto")
            fig.colorbar(im, ax=ax, fraction=0.046, label="coefficient")
            ax.set_title(f"{p.title}\n{rows}x{cols}, colour = coefficient", fontsize=8)
        else:
            im = ax.imshow(np.log10(p.image + 1), cmap="viridis", interpolation="nearest", aspect="auto",
                           extent=(0, cols, rows, 0), vmin=0)
            fig.colorbar(im, ax=ax, fraction=0.046, label="log10(1 + connections per cell)")
            ax.set_title(f"{p.title}\n{rows}x{cols}, density", fontsize=8)
        ax.set_xlabel("input element", fontsize=7)
        ax.set_ylabel("output element", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=80)
    plt.close(fig)
