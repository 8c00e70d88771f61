"""Every layer kind, checked everywhere from its file alone: each registered kind's
`examples` (1D/2D/3D and flat where it applies) run through the compiler (standalone and
fused into a producer's epilogue where its category allows), export to ONNX and run in
ONNX Runtime like the reference, import back to the same function, and match PyTorch.
A new kind with examples is tested here without a new test."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import cnngraph
from cnngraph import oracle
from cnngraph.compiler.fuse import overlaps_rows
from cnngraph.layers import REGISTRY, Fusion
from cnngraph.spec import INPUT

import netgen  # tests/ is on sys.path (pytest prepends it)

CASES = [(kind, i) for kind, cls in sorted(REGISTRY.items()) for i in range(len(cls.examples))]
FUSES_INTO_CONV = (Fusion.ELEMWISE, Fusion.FOLD, Fusion.POOL, Fusion.MERGE)


def spec(kind: str, i: int, fused: bool = False) -> str:
    """A net around example i of `kind`: its input the largest shape along each dim over the example's
    input shapes, every other input derived from it (a 1x1 conv, or a linear layer, then an average pool
    over the dims it broadcasts along), and with `fused` a conv (or, flat, a linear layer) producing its
    first input."""
    attrs, shapes = REGISTRY[kind].examples[i]
    shapes = [tuple(s) for s in shapes]
    first = shapes[0]
    top = tuple(max(d) for d in zip(*shapes)) if len({len(s) for s in shapes}) == 1 else first
    layers, names = [], []

    def derive(s, name):
        """Layers computing a value of shape s from the network input; returns its name."""
        if len(s) == 1:
            layers.append({"linear": {"name": name, "from": INPUT, "out": s[0]}})
            return name
        # a 1x1 conv: another function of the input (x op x would import as a pointwise kind)
        layers.append({"conv": {"name": f"{name}_c" if s[1:] != top[1:] else name, "from": INPUT, "out": s[0],
                                "kernel": 1}})
        src = layers[-1]["conv"]["name"]
        if s[1:] != top[1:]:
            kernel = [n if d == 1 else 1 for d, n in zip(s[1:], top[1:])]
            layers.append({"avgpool": {"name": name, "from": src, "kernel": kernel}})
        return name

    for j, s in enumerate(shapes[1:], 1):
        names.append(derive(s, f"in{j}"))
    head = INPUT if first == top else derive(first, "in0")
    if fused:
        anchor = ({"conv": {"name": "anchor", "from": INPUT, "out": first[0], "kernel": 3, "padding": 1}}
                  if len(first) > 1 else {"linear": {"name": "anchor", "from": INPUT, "out": first[0]}})
        if first == top or len(first) == 1:
            layers.append(anchor)
            head = "anchor"
    multi = REGISTRY[kind].n_inputs != 1
    layers.append({kind: {"name": "x", "from": [head, *names] if multi else head, **attrs}})
    return yaml.safe_dump({"input": list(top), "layers": layers}, sort_keys=False)


def test_every_kind_has_examples_and_every_facet():
    for kind, cls in REGISTRY.items():
        assert cls.examples, f"layer kind '{kind}' has no examples for the generic tests"
        # a pointwise kind also imports from any decomposition an exporter writes (onnx_import's regions)
        assert cls.onnx_imports or cls.onnx_patterns or cls.category is Fusion.ELEMWISE, \
            f"layer kind '{kind}' imports from no ONNX operator"
        for attrs, shapes in cls.examples:
            layer = cls.from_attrs(attrs)
            layer.infer_shape([tuple(s) for s in shapes])


@pytest.mark.parametrize("kind,i", CASES)
def test_compiled_standalone(kind, i):
    text = spec(kind, i)
    for batch, threads in ((1, 1), (3, 2)):
        assert netgen.check_compiled(text, batch, threads) is None, text


def _fusable(kind, i) -> bool:
    """Does example i of `kind` fuse into the conv (or linear) producing its input?"""
    cls = REGISTRY[kind]
    shapes = cls.examples[i][1]
    spatial = len(shapes[0]) > 1
    if cls.category is Fusion.POOL and overlaps_rows(cls.from_attrs(cls.examples[i][0]).lower(
            [tuple(s) for s in shapes], {})):
        return False  # windows that share rows run on their own (fuse.py)
    # a merge fuses as a residual: two operands of one shape (a broadcasting one runs on its own)
    return cls.category in FUSES_INTO_CONV and (spatial or cls.category in (Fusion.ELEMWISE, Fusion.FOLD)) \
        and not (cls.category is Fusion.MERGE and (len(shapes) != 2 or len({tuple(s) for s in shapes}) != 1))


@pytest.mark.parametrize("kind,i", CASES)
def test_compiled_fused_into_its_producer(kind, i):
    text = spec(kind, i, fused=True)
    assert netgen.check_compiled(text, 2, 1) is None, text
    if _fusable(kind, i):
        plan = cnngraph.compile(cnngraph.load(text)).plan
        step = next(s for s in plan.steps if "x" in s.nodes)
        assert "anchor" in step.nodes, f"'{kind}' was not fused into its producer: {plan.describe()}"


def _grouped(kind, i) -> bool:
    """A grouped (not depthwise) convolution whose groups share a 16-channel block."""
    attrs = REGISTRY[kind].examples[i][0]
    return attrs.get("groups", 1) not in (1, "depthwise")


NAN_CASES = [pytest.param(k, i, marks=pytest.mark.xfail(
    strict=True, reason="documented deviation: in a grouped convolution whose groups share a channel block, "
                        "a NaN input also reaches the other groups' outputs there (0 * NaN)"))
             if _grouped(k, i) and k == "conv_transpose" else (k, i) for k, i in CASES]


@pytest.mark.parametrize("kind,i", NAN_CASES)
def test_nan_propagates_as_in_pytorch(kind, i):
    """NaN inputs give NaN exactly where the reference (and PyTorch) give NaN, compiled standalone and, where
    the kind fuses, fused (a max, a clamp or a select that drops NaN would show here; the fuzzer's inputs are
    finite)."""
    for fused in (False, True) if _fusable(kind, i) else (False,):
        g = cnngraph.load(spec(kind, i, fused))
        w = netgen.random_weights(g, 0)
        x = np.random.default_rng(1).standard_normal((2, *g.input_shape)).astype(np.float32)
        x.reshape(-1)[::7] = np.nan
        want = oracle.run(g, x.astype(np.float64), w)
        got = cnngraph.compile(g, weights=w, poison=True)(x)
        assert netgen.mismatch(got, want) is None, (fused, netgen.mismatch(got, want))
        try:
            import torch  # noqa: F401

            from cnngraph.interop.torch_exec import forward
            run = forward(g, w, np.float64)
        except (ImportError, cnngraph.CnnGraphError):
            continue  # no PyTorch, or no PyTorch equivalent for these attributes
        np.testing.assert_array_equal(np.isnan(run(x.astype(np.float64))), np.isnan(want))


@pytest.mark.parametrize("kind,i", CASES)
def test_onnx_round_trip(kind, i):
    pytest.importorskip("onnxruntime")
    from cnngraph.interop import export, import_onnx
    from cnngraph.interop.runtime import session
    g = cnngraph.load(spec(kind, i))
    w = netgen.random_weights(g, 3)
    x = np.random.default_rng(4).standard_normal((2, *g.input_shape)).astype(np.float32)
    want = oracle.run(g, x.astype(np.float64), w)
    model = export(g, w, check=True)
    sess = session(model, 1)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert netgen.mismatch(got, want) is None
    back = import_onnx(model)
    g2 = cnngraph.load(back.spec)
    # the same function comes back (an exact ONNX equivalent may take an extra node, such as a Pad)
    assert kind in [n.kind for n in g2.nodes]
    assert netgen.mismatch(oracle.run(g2, x, back.weights), want) is None


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_pytorch_agrees(kind):
    pytest.importorskip("torch")
    from cnngraph.interop.torch_exec import forward
    checked = 0
    for i in range(len(REGISTRY[kind].examples)):
        g = cnngraph.load(spec(kind, i))
        w = netgen.random_weights(g, 5)
        try:
            run = forward(g, w, np.float64)
        except cnngraph.CnnGraphError:
            continue  # no PyTorch equivalent for these attributes (e.g. asymmetric pool padding)
        x = np.random.default_rng(6).standard_normal((2, *g.input_shape))
        np.testing.assert_allclose(run(x), oracle.run(g, x, w), rtol=1e-9, atol=1e-9)
        checked += 1
    assert checked, f"no example of '{kind}' has a PyTorch equivalent"
