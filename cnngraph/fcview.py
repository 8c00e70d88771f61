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

import networkx as nx
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

__all__ = ["BYTES_PER_NNZ", "DEFAULT_MAX_BYTES", "ERF", "FCView", "FCViewError", "LayerView", "Lowered",
           "NetworkMap", "NetworkView", "Panel", "analytic", "ancestors", "backward", "compose", "connectivity_image", "erf",
           "estimate_network", "format_bytes", "format_table", "identity_like", "layer_bytes", "layer_panel",
           "lower", "lower_node", "network_panels", "parse_unit", "plot", "prepare", "save_npz", "to_json", "view"]


class FCViewError(CnnGraphError):
    """A layer or network whose FC view cannot be built (too large, unknown layer, bad input)."""


def format_bytes(n: float) -> str:
    """Human-readable bytes (the package's one formatter, units.nbytes).

    >>> format_bytes(1_686_643_208), format_bytes(512)
    ('1.6 GiB', '512 B')
    """
    from .units import nbytes
    return nbytes(n)


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
            prepared=None, direction: str = "auto") -> NetworkMap:
    """The network at input x as one sparse affine map y = A x + c.

    Forwards (`direction="forward"`): every node keeps its map from the input (A_node, c_node)
    while a consumer still needs it; a layer with inputs i1..ik and block matrix [M1 ... Mk] gets
    A = sum Mj A_ij, c = sum Mj c_ij + b. Backwards (`"backward"`, see `backward`): from the
    identity at the output, every value keeps the rows of d y / d value until its producer has read
    them. `"auto"` starts from the smaller end: backwards when the output has fewer elements than
    the input.

    Refuses (FCViewError naming the bytes) when the estimate, or before each forward product the
    bound rows(M) x row-nnz(A), exceeds `max_bytes`.

    >>> from cnngraph import load
    >>> g = load("input: [4]\\nlayers: [{linear: {out: 3}}, {relu: {}}, {linear: {out: 2}}]")
    >>> net = compose(g)  # 2 outputs < 4 inputs: built backwards
    >>> net.A.shape, net.max_abs_error < 1e-12
    ((2, 4), True)
    >>> bool(abs(compose(g, direction="forward").A - net.A).max() < 1e-12)
    True
    """
    if direction not in ("auto", "forward", "backward"):
        raise FCViewError(f"expected direction 'auto', 'forward' or 'backward', got {direction!r}")
    n_out, n_in = math.prod(graph.output_shape), math.prod(graph.input_shape)
    if direction == "backward" or (direction == "auto" and n_out < n_in):
        return _compose_backward(graph, weights, x, seed, max_bytes, prepared)
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


# ---- rows of the composed map, backwards --------------------------------------------

def ancestors(graph: Graph, name: str) -> set[str]:
    """The layers `name`'s value depends on, itself included (the input excluded)."""
    return (nx.ancestors(graph.dag, name) | {name}) - {INPUT}


def _backward_peak(graph: Graph, keep: set[str], rows: int) -> int:
    """Peak bytes of the dense gradient rows (`rows` float64 per element) alive at once in a backward
    walk over the layers in `keep`: a value's row lives from its last reader back to its producer,
    the same interval as in the forward pass, so the forward liveness bounds it."""
    live = {INPUT: math.prod(graph.input_shape)}
    frees = graph.frees_after()
    peak = 0
    for node in graph.nodes:
        if node.name not in keep:
            continue
        live[node.name] = math.prod(node.out_shape)
        peak = max(peak, sum(live.values()))
        for i in frees[node.name]:
            live.pop(i, None)
    return peak * rows * 8


