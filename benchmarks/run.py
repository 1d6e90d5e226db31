"""Run benchmark suites side by side and report ratios.

python -m benchmarks.run                 # every suite
python -m benchmarks.run memory sqlite   # some suites (module names without "bench_")
python -m benchmarks.run --quick         # a tenth of the iterations, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from .harness import Bench, Result, compare, save, table

SUITES = sorted(
    path.stem.removeprefix("bench_") for path in Path(__file__).parent.glob("bench_*.py")
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("suites", nargs="*", help="suites to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations")
    parser.add_argument("--name", default="latest", help="results/<name>.json and .png")
    args = parser.parse_args(argv)
    chosen = args.suites or SUITES
    results: list[Result] = []
    for suite in chosen:
        print(f"== {suite}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{suite}")
        bench = Bench(suite, scale=0.1 if args.quick else 1.0)
        asyncio.run(module.run(bench))
        results.extend(bench.results)
    print(table(results))
    print(compare(results, args.name))
    json_path, png_path = save(results, args.name)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if png_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
