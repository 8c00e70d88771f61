"""Charts of a whole network for the HTML report (matplotlib, the optional `plot` extra).

- `rf_growth`: the receptive field of each layer, in input pixels, against the input size;
- `fc_statistics`: the seeds' argument per layer: an unshared FC layer between the same
  tensors would need `dense params`; the layer has `connections`, but only `params` weights.

Each returns a matplotlib Figure; `svg` turns one into inline SVG text.

>>> from cnngraph import load
>>> fig = rf_growth(load("input: [1, 32, 32]\\nlayers: [{conv: {out: 2, kernel: 5}}, {maxpool: {kernel: 2}}]"))
>>> svg(fig).startswith("<svg")
True
"""

from __future__ import annotations

import io
import math

from .errors import CnnGraphError
from .graph import Graph
from .report import short_count

PARAMS_COLOUR, CONN_COLOUR, DENSE_COLOUR = "#1f77b4", "#ff7f0e", "#7f7f7f"


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a one-line error naming the extra to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CnnGraphError("drawing needs matplotlib: pip install 'cnngraph[plot]'") from None
    return plt


def svg(fig) -> str:
    """The figure as an inline <svg> element (text kept as text), closing the figure."""
    plt = pyplot()
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _block_ticks(names: list[str]) -> tuple[list[int], list[str]]:
    """Tick positions and labels: the first layer of each top-level block or layer."""
    ticks, labels, last = [], [], None
    for i, name in enumerate(names):
        top = name.split(".")[0]
        if top != last:
            ticks.append(i)
            labels.append(top)
            last = top
    return ticks, labels


def rf_growth(graph: Graph):
    """Receptive field size and jump per layer (topological order), log2 axis, input size marked."""
    plt = pyplot()
    nodes = [n for n in graph.nodes if n.receptive_field is not None]
    if not nodes:
        raise CnnGraphError(f"network '{graph.name}' has no spatial layers: no receptive field to draw")
    nd = len(nodes[0].receptive_field)
    axes_names = ("L", "HW", "DHW")[nd - 1] if nd <= 3 else None
    height = 3.2
    fig, ax = plt.subplots(figsize=(max(7.0, min(16.0, 0.09 * len(nodes) + 4)), height))
    xs = list(range(len(nodes)))
    sizes = [[float(n.receptive_field[d][0]) for n in nodes] for d in range(nd)]
    jumps = [[float(n.receptive_field[d][1]) for n in nodes] for d in range(nd)]
    same = all(s == sizes[0] for s in sizes)
    for d in range(1 if same else nd):
        tag = "" if same else f" ({axes_names[d] if axes_names else d})"
        ax.plot(xs, sizes[d], "-o", ms=3, lw=1.2, color="#d62728", label=f"theoretical receptive field{tag}")
        ax.step(xs, jumps[d], where="post", lw=1.0, color="#2ca02c", ls="-" if d == 0 else ":",
                label=f"jump: input px between neighbouring units{tag}")
    for d, n in enumerate(graph.input_shape[1:] if same else graph.input_shape[1:]):
        if same and d > 0:
            break
        ax.axhline(n, color="#555555", ls="--", lw=1)
        ax.annotate(f"input {'x'.join(map(str, graph.input_shape[1:]))}", (0, n), xytext=(2, 3),
                    textcoords="offset points", fontsize=8, color="#555555")
    ax.set_yscale("log", base=2)
    top = max(max(max(s) for s in sizes), max(graph.input_shape[1:]))
    ticks = [2 ** k for k in range(0, int(math.log2(top)) + 2)]
    ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.set_ylim(0.8, ticks[-1] * 1.2)
    pos, labels = _block_ticks([n.name for n in nodes])
    step = max(1, math.ceil(len(pos) / 40))  # at most about 40 labels
    ax.set_xticks(pos[::step], labels[::step], rotation=90, fontsize=7)
    ax.set_xlim(-1, len(nodes))
    ax.set_ylabel("input pixels", fontsize=8)
    ax.set_title(f"{graph.name}: receptive field growth, layer by layer", fontsize=10)
    ax.grid(axis="y", color="#e5e5e5", lw=0.6)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    return fig


def fc_statistics(graph: Graph):
    """Per layer with MACs (conv, linear): parameters, connections and the parameters of an
    unshared FC layer between the same tensors, on one log axis (analytic; no matrix built)."""
    from .fcview import analytic

    plt = pyplot()
    views = [analytic(n) for n in graph.nodes if n.macs > 0]
    if not views:
        raise CnnGraphError(f"network '{graph.name}' has no conv or linear layer: no FC-view statistics to draw")
    rows = len(views)
    fig, ax = plt.subplots(figsize=(8.5, 1.3 + 0.17 * rows))
    ys = list(range(rows))
    for y, v in zip(ys, views):
        ax.plot([max(v.params, 1), v.dense_params], [y, y], color="#dddddd", lw=1, zorder=1)
    ax.scatter([max(v.params, 1) for v in views], ys, s=16, marker="o", color=PARAMS_COLOUR, zorder=3,
               label="parameters (the weights the layer learns)")
    ax.scatter([v.connections for v in views], ys, s=18, marker="^", color=CONN_COLOUR, zorder=3,
               label="connections (non-zeros of its FC matrix)")
    ax.scatter([v.dense_params for v in views], ys, s=16, marker="s", color=DENSE_COLOUR, zorder=2,
               label="an unshared FC layer between the same tensors")
    ax.set_xscale("log")
    ax.set_yticks(ys, [v.name for v in views], fontsize=6.5 if rows > 40 else 7.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.grid(axis="x", color="#e5e5e5", lw=0.6)
    ax.set_xlabel("count (log scale)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    conn = sum(v.connections for v in views)
    params = sum(v.params for v in views)
    dense = sum(v.dense_params for v in views)
    ax.set_title(f"{graph.name}: each layer as a fully connected layer — {short_count(conn)} connections share "
                 f"{short_count(params)} parameters;\nan unshared FC layer in each place would need {short_count(dense)}", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.45 / (0.17 * rows + 0.3)),
              ncol=3, frameon=False, handletextpad=0.3, columnspacing=1.0)
    return fig
