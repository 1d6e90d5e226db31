"""Compare two results files ratio by ratio: does a second run of the same commit agree with
the first within a tolerance, and what moved between two commits?

python -m benchmarks.compare A.json B.json               # every shared ratio, 10% tolerance
python -m benchmarks.compare A.json B.json --tolerance 0.05 --markdown

Each row is one subject of one case: its ratio to the floor and unistorage's ratio to it
(both medians of per-round ratios) in A and in B, and B over A. Exits 1 when a ratio moved
past the tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .history import load

__all__ = ["Row", "compare", "main"]

Row = tuple[str, str, str, str, float, float]


def _ratios(data: dict[str, Any]) -> dict[tuple[str, str, str, str], float]:
    found: dict[tuple[str, str, str, str], float] = {}
    for result in data["results"]:
        key = (result["suite"], result["case"], result["subject"])
        if result.get("ratio") is not None:
            found[(*key, "vs floor")] = result["ratio"]
        if result.get("ours_ratio") is not None:
            found[(*key, "ours/it")] = result["ours_ratio"]
    return found


def compare(first: dict[str, Any], second: dict[str, Any]) -> list[Row]:
    """(suite, case, subject, which ratio, A, B) for every ratio both runs have."""
    a, b = _ratios(first), _ratios(second)
    return [(*key, a[key], b[key]) for key in a if key in b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.10, help="default 0.10 (10%%)")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    first, second = load(args.first), load(args.second)
    rows = compare(first, second)
    print(f"A: {args.first.name} ({first.get('commit', '')[:8]}, load {first.get('load')})")
    print(f"B: {args.second.name} ({second.get('commit', '')[:8]}, load {second.get('load')})")
    if args.markdown:
        print(
            "\n| suite | case | subject | ratio | A | B | B/A |\n| --- | --- | --- | --- | ---: | ---: | ---: |"
        )
    outside = 0
    for suite, case, subject, which, a, b in rows:
        change = b / a if a else float("inf")
        off = abs(change - 1) > args.tolerance
        outside += off
        flag = " <-- moved" if off else ""
        if args.markdown:
            print(
                f"| {suite} | {case} | {subject} | {which} | {a:.2f} | {b:.2f} | {change:.2f}{' **moved**' if off else ''} |"
            )
        else:
            print(
                f"{suite:<9} {case[:36]:<36} {subject[:34]:<34} {which:<8} {a:7.2f} {b:7.2f} {change:6.2f}{flag}"
            )
    print(f"\n{len(rows) - outside} of {len(rows)} ratios agree within {args.tolerance:.0%}")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
