"""Graphviz DOT of a network with the detail a picture needs: per-layer attributes, parameters and
MACs, blocks (dotted name prefixes) as nested clusters, and the compiler's fused kernels outlined and
filled in their family's colour. `report.to_dot(graph, detail=True, fusion=...)` is the entry point.

>>> block_prefixes(["stem", "a.conv", "a.relu", "a.b.c", "x.y"])
{'a': ['a.conv', 'a.relu', 'a.b.c']}
"""

from __future__ import annotations

import html
import re

from .graph import Graph, Node


def _q(*parts) -> str:
    """A quoted DOT string, parts on separate lines."""
    esc = (str(p).replace("\\", "\\\\").replace('"', '\\"') for p in parts)
    return '"' + "\\n".join(esc) + '"'


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


DOT_PALETTE = ("#8dd3c7", "#fdb462", "#bebada", "#fb8072", "#80b1d3", "#b3de69", "#fccde5", "#ffffb3",
               "#bc80bd", "#ccebc5")  # ColorBrewer Set3: one colour per fused-kernel family


def kernel_family(symbol: str) -> str:
    """A kernel's family: its symbol without the numbering suffix.

    >>> kernel_family("fused_conv2d_relu_12"), kernel_family("lrn")
    ('fused_conv2d_relu', 'lrn')
    """
    return re.sub(r"_\d+$", "", symbol)


def family_colours(fusion) -> dict[str, str]:
    """Fill colour per fused-kernel family (steps of two or more layers), in order of appearance."""
    out: dict[str, str] = {}
    for symbol, nodes in fusion:
        fam = kernel_family(symbol)
        if len(nodes) > 1 and fam not in out:
            out[fam] = DOT_PALETTE[len(out) % len(DOT_PALETTE)]
    return out


def attr_text(node: Node) -> str:
    """The layer's attributes that differ from their defaults, e.g. `kernel 3 · stride 2 · padding 1`."""
    def fmt(v):
        if isinstance(v, tuple):
            return "x".join(fmt(x) for x in v)
        return _num(v) if isinstance(v, (int, float)) else str(v)

    shown = []
    for a in node.layer.attrs:
        v = getattr(node.layer, a.name)
        if a.name == "out" or a.default is v or a.default == v:
            continue
        shown.append(a.name if v is True else f"no {a.name}" if v is False else f"{a.name} {fmt(v)}")
    return " · ".join(shown)


def short_count(n: float) -> str:
    """A count in three significant figures with K/M/G.

    >>> short_count(1_234_567), short_count(436e9), short_count(850)
    ('1.2M', '436.0G', '850')
    """
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:g}"


def block_prefixes(names) -> dict[str, list[str]]:
    """Blocks as drawn: every dotted name prefix that two or more layers share -> those layers
    (a prefix holding exactly the layers of a shorter one is dropped)."""
    members: dict[str, list[str]] = {}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            members.setdefault(".".join(parts[:i]), []).append(name)
    out = {}
    for p, m in members.items():
        parent = p.rsplit(".", 1)[0] if "." in p else None
        if len(m) >= 2 and not (parent is not None and members.get(parent) == m):
            out[p] = m
    return out


