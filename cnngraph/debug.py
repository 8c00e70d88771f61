"""`DEBUG` levels instead of ad-hoc prints (tinygrad's habit):
1 report, 2 fusion plan, 3 LLVM IR, 4 assembly. Output goes to stderr.

>>> import os; os.environ["DEBUG"] = "0"
>>> log(1, "report", lambda: "never built at level 0")
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

REPORT, PLAN, IR, ASM = 1, 2, 3, 4


def level() -> int:
    """The current DEBUG level (read at call time, so tests can change it)."""
    try:
        return int(os.environ.get("DEBUG", "0") or 0)
    except ValueError:
        return 0


def log(at: int, title: str, text: Callable[[], str] | str) -> None:
    """Print `text` under a title when DEBUG >= at; a callable is only built when needed."""
    if level() >= at:
        body = text() if callable(text) else text
        print(f"=== DEBUG {at}: {title} ===\n{body}", file=sys.stderr)
