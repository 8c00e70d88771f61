"""Random networks for differential testing: a hypothesis strategy that writes small
but unusual specs (every layer kind, 1D/2D/3D, odd channel counts, every padding
form, windows that see only padding, multi-consumer values, identity layers,
add/concat of the same value, unread layers), and the comparison every executor
must pass against the float64 numpy reference.

Used by `tests/test_fuzz.py` (a few hundred cases in CI) and `tools/fuzz.py`
(thousands, with failures written out as regression specs).
"""

from __future__ import annotations

import math

import numpy as np
import yaml
from hypothesis import strategies as st

import cnngraph
from cnngraph import oracle
from cnngraph import weights as W
from cnngraph.layers import REGISTRY, Fusion

# pointwise kinds come from the registry (their attributes from their examples), so a new
# activation is fuzzed without touching this file
POINTWISE = tuple(sorted(k for k, c in REGISTRY.items() if c.category is Fusion.ELEMWISE))
# every kind the generator can write; a test checks this covers the registry
KINDS = ("conv", "maxpool", "avgpool", "global_avgpool", "global_maxpool", "reduce_mean", "reduce_max", *POINTWISE,
         "softmax", "log_softmax", "lrn", "batchnorm", "layer_norm", "layer_scale", "dropout", "drop_path", "pad",
         "flatten", "linear", "add", "concat", "mul", "sub", "div", "slice", "shuffle", "conv_transpose", "upsample")


def _broadcasts(a, b) -> bool:
    """Do shapes a and b broadcast against each other (same rank; each dim equal or 1 in one of them)?"""
    return len(a) == len(b) and all(x == y or x == 1 or y == 1 for x, y in zip(a, b))


def _padding(draw, nd, k):
    """Any of the spec's padding forms, sometimes large enough that windows see only padding."""
    form = draw(st.sampled_from(["int", "list", "pairs", "pairs", "same", "valid"]))
    hi = max(k) + 1
    if form == "int":
        return draw(st.integers(0, hi))
    if form == "list":
        return [draw(st.integers(0, hi)) for _ in range(nd)]
    if form == "pairs":
        return [[draw(st.integers(0, hi)), draw(st.integers(0, hi))] for _ in range(nd)]
    return form


def _per_dim(draw, nd, lo, hi):
    if draw(st.booleans()):
        return draw(st.integers(lo, hi))
    return [draw(st.integers(lo, hi)) for _ in range(nd)]


def _dims(v, nd):
    return list(v) if isinstance(v, list) else [v] * nd


