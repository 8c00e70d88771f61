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

import numpy as np

from .dot import short_count
from .errors import CnnGraphError
from .graph import Graph

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
    for n in sorted(set(graph.input_shape[1:])):  # the input's extent along each spatial dim
        ax.axhline(n, color="#555555", ls="--", lw=1)
        ax.annotate(f"input {'x'.join(map(str, graph.input_shape[1:]))}", (0, n), xytext=(2, 3),
                    textcoords="offset points", fontsize=8, color="#555555")
    ax.set_yscale("log", base=2)
    top = max(max(max(s) for s in sizes), max(graph.input_shape[1:]))
    ticks = [2 ** k for k in range(int(math.log2(top)) + 2)]
    ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.set_ylim(0.8, ticks[-1] * 1.2)
    pos, labels = _block_ticks([n.name for n in nodes])
    gap, shown = len(nodes) / 60, []  # labels closer than a sixtieth of the axis would overlap
    sizes = {p: q - p for p, q in zip(pos, pos[1:] + [len(nodes)])}
    for p, lab in zip(pos, labels):
        if not shown or p - shown[-1][0] >= gap:
            shown.append((p, lab))
        elif sizes[p] > sizes[shown[-1][0]]:  # too close: keep the label of the longer stretch
            shown[-1] = (p, lab)
    ax.set_xticks([p for p, _ in shown], [lab for _, lab in shown], rotation=90, fontsize=7)
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


# ---- the FC view, layer by layer (panels built by fcview) ------------------------

INPUT_FILL, OUTPUT_FILL, FIXED_EDGE = "#ffd966", "#9fd49f", "#555555"
PANEL_W, PANEL_H = 3.8, 3.3


def _tie_palette(n: int):
    """Qualitative colours, one per shared weight: tab10, else tab20 and tab20b (up to 40)."""
    plt = pyplot()
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    return [plt.get_cmap("tab20" if i < 20 else "tab20b")(i % 20) for i in range(n)]


def _subtitle(p) -> str:
    rows, cols = p.shape
    d = p.data
    if p.kind == "nodes":
        text = f"{rows} outputs (top) read {cols} inputs (bottom) through {len(d['rows'])} connections"
        if d["colour"] == "tie":
            return text + f";\nsame colour = same shared weight ({d['tied']} weights)"
        return text + ("; colour = coefficient" if d["colour"] == "value" else "; fixed coefficients")
    if p.kind == "tie" and "zoom" in d:
        r, c = d["zoom"]
        return (f"{rows:,}x{cols:,} matrix; every channel pair alike:\nout ch 0 x in ch 0, {r}x{c} corner, "
                f"colour = weight ({d['tied']})")
    if p.kind == "tie":
        return f"{rows}x{cols} matrix\ncolour = shared weight ({d.get('tied', '?')}), grey = fixed"
    if p.kind == "value":
        step = d.get("step", (1, 1))
        every = f"; rows in steps of {step[0]}, columns of {step[1]}" if max(step) > 1 else ""
        return f"{rows:,}x{cols:,} matrix\ncolour = coefficient{every}"
    if p.kind == "image":
        return "its row of A, shaped as the input"
    if p.kind == "blocks":
        return f"{rows:,}x{cols:,} matrix\nconnections per (out, in) channel pair"
    return f"{rows:,}x{cols:,} matrix\nconnections per cell"


def _int_ticks(ax):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6, min_n_ticks=1))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6, min_n_ticks=1))


def _colourbar(fig, mappable, ax, label: str, fraction: float = 0.046):
    cb = fig.colorbar(mappable, ax=ax, fraction=fraction, pad=0.02)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6.5)
    return cb


