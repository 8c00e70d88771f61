"""Typed errors. Layer code raises `LayerError`; the spec/graph stages add the
source position and the layer name, producing a `SpecError` whose message reads
`net.yaml:14:7: layer 'conv2' (conv2d): expected ..., got ...`.

Every message is one line: control characters in names and values are escaped
(`escape`) and very long parts are shortened (`clip`).

>>> str(SpecError("expected an int, got 'x'", pos=Pos("net.yaml", 3, 5), layer="c1", op="conv2d"))
"net.yaml:3:5: layer 'c1' (conv2d): expected an int, got 'x'"
>>> str(SpecError("unknown layer 'a\\nb'", layer="x\\ty"))
"layer 'x\\\\ty': unknown layer 'a\\\\nb'"
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

MAX_MESSAGE = 400  # characters of a message body before it is shortened in the middle
MAX_NAME = 120  # characters of a layer name or file name in a message
MAX_HINT = 240


@dataclass(frozen=True)
class Pos:
    """A source position, 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{clip(escape(self.file), MAX_NAME)}:{self.line}:{self.col}"


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
# C0/C1 controls, DEL, line/paragraph separators and the bidirectional overrides that can
# make a terminal line lie about its content
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def escape(text) -> str:
    """`text` as one printable line: control characters, line breaks and bidi overrides escaped.

    Use it on any name or value from a user's file before it goes into a message.

    >>> escape("conv\\n1\\x1b[31m")
    'conv\\\\n1\\\\x1b[31m'
    >>> escape("Faltung\u2028x")
    'Faltung\\\\u2028x'
    """
    text = str(text)
    if not _UNSAFE.search(text):
        return text

    def one(m):
        c = m.group(0)
        if c in _NAMED:
            return _NAMED[c]
        return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"

    return _UNSAFE.sub(one, text)


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """Shorten `text` to about `limit` characters, keeping its start and end.

    >>> clip("x" * 10, 20)
    'xxxxxxxxxx'
    >>> clip("[" + ", ".join(["1"] * 1000) + "]", 40)
    '[1, 1, 1, 1, 1, 1, 1, 1, 1… (2,960 characters left out) …1, 1, 1, 1, 1]'
    """
    text = str(text)
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}… ({len(text) - head - tail:,} characters left out) …{text[-tail:]}"


def short_list(items, limit: int = 8) -> str:
    """A comma-separated list of at most `limit` items, then how many more.

    >>> short_list(range(3))
    '0, 1, 2'
    >>> short_list(range(100), 3)
    '0, 1, 2 and 97 more'
    """
    items = list(items)
    shown = ", ".join(clip(escape(i), 60) for i in items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit:,} more"


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
            op = f" ({clip(escape(self.op), MAX_NAME)})" if self.op else ""
            parts.append(f"layer '{clip(escape(self.layer), MAX_NAME)}'{op}: ")
        parts.append(clip(escape(self.msg), MAX_MESSAGE))
        if self.hint:
            parts.append(f" — {clip(escape(self.hint), MAX_HINT)}")
        return "".join(parts)


class SpecWarning(UserWarning):
    """A suspicious but valid spec (e.g. a stride that leaves border pixels unseen)."""


def did_you_mean(word, choices) -> str | None:
    """A 'did you mean' hint for a misspelled name, or None. Case is ignored when comparing.

    >>> did_you_mean("kernal", ["kernel", "stride"])
    "did you mean 'kernel'?"
    >>> did_you_mean("ReLU", ["relu", "relu6", "tanh"])
    "did you mean 'relu'?"
    """
    choices = [str(c) for c in choices]
    word = str(word)
    if len(word) > 200 or not choices:  # difflib is quadratic; a 200-character name is no typo
        return None
    folded = {}
    for c in choices:
        folded.setdefault(unicodedata.normalize("NFKC", c).casefold(), c)
    key = unicodedata.normalize("NFKC", word).casefold()
    if key in folded and folded[key] != word:
        return f"did you mean '{escape(folded[key])}'?"
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return f"did you mean '{escape(folded[close[0]])}'?" if close else None
