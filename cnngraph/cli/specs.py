"""`cnngraph specs`: the bundled specs, usable by name from any folder (`cnngraph compile resnet50`)."""

from __future__ import annotations

import re

from .. import load, units
from ..spec import bundled


def add_parser(sub):
    p = sub.add_parser("specs", help="list the bundled specs (use them by name: cnngraph compile resnet50)")
    p.add_argument("--paths", action="store_true", help="also print where each file is")
    p.set_defaults(func=main)


def _about(path: str) -> str:
    """The first phrase of a spec file's leading comment."""
    text = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            text.append(line.lstrip("# ").strip())
    about = re.split(r"(?<!\bal)[.:](?:\s|$)|, torchvision", " ".join(text))[0]  # "et al." is no stop
    return about.strip()


def main(args) -> int:
    rows = [("name", "input", "output", "layers", "params", "MACs", "")]
    for name, path in bundled().items():
        g = load(path)
        t = g.totals()
        rows.append((name, "x".join(map(str, g.input_shape)), "x".join(map(str, g.output_shape)), str(len(g.nodes)),
                     units.count(t["params"]), units.count(t["macs"]), path if args.paths else _about(path)))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2])]
        cells += [v.rjust(w) for v, w in zip(r[3:6], widths[3:6])]
        print("  ".join(cells + [r[6]]).rstrip())
    return 0
