"""FC-view pictures: the right panel per layer, and pixel checks that the right things are drawn."""

import math
import pathlib

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.sparse as sp

from cnngraph import fcview, load
from cnngraph import weights as W

pictures = pytest.importorskip("cnngraph.pictures")
matplotlib = pytest.importorskip("matplotlib")
from matplotlib.colors import to_rgb


def panel_of(spec, name=None, seed=0):
    g = load(spec)
    w, _, acts = fcview.prepare(g, seed=seed)
    node = g.node(name) if name else g.nodes[0]
    lo = fcview.lower_node(node, w, acts)
    return fcview.layer_panel(f"{node.name} ({node.op})", lo, node), lo, node, w


def rendered(panels, dpi=100):
    """(RGB uint8 image, figure) of the panels drawn as `fcview --png` draws them."""
    fig = pictures.panels_figure(panels)
    fig.set_dpi(dpi)
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    return img, fig


def exact(img, colour):
    return np.all(img == np.round(np.array(to_rgb(colour)) * 255).astype(np.uint8), axis=-1)


def blobs(img, colour) -> int:
    return ndi.label(exact(img, colour))[1]


def palette_rgb(n):
    return np.round(np.array([c[:3] for c in pictures._tie_palette(n)]) * 255)


CONV1D = "input: [1, 8]\nlayers: [{conv: {out: 1, kernel: 3, name: c}}]"


# ---- the seeds' drawing --------------------------------------------------------------

def test_conv1d_three_taps_on_eight_inputs_is_the_seeds_drawing():
    p, lo, _, w = panel_of(CONV1D)
    assert p.kind == "nodes"
    d = p.data
    assert len(d["xin"]) == 8 and len(d["xout"]) == 6 and len(d["rows"]) == 18
    assert d["colour"] == "tie" and sorted(set(d["key"].tolist())) == [0, 1, 2]
    # tied edges share a colour key: the key is the weight the edge uses
    np.testing.assert_array_equal(d["key"], lo.tie)
    np.testing.assert_allclose([v for _, v in d["legend"]], w["c.weight"].ravel())
    # each output sits above the middle of the window it reads
    np.testing.assert_allclose(d["xout"], d["xin"][1:7])

    img, fig = rendered([p])
    assert blobs(img, pictures.INPUT_FILL) == 8
    assert blobs(img, pictures.OUTPUT_FILL) == 6
    tab10 = palette_rgb(10)
    present = [int(np.all(img == c.astype(np.uint8), axis=-1).sum()) for c in tab10]
    assert all(n > 100 for n in present[:3]), present  # three edge colours, plenty of each
    others = present[3:7] + present[8:]  # tab10's grey (7) also arises from anti-aliased black text
    assert all(n == 0 for n in others), present  # and no other palette colour

    # every edge, sampled a third of the way up from its input, has its weight's colour
    ax = fig.axes[0]
    height = img.shape[0]
    for r, c, k in zip(d["rows"], d["cols"], d["key"]):
        x0, x1 = d["xin"][c], d["xout"][r]
        px, py = ax.transData.transform((x0 + (x1 - x0) / 3, 1 / 3))
        row, col = round(height - py), round(px)
        patch = img[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3).astype(float)
        dist = np.linalg.norm(patch[:, None, :] - tab10[None, :3, :], axis=-1)  # pixels x 3 colours
        best = np.unravel_index(dist.argmin(), dist.shape)
        assert dist[best] < 40 and best[1] == k, (r, c, k, patch)
    matplotlib.pyplot.close(fig)


def test_conv2d_drawn_as_two_rows_with_one_colour_per_tap():
    p, _, _, _ = panel_of("input: [1, 4, 4]\nlayers: [{conv: {out: 1, kernel: 3}}]")
    assert p.kind == "nodes" and len(p.data["rows"]) == 36 and p.data["tied"] == 9
    img, fig = rendered([p])
    matplotlib.pyplot.close(fig)
    assert blobs(img, pictures.INPUT_FILL) == 16 and blobs(img, pictures.OUTPUT_FILL) == 4
    present = [int(np.all(img == c.astype(np.uint8), axis=-1).sum()) for c in palette_rgb(10)]
    assert sum(n > 20 for n in present) == 9, present


def test_stride_leftovers_are_drawn_hollow():
    p, _, _, _ = panel_of("input: [1, 9]\nlayers: [{conv: {out: 1, kernel: 2, stride: 3}}]")
    assert p.data["read"].tolist() == [True, True, False] * 3
    img, fig = rendered([p])
    matplotlib.pyplot.close(fig)
    assert blobs(img, pictures.INPUT_FILL) == 6 and blobs(img, pictures.OUTPUT_FILL) == 3