def backward(graph: Graph, start: str, rows: np.ndarray, sample_of, weights, acts,
             max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows of the composed map from the input to layer `start`, computed backwards.

    `rows` (k x size of `start`) are the rows wanted at `start` (unit vectors for single units, the
    identity for the whole map); row i is taken at sample `sample_of[i]` of the batched activations
    `acts` (layer -> (N, ...) float64 arrays). Walking the layers in reverse topological order, every
    value keeps its rows G (k x its size) until its producer has read them: the producer's matrix
    [M1 ... Mj] over its inputs adds G M_i to each input's rows and G b to the constant. Layer matrices
    are built one at a time, once per sample where they depend on the input (piecewise, local).

    Returns (G at the input, k x input size; the constant, k; the weakest mode).

    >>> from cnngraph import load
    >>> g = load("input: [1, 5]\\nlayers: [{conv: {out: 1, kernel: 3, name: c}}, relu]")
    >>> w, x, acts = prepare(g, seed=0)
    >>> G, c, mode = backward(g, "c", np.eye(3), [0, 0, 0], w, acts)
    >>> bool(np.allclose(G @ x.ravel() + c, acts["c"][0].ravel())), mode
    (True, 'linear')
    """
    keep = ancestors(graph, start)
    sample_of = np.asarray(sample_of, np.int64)
    k = rows.shape[0]
    need = _backward_peak(graph, keep, k)
    big = max((layer_bytes(graph.node(n)) for n in keep), default=0)
    if need + big > max_bytes:
        raise FCViewError(f"the backward pass from '{start}' would need about {format_bytes(need + big)} "
                          f"({need + big:,} bytes: {k:,} row(s) per live value, plus the largest layer matrix), "
                          f"above the {format_bytes(max_bytes)} limit — ask for fewer rows or raise --max-memory")
    grads = {start: np.asarray(rows, np.float64)}
    const = np.zeros(k)
    mode = 0
    samples = np.unique(sample_of)
    for node in reversed(graph.nodes):
        g = grads.pop(node.name, None)
        if g is None:
            continue
        sizes = [math.prod(s) for s in node.in_shapes]
        total = np.zeros((k, sum(sizes)))
        layer = _layer(node)
        params = oracle.params_of(node, weights)
        for n, s in enumerate(samples):
            sel = sample_of == s
            try:
                rows_s, c_s, m = layer.fc_rows(list(node.in_shapes), params, [acts[i][s] for i in node.inputs],
                                               g if n == 0 else g[sel])
            except LayerError as e:
                raise FCViewError(f"layer '{node.name}' ({node.op}): {e.msg}") from None
            mode = max(mode, MODES.index(m))
            if m == "linear" and n == 0:  # the same matrix for every sample
                total, const = rows_s, const + c_s
                break
            total[sel] = rows_s[sel] if n == 0 else rows_s
            const[sel] += c_s[sel] if n == 0 else c_s
        for i, block in zip(node.inputs, np.split(total, np.cumsum(sizes)[:-1], axis=1)):
            if i in grads:
                grads[i] += block
            else:
                grads[i] = block
        del g, total
    return grads[INPUT], const, MODES[mode]


def _compose_backward(graph: Graph, weights, x, seed: int, max_bytes: int, prepared) -> NetworkMap:
    n_out, n_in = math.prod(graph.output_shape), math.prod(graph.input_shape)
    keep = ancestors(graph, graph.output)
    need = _backward_peak(graph, keep, n_out) + max(layer_bytes(graph.node(n)) for n in keep) + \
        _map_bytes(n_out, n_out * n_in)
    if need > max_bytes:
        raise FCViewError(f"the composed network map would need about {format_bytes(need)} ({need:,} bytes) "
                          f"above the {format_bytes(max_bytes)} limit, built backwards from the {n_out:,} outputs "
                          f"(a row per output for every live value) — use a smaller input or raise --max-memory")
    w, x, acts = prepared or prepare(graph, weights, x, seed)
    g, c, mode = backward(graph, graph.output, np.eye(n_out), np.zeros(n_out, np.int64), w, acts, max_bytes)
    a = sp.csr_matrix(g)  # exact zeros (outside every receptive field) are not stored
    del g
    err = _deviation(a @ x.ravel() + c, acts[graph.output][0].ravel())
    return NetworkMap(a, c, mode, err)


# ---- effective receptive fields -------------------------------------------------------

@dataclass(frozen=True)
class ERF:
    """The effective receptive field of one unit (Luo et al. 2016): the mean over `inputs` samples of
    |its row of the composed map|, summed over input channels, as a map over the input's spatial dims.

    theoretical_size: the receptive field per spatial dim (input pixels); centre: the input coordinate
    of its centre; box: the [lo, hi) pixels it covers, clipped to the input; radius_50 / radius_95: the
    Euclidean distance from the centre within which 50% / 95% of the mass lies.
    """

    layer: str
    op: str
    unit: tuple[int, ...]
    inputs: int
    input_shape: tuple[int, ...]
    mode: str
    theoretical_size: tuple[float, ...]
    centre: tuple[float, ...]
    box: tuple[tuple[int, int], ...]
    radius_50: float
    radius_95: float
    heat: np.ndarray  # over the whole input's spatial dims

    def as_dict(self) -> dict:
        return {"layer": self.layer, "op": self.op, "unit": list(self.unit), "inputs": self.inputs,
                "input_shape": list(self.input_shape), "mode": self.mode,
                "theoretical": {"size": [float(v) for v in self.theoretical_size], "centre": list(self.centre),
                                "box": [list(b) for b in self.box]},
                "effective": {"radius_50": self.radius_50, "radius_95": self.radius_95,
                              "diameter_95_over_theoretical": 2 * self.radius_95 / max(self.theoretical_size)}}


def parse_unit(text: str, graph: Graph) -> tuple[str, tuple[int, ...] | None]:
    """`LAYER` or `LAYER:c,y,x` (one index per output dim) -> (layer name, unit or None).

    >>> from cnngraph import load
    >>> parse_unit("conv1:1,2,3", load("input: [1, 8, 8]\\nlayers: [{conv: {out: 2, kernel: 3}}]"))
    ('conv1', (1, 2, 3))
    """
    name, unit = text, None
    if ":" in text:
        name, _, rest = text.rpartition(":")
        try:
            unit = tuple(int(v) for v in rest.split(","))
        except ValueError:
            raise FCViewError(f"expected LAYER or LAYER:c,y,x with integer indices, got '{text}'") from None
    node = _select(graph, [name])[0]
    if unit is not None:
        shape = node.out_shape
        if len(unit) != len(shape):
            raise FCViewError(f"layer '{name}' outputs shape {shape}: expected {len(shape)} indices "
                              f"({'c,' + ','.join('dhw'[-(len(shape) - 1):]) if len(shape) > 1 else 'i'}), got "
                              f"{len(unit)} in '{text}'")
        for i, (u, n) in enumerate(zip(unit, shape)):
            if not 0 <= u < n:
                raise FCViewError(f"index {u} of '{text}' is outside layer '{name}''s output shape {shape} "
                                  f"(dim {i} has {n})")
    return name, unit


def _radius(heat: np.ndarray, centre, q: float) -> float:
    """Smallest Euclidean radius about `centre` holding a fraction `q` of the heat's mass."""
    grids = np.meshgrid(*[np.arange(n) - c for n, c in zip(heat.shape, centre)], indexing="ij")
    dist = np.sqrt(sum(gr ** 2 for gr in grids)).ravel()
    order = np.argsort(dist, kind="stable")
    mass = np.cumsum(heat.ravel()[order])
    if mass[-1] <= 0:
        return 0.0
    return float(dist[order][np.searchsorted(mass, q * mass[-1])])


def erf(graph: Graph, layer: str, unit=None, inputs=1, weights=None, seed: int = 0,
        max_bytes: int = DEFAULT_MAX_BYTES) -> ERF:
    """The effective receptive field of one unit of `layer` (default: channel 0 at the centre).

    `inputs`: how many random normal samples (seeded) to average over, or an array (N, *input_shape)
    of given ones. Each sample's row of the composed map comes from `backward` (one row per live value,
    never the whole map); the forward activations of the layer's ancestors are kept for the
    piecewise and local layers.

    >>> from cnngraph import load
    >>> g = load("input: [1, 15]\\nlayers: [{conv: {out: 1, kernel: 3, name: a}}, {conv: {out: 1, kernel: 3, name: b}}]")
    >>> e = erf(g, "b")
    >>> e.theoretical_size, e.centre, e.box, e.unit  # unit 5 of b reads a[5:8], which read x[5:10]
    ((5.0,), (7.0,), ((5, 10),), (0, 5))
    >>> np.flatnonzero(e.heat).tolist()
    [5, 6, 7, 8, 9]
    """
    node = _select(graph, [layer])[0]
    if len(graph.input_shape) < 2:
        raise FCViewError(f"an effective receptive field needs an input with spatial dims, got "
                          f"{graph.input_shape}")
    shape = node.out_shape
    if unit is None:
        unit = (0, *(n // 2 for n in shape[1:])) if len(shape) > 1 else (shape[0] // 2,)
    w = W.resolve(graph, weights, seed)
    if isinstance(inputs, (int, np.integer)):
        if inputs < 1:
            raise FCViewError(f"expected --inputs of at least 1, got {inputs}")
        x = np.random.default_rng(seed).standard_normal((int(inputs), *graph.input_shape))
    else:
        x = np.asarray(inputs)
        if x.shape[1:] != tuple(graph.input_shape) or x.ndim != len(graph.input_shape) + 1:
            raise FCViewError(f"expected inputs of shape (N, {', '.join(map(str, graph.input_shape))}), got "
                              f"{x.shape}")
    n = x.shape[0]
    keep = ancestors(graph, node.name)
    acts_bytes = n * 8 * (math.prod(graph.input_shape) + sum(math.prod(graph.node(a).out_shape) for a in keep))
    if acts_bytes > max_bytes:
        raise FCViewError(f"the activations of {n} sample(s) up to '{node.name}' would need "
                          f"{format_bytes(acts_bytes)} ({acts_bytes:,} bytes), above the "
                          f"{format_bytes(max_bytes)} limit — use fewer --inputs or raise --max-memory")
    values = {INPUT: oracle.check_input(graph, x.astype(np.float64))}
    for nd in graph.nodes:  # the reference forward, ancestors only
        if nd.name in keep:
            values[nd.name] = nd.layer.reference([values[i] for i in nd.inputs], oracle.params_of(nd, w))
    rows = np.zeros((n, math.prod(shape)))
    rows[:, np.ravel_multi_index(unit, shape)] = 1.0
    g, _, mode = backward(graph, node.name, rows, np.arange(n), w, values, max_bytes - acts_bytes)
    heat = np.abs(g).reshape(n, *graph.input_shape).sum(axis=1).mean(axis=0)
    if not heat.any():
        raise FCViewError(f"the row of {node.name}[{','.join(map(str, unit))}] is zero on all {n} input(s): no input "
                          f"pixel reaches this unit there (ReLUs closed on its whole path?) — try more --inputs, "
                          f"another --seed or another unit")
    rf = node.receptive_field
    spatial = graph.input_shape[1:]
    if rf is None:  # flat: the whole input
        size = tuple(float(v) for v in spatial)
        centre = tuple((v - 1) / 2 for v in spatial)
    else:
        size = tuple(float(sz) for sz, _, _ in rf)
        centre = tuple(float(st + u * j) for (_, j, st), u in zip(rf, unit[1:]))
    box = tuple((max(0, math.ceil(c - (sz - 1) / 2)), min(sp_n, math.floor(c + (sz - 1) / 2) + 1))
                for c, sz, sp_n in zip(centre, size, spatial))
    return ERF(node.name, node.op, tuple(int(u) for u in unit), n, tuple(graph.input_shape), mode, size, centre, box,
               _radius(heat, centre, 0.5), _radius(heat, centre, 0.95), heat)


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
    """A small picture of one matrix (`pictures.draw_panels` draws it):

    - 'nodes': the seeds' drawing, inputs and outputs as two rows of nodes and one edge per
      connection; `data` holds x positions, edges (row, col), their colour keys and legend;
    - 'tie': cell = tied parameter index (-1 fixed, NaN absent);
    - 'value': cell = coefficient (NaN absent): linear layers, local maps, small network maps;
    - 'image': one row of the network map reshaped to the input (C stacked along the width);
    - 'blocks': connections per (output channel, input channel) pair: groups and depthwise
      convolutions show as block diagonals;
    - 'density': connections per block of rows x columns;
    - 'summary': an identity-like layer (at most one connection per row and per column),
      told in words in `data['text']` instead of drawn as a bare diagonal.
    """

    title: str
    kind: str
    image: np.ndarray
    shape: tuple[int, int]
    data: dict = field(default_factory=dict)


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
    return Panel(title, "density", _pair_counts(m, lambda r: r * min(rows, bins) // rows,
                                                lambda c: c * min(cols, bins) // cols,
                                                min(rows, bins), min(cols, bins), chunk), (rows, cols))


def _pair_counts(m, row_bin, col_bin, n_r: int, n_c: int, chunk: int = 1 << 22) -> np.ndarray:
    """Connections per (row bin, column bin), built in row chunks of about `chunk` non-zeros."""
    rows = m.shape[0]
    counts = np.zeros(n_r * n_c, np.int64)
    step = max(1, chunk // max(1, int(m.nnz // max(rows, 1))))
    for r0 in range(0, rows, step):
        sub = m[r0:r0 + step]
        r = np.repeat(np.arange(r0, r0 + sub.shape[0]), np.diff(sub.indptr))
        counts += np.bincount(row_bin(r) * n_c + col_bin(sub.indices.astype(np.int64)), minlength=n_r * n_c)
    return counts.reshape(n_r, n_c).astype(np.float64)


NODES_MAX = 96  # inputs or outputs drawn as nodes
EDGES_MAX = 1500
TIE_COLOURS = 40  # distinct shared weights the qualitative palettes can tell apart


def _positions(shape, gap_row: float = 0.6, gap_channel: float = 1.6) -> np.ndarray:
    """x of each element of a (C, *spatial) tensor laid out in one row: C-order, with gaps between
    channels and between the rows of a 2D map (so a 2D input reads as its rows side by side)."""
    shape = tuple(shape)
    n = math.prod(shape)
    idx = np.arange(n)
    x = idx.astype(np.float64)
    if len(shape) >= 2:
        x += (idx // math.prod(shape[1:])) * gap_channel
    if len(shape) >= 3:
        x += (idx // shape[-1]) % math.prod(shape[1:-1]) * gap_row
    return x


def identity_like(m, bias=None) -> str | None:
    """Words for a matrix with at most one connection per row and per column (identity, a 0/1
    selection, a diagonal scaling), else None.

    >>> import scipy.sparse as sp
    >>> identity_like(sp.eye(4, format="csr"))
    'identity on 4 elements'
    >>> identity_like(sp.diags([1.0, 0.0, 1.0]).tocsr())
    'a 0/1 selection: each output copies one input; 2 of 3 outputs are connected, 2 of 3 inputs are read'
    """
    m = sp.csr_matrix(m)  # shares the caller's arrays: read only
    rows, cols = m.shape
    if np.diff(m.indptr).max(initial=0) > 1 and (m.data != 0).all():
        return None  # the common case, decided without a copy
    keep = m.data != 0
    r = np.repeat(np.arange(rows), np.diff(m.indptr))[keep]
    c, data = m.indices[keep], m.data[keep]
    if r.size and (np.bincount(r, minlength=rows).max() > 1 or np.bincount(c, minlength=cols).max() > 1):
        return None
    b = np.zeros(rows) if bias is None else np.asarray(bias)
    ones = bool(np.all(data == 1.0))
    if ones and rows == cols and r.size == rows and np.array_equal(c, np.arange(rows)) and not b.any():
        return f"identity on {rows:,} elements"
    if ones:
        return (f"a 0/1 selection: each output copies one input; {r.size:,} of {rows:,} outputs are connected, "
                f"{np.unique(c).size:,} of {cols:,} inputs are read")
    lo, hi = (float(data.min()), float(data.max())) if r.size else (0.0, 0.0)
    return (f"a diagonal scaling y_i = a_i x_j(i) + b_i on {r.size:,} of {rows:,} outputs, a in [{lo:.3g}, {hi:.3g}]"
            + (f", b in [{float(b.min()):.3g}, {float(b.max()):.3g}]" if b.any() else ""))


def _zoom(m, tie, s_out: int, s_in: int, max_rows: int = 48) -> np.ndarray | None:
    """The first rows of output channel 0 against input channel 0, cells = rank of the shared weight
    (up to TIE_COLOURS of them), or None where that corner holds too many weights to colour apart."""
    r = min(s_out, max_rows)
    sub = m[:r]
    t = tie[:sub.nnz]
    rows = np.repeat(np.arange(r), np.diff(sub.indptr))
    inside = sub.indices < s_in
    if not inside.any():
        return None
    width = int(sub.indices[inside].max()) + 1
    ties = np.unique(t[inside])
    if ties.size > TIE_COLOURS or (ties < 0).any():
        return None
    img = np.full((r, width), np.nan)
    img[rows[inside], sub.indices[inside]] = np.searchsorted(ties, t[inside])
    return img


def layer_panel(title: str, lo: Lowered, node: Node) -> Panel:
    """The picture that teaches most about one layer's matrix: an identity-like one in words, a small
    one as the seeds draw it (two rows of nodes, edges coloured by the weight they share, or by value
    where nothing is shared), a small matrix by shared weight or value, a channelled one as its
    (output channel, input channel) block structure, anything else as a density map."""
    m, tie = lo.matrix, lo.tie
    rows, cols = m.shape
    words = identity_like(m, lo.bias)
    if words is not None:
        return Panel(title, "summary", np.zeros((0, 0)), (rows, cols), {"text": words})
    shared = lo.tie_param is not None and (tie >= 0).any()
    ties = np.unique(tie[tie >= 0]) if shared else np.zeros(0, int)
    # share colours only where weights really are reused and few enough to tell apart
    by_tie = shared and ties.size <= TIE_COLOURS and m.nnz > ties.size
    if rows <= NODES_MAX and cols <= NODES_MAX and m.nnz <= EDGES_MAX and len(node.in_shapes) == 1:
        r = np.repeat(np.arange(rows), np.diff(m.indptr))
        xin = _positions(node.in_shapes[0])
        xout = _positions(node.out_shape)
        centred = np.bincount(r, weights=xin[m.indices], minlength=rows) / np.maximum(np.bincount(r, minlength=rows), 1)
        srt = np.sort(centred)
        if node.out_shape[0] == 1 and np.bincount(r, minlength=rows).all() and (np.diff(srt) >= 0.5).all():
            xout = centred  # one output channel: each output above the window it reads
        else:  # both rows over a common width, each centred
            span = max(xin.max(), xout.max(), 1.0)
            xin = xin * (span / xin.max()) if xin.max() > 0 else np.full(cols, span / 2)
            xout = xout * (span / xout.max()) if xout.max() > 0 else np.full(rows, span / 2)
        if by_tie:
            key = np.searchsorted(ties, tie)  # colour index: rank among the shared weights used
            key[tie < 0] = -1
            pshape = node.params.get(lo.tie_param)
            labels = [f"{lo.tie_param}[{','.join(map(str, np.unravel_index(t, pshape)))}]" if pshape else str(t)
                      for t in ties]
            values = [float(v) for v in np.bincount(np.searchsorted(ties, tie[tie >= 0]),
                                                     weights=m.data[tie >= 0], minlength=ties.size)
                      / np.maximum(np.bincount(np.searchsorted(ties, tie[tie >= 0]), minlength=ties.size), 1)]
            data = {"colour": "tie", "key": key, "legend": list(zip(labels, values))}
        else:
            data = {"colour": "value" if shared or lo.mode != "linear" or (m.data != m.data[0]).any() else "fixed",
                    "key": m.data.copy()}
        data.update(xin=xin, xout=xout, rows=r, cols=m.indices.copy(), tied=int(ties.size),
                    read=np.bincount(m.indices, minlength=cols) > 0)
        return Panel(title, "nodes", np.zeros((0, 0)), (rows, cols), data)
    if rows * cols <= 1 << 16:
        if by_tie:
            img = np.full((rows, cols), np.nan)
            img[np.repeat(np.arange(rows), np.diff(m.indptr)), m.indices] = np.where(tie >= 0, np.searchsorted(ties, tie),
                                                                                     -1)
            return Panel(title, "tie", img, (rows, cols), {"tied": int(ties.size)})
        return connectivity_image(title, m)
    out, ins = node.out_shape, node.in_shapes
    if len(out) >= 2 and all(len(s) >= 2 for s in ins) and out[0] <= 512 and sum(s[0] for s in ins) <= 512:
        s_out = math.prod(out[1:])
        starts = np.cumsum([0] + [math.prod(s) for s in ins])
        chan0 = np.cumsum([0] + [s[0] for s in ins])
        sizes = np.array([math.prod(s[1:]) for s in ins])

        def col_channel(c):
            j = np.searchsorted(starts, c, side="right") - 1
            return chan0[j] + (c - starts[j]) // sizes[j]

        counts = _pair_counts(m, lambda r: r // s_out, col_channel, out[0], int(chan0[-1]))
        zoom = _zoom(m, tie, s_out, int(sizes[0])) if shared and counts.min() == counts.max() else None
        if zoom is not None:  # every channel pair alike: show one pair's band of shared weights instead
            return Panel(title, "tie", zoom, (rows, cols), {"tied": int(np.nanmax(zoom)) + 1, "zoom": zoom.shape})
        return Panel(title, "blocks", counts, (rows, cols), {"inputs": [int(c) for c in chan0[1:-1]],
                                                              "per_pair": float(counts.max())})
    if ties.size == m.nnz == rows * cols:
        # a dense linear layer: its weights by value, every k-th row and column
        step_r, step_c = max(1, math.ceil(rows / 256)), max(1, math.ceil(cols / 256))
        sub = m[::step_r][:, ::step_c].toarray()
        return Panel(title, "value", sub, (rows, cols), {"step": (step_r, step_c)})
    return connectivity_image(title, m)


def network_panels(nm: NetworkMap, input_shape, max_rows: int = 16) -> list[Panel]:
    """The composed map: with few outputs and a spatial input, each output's row reshaped to the input
    (channels side by side), so the map reads as the input pattern each output responds to."""
    rows = nm.A.shape[0]
    if rows <= max_rows and len(input_shape) >= 2:
        dense = nm.A.toarray()
        out = []
        for r in range(rows):
            img = dense[r].reshape(input_shape)
            if img.ndim > 3:  # 3D input: average over depth
                img = img.mean(axis=1)
            if img.ndim == 3:  # (C, H, W) -> H x (C*W) with a NaN column between channels; (C, L) stays
                img = np.concatenate([np.pad(ch, ((0, 0), (0, 1)), constant_values=np.nan) for ch in img],
                                     axis=1)[:, :-1]
            out.append(Panel(f"network output {r}", "image", img, nm.A.shape,
                             {"channels": int(input_shape[0]), "mode": nm.mode}))
        return out
    return [connectivity_image(f"network y = A x + c ({nm.mode})", nm.A)]


def plot(panels: list[Panel], path, title: str | None = None) -> None:
    """Draw the panels into one PNG (matplotlib, the optional `plot` extra)."""
    if not panels:
        raise FCViewError("nothing to draw: no layer matrix was built")
    try:
        from . import pictures
        pictures.draw_panels(panels, path, title)
    except CnnGraphError as e:
        raise FCViewError(str(e)) from None
