"""`cnngraph cache info|clear`: the compiled-object cache (where, how big, how bounded)."""

from __future__ import annotations

from .. import units
from ..compiler import jit


def add_parser(sub):
    p = sub.add_parser("cache", help="show or clear the cache of compiled native code")
    p.add_argument("action", choices=("info", "clear"), help="info: where and how big; clear: remove every entry")
    p.set_defaults(func=main)


def main(args) -> int:
    root = jit.cache_dir()
    if args.action == "clear":
        freed = jit.clear()
        print(f"{root}: removed the compiled objects ({units.nbytes(freed)})")
        return 0
    items = jit.entries()
    total = sum(size for _, size, _ in items)
    print(f"{root}: {units.plural(len(items), 'compiled object')}, {units.nbytes(total)} of at most "
          f"{units.nbytes(jit.max_cache_bytes())} (least recently used evicted first; set CNNGRAPH_CACHE, "
          f"XDG_CACHE_HOME or CNNGRAPH_CACHE_MAX_BYTES to change)")
    return 0
