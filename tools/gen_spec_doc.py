"""Regenerate the layer reference in docs/spec.md from the layer registry.

The attribute tables are written from `cnngraph.layers.REGISTRY` (each class's
`attrs`: name, converter, default, doc), so the document cannot drift from the
code. Everything between the two GENERATED markers is replaced.

    python tools/gen_spec_doc.py          # rewrite docs/spec.md
    python tools/gen_spec_doc.py --check  # exit 1 if docs/spec.md is out of date (the tests run this)
"""

from __future__ import annotations

import argparse
import inspect
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnngraph.errors import LayerError
from cnngraph.layers import (
    REGISTRY,
    base,
    make,
)

DOC = ROOT / "docs" / "spec.md"
BEGIN = "<!-- BEGIN GENERATED: layer reference (tools/gen_spec_doc.py) -->"
END = "<!-- END GENERATED -->"
# values for required attributes, only to ask a layer which inputs it accepts
PROBE = {"kernel": 1, "out": 1, "padding": 0, "groups": 1}
# meanings for attributes whose declaration has no doc string (the common window/affine ones)
MEANING = {
    "stride": "step between windows, an int or one per spatial dim",
    "padding": "zeros added around the input (see Padding)",
    "dilation": "spacing between kernel taps, an int or one per spatial dim",
    "bias": "add a learned bias per output",
    "ceil_mode": "round the window count up (see Padding)",
    "count_include_pad": "padding counts in the average's divisor",
    "eps": "added to the variance",
    "affine": "learned per-channel scale (`weight`) and shift (`bias`)",
    "alpha": "scale of the sum of squares",
    "beta": "exponent",
    "k": "additive constant",
    "value": "the fill value",
}
SHAPES = {"(F,)": (4,), "(C, L)": (4, 4), "(C, H, W)": (4, 4, 4), "(C, D, H, W)": (4, 4, 4, 4)}


def describe(convert) -> str:
    """The accepted values of an attribute, from its converter."""
    name = convert.__qualname__
    closure = inspect.getclosurevars(convert).nonlocals
    if convert is base.pos_int:
        return f"int, 1..{base.MAX_SIZE}"
    if convert is base.nonneg_int:
        return f"int, 0..{base.MAX_SIZE}"
    if convert is base.boolean:
        return "true / false"
    if convert is base.padding:
        return "int, list per dim, [[lo, hi], ...], 'same', 'valid'"
    if name.startswith("ints."):
        lo = closure.get("lo", 1)
        return f"int {'>= 0' if lo == 0 else '>= 1'}, or a list (one per spatial dim)"
    if name.startswith("number."):
        lo, hi, lo_open = closure.get("lo"), closure.get("hi"), closure.get("lo_open")
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo:g}")
        if hi is not None:
            parts.append(f"<= {hi:g}")
        return "number" + (", " + " and ".join(parts) if parts else "")
    if name.startswith("choice."):
        return "one of " + ", ".join(f"'{o}'" for o in closure["options"])
    try:  # anything else: the converter's own "expected ..., got ..." says what it takes
        convert(object())
    except LayerError as e:
        return e.msg.removeprefix("expected ").rsplit(", got", 1)[0]
    return "any"


def default(attr) -> str:
    if attr.default is base.REQUIRED:
        return "**required**"
    if attr.default is None:
        return "derived (see meaning)"
    if isinstance(attr.default, bool):
        return f"`{str(attr.default).lower()}`"
    if isinstance(attr.default, float):
        return f"`{attr.default:g}`"
    return f"`{attr.default}`"


def accepted(kind: str) -> tuple[list[str], list[str]]:
    """(input shapes the kind accepts, its op names), asked of the layer itself."""
    cls = REGISTRY[kind]
    layer = make(kind, {a.name: PROBE[a.name] for a in cls.attrs if a.default is base.REQUIRED})
    shapes, ops = [], []
    for label, shape in SHAPES.items():
        ins = [shape] * (cls.n_inputs or 2)
        try:
            layer.infer_shape(ins)
        except LayerError:
            continue
        shapes.append(label)
        op = layer.op_name(ins)
        if op not in ops:
            ops.append(op)
    return shapes, ops


def section(kind: str) -> str:
    cls = REGISTRY[kind]
    doc = inspect.cleandoc(cls.__doc__ or "")
    summary, _, rest = doc.partition("\n")
    shapes, ops = accepted(kind)
    n_in = {1: "1", None: "2 or more (`from: [a, b, ...]`)"}.get(cls.n_inputs, f"{cls.n_inputs} (`from: [a, b]`)")
    lines = [f"### `{kind}`", "", summary, ""]
    if rest.strip():
        lines += [" ".join(rest.split()), ""]
    lines += [f"- inputs: {n_in}; accepts {', '.join(shapes)}",
              f"- shown in the report as: {', '.join(f'`{o}`' for o in ops)}",
              f"- fusion category: `{cls.category.value}`", ""]
    if cls.attrs:
        lines += ["| attribute | values | default | meaning |", "|---|---|---|---|"]
        for a in cls.attrs:
            meaning = (a.doc or MEANING.get(a.name, "—")).replace("|", "\\|")
            lines.append(f"| `{a.name}` | {describe(a.convert)} | {default(a)} | {meaning} |")
    else:
        lines.append("No attributes besides the reserved ones.")
    return "\n".join(lines) + "\n"


def generate() -> str:
    kinds = list(REGISTRY)
    head = ["Generated from `cnngraph.layers.REGISTRY`; do not edit by hand, run `python tools/gen_spec_doc.py`.",
            "", f"Kinds: {', '.join(f'`{k}`' for k in kinds)}.", ""]
    return "\n".join(head) + "\n" + "\n".join(section(k) for k in kinds)


def render(text: str) -> str:
    """`text` with the generated part replaced."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: the markers {BEGIN!r} and {END!r} are missing")
    before, rest = text.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return f"{before}{BEGIN}\n\n{generate()}\n{END}{after}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if the document is out of date")
    args = p.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            print(f"{DOC} is out of date: run python tools/gen_spec_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
