"""Readable spec YAML from a list of layers: one flow-style mapping per layer,
defaults left out, `name` only where auto-naming would not give it, `from` only
where the input is not the previous layer.

>>> print(to_yaml("tiny", (1, 8, 8), [Entry("c", "conv", {"out": 4, "kernel": 3}, ["input"]),
...                                    Entry("relu1", "relu", {}, ["c"])], "relu1"))
name: tiny
input: [1, 8, 8]
layers:
  - conv: {name: c, out: 4, kernel: 3}
  - relu
<BLANKLINE>
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import yaml

from ..layers import REGISTRY
from ..spec import INPUT

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass
class Entry:
    """One layer to write: final name, kind, attributes (spec values), input names."""

    name: str
    kind: str
    attrs: dict
    inputs: list
    comment: str = ""
    params: dict = field(default_factory=dict)


def scalar(v) -> str:
    """A YAML scalar that reads back as the same value (YAML 1.1 needs a dot in floats)."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return ".nan"
        if math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        text = repr(v)
        if "e" in text:
            mant, exp = text.split("e")
            if "." not in mant:
                mant += ".0"
            if exp[0] not in "+-":
                exp = "+" + exp
            text = f"{mant}e{exp}"
        return text
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(scalar(x) for x in v) + "]"
    s = str(v)
    if _PLAIN.match(s) and isinstance(yaml.safe_load(s), str):
        return s
    return "'" + s.replace("'", "''") + "'"


def compact(v):
    """(3, 3) -> 3; lists of equal ints collapse to one."""
    if isinstance(v, (list, tuple)) and v and all(not isinstance(x, (list, tuple)) for x in v) \
            and len(set(v)) == 1:
        return v[0]
    return v


def _non_default(kind: str, attrs: dict) -> dict:
    defaults = {a.name: a.default for a in REGISTRY[kind].attrs}
    out = {}
    for k, v in attrs.items():
        if k in defaults and defaults[k] is not None and compact(v) == defaults[k] and k != "out":
            continue
        if v is None:
            continue
        out[k] = compact(v)
    if kind in ("maxpool", "avgpool") and "stride" in out and compact(out["stride"]) == compact(attrs["kernel"]):
        del out["stride"]
    return out


def explicit_names(entries: list[Entry]) -> list[bool]:
    """Which names must be written: those the spec's auto-naming (kind + counter) would not produce."""
    counter: dict[str, int] = {}
    out = []
    for e in entries:
        auto = f"{e.kind}{counter.get(e.kind, 0) + 1}"
        if e.name == auto:
            counter[e.kind] = counter.get(e.kind, 0) + 1
            out.append(False)
        else:
            out.append(True)
    return out


def to_yaml(name: str, input_shape, entries: list[Entry], output: str, header: str = "") -> str:
    """The spec text for these layers (already named uniquely, in topological order)."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append(f"name: {scalar(name)}")
    lines.append(f"input: {scalar(list(input_shape))}")
    if entries and output != entries[-1].name:
        lines.append(f"output: {scalar(output)}")
    lines.append("layers:")
    prev = INPUT
    for e, named in zip(entries, explicit_names(entries)):
        items = []
        if named:
            items.append(f"name: {scalar(e.name)}")
        if len(e.inputs) != 1 or e.inputs[0] != prev:
            src = e.inputs[0] if len(e.inputs) == 1 else list(e.inputs)
            items.append(f"from: {scalar(src)}")
        items += [f"{k}: {scalar(v)}" for k, v in _non_default(e.kind, e.attrs).items()]
        text = f"  - {e.kind}: {{{', '.join(items)}}}" if items else f"  - {e.kind}"
        if e.comment:
            text += f"  # {e.comment}"
        lines.append(text)
        prev = e.name
    return "\n".join(lines) + "\n"