def _layer(draw, kind, shapes, recent):
    """(attrs, inputs) for one layer of `kind`, or None when no input suits it."""
    spatial = [n for n in recent if len(shapes[n]) >= 2]
    flat = [n for n in recent if len(shapes[n]) == 1]
    anyv = list(recent)
    pick = lambda names: draw(st.sampled_from(names))  # noqa: E731
    if kind in ("conv", "maxpool", "avgpool", "global_avgpool", "global_maxpool", "pad", "lrn", "conv_transpose",
                "upsample"):
        if not spatial:
            return None
        x = pick(spatial)
        c, nd = shapes[x][0], len(shapes[x]) - 1
        if kind in ("conv", "conv_transpose"):
            groups = draw(st.sampled_from([1, 1, 1, "depthwise", "g"]))
            if groups == "g":
                divs = [g for g in range(2, c + 1) if c % g == 0]
                groups = draw(st.sampled_from(divs)) if divs else 1
            g = c if groups == "depthwise" else groups
            out = g * draw(st.integers(1, max(1, 40 // g))) if groups != "depthwise" or draw(st.booleans()) else c
            k = _per_dim(draw, nd, 1, 3)
            attrs = {"out": out, "kernel": k, "stride": _per_dim(draw, nd, 1, 3), "dilation": _per_dim(draw, nd, 1, 2),
                     "padding": _padding(draw, nd, _dims(k, nd)), "groups": groups, "bias": draw(st.booleans())}
            if kind == "conv_transpose":  # the same geometry scattered: output_padding below stride or dilation
                s, d = _dims(attrs["stride"], nd), _dims(attrs["dilation"], nd)
                attrs["output_padding"] = [draw(st.integers(0, max(a, b) - 1)) for a, b in zip(s, d)]
                if attrs["padding"] == "same" and draw(st.booleans()):
                    attrs["padding"] = "valid"
            return attrs, [x]
        if kind in ("maxpool", "avgpool"):
            k = _per_dim(draw, nd, 1, 3)
            attrs = {"kernel": k, "ceil_mode": draw(st.booleans()), "padding": _padding(draw, nd, _dims(k, nd))}
            if draw(st.booleans()):
                attrs["stride"] = _per_dim(draw, nd, 1, 3)
            if kind == "maxpool":
                attrs["dilation"] = _per_dim(draw, nd, 1, 2)
            else:
                attrs["count_include_pad"] = draw(st.booleans())
            return attrs, [x]
        if kind == "upsample":
            mode = draw(st.sampled_from(["nearest", "linear"]))
            attrs = {"mode": mode}
            if draw(st.booleans()):
                attrs["scale"] = draw(st.sampled_from([2, 3, 1.5, 0.5, [1, 2, 2][-nd:], [2, 0.75, 1][:nd]]))
            else:
                attrs["size"] = [draw(st.integers(1, 9)) for _ in range(nd)]
            if mode == "linear":
                if draw(st.booleans()):
                    attrs["align_corners"] = True
                else:
                    attrs["coordinates"] = draw(st.sampled_from(["half_pixel", "pytorch_half_pixel", "asymmetric"]))
            elif draw(st.booleans()):
                attrs["coordinates"] = draw(st.sampled_from(["half_pixel", "pytorch_half_pixel", "asymmetric",
                                                             "align_corners"]))
                attrs["nearest"] = draw(st.sampled_from(["floor", "ceil", "round_prefer_floor", "round_prefer_ceil"]))
            return attrs, [x]
        if kind == "pad":
            pads = _padding(draw, nd, [1] * nd)
            if pads == "same":
                pads = 1
            return {"padding": pads, "value": draw(st.sampled_from([0.0, 0.5, -2.0]))}, [x]
        if kind == "lrn":
            return {"size": draw(st.integers(1, 6)), "alpha": draw(st.sampled_from([1e-4, 0.1, 1.0])),
                    "beta": draw(st.sampled_from([0.5, 0.75, 1.0])), "k": draw(st.sampled_from([1.0, 2.0]))}, [x]
        return {}, [x]
    if kind == "linear":
        if not flat:
            return None
        return {"out": draw(st.integers(1, 40)), "bias": draw(st.booleans())}, [pick(flat)]
    if kind == "flatten":
        return {}, [pick(anyv)]
    if kind in ("reduce_mean", "reduce_max"):
        x = pick(anyv)
        rank = len(shapes[x]) + 1
        axes = sorted(draw(st.sets(st.integers(1, rank - 1), min_size=1, max_size=rank - 1)))
        axes = [a - rank if draw(st.booleans()) else a for a in axes]  # negative from the end, sometimes
        keep = 1 in [a % rank for a in axes] or draw(st.booleans())
        return {"axes": axes if len(axes) > 1 or draw(st.booleans()) else axes[0], "keepdims": keep}, [x]
    if kind in ("add", "concat", "mul", "sub", "div"):
        x = pick(anyv)
        if kind == "concat":
            same = [n for n in anyv if len(shapes[n]) == len(shapes[x]) and shapes[n][1:] == shapes[x][1:]]
        else:  # the same shape, or one that broadcasts (a global pool's (C, 1, 1), one channel, ...)
            same = [n for n in anyv if _broadcasts(shapes[n], shapes[x])]
            if kind == "add" and len(same) > 1 and draw(st.booleans()):  # a chain: its operands broadcast together
                same = [n for n in same if shapes[n] == shapes[x]]
        more = draw(st.integers(1, 2)) if kind in ("add", "concat") else 1
        ins = [x] + [pick(same) for _ in range(more)]  # the same value may come twice
        if kind in ("mul", "sub", "div") and draw(st.booleans()):
            ins.reverse()  # the smaller operand first, too
        return {"from": ins}, ins
    if kind == "slice":
        x = pick(anyv)
        c = shapes[x][0]
        if draw(st.booleans()):
            parts = draw(st.sampled_from([p for p in range(1, c + 1) if c % p == 0]))
            return {"part": draw(st.integers(0, parts - 1)), "parts": parts}, [x]
        start = draw(st.integers(-c, c - 1))
        lo = start + c if start < 0 else start
        end = draw(st.sampled_from([None, draw(st.integers(lo + 1, c)), draw(st.integers(lo + 1 - c, 0)) or None]))
        return {"start": start, "end": end}, [x]
    if kind == "shuffle":
        x = pick(anyv)
        c = shapes[x][0]
        return {"groups": draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))}, [x]
    attrs = {}
    if kind in POINTWISE:
        attrs = dict(draw(st.sampled_from([a for a, _ in REGISTRY[kind].examples] or [{}])))
    if kind == "batchnorm":
        attrs = {"eps": draw(st.sampled_from([1e-5, 0.1])), "affine": draw(st.booleans())}
    if kind == "dropout":
        attrs["p"] = 0.5
    if kind == "drop_path":
        attrs["p"] = draw(st.sampled_from([0.0, 0.1]))
    if kind == "layer_norm":
        attrs = {"eps": draw(st.sampled_from([1e-6, 1e-5, 0.1])), "affine": draw(st.booleans())}
    if kind == "layer_scale":
        attrs = {"init": draw(st.sampled_from([1e-6, 0.5, -1.0]))}
    return attrs, [pick(anyv)]


# how often each kind is drawn: convs and pools carry most of the geometry worth testing
WEIGHTS = {"conv": 6, "maxpool": 2, "avgpool": 2, "add": 2, "concat": 2, "mul": 2, "slice": 2, "conv_transpose": 2}


def _weighted(kinds):
    return tuple(k for k in kinds for _ in range(WEIGHTS.get(k, 1)))


@st.composite
def nets(draw, max_layers: int = 8, kinds=KINDS):
    """A random spec (YAML text). Shapes are inferred as the net grows so most specs are valid;
    the few that are not (a window larger than its input) are for the caller to skip."""
    nd = draw(st.integers(0, 3)) if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, 3))
    c = draw(st.sampled_from([1, 2, 3, 4, 5, 8, 16, 17, 32]))
    size = {0: (1, 40), 1: (1, 24), 2: (1, 12), 3: (1, 6)}[nd]
    input_shape = [c] + [draw(st.integers(*size)) for _ in range(nd)]
    shapes = {"input": tuple(input_shape)}
    layers = []
    for i in range(draw(st.integers(1, max_layers))):
        names = list(shapes)
        recent = names[-3:] if draw(st.integers(0, 3)) else names  # mostly chains, sometimes branches
        kind = draw(st.sampled_from(_weighted(kinds)))
        made = _layer(draw, kind, shapes, recent)
        if made is None:
            continue
        attrs, ins = made
        name = f"l{i}"
        attrs = {"name": name, **attrs}
        if kind not in ("add", "concat", "mul", "sub", "div") and ins[0] != names[-1]:
            attrs["from"] = ins[0]
        text = yaml.safe_dump({"input": input_shape, "layers": [*layers, {kind: attrs}]}, sort_keys=False)
        try:
            g = cnngraph.load(text)
        except cnngraph.SpecError:
            continue  # this layer does not fit here; try another
        layers.append({kind: attrs})
        shapes[name] = g.node(name).out_shape
    if not layers:
        layers.append({"dropout": {"name": "l0"}})
    return yaml.safe_dump({"input": input_shape, "layers": layers}, sort_keys=False)