def _draw_nodes(fig, ax, p):
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    plt = pyplot()
    d = p.data
    xin, xout = d["xin"], d["xout"]
    segs = [((xin[c], 0.0), (xout[r], 1.0)) for r, c in zip(d["rows"], d["cols"])]
    lw = 1.8 if len(segs) <= 60 else 1.0 if len(segs) <= 400 else 0.6
    if d["colour"] == "tie":
        pal = _tie_palette(len(d["legend"]))
        colours = [pal[k] if k >= 0 else FIXED_EDGE for k in d["key"]]
        lc = LineCollection(segs, colors=colours, linewidths=lw, zorder=1)
        ax.add_collection(lc)
        handles = [Line2D([], [], color=pal[i], lw=2.5) for i in range(len(d["legend"]))]
        ax.legend(handles, [f"{name} = {v:.3g}" for name, v in d["legend"]], fontsize=7, frameon=False,
                  loc="center left", bbox_to_anchor=(1.0, 0.5), ncol=1 + len(handles) // 11)
    elif d["colour"] == "value":
        lim = float(np.max(np.abs(d["key"]))) or 1.0
        lc = LineCollection(segs, cmap="coolwarm", linewidths=lw, zorder=1)
        lc.set_array(d["key"])
        lc.set_clim(-lim, lim)
        ax.add_collection(lc)
        _colourbar(fig, lc, ax, "coefficient", fraction=0.03)
    else:
        ax.add_collection(LineCollection(segs, colors=FIXED_EDGE, linewidths=lw, zorder=1))
    size = float(min(140.0, 9000.0 / max(len(xin), len(xout), 1)))
    read = d["read"]
    ax.scatter(xin[read], np.zeros(int(read.sum())), s=size, c=INPUT_FILL, edgecolors="#333333", linewidths=0.8,
               zorder=3)
    if (~read).any():  # inputs no output reads (stride leftovers)
        ax.scatter(xin[~read], np.zeros(int((~read).sum())), s=size, c="white", edgecolors="#999999",
                   linewidths=0.8, zorder=3)
    ax.scatter(xout, np.ones(len(xout)), s=size, c=OUTPUT_FILL, edgecolors="#333333", linewidths=0.8, zorder=3)
    if len(xin) <= 24:
        for i, x in enumerate(xin):
            ax.annotate(f"x{i}", (x, 0), xytext=(0, -11), textcoords="offset points", ha="center", fontsize=7)
    if len(xout) <= 24:
        for i, x in enumerate(xout):
            ax.annotate(f"y{i}", (x, 1), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7)
    pad = 0.6
    ax.set_xlim(min(xin.min(), xout.min()) - pad, max(xin.max(), xout.max()) + pad)
    ax.set_ylim(-0.3, 1.3)
    ax.set_axis_off()
    del plt


def _draw_grid(fig, ax, p):
    plt = pyplot()
    rows, cols = p.shape
    if p.kind == "tie":
        n = p.data.get("tied") or int(np.nanmax(p.image, initial=0)) + 1
        from matplotlib.colors import ListedColormap
        cmap = ListedColormap([FIXED_EDGE] + _tie_palette(n)).with_extremes(bad="white")
        ax.imshow(np.ma.masked_invalid(p.image), cmap=cmap, vmin=-1.5, vmax=n - 0.5, interpolation="nearest",
                  aspect="auto")
        _int_ticks(ax)
    elif p.kind in ("value", "image"):
        finite = np.isfinite(p.image)
        lim = float(np.max(np.abs(p.image[finite]))) if finite.any() else 1.0
        cmap = plt.get_cmap("coolwarm").with_extremes(bad="#f4f4f4" if p.kind == "image" else "white")
        step = p.data.get("step", (1, 1))
        extent = (-0.5, p.image.shape[1] * step[1] - 0.5, p.image.shape[0] * step[0] - 0.5, -0.5)
        im = ax.imshow(np.ma.masked_invalid(p.image), cmap=cmap, vmin=-(lim or 1), vmax=lim or 1,
                       interpolation="nearest", aspect="equal" if p.kind == "image" else "auto",
                       extent=None if p.kind == "image" else extent)
        _colourbar(fig, im, ax, "coefficient")
        if p.kind == "image":
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            _int_ticks(ax)
    elif p.kind == "blocks":
        im = ax.imshow(p.image, cmap="viridis", interpolation="nearest", aspect="auto", vmin=0,
                       extent=(-0.5, p.image.shape[1] - 0.5, p.image.shape[0] - 0.5, -0.5))
        for c in p.data.get("inputs", []):
            ax.axvline(c - 0.5, color="white", lw=1)
        _colourbar(fig, im, ax, "connections per channel pair")
        _int_ticks(ax)
        ax.set_xlabel("input channel", fontsize=7)
        ax.set_ylabel("output channel", fontsize=7)
    else:
        im = ax.imshow(np.log10(p.image + 1), cmap="viridis", interpolation="nearest", aspect="auto",
                       extent=(0, cols, rows, 0), vmin=0)
        _colourbar(fig, im, ax, "log10(1 + connections per cell)")
        _int_ticks(ax)
    if p.kind in ("tie", "value", "density"):
        ax.set_xlabel("input element (column)", fontsize=7)
        ax.set_ylabel("output element (row)", fontsize=7)
    ax.tick_params(labelsize=6.5)


def draw_panels(panels, path, title: str | None = None, dpi: int = 100) -> None:
    """Draw FC-view panels into one PNG (see `panels_figure`)."""
    save_png(panels_figure(panels, title), path, dpi)


def panels_figure(panels, title: str | None = None):
    """FC-view panels in layer order: seeds' drawings one per full-width row, matrix pictures in a
    grid of up to four, identity-like layers as one list of sentences at the end."""
    plt = pyplot()
    grid = [p for p in panels if p.kind not in ("nodes", "summary")]
    words = [p for p in panels if p.kind == "summary"]
    ncols = max(1, min(4, len(grid)))
    width = max(10.0, PANEL_W * ncols)
    rows, current = [], []
    for p in panels:  # in layer order: a seeds' drawing takes a row of its own
        if p.kind == "nodes":
            if current:
                rows.append(("grid", current, PANEL_H))
                current = []
            rows.append(("nodes", [p], 3.0))
        elif p.kind != "summary":
            current.append(p)
            if len(current) == ncols:
                rows.append(("grid", current, PANEL_H))
                current = []
    if current:
        rows.append(("grid", current, PANEL_H))
    if words:
        rows.append(("summary", words, 0.35 + 0.2 * len(words)))
    heights = [h for _, _, h in rows]
    total = sum(heights) + 0.8
    fig = plt.figure(figsize=(width, total))
    gs = fig.add_gridspec(len(rows), ncols, height_ratios=heights, hspace=0.75, wspace=0.6,
                          top=1 - 0.8 / total, bottom=0.1 / total)
    for i, (kind, ps, _) in enumerate(rows):
        if kind == "nodes":
            ax = fig.add_subplot(gs[i, :])
            _draw_nodes(fig, ax, ps[0])
            ax.set_title(f"{ps[0].title}\n{_subtitle(ps[0])}", fontsize=9)
        elif kind == "grid":
            for j, p in enumerate(ps):
                ax = fig.add_subplot(gs[i, j])
                _draw_grid(fig, ax, p)
                ax.set_title(f"{p.title}\n{_subtitle(p)}", fontsize=8)
        else:
            ax = fig.add_subplot(gs[i, :])
            ax.set_axis_off()
            lines = ["identity-like layers (at most one connection per row and column), told rather than drawn:"]
            lines += [f"  {p.title}: {p.data['text']}" for p in ps]
            ax.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=8, family="monospace",
                    transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.15 / total)
    return fig


