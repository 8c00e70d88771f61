"""The HTML report: detailed DOT (blocks as clusters, fused kernels), the page, the CLI, and the page
rendered in headless Chromium."""

import pathlib
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from cnngraph import dot, html_report, load, report
from cnngraph.cli import main

SPECS = pathlib.Path(__file__).resolve().parent.parent / "specs"
INCEPTIONS = ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
              "inception4e", "inception5a", "inception5b"]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")


@pytest.fixture(scope="module")
def googlenet():
    g = load(SPECS / "googlenet.yaml")
    return g, html_report.fusion_groups(g)


def clusters(dot: str) -> dict:
    """DOT clusters by id: {'label', 'parent', 'nodes' (declared directly inside), 'all' (inside, nested)}."""
    out, stack = {}, []
    for line in dot.splitlines():
        s = line.strip()
        if s.startswith("subgraph "):
            stack.append(None)
        elif stack and stack[-1] is None and s.startswith("id="):
            cid = re.match(r'id="([^"]+)"', s).group(1)
            label = re.search(r'label="([^"]*)"', s).group(1)
            parent = next((c for c in reversed(stack[:-1]) if c), None)
            stack[-1] = cid
            out[cid] = {"label": label, "parent": parent, "nodes": [], "all": []}
        elif s == "}" and stack:
            stack.pop()
        elif stack and (m := re.match(r'"((?:[^"\\]|\\.)*)" \[label=<', s)):
            out[stack[-1]]["nodes"].append(m.group(1))
            for cid in stack:
                out[cid]["all"].append(m.group(1))
    return out


# ---- DOT ------------------------------------------------------------------------------------

def test_googlenet_inception_blocks_are_clusters_holding_their_fused_kernels(googlenet):
    g, fusion = googlenet
    dot = report.to_dot(g, detail=True, fusion=fusion)
    cl = clusters(dot)
    fused = {sym: nodes for sym, nodes in fusion if len(nodes) > 1}
    for block in INCEPTIONS:
        c = cl[f"block:{block}"]
        assert c["parent"] is None and sorted(c["all"]) == sorted(n.name for n in g.nodes
                                                                   if n.name.startswith(block + "."))
        kernels = [k for k, v in cl.items() if v["all"] and set(v["all"]) <= set(c["all"]) and "fused_" in v["label"]]
        assert len(kernels) == 6, (block, kernels)  # four conv+relu branches, two with a 1x1 reduction first
    # every fused kernel is drawn as a cluster named by its symbol, holding exactly its layers
    labelled = {re.search(r"(fused_\w+)", v["label"]).group(1): v for v in cl.values() if "fused_" in v["label"]}
    assert set(labelled) == set(fused)
    for sym, nodes in fused.items():
        assert sorted(labelled[sym]["all"]) == sorted(nodes), sym
    # the concat written in place has no kernel: drawn dashed
    assert re.search(r'"inception3a\.concat1" \[.*style="rounded,dashed,filled"', dot)


def test_detail_labels_carry_attributes_params_and_macs(googlenet):
    g, _ = googlenet
    dot = report.to_dot(g, detail=True)
    line = next(s for s in dot.splitlines() if s.strip().startswith('"conv1.conv" ['))
    assert "conv2d · kernel 7 · stride 2 · padding 3" in line and "64x112x112" in line
    assert "9,472 params · 118.0M MACs" in line
    assert "maxpool2d · kernel 3 · stride 2 · ceil_mode" in dot


def test_a_kernel_crossing_a_block_is_coloured_not_clustered():
    g = load("input: [2, 6, 6]\nlayers: [{conv: {out: 2, kernel: 1, name: a.conv}}, "
             "{batchnorm: {name: a.bn}}, {relu: {name: r}}]")
    colours = dot.family_colours([("k_1", ("a.bn", "r"))])
    text = report.to_dot(g, detail=True, fusion=[("k_1", ("a.bn", "r")), ("conv", ("a.conv",))])
    cl = clusters(text)
    assert list(cl) == ["block:a"] and sorted(cl["block:a"]["all"]) == ["a.bn", "a.conv"]
    for name in ("a.bn", "r"):
        assert re.search(rf'"{re.escape(name)}" \[.*fillcolor="{colours["k"]}"', text)
    assert f'fillcolor="{colours["k"]}"' not in next(s for s in text.splitlines() if '"a.conv" [' in s)