def random_weights(graph, seed: int) -> dict:
    """He-gain weights (the signal survives depth), random batchnorm statistics (the defaults
    make batchnorm an identity, which would hide folding bugs) and random parameters of the
    other kinds (a PReLU's slopes all 0.25 would hide a channel mix-up)."""
    rng = np.random.default_rng(seed)
    w = W.init(graph, seed=seed, gain=6 ** 0.5)
    for node in graph.nodes:
        if node.kind == "batchnorm":
            c = node.in_shapes[0][0]
            w[f"{node.name}.running_mean"] = rng.standard_normal(c).astype(np.float32) * 0.5
            w[f"{node.name}.running_var"] = rng.uniform(0.2, 2.0, c).astype(np.float32)
            if node.layer.affine:
                w[f"{node.name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
                w[f"{node.name}.bias"] = rng.standard_normal(c).astype(np.float32) * 0.5
        elif node.layer.category is not Fusion.ANCHOR:
            for p in node.params:  # slopes, scales, norms' affine parts: random, not their init's constants
                arr = w[f"{node.name}.{p}"]
                w[f"{node.name}.{p}"] = (arr + rng.standard_normal(arr.shape) * 0.5).astype(np.float32)
    return w


def mismatch(got: np.ndarray, want: np.ndarray, tol: float = 1e-4, slack=0.0) -> str | None:
    """None when `got` (float32) equals the float64 reference `want` up to rounding: NaN where
    it is NaN, the same infinities, and elsewhere |got - want| <= tol * (|want| + scale) + slack, the
    scale being the output's largest finite magnitude. Else a one-line description."""
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    if (nan_g != nan_w).any():
        i = np.argwhere(nan_g != nan_w)[0]
        return f"NaN at {tuple(i)}: got {got[tuple(i)]}, want {want[tuple(i)]}"
    inf_w = np.isinf(want) & ~nan_w
    if (got[inf_w] != want[inf_w]).any():
        return "infinities differ"
    ok = ~(nan_w | inf_w)
    finite = np.abs(want[ok])
    scale = float(finite.max()) if finite.size else 0.0
    slack = np.broadcast_to(slack, want.shape)[ok]
    err = np.abs(got[ok].astype(np.float64) - want[ok]) - tol * (np.abs(want[ok]) + scale + 1e-6) - slack
    if err.size and err.max() > 0:
        i = np.argwhere(ok)[int(err.argmax())]
        return (f"at {tuple(i)}: got {got[tuple(i)]:.7g}, want {want[tuple(i)]:.7g} "
                f"(output scale {scale:.3g})")
    return None


def rounding_sensitivity(graph, x, w, want, trials: int = 2, factor: float = 64.0, unit: float = 2.0 ** -24) -> np.ndarray:
    """How far float32 rounding may move each output: the float64 reference rerun with the input and every
    weight perturbed by one float32 rounding (a relative `unit`, 2^-24, of random sign), the largest change over
    `trials`, times `factor`. Large where the net divides by, or takes the log of, a difference that
    cancels (x / batchnorm(x) near a zero of the batchnorm): no float32 evaluation order is exact there,
    and the folded batchnorm (x * s + t, as PyTorch and ONNX Runtime compute it) differs from the
    reference's (x - mean) / sqrt(var + eps) * gamma + beta by that much."""
    rng = np.random.default_rng(7)

    def jitter(a):
        a = np.asarray(a, np.float64)
        return a * (1 + rng.choice([-1.0, 1.0], a.shape) * unit)

    with np.errstate(all="ignore"):
        diffs = [np.abs(oracle.run(graph, jitter(x), {k: jitter(v) for k, v in w.items()}) - want)
                 for _ in range(trials)]
        return np.nan_to_num(np.max(diffs, axis=0), nan=0.0, posinf=0.0) * factor


# bf16 (compiler/precision.py): an error of this fraction of the output's scale is accepted, plus what
# BF16_FACTOR times one bf16 rounding (2^-8 relative, the largest a round-to-nearest-even makes is 2^-9) of
# the input and of every weight moves the float64 reference: the activations a bf16 net stores are rounded
# too, about once per layer, and the weights once. A wrong index or a lost lane moves an output by its scale.
BF16_TOL = 2.0 ** -6
BF16_FACTOR = 8.0


def check_compiled(text: str, batch: int, threads: int, seed: int = 0, precision: str = "f32") -> str | None:
    """Compile `text` and compare with the float64 reference on a random batch, and each row
    of the batch with the same row run alone. None when all agree, else what differed."""
    from cnngraph import compile as jit_compile
    graph = cnngraph.load(text)
    w = random_weights(graph, seed)
    net = jit_compile(graph, weights=w, threads=threads, poison=True, precision=precision)
    x = np.random.default_rng(seed + 1).standard_normal((batch, *graph.input_shape)).astype(np.float32)
    want = oracle.run(graph, x.astype(np.float64), w)
    y = net(x)
    if precision == "bf16":
        slack = rounding_sensitivity(graph, x, w, want, factor=BF16_FACTOR, unit=2.0 ** -8)
        bad = mismatch(y, want, tol=BF16_TOL, slack=slack)
    else:
        bad = mismatch(y, want)
        if bad and not mismatch(y, want, slack=rounding_sensitivity(graph, x, w, want)):
            bad = None
    if bad:
        return f"batch {batch}, {threads} thread(s), {precision}: {bad}"
    for i in range(batch):
        alone = net(x[i:i + 1])
        if not np.allclose(alone[0], y[i], rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(y).max())),
                           equal_nan=True):
            return f"row {i} of a batch of {batch} differs from the same row alone ({threads} thread(s))"
    return None


def count_layers(text: str) -> int:
    return len(yaml.safe_load(text)["layers"])


def describe(text: str) -> str:
    """The spec on one line per layer, for failure messages."""
    return text if len(text) < 4000 else text[:4000] + f"... ({math.ceil(len(text) / 1000)} kB)"