# ---- effective receptive field ----------------------------------------------------

def erf_figure(e):
    """The ERF heatmap over the theoretical receptive field's box (clipped to the input), with the
    radii holding 50% and 95% of the mass and the unclipped theoretical field outlined."""
    plt = pyplot()
    from matplotlib.patches import Circle, Rectangle

    heat = e.heat
    while heat.ndim > 2:  # a 3D input: sum over its first spatial dim (depth or time)
        heat = heat.sum(axis=0)
    centre, size, box = e.centre[-heat.ndim:], e.theoretical_size[-heat.ndim:], e.box[-heat.ndim:]
    unit = ",".join(map(str, e.unit))
    clipped = any(hi - lo < s for (lo, hi), s in zip(e.box, e.theoretical_size))
    depth = " (summed over depth; radii in 3D)" if len(e.heat.shape) > 2 else ""
    title = (f"effective receptive field of {e.layer}[{unit}] ({e.op}), mean over {e.inputs} input(s){depth}\n"
             f"theoretical {'x'.join(f'{s:g}' for s in e.theoretical_size)} px"
             f"{' (clipped to the input)' if clipped else ''}; 50% of the mass within "
             f"r = {e.radius_50:.1f} px, 95% within r = {e.radius_95:.1f} px")
    if heat.ndim == 1:
        fig, ax = plt.subplots(figsize=(8, 3.2))
        lo, hi = box[0]
        xs = np.arange(lo, hi)
        ax.bar(xs, heat[lo:hi], width=1.0, color="#c44e52")
        for r, ls, lab in ((e.radius_50, "--", "50% of the mass"), (e.radius_95, ":", "95% of the mass")):
            for sgn in (-1, 1):
                ax.axvline(centre[0] + sgn * r, color="#333333", ls=ls, lw=1, label=lab if sgn < 0 else None)
        ax.legend(fontsize=7, loc="upper right", framealpha=0.7)
        ax.set_xlabel("input position", fontsize=8)
        ax.set_ylabel("mean |d unit / d input|", fontsize=8)
        ax.set_title(title, fontsize=9)
        return fig
    (y0, y1), (x0, x1) = box
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(heat[y0:y1, x0:x1], cmap="magma", interpolation="nearest", origin="upper",
                   extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label("mean |d unit / d input|, summed over channels", fontsize=7)
    cb.ax.tick_params(labelsize=7)
    cy, cx = centre
    for r, ls, lab in ((e.radius_50, "--", "50% of the mass"), (e.radius_95, ":", "95% of the mass")):
        ax.add_patch(Circle((cx, cy), r, fill=False, ec="#00e5ff", ls=ls, lw=1.4, label=lab))
    sy, sx = size
    ax.add_patch(Rectangle((cx - sx / 2, cy - sy / 2), sx, sy, fill=False, ec="#7fff7f", lw=1.2,
                           label="theoretical receptive field"))
    ax.plot([cx], [cy], "+", color="#00e5ff", ms=10, mew=1.5)
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y1 - 0.5, y0 - 0.5)
    ax.set_xlabel("input x (px)", fontsize=8)
    ax.set_ylabel("input y (px)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.7)
    ax.set_title(title, fontsize=9)
    return fig


def save_png(fig, path, dpi: int = 100) -> None:
    """Write a figure as PNG and close it."""
    plt = pyplot()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