def rich_dot(graph: Graph, detail: bool, fusion) -> str:
    """DOT with attributes and block clusters (`detail`) and fused kernels (`fusion`: (symbol, layers))."""
    q, dims = _q, _dims
    fusion = list(fusion or [])
    names = [n.name for n in graph.nodes]
    blocks = block_prefixes(names) if detail else {}

    def chain(name):  # enclosing blocks, outermost first
        parts = name.split(".")
        return [("block", p) for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in blocks]

    parent = {}
    for p in blocks:
        up = chain(p + ".x")[:-1]
        parent[("block", p)] = up[-1] if up else None
    container = {n: (chain(n)[-1] if chain(n) else None) for n in names}
    colours = family_colours(fusion)
    step_of, fused_label = {}, {}
    for k, (symbol, nodes) in enumerate(fusion):
        nodes = [n for n in nodes if n in container]
        for n in nodes:
            step_of[n] = symbol
        if len(nodes) < 2:
            continue
        chains = [chain(n) for n in nodes]
        common = []
        for level in zip(*chains):
            if len(set(level)) > 1:
                break
            common.append(level[0])
        home = common[-1] if common else None
        subs = {c[len(common)] for c in chains if len(c) > len(common)}
        if any(not set(blocks[p]) <= set(nodes) for _, p in subs):
            continue  # the kernel crosses a block boundary: its layers are only coloured
        if home is not None and set(blocks[home[1]]) == set(nodes):
            fused_label[home] = symbol  # the block is the kernel
            continue
        key = ("kernel", k)
        parent[key] = home
        fused_label[key] = symbol
        for s in subs:
            parent[s] = key
        for n, c in zip(nodes, chains):
            if len(c) == len(common):
                container[n] = key

    def label(n: Node, shown: str):
        what = " · ".join(t for t in (n.op if n.op != shown else "", attr_text(n)) if t)
        rows = [f"<b>{html.escape(shown)}</b>"] + ([html.escape(what)] if what else []) + [html.escape(dims(n.out_shape))]
        if detail and (n.n_params or n.macs):
            cost = f"{n.n_params:,} params" + (f" · {short_count(n.macs)} MACs" if n.macs else "")
            rows.append(f'<font point-size="8" color="#555555">{cost}</font>')
        return "<" + "<br/>".join(rows) + ">"

    def node_line(n: Node, indent: str):
        inner = chain(n.name)
        prefix = inner[-1][1] + "." if inner else ""  # the innermost block names the rest
        sym = step_of.get(n.name)
        attrs = [f"label={label(n, n.name[len(prefix):] if detail else n.name)}", f"id={q('layer:' + n.name)}",
                 f"tooltip={q(n.name + (f' — kernel {sym}' if sym else ' — no native code of its own'))}"]
        fam = kernel_family(sym) if sym else None
        if fam in colours:
            attrs.append(f'fillcolor="{colours[fam]}"')
        elif fusion and sym is None:
            attrs.append('style="rounded,dashed,filled", fillcolor="#f2f2f2"')
        return f"{indent}{q(n.name)} [{', '.join(attrs)}];"

    children: dict = {}
    for key, up in parent.items():
        children.setdefault(up, []).append(key)
    inside: dict = {}
    for n in graph.nodes:
        inside.setdefault(container[n.name], []).append(n)

    def emit(key, depth):
        out = []
        ind = "  " * (depth + 1)
        for n in inside.get(key, []):
            out.append(node_line(n, ind))
        for sub in children.get(key, []):
            cid = f"cluster_k{sub[1]}" if sub[0] == "kernel" else f"cluster_b{names.index(blocks[sub[1]][0])}"
            out.append(f"{ind}subgraph {q(cid)} {{")
            sym = fused_label.get(sub)
            if sub[0] == "block":
                up = parent[sub]
                text = sub[1][len(up[1]) + 1:] if up and up[0] == "block" else sub[1]
                text = text + (f" · {sym}" if sym else "")
                out.append(f"{ind}  id={q('block:' + sub[1])}; label={q(text)}; tooltip={q(sub[1])};")
            else:
                text = sym
                out.append(f"{ind}  id={q('kernel:' + sym)}; label={q(text)};")
            if sym:
                col = colours[kernel_family(sym)]
                out.append(f'{ind}  style="rounded,filled,bold"; color="{col}"; fillcolor="{col}40"; penwidth=2.5;')
            else:
                out.append(f'{ind}  style="rounded"; color="#999999";')
            out += emit(sub, depth + 1)
            out.append(f"{ind}}}")
        return out

    lines = [f"digraph {q(graph.name)} {{", "  rankdir=TB;",
             '  graph [fontname="Helvetica", fontsize=11, nodesep=0.2, ranksep=0.3, labeljust=l, ordering=out];',
             ('  node [shape=box, style="rounded,filled", fillcolor="white", fontname="Helvetica", fontsize=10, '
              'margin="0.08,0.03"];'),
             '  edge [color="#666666", arrowsize=0.6];',
             f"  {q('input')} [label={q('input', dims(graph.input_shape))}, shape=oval, id={q('layer:input')}];"]
    lines += emit(None, 0)
    lines += [f"  {q(i)} -> {q(n.name)};" for n in graph.nodes for i in n.inputs]
    return "\n".join(lines + ["}"]) + "\n"
