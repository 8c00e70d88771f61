"""One self-contained HTML page about a network: summary, network graph (blocks as clusters,
fused kernels outlined and coloured), receptive-field growth, FC-view statistics, and the
layer table with collapsible blocks.

The graph is drawn by Graphviz's `dot` where it is installed; without it the page says so
and shows the blocks and kernels as a nested outline instead. The charts need matplotlib.

>>> from cnngraph import load
>>> page = to_html(load("input: [1, 8, 8]\\nlayers: [{conv: {out: 2, kernel: 3}}, relu]"), fusion=False)
>>> page.startswith("<!DOCTYPE html>") and "conv1" in page
True
"""

from __future__ import annotations

import base64
import html
import shutil
import subprocess

from . import pictures, report
from .dot import attr_text, block_prefixes, family_colours, kernel_family
from .errors import CnnGraphError
from .graph import Graph
from .report import Column

DOT_TIMEOUT = 120  # seconds; a few thousand layers lay out in well under that


def fusion_groups(graph: Graph, weights=None) -> list[tuple[str, tuple[str, ...]]]:
    """The compiler's native kernels as (symbol, graph layers), in execution order.

    The one place that reads the compiler's plan (layout steps such as the output copy,
    which cover no layer, are left out).

    >>> from cnngraph import load
    >>> fusion_groups(load("input: [1, 8, 8]\\nlayers: [{conv: {out: 2, kernel: 3}}, relu]"))
    [('fused_conv2d_relu', ('conv1', 'relu1'))]
    """
    from .compiler import build_plan
    from .weights import init

    plan = build_plan(graph, weights if weights is not None else init(graph))
    return [(name, nodes) for name, nodes in plan.fusion() if nodes]


def dot_program() -> str | None:
    """Path of Graphviz's `dot`, or None."""
    return shutil.which("dot")


