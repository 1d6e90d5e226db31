"""Run benchmark suites side by side and report ratios.

python -m benchmarks.run                 # every suite
python -m benchmarks.run memory sqlite   # some suites (module names without "bench_")
python -m benchmarks.run --quick         # a tenth of the iterations, 3 rounds: a smoke run
python -m benchmarks.run scaling --full  # the scaling suite's whole range (1,000,000 keys)

Writes results/<name>.json and .png, and (unless --quick or --no-history) a copy of the JSON
in results/history/. Compare two runs with ``python -m benchmarks.compare A.json B.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from .harness import Bench, Result, table
from .history import machine, save

SUITES = sorted(
    path.stem.removeprefix("bench_") for path in Path(__file__).parent.glob("bench_*.py")
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("suites", nargs="*", help=f"suites to run (default: all): {SUITES}")
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations")
    parser.add_argument("--full", action="store_true", help="the scaling suite's whole range")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per case (default 15)")
    parser.add_argument("--name", default="latest", help="results/<name>.json and .png")
    parser.add_argument("--no-history", action="store_true", help="no copy in results/history")
    args = parser.parse_args(argv)
    chosen = args.suites or SUITES
    unknown = [suite for suite in chosen if suite not in SUITES]
    if unknown:
        parser.error(f"no such suite: {', '.join(unknown)} (choose from {', '.join(SUITES)})")
    started = machine()
    print(f"cores {started['cpus']}, load {started['load']}", flush=True)
    results: list[Result] = []
    for suite in chosen:
        print(f"== {suite}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{suite}")
        bench = Bench(
            suite,
            scale=0.1 if args.quick else 1.0,
            default_rounds=args.rounds,
            full=args.full,
            min_seconds=0.0 if args.quick else 0.5,
        )
        asyncio.run(module.run(bench))
        results.extend(bench.results)
    print(table(results))
    json_path, png_path, kept = save(
        results,
        args.name,
        started=started,
        suites=chosen,
        keep=not (args.quick or args.no_history),
    )
    print(f"\nwrote {json_path}" + (f" and {png_path}" if png_path else ""))
    if kept:
        print(f"kept {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
