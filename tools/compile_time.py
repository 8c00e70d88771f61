"""Compile time against the size of the net: cold (an empty object cache) and warm, for the
shapes that used to make it grow faster than the net (issue 8) and for bundled specs.

    python tools/compile_time.py                 # every case, median of 3 cold and 3 warm runs
    python tools/compile_time.py chain1000 densenet121 --runs 5

Each run is a fresh process, so LLVM and Python start cold too; the printed numbers are
wall-clock seconds for `cnngraph.compile` alone (loading and shape inference included).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def chain(n: int) -> str:
    return "input: [8, 8, 8]\nlayers:\n" + "".join("  - {conv: {out: 8, kernel: 3, padding: 1}}\n"
                                                     for _ in range(n))


def consumers(n: int) -> str:
    body = "".join(f"  - {{relu: {{name: r{i}, from: c}}}}\n" for i in range(n))
    return ("input: [8, 8, 8]\nlayers:\n  - {conv: {name: c, out: 8, kernel: 3, padding: 1}}\n" + body
            + f"  - {{add: {{from: [{', '.join(f'r{i}' for i in range(n))}]}}}}\n")


def branches(n: int) -> str:
    body = "".join(f"  - {{conv: {{name: b{i}, from: input, out: 4, kernel: 1}}}}\n" for i in range(n))
    return ("input: [8, 8, 8]\nlayers:\n" + body
            + f"  - {{concat: {{from: [{', '.join(f'b{i}' for i in range(n))}]}}}}\n")


CASES = {
    "chain1000": lambda: chain(1000),
    "chain10000": lambda: chain(10000),
    "consumers1000": lambda: consumers(1000),
    "concat2000": lambda: branches(2000),
    "resnet50": lambda: str(ROOT / "specs" / "resnet50.yaml"),
    "googlenet": lambda: str(ROOT / "specs" / "googlenet.yaml"),
    "densenet121": lambda: str(ROOT / "specs" / "densenet121.yaml"),
}

PROBE = """
import sys, time
sys.path.insert(0, {root!r})
import cnngraph
spec = open({path!r}).read() if {path!r}.endswith(".txt") else {path!r}
g = cnngraph.load(spec)
t0 = time.perf_counter()
cnngraph.compile(g)
print(time.perf_counter() - t0)
"""


def run(path: str, cache: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), path=path)], capture_output=True,
                         text=True, env={**os.environ, "CNNGRAPH_CACHE": cache}, timeout=3600)
    if out.returncode:
        raise SystemExit(f"compile failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Cold and warm compile times (medians over fresh processes).")
    p.add_argument("cases", nargs="*", help=f"cases to time (default: all of {', '.join(CASES)})")
    p.add_argument("--runs", type=int, default=3, help="runs per case and state (default 3)")
    args = p.parse_args(argv)
    names = args.cases or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown cases {unknown}; expected some of {', '.join(CASES)}")
    print(f"{'case':16s} {'layers':>7s} {'cold s':>8s} {'warm s':>8s}")
    for name in names:
        spec = CASES[name]()
        with tempfile.TemporaryDirectory() as tmp:
            if "\n" in spec:
                path = os.path.join(tmp, "spec.txt")
                pathlib.Path(path).write_text(spec)
            else:
                path = spec
                if not os.path.exists(path):
                    print(f"{name:16s} (missing: {path})")
                    continue
            sys.path.insert(0, str(ROOT))
            import cnngraph
            layers = len(cnngraph.load(pathlib.Path(path).read_text() if path.endswith(".txt") else path).nodes)
            cold, warm = [], []
            for i in range(args.runs):
                cache = os.path.join(tmp, f"cache{i}")
                cold.append(run(path, cache))
                warm.append(run(path, cache))
        print(f"{name:16s} {layers:7d} {statistics.median(cold):8.2f} {statistics.median(warm):8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
