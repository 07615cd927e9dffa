"""Start-up latency of the CLI: ``srmetrics --help``, ``--version``, every ``COMMAND --help`` and ``models``.

Each invocation runs in a fresh interpreter (``python -m clipscore_sr ...``), ``--repeats`` times, median
wall time. The baseline, measured in the same run, is a fresh interpreter that only imports torch and pandas
(what every ``--help`` paid before the lazy command table): help must cost a small fraction of it.
Also times ``models`` (lists without building anything) against ``models --params`` (builds every
architecture on the meta device to count parameters, the old default).

Usage: python benchmarks/bench_cli_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from clipscore_sr.cli import COMMANDS


def wall(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = wall(["-c", "import torch, pandas"], args.repeats)
    bare = wall(["-c", "pass"], args.repeats)
    print(f"baseline: python -c 'import torch, pandas' {base:.2f} s (bare interpreter {bare:.2f} s)")
    rows = [["--help"], ["--version"]] + [[name, "--help"] for name in sorted(COMMANDS)]
    worst = 0.0
    for argv in rows:
        t = wall(["-m", "clipscore_sr", *argv], args.repeats)
        worst = max(worst, t)
        print(f"  srmetrics {' '.join(argv):<26} {t:6.2f} s   {t / base:5.2f} x baseline")
    print(f"slowest help: {worst:.2f} s = {worst / base:.2f} x the torch+pandas import (target < 0.5)")
    plain = wall(["-m", "clipscore_sr", "models"], 1)
    params = wall(["-m", "clipscore_sr", "models", "--params"], 1)
    print(f"models {plain:.2f} s vs models --params {params:.2f} s: {params / plain:.2f}x faster by default")


if __name__ == "__main__":
    main()