def test_plain_dot_is_unchanged_by_default():
    g = load(SPECS / "lenet5.yaml")
    assert report.to_dot(g).count("subgraph") == 0
    assert '"conv1" [label="conv1\\nconv2d\\n6x28x28"];' in report.to_dot(g)


def test_fusion_groups_cover_each_layer_at_most_once_in_order():
    g = load(SPECS / "lenet5.yaml")
    groups = html_report.fusion_groups(g)
    assert groups[0] == ("fused_conv2d_relu_maxpool2d", ("conv1", "relu1", "maxpool1"))
    names = [n for _, nodes in groups for n in nodes]
    order = {n.name: i for i, n in enumerate(g.nodes)}
    assert len(names) == len(set(names)) and names == sorted(names, key=order.__getitem__)
    assert set(order) - set(names) == {"flatten1"}  # a relabelling: no code


# ---- the page ---------------------------------------------------------------------------------

@needs_dot
def test_googlenet_page_is_self_contained_with_graph_charts_and_table(googlenet):
    g, fusion = googlenet
    page = html_report.to_html(g, fusion=fusion)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere
    svg = page[page.index('<div class="graph" id="graph">'):]
    svg = svg[svg.index("<svg"):svg.index("</svg>") + 6]
    root = ET.fromstring(svg)  # well-formed SVG
    ids = {el.get("id") for el in root.iter()}
    assert {f"layer:{n.name}" for n in g.nodes} <= ids and {f"block:{b}" for b in INCEPTIONS} <= ids
    assert page.count('src="data:image/svg+xml;base64,') == 2  # RF growth, FC statistics
    for n in g.nodes:
        assert f'px">{n.name}</td>' in page
    assert all(f'data-block="{b}"' in page for b in INCEPTIONS)
    fused = sum(1 for _, nodes in fusion if len(nodes) > 1)
    assert 50 < fused < len(fusion) and f"{len(fusion)}, of which {fused} fuse two or more layers" in page


def test_page_without_graphviz_says_so_and_outlines_blocks(monkeypatch):
    monkeypatch.setattr(html_report, "dot_program", lambda: None)
    g = load(SPECS / "googlenet.yaml")
    page = html_report.to_html(g, fusion=[("fused_conv2d_relu", ("conv1.conv", "conv1.relu"))], charts=False)
    assert 'id="no-graphviz"' in page and "apt-get install graphviz" in page
    outline = page[page.index('<ul class="outline">'):]
    assert "<li><b>inception3a</b><ul>" in outline and outline.count("<li>") >= len(g.nodes)
    assert '<span class="k" style="background:' in outline and "<h2>DOT source</h2>" in page
    with pytest.raises(html_report.CnnGraphError, match=r"needs Graphviz's 'dot' program: install Graphviz"):
        html_report.render_svg("digraph {}")


@needs_dot
def test_dot_failure_is_one_clear_error():
    with pytest.raises(html_report.CnnGraphError, match=r"Graphviz 'dot' failed \(exit 1\): .*syntax error"):
        html_report.render_svg("digraph { -> }")


# ---- command line ------------------------------------------------------------------------------

@needs_dot
def test_cli_report_writes_html_svg_and_dot(tmp_path, capsys):
    out = {ext: tmp_path / f"lenet.{ext}" for ext in ("html", "svg", "dot")}
    assert main(["report", str(SPECS / "lenet5.yaml"), *[f"--{e}={p}" for e, p in out.items()]]) == 0
    printed = capsys.readouterr().out
    assert all(f"wrote {p}" in printed for p in out.values())
    root = ET.fromstring(out["svg"].read_text())
    assert root.tag.endswith("svg") and "kernel:fused_linear_relu" in {el.get("id") for el in root.iter()}
    assert 'subgraph "cluster_k0"' in out["dot"].read_text()
    assert "fused_conv2d_relu_maxpool2d" in out["html"].read_text()


