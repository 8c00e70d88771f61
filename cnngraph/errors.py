"""Typed errors. Layer code raises `LayerError`; the spec/graph stages add the
source position and the layer name, producing a `SpecError` whose message reads
`net.yaml:14:7: layer 'conv2' (conv2d): expected ..., got ...`.

>>> str(SpecError("expected an int, got 'x'", pos=Pos("net.yaml", 3, 5), layer="c1", op="conv2d"))
"net.yaml:3:5: layer 'c1' (conv2d): expected an int, got 'x'"
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Pos:
    """A source position, 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class CnnGraphError(Exception):
    """Base of every error cnngraph raises on purpose (the CLI prints these without a traceback)."""


class LayerError(CnnGraphError):
    """Raised by layer code; `attr` names the offending attribute so the driver can point at it."""

    def __init__(self, msg: str, attr: str | None = None, hint: str | None = None):
        super().__init__(msg)
        self.msg = msg
        self.attr = attr
        self.hint = hint


class SpecError(CnnGraphError):
    """A user mistake in a spec, with where it is and which layer it concerns."""

    def __init__(self, msg: str, pos: Pos | None = None, layer: str | None = None,
                 op: str | None = None, hint: str | None = None):
        self.msg, self.pos, self.layer, self.op, self.hint = msg, pos, layer, op, hint
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.pos is not None:
            parts.append(f"{self.pos}: ")
        if self.layer is not None:
            parts.append(f"layer '{self.layer}'" + (f" ({self.op})" if self.op else "") + ": ")
        parts.append(self.msg)
        if self.hint:
            parts.append(f" — {self.hint}")
        return "".join(parts)


class SpecWarning(UserWarning):
    """A suspicious but valid spec (e.g. a stride that leaves border pixels unseen)."""


def did_you_mean(word: str, choices) -> str | None:
    """A 'did you mean' hint for a misspelled name, or None.

    >>> did_you_mean("kernal", ["kernel", "stride"])
    "did you mean 'kernel'?"
    """
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
