"""`cnngraph fcview`: not built yet."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("fcview", help="(not built yet)")
    p.set_defaults(func=main)


def main(args) -> int:
    raise NotImplementedError