def test_cli_report_without_output_prints_the_text_report(capsys):
    assert main(["report", str(SPECS / "lenet5.yaml")]) == 0
    assert capsys.readouterr().out.startswith("network lenet5: input 1x32x32")


def test_cli_svg_without_graphviz_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "cnngraph", "report", str(SPECS / "lenet5.yaml"), "--svg",
                        str(tmp_path / "g.svg")], capture_output=True, text=True, env={"PATH": ""}, timeout=120, check=False,
                       cwd=pathlib.Path(__file__).resolve().parent.parent)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("error: --svg needs Graphviz's 'dot' program") and "Traceback" not in p.stderr
    assert not (tmp_path / "g.svg").exists()


# ---- headless Chromium ---------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def dump_dom(page: pathlib.Path, profile: pathlib.Path) -> tuple[str, str]:
    """(Chromium binary, the page's DOM after its scripts ran), skipping cleanly where Chromium is
    missing or cannot start here."""
    exe = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if exe is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    try:
        p = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                           capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("Chromium did not answer within 120 s")
    if "<html" not in p.stdout:
        pytest.skip(f"Chromium cannot start here: {(p.stderr.strip().splitlines() or ['no message'])[-1]}")
    return exe, p.stdout


@needs_dot
def test_googlenet_report_in_headless_chromium(googlenet, tmp_path):
    g, fusion = googlenet
    page = tmp_path / "googlenet.html"
    page.write_text(html_report.to_html(g, fusion=fusion))
    exe, dom = dump_dom(page, tmp_path / "dom")
    # the script ran: blocks start closed, so their layers' rows are hidden
    assert dom.count('class="block closed"') == dom.count('class="block')
    assert re.search(r'<tr data-in="inception3a[^"]*" hidden="">', dom)
    assert '<g id="block:inception3a" class="cluster">' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'shot'}", f"--screenshot={shot}",
                    "--window-size=1400,2000", "--hide-scrollbars", page.as_uri()], capture_output=True,
                   timeout=120, check=False)
    import matplotlib.image
    img = (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(np.uint8)
    assert img.shape[:2] == (2000, 1400)
    ink = np.any(img < 240, axis=-1)
    assert ink.mean() > 0.05  # not blank
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200
    # the graph is there: fused conv+relu kernels in their family colour
    colours = dot.family_colours(fusion)

    def share(hex_colour):
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return np.all(np.abs(img.astype(int) - rgb) <= 2, axis=-1).mean()

    assert share(colours["fused_conv2d_relu"]) > 0.01
    # in the graph's part of the page (below the summary), not only in the legend
    c = colours["fused_conv2d_relu"]
    rgb = np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)])
    rows = np.flatnonzero(np.all(np.abs(img.astype(int) - rgb) <= 2, axis=-1).any(1))
    assert rows.max() - rows.min() > 1000


def test_fragment_for_notebooks_is_one_scoped_div():
    g = load("input: [1, 8, 8]\nlayers: [{conv: {out: 2, kernel: 3, name: a.conv}}, {relu: {name: a.relu}}]")
    frag = html_report.to_html(g, fusion=False, charts=False, fragment=True)
    assert frag.startswith('<div class="cg"><style>') and frag.endswith("</script></div>")
    assert "<html" not in frag and "<body" not in frag
    css = frag[frag.index("<style>") + 7:frag.index("</style>")]
    assert all(line.startswith(".cg") for line in css.splitlines() if "{" in line and not line.startswith(" "))


def test_two_fragments_in_one_page_each_work(tmp_path):
    g = load("input: [1, 8, 8]\nlayers: [{conv: {out: 2, kernel: 3, name: a.conv}}, {relu: {name: a.relu}}]")
    frag = html_report.to_html(g, fusion=False, charts=False, fragment=True)
    page = tmp_path / "two.html"
    page.write_text(f"<!DOCTYPE html><html><body>{frag}{frag}</body></html>")
    _, dom = dump_dom(page, tmp_path / "dom")
    assert dom.count('<tr class="block closed" data-block="a"') == 2
    assert dom.count('<tr data-in="a" hidden="">') == 4
