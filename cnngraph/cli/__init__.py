"""`cnngraph` command line: argument parsing and presentation only.

One module per subcommand, each with `add_parser(subparsers)` and `main(args) -> int`.
User mistakes print one `error: ...` line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import CnnGraphError, clip, escape

COMMANDS = ("compile", "run", "fcview", "export", "import_", "report", "specs", "cache")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnngraph", description="A declarative CNN compiler.")
    p.add_argument("--version", action="version", version=f"cnngraph {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (CnnGraphError, ValueError) as e:
        print(f"error: {clip(escape(e), 2000)}", file=sys.stderr)  # one line, whatever was in the input
        return 1
    except OSError as e:  # unwritable output path and the like
        print(escape(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