def test_small_linear_layer_is_coloured_by_value_not_by_index():
    p, lo, _, w = panel_of("input: [5]\nlayers: [{linear: {out: 3, name: fc}}]")
    assert p.kind == "nodes" and p.data["colour"] == "value"
    np.testing.assert_array_equal(p.data["key"], lo.matrix.data)
    np.testing.assert_allclose(np.sort(p.data["key"]), np.sort(w["fc.weight"].ravel()))


def test_large_dense_linear_layer_is_an_image_of_its_weights():
    p, _, _, w = panel_of("input: [600]\nlayers: [{linear: {out: 300, name: fc}}]")
    assert p.kind == "value" and p.data["step"] == (2, 3)
    np.testing.assert_allclose(p.image, w["fc.weight"][::2, ::3].astype(np.float64))


# ---- large layers -------------------------------------------------------------------------

def test_grouped_and_depthwise_convs_show_their_block_structure():
    p, _, _, _ = panel_of("input: [8, 20, 20]\nlayers: [{conv: {out: 8, kernel: 3, groups: 2}}]")
    assert p.kind == "blocks" and p.image.shape == (8, 8)
    same_group = np.equal.outer(np.arange(8) // 4, np.arange(8) // 4)
    assert (p.image[same_group] > 0).all() and (p.image[~same_group] == 0).all()
    p, _, _, _ = panel_of("input: [6, 20, 20]\nlayers: [{conv: {kernel: 3, groups: depthwise}}]")
    assert p.kind == "blocks"
    np.testing.assert_array_equal(p.image > 0, np.eye(6, dtype=bool))


def test_uniform_conv_zooms_into_one_channel_pair_coloured_by_tap():
    p, _, _, _ = panel_of("input: [3, 24, 24]\nlayers: [{conv: {out: 4, kernel: 3, padding: 1}}]")
    assert p.kind == "tie" and p.data["tied"] == 9 and p.image.shape[0] == 48
    row0 = p.image[30]  # an interior output pixel reads 3 taps on each of 3 input rows
    assert np.isfinite(row0).sum() == 9 and sorted(row0[np.isfinite(row0)].astype(int)) == list(range(9))
    img, fig = rendered([p])
    matplotlib.pyplot.close(fig)
    present = [int(np.all(img == c.astype(np.uint8), axis=-1).sum()) for c in palette_rgb(10)]
    assert sum(n > 20 for n in present) == 9


def test_concat_of_channels_is_identity_like_and_told_in_words():
    spec = ("input: [2, 10, 10]\nlayers: [{conv: {out: 2, kernel: 1, name: a}}, {batchnorm: {name: bn}}, "
            "relu, {concat: {from: [relu1, input], name: cat}}, flatten]")
    g = load(spec)
    w, _, acts = fcview.prepare(g, seed=0)
    words = {n.name: fcview.layer_panel(n.name, fcview.lower_node(n, w, acts), n) for n in g.nodes}
    assert words["bn"].kind == "summary" and words["bn"].data["text"].startswith("a diagonal scaling")
    assert words["relu1"].kind == "summary" and "0/1 selection" in words["relu1"].data["text"]
    assert words["cat"].data["text"] == "identity on 400 elements"
    assert words["flatten1"].data["text"] == "identity on 400 elements"
    _, fig = rendered(list(words.values()))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    matplotlib.pyplot.close(fig)
    assert any("bn: a diagonal scaling" in t and "cat: identity on 400 elements" in t for t in texts)


def test_identity_like_refuses_two_connections_in_a_row():
    assert fcview.identity_like(sp.csr_matrix(np.array([[1.0, 1.0], [0.0, 1.0]]))) is None
    assert fcview.identity_like(sp.csr_matrix(np.array([[1.0, 0.0], [1.0, 0.0]]))) is None


def test_identity_like_ignores_stored_zeros_and_leaves_the_matrix_alone():
    m = sp.csr_matrix((np.array([0.0, 2.0, 3.0]), np.array([0, 1, 0]), np.array([0, 2, 3])), shape=(2, 2))
    assert fcview.identity_like(m).startswith("a diagonal scaling y_i = a_i x_j(i) + b_i on 2 of 2 outputs")
    assert m.nnz == 3 and m.data.tolist() == [0.0, 2.0, 3.0]


def test_network_rows_are_shaped_as_the_input():
    g = load("input: [3, 6, 5]\nlayers: [{conv: {out: 2, kernel: 3}}, relu, flatten, {linear: {out: 4}}]")
    nm = fcview.compose(g, seed=1)
    panels = fcview.network_panels(nm, g.input_shape)
    assert [p.kind for p in panels] == ["image"] * 4
    row = nm.A.toarray()[2].reshape(3, 6, 5)
    img = panels[2].image
    assert img.shape == (6, 3 * 5 + 2) and np.isnan(img[:, 5]).all() and np.isnan(img[:, 11]).all()
    np.testing.assert_array_equal(img[:, 6:11], row[1])
    many = fcview.network_panels(fcview.NetworkMap(sp.eye(20, 75, format="csr"), np.zeros(20), "linear", 0.0),
                                 g.input_shape)
    assert [p.kind for p in many] == ["value"]


def test_whole_png_has_readable_layout(tmp_path):
    """VGG-like nets used to give one unreadable 1920 px grid: panels now keep their size."""
    spec = "input: [3, 16, 16]\nlayers: [" + ", ".join(
        ["{conv: {out: 8, kernel: 3, padding: 1}}", "relu"] * 4 + ["{maxpool: {kernel: 2}}", "flatten",
                                                                    "{linear: {out: 10}}", "softmax"]) + "]"
    g = load(spec)
    panels = []
    fcview.view(g, on_layer=lambda lv, lo: panels.append(fcview.layer_panel(lv.name, lo, g.node(lv.name))),
                network=False)
    kinds = [p.kind for p in panels]
    assert kinds.count("summary") == 6  # relus, maxpool, flatten
    path = tmp_path / "v.png"
    fcview.plot(panels, path, title="vgg-ish")
    h, wdt = matplotlib.image.imread(path).shape[:2]
    grid = [p for p in panels if p.kind not in ("nodes", "summary")]
    assert len(grid) > 4 and wdt >= 4 * pictures.PANEL_W * 100 * 0.8  # four panels a row at full size
    assert h >= math.ceil(len(grid) / 4) * pictures.PANEL_H * 100 * 0.8


def test_tie_image_of_a_small_matrix_keeps_fixed_coefficients_apart():
    lo = fcview.lower_node(load("input: [1, 4, 4]\nlayers: [{avgpool: {kernel: 2}}]").nodes[0], {})
    p = fcview.layer_panel("pool", lo, load("input: [1, 4, 4]\nlayers: [{avgpool: {kernel: 2}}]").nodes[0])
    assert p.kind == "nodes" and p.data["colour"] == "fixed" and len(p.data["rows"]) == 16


def test_erf_figure_marks_radii_and_box():
    g = load("input: [1, 20, 20]\nlayers: [{conv: {out: 2, kernel: 5}}, relu, {conv: {out: 1, kernel: 5}}]")
    e = fcview.erf(g, "conv2", inputs=3, weights=W.init(g, seed=2))
    fig = pictures.erf_figure(e)
    ax = fig.axes[0]
    radii = sorted(p.get_radius() for p in ax.patches if hasattr(p, "get_radius"))
    assert radii == pytest.approx(sorted([e.radius_50, e.radius_95]))
    (im,) = ax.images
    (y0, y1), (x0, x1) = e.box
    np.testing.assert_allclose(im.get_array(), e.heat[y0:y1, x0:x1])
    assert "95% within" in ax.get_title()
    matplotlib.pyplot.close(fig)


# ---- the report's charts ------------------------------------------------------------------

def test_rf_growth_plots_each_layers_field_against_the_input():
    g = load(pathlib.Path(__file__).resolve().parent.parent / "specs" / "resnet50.yaml")
    fig = pictures.rf_growth(g)
    ax = fig.axes[0]
    spatial = [n for n in g.nodes if n.receptive_field]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [n.receptive_field[0][0] for n in spatial])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [n.receptive_field[0][1] for n in spatial])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1", "layer1", "layer2", "layer3", "layer4",
                                                           "avgpool"]
    assert any(list(line.get_ydata()) == [224, 224] for line in ax.lines)  # the input size
    matplotlib.pyplot.close(fig)


def test_fc_statistics_chart_shows_params_connections_and_dense_params_per_layer():
    g = load("input: [3, 16, 16]\nlayers: [{conv: {out: 4, kernel: 3}}, relu, flatten, {linear: {out: 5}}]")
    fig = pictures.fc_statistics(g)
    ax = fig.axes[0]
    params, conns, dense = (c.get_offsets()[:, 0] for c in ax.collections)
    views = [fcview.analytic(n) for n in g.nodes if n.macs]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1", "linear1"]
    np.testing.assert_array_equal(params, [v.params for v in views])
    np.testing.assert_array_equal(conns, [4 * 14 * 14 * 27, 784 * 5])
    np.testing.assert_array_equal(dense, [v.dense_params for v in views])
    matplotlib.pyplot.close(fig)
