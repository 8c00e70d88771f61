"""Helpers shared by the subcommands: argument types in CLI terms, progress on a terminal."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from contextlib import contextmanager

from .. import units

MAX_THREADS = 256  # the runtime's limit too


def threads(text: str) -> int:
    """`--threads N`: an integer from 1 to 256, said in CLI terms (argparse prints the error)."""
    cores = os.cpu_count() or 1
    try:
        n = int(text)
    except ValueError:
        n = None
    if n is None or not 1 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {MAX_THREADS} (leave --threads out to use "
                                         f"all {cores} cores), got {text!r}")
    if n > cores:
        warn(f"--threads {n} is more than the {cores} cores here; the extra threads only take turns")
    return n


def positive(what: str):
    """An argparse type: an integer of at least 1."""
    def conv(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"expected {what} of at least 1, got {text!r}")
        return n
    return conv


def precision_option(p) -> None:
    """--precision: what the convolutions compute in."""
    p.add_argument("--precision", choices=("f32", "bf16", "auto"), default="f32",
                   help="f32 (default); bf16: convolutions read bf16 activations and weights and accumulate in "
                        "f32 (about 2x faster, output within 3e-2 of its scale; needs AVX512-BF16); auto: bf16 "
                        "where the CPU has it")


def precision_label(net) -> str:
    """What the report says about the compiled net's precision."""
    if net.precision == "f32":
        return "f32"
    return "bf16 (AVX512-BF16 dot products, f32 accumulation)"


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def interactive() -> bool:
    """Progress goes to stderr, and only when it is a terminal (never into logs or pipes)."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


@contextmanager
def status(what: str):
    """A one-line 'what… 3.2 s' on a terminal while the block runs, erased after it."""
    if not interactive():
        yield
        return
    done = threading.Event()
    start = time.perf_counter()

    def tick():
        while not done.wait(0.2):
            print(f"\r{what}… {units.seconds(time.perf_counter() - start)}\033[K", end="", file=sys.stderr,
                  flush=True)

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()
        print("\r\033[K", end="", file=sys.stderr, flush=True)


def progress(total: int | None, unit: str, desc: str):
    """A tqdm bar on stderr when it is a terminal; otherwise an object whose update() does nothing."""
    import shutil

    from tqdm import tqdm
    width = shutil.get_terminal_size((100, 24)).columns or 100  # a pty may say 0 columns
    return tqdm(total=total, unit=unit, desc=desc, disable=not interactive(), file=sys.stderr, leave=False,
                ncols=min(width, 120))
