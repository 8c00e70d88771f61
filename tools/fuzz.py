"""A long differential fuzzing run: random nets (tests/netgen.py) compiled and compared with
the float64 reference, counting instead of stopping at the first failure. Failing specs are
written to fuzz-failures/ as they are found, and a net that kills the process is left there as
current.yaml (shrink one with `pytest tests/test_fuzz.py` and keep it as a
regression case in tests/test_fuzz.py).

    python tools/fuzz.py 5000            # nets to try
    python tools/fuzz.py 5000 --seed 7
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import cnngraph  # noqa: E402
import netgen  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Differential fuzzing of the compiler against the numpy reference.")
    p.add_argument("count", type=int, nargs="?", default=5000, help="random nets to try (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generator")
    p.add_argument("--out", default="fuzz-failures", help="folder for failing specs")
    p.add_argument("--precision", default="f32", choices=("f32", "bf16"),
                   help="compile the nets in this precision (bf16: checked within its rounding, see tests/netgen.py)")
    args = p.parse_args(argv)
    stats = collections.Counter()
    failures = []
    out = pathlib.Path(args.out)
    start = time.perf_counter()

    @seed(args.seed)
    @settings(max_examples=args.count, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])
    @given(netgen.nets(), st.integers(1, 5), st.sampled_from([1, 2]))
    def run(text, batch, threads):
        try:
            cnngraph.load(text)
        except cnngraph.SpecError:
            stats["invalid"] += 1
            return
        out.mkdir(exist_ok=True)
        current = out / "current.yaml"  # left behind if the process dies on this net
        current.write_text(f"# batch {batch}, {threads} thread(s)\n{text}")
        try:
            bad = netgen.check_compiled(text, batch, threads, precision=args.precision)
        except Exception as e:  # a crash of the compiler is a failure too, recorded with its type
            bad = f"{type(e).__name__}: {e}"
        current.unlink()
        stats["checked"] += 1
        if bad:  # written at once, so a long run's failures can be looked at while it goes on
            (out / f"failure{len(failures):04d}.yaml").write_text(f"# {bad}\n{text}")
            failures.append((bad, text))
        if stats["checked"] % 250 == 0:
            print(f"{stats['checked']} nets, {len(failures)} failures, {time.perf_counter() - start:.0f} s",
                  flush=True)

    run()
    print(f"checked {stats['checked']} random nets ({stats['invalid']} invalid specs skipped): "
          f"{len(failures)} mismatches or errors, in {time.perf_counter() - start:.0f} s")
    if failures:
        print(f"failing specs written to {out}/")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