def render_svg(dot_text: str) -> str:
    """DOT text -> SVG text with Graphviz's `dot` (a CnnGraphError where it is missing or fails)."""
    exe = dot_program()
    if exe is None:
        raise CnnGraphError("drawing the graph needs Graphviz's 'dot' program: install Graphviz "
                            "(e.g. apt-get install graphviz), or write --dot and render it elsewhere")
    try:
        p = subprocess.run([exe, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=DOT_TIMEOUT,
                           check=False)
    except subprocess.TimeoutExpired:
        raise CnnGraphError(f"Graphviz 'dot' did not finish within {DOT_TIMEOUT} s") from None
    if p.returncode != 0:
        first = (p.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[0]
        raise CnnGraphError(f"Graphviz 'dot' failed (exit {p.returncode}): {first}")
    return p.stdout.decode()


def graph_svg(graph: Graph, fusion=None) -> str:
    """The network graph as SVG: per-layer attributes, blocks as clusters, fused kernels outlined."""
    return render_svg(report.to_dot(graph, detail=True, fusion=fusion))


# ---- the page -------------------------------------------------------------------

CSS = """
.cg { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
      max-width: 1400px; padding: 16px 24px; color: #222; background: #fff; }
.cg h1 { font-size: 22px; margin: 0 0 4px; }
.cg h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.cg .summary { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 8px 0; }
.cg .summary dt { color: #666; } .cg .summary dd { margin: 0; }
.cg .note { color: #666; font-size: 13px; } .cg .warn { color: #a33; }
.cg .graph { overflow: auto; max-height: 1600px; border: 1px solid #ddd; padding: 6px; background: #fff; }
.cg .graph svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
.cg .legend span.sw { display: inline-block; width: 14px; height: 14px; border-radius: 3px; vertical-align: -2px;
                      margin: 0 4px 0 12px; border: 1px solid #888; }
.cg .chart img { max-width: 100%; }
.cg table.layers { border-collapse: collapse; font-size: 12.5px; }
.cg table.layers th, .cg table.layers td { padding: 2px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }
.cg table.layers th { text-align: left; background: #f6f6f6; position: sticky; top: 0; }
.cg td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cg tr.block { background: #fafafa; cursor: pointer; font-weight: 600; }
.cg tr.block td:first-child::before { content: "\\25BE  "; color: #888; }
.cg tr.block.closed td:first-child::before { content: "\\25B8  "; }
.cg span.k { border-radius: 3px; padding: 0 4px; }
.cg ul.outline { font-size: 13px; } .cg ul.outline li { margin: 1px 0; }
.cg button { font-size: 12px; margin-right: 6px; }
"""

# scoped to one report, so that several can share a notebook
JS = """
(function () {
  const root = document.currentScript.parentElement;
  const blocks = () => root.querySelectorAll('tr.block');
  function refresh() {
    const closed = new Set([...root.querySelectorAll('tr.block.closed')].map(t => t.dataset.block));
    root.querySelectorAll('table.layers tr[data-in]').forEach(tr => {
      tr.hidden = tr.dataset.in.split(' ').some(p => p && closed.has(p));
    });
  }
  function setAll(close) { blocks().forEach(t => t.classList.toggle('closed', close)); refresh(); }
  blocks().forEach(t => t.addEventListener('click', () => { t.classList.toggle('closed'); refresh(); }));
  root.querySelector('button.expand').addEventListener('click', () => setAll(false));
  root.querySelector('button.collapse').addEventListener('click', () => setAll(true));
  setAll(true);
})();
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _img(svg_text: str, alt: str) -> str:
    data = base64.b64encode(svg_text.encode()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/svg+xml;base64,{data}">'


def _summary(graph: Graph, fusion) -> str:
    t = graph.totals()
    mib = 2 ** 20
    items = [("input", _dims(graph.input_shape)),
             ("output", f"{_dims(graph.output_shape)} ('{graph.output}')"),
             ("layers", f"{len(graph.nodes)}"),
             ("parameters", (f"{t['params']:,} trainable, {t['buffers']:,} buffers "
                             f"({4 * (t['params'] + t['buffers']) / mib:,.2f} MiB float32)")),
             ("MACs", f"{t['macs']:,} per sample ({t['macs'] / 1e9:.3f} G)"),
             ("activations", f"{t['activations']:,} elements per sample ({4 * t['activations'] / mib:,.2f} MiB float32)")]
    if fusion:
        fused = [s for s, nodes in fusion if len(nodes) > 1]
        items.append(("native kernels", f"{len(fusion)}, of which {len(fused)} fuse two or more layers"))
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    warns = "".join(f'<p class="warn">warning: {_e(w)}</p>' for w in graph.warnings)
    return f'<dl class="summary">{rows}</dl>{warns}<p class="note">{_e(report.MACS_CONVENTION)}.</p>'


def _legend(fusion) -> str:
    colours = family_colours(fusion)
    counts: dict[str, int] = {}
    for symbol, nodes in fusion:
        if len(nodes) > 1:
            counts[kernel_family(symbol)] = counts.get(kernel_family(symbol), 0) + 1
    parts = [f'<span class="sw" style="background:{c}"></span>{_e(f)} ×{counts[f]}' for f, c in colours.items()]
    parts.append('<span class="sw" style="background:#f2f2f2;border-style:dashed"></span>no native code '
                 '(written in place or a relabelling)')
    parts.append('<span class="sw" style="background:#fff;border-color:#999"></span>block (grey outline)')
    return f'<p class="legend note">fused kernels (coloured outline, named by kernel): {"".join(parts)}</p>'


def _outline(graph: Graph, fusion) -> str:
    """Blocks and layers as nested lists (the fallback where Graphviz is missing)."""
    step_of = {n: s for s, nodes in fusion for n in nodes}
    colours = family_colours(fusion)
    blocks = block_prefixes([n.name for n in graph.nodes])
    out, open_blocks = [], []
    for n in graph.nodes:
        parts = n.name.split(".")
        mine = [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in blocks]
        while open_blocks and open_blocks[-1] not in mine:
            out.append("</ul></li>")
            open_blocks.pop()
        for p in mine[len(open_blocks):]:
            out.append(f"<li><b>{_e(p)}</b><ul>")
            open_blocks.append(p)
        sym = step_of.get(n.name)
        tag = ""
        if sym:
            col = colours.get(kernel_family(sym), "#ffffff")
            tag = f' <span class="k" style="background:{col}">{_e(sym)}</span>'
        out.append(f"<li>{_e(n.name)} — {_e(n.op)} {_e(attr_text(n))} → {_e(_dims(n.out_shape))}{tag}</li>")
    out += ["</ul></li>"] * len(open_blocks)
    return '<ul class="outline">' + "".join(out) + "</ul>"


def _table(graph: Graph, fusion) -> str:
    step_of = {n: s for s, nodes in fusion for n in nodes}
    colours = family_colours(fusion)
    blocks = block_prefixes([n.name for n in graph.nodes])
    index = {n.name: n for n in graph.nodes}
    cols = list(Column)
    head = "".join(f"<th>{_e(c.value[0])}</th>" for c in cols[:3]) + "<th>attributes</th>" + \
        "".join(f"<th>{_e(c.value[0])}</th>" for c in cols[3:]) + ("<th>native kernel</th>" if fusion else "")
    rows, opened = [], set()

    def enclosing(name):
        parts = name.split(".")
        return [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in blocks]

    for n in graph.nodes:
        chain = enclosing(n.name)
        for depth, p in enumerate(chain):
            if p in opened:
                continue
            opened.add(p)
            members = [index[m] for m in blocks[p]]
            last = members[-1]
            pad = 8 + 14 * depth
            rows.append(
                f'<tr class="block" data-block="{_e(p)}" data-in="{_e(" ".join(chain[:depth]))}">'
                f'<td style="padding-left:{pad}px">{_e(p)}</td><td>block</td>'
                f"<td>{_e(_dims(last.out_shape))}</td><td>{len(members)} layers</td>"
                f'<td class="num">{sum(m.n_params for m in members):,}</td>'
                f'<td class="num">{sum(m.macs for m in members):,}</td><td></td>' + ("<td></td>" if fusion else "")
                + "</tr>")
        pad = 8 + 14 * len(chain)
        cells = [f"<td>{_e(c.cell(n))}</td>" if not c.value[1] else f'<td class="num">{_e(c.cell(n))}</td>'
                 for c in cols]
        cells[0] = f'<td style="padding-left:{pad}px">{_e(n.name)}</td>'
        cells.insert(3, f"<td>{_e(attr_text(n))}</td>")
        if fusion:
            sym = step_of.get(n.name)
            col = colours.get(kernel_family(sym)) if sym else None
            cells.append(f'<td><span class="k" style="background:{col}">{_e(sym)}</span></td>' if col
                         else f"<td>{_e(sym or 'none (in place)')}</td>")
        rows.append(f'<tr data-in="{_e(" ".join(chain))}">' + "".join(cells) + "</tr>")
    return (f'<p><button class="expand">expand all</button><button class="collapse">collapse all'
            f'</button><span class="note">click a block to open or close it</span></p>'
            f'<table class="layers"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def to_html(graph: Graph, fusion=True, weights=None, charts: bool = True, fragment: bool = False) -> str:
    """The report page as one HTML string (styles, graph and charts inline; no network access).

    `fusion`: True asks the compiler's plan for the fused kernels (`fusion_groups`), False
    leaves them out, or give the (symbol, layers) list. `charts` needs matplotlib; where it is
    missing the page says so. `fragment`: one self-contained <div> (styles and script scoped to
    it) instead of a whole document, for a notebook's `_repr_html_`.
    """
    notes = []
    if fusion is True:
        try:
            fusion = fusion_groups(graph, weights)
        except (CnnGraphError, ValueError, NotImplementedError) as e:
            notes.append(f"fused kernels not shown: the compiler could not plan this network ({e})")
            fusion = []
    fusion = list(fusion or [])
    if dot_program() is not None:
        svg_text = graph_svg(graph, fusion)
        drawing = f'<div class="graph" id="graph">{svg_text[svg_text.index("<svg"):]}</div>'
    else:
        drawing = (f'<p class="warn" id="no-graphviz">The graph drawing needs Graphviz\'s <code>dot</code>, which '
                   f"is not installed here (apt-get install graphviz). Below: the blocks and kernels as an "
                   f'outline; the DOT source is at the end of the page.</p><div id="graph">'
                   f"{_outline(graph, fusion)}</div>")
    sections = [f"<h2>Network graph</h2>{_legend(fusion) if fusion else ''}{drawing}"]
    if charts:
        try:
            rf = _img(pictures.svg(pictures.rf_growth(graph)), "receptive field growth")
        except CnnGraphError as e:
            rf = f'<p class="note">{_e(e)}</p>'
        try:
            fc = _img(pictures.svg(pictures.fc_statistics(graph)), "FC-view statistics")
        except CnnGraphError as e:
            fc = f'<p class="note">{_e(e)}</p>'
        sections.append(f'<h2>Receptive field growth</h2><div class="chart" id="rf-chart">{rf}</div>'
                        f'<p class="note">The theoretical receptive field of each layer (the input pixels one of '
                        f"its units can see) and its jump (input pixels between neighbouring units), in "
                        f"topological order; parallel branches alternate.</p>")
        sections.append(f'<h2>The FC view: connections, parameters, dense parameters</h2>'
                        f'<div class="chart" id="fc-chart">{fc}</div>'
                        f'<p class="note">A convolution is a fully connected layer with most connections removed '
                        f"and the rest sharing weights: per conv or linear layer, the parameters it learns, the "
                        f"connections of its FC matrix, and the parameters an unshared FC layer between the same "
                        f"tensors would need (<code>cnngraph fcview</code> builds and checks the matrices).</p>")
    sections.append(f"<h2>Layers</h2>{_table(graph, fusion)}")
    if dot_program() is None:
        sections.append(f"<h2>DOT source</h2><pre>{_e(report.to_dot(graph, detail=True, fusion=fusion))}</pre>")
    note_html = "".join(f'<p class="warn">{_e(n)}</p>' for n in notes)
    body = (f'<div class="cg"><style>{CSS}</style><h1>{_e(graph.name)}</h1>{_summary(graph, fusion)}{note_html}'
            f"{''.join(sections)}<script>{JS}</script></div>")
    if fragment:
        return body
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(graph.name)} — cnngraph report</title></head><body style=\"margin:0\">{body}</body></html>\n")
