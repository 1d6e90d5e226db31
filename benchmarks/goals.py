"""The performance goals of issues 15 and 16, judged from the kept runs rather than by hand.

python -m benchmarks.goals                      # every goal, from benchmarks/results/history
python -m benchmarks.goals A.json B.json ...    # from these runs only

A goal is one ratio of unistorage to one subject of one case (``ours_ratio`` in a results
file: the median of per-round ratios, with its lowest and highest round). Where a goal names
several subjects (the fastest Python peer), the lowest ratio of them counts. Each goal is
read in the run of the newest commit that measured it and in another run of that commit
(`report`). It is *met* when it holds in both, *missed* when in neither, *mixed* otherwise:
a figure that holds in one run only is not measured yet (issue 16). The Markdown it prints is what
docs/benchmarks.md shows, with the runs it came from.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .history import HISTORY, commit_time, load

__all__ = ["GOALS", "Goal", "Reading", "judge", "main", "read", "report"]


@dataclass(frozen=True)
class Goal:
    """unistorage at least ``at`` times the subject (or each of the subjects) of a case."""

    title: str
    suite: str
    case: str
    subjects: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class Reading:
    """A goal's ratio in one run: the median with the lowest and highest round, and who."""

    ratio: float
    low: float | None
    high: float | None
    subject: str

    def __str__(self) -> str:
        spread = (
            "" if self.low is None or self.high is None else f" [{self.low:.2f}-{self.high:.2f}]"
        )
        return f"{self.ratio:.2f}x{spread}"


def _goal(title: str, suite: str, case: str, at: float, *subjects: str) -> Goal:
    return Goal(title, suite, case, subjects, at)


_PYTHON_MEMORY = (
    "litestar MemoryStore + json",
    "aiocache SimpleMemoryCache json",
    "py-key-value-aio MemoryStore",
)


def _server_goals() -> list[Goal]:
    goals = []
    for backend in ("memory", "sqlite"):
        for method in ("GET", "PUT"):
            for conns in (1, 64, 512):
                case = f"{backend} {method} 1 KB, {conns} conns"
                goals.append(
                    _goal(
                        f"server {case}, vs the raw ASGI floor",
                        "server",
                        case,
                        0.8,
                        "raw ASGI kv app (granian)",
                    )
                )
                goals.append(
                    _goal(
                        f"server {case}, vs unstorage's node server",
                        "server",
                        case,
                        1.0,
                        "unstorage server (node)",
                    )
                )
    return goals


def _session_goals() -> list[Goal]:
    goals = []
    for kind in ("memory", "sqlite file"):
        goals.append(
            _goal(
                f"sessions read + write ({kind}), vs starsessions 30 min rolling",
                "sessions",
                f"request with session read + write ({kind})",
                1.25,
                f"starsessions 30min rolling ({kind})",
            )
        )
    for kind in ("memory", "sqlite file"):
        fastapi = f"FastAPI, typed dependency: read + write ({kind})"
        goals.append(
            _goal(
                f"{fastapi}, vs starsessions' request.session",
                "sessions",
                fastapi,
                1.25,
                "starsessions 30min rolling",
            )
        )
        goals.append(
            _goal(
                f"{fastapi}, vs starsessions through a dependency",
                "sessions",
                fastapi,
                1.25,
                "starsessions 30min rolling, dependency",
            )
        )
        of = f"FastAPI, Sessions.of(request): read + write ({kind})"
        goals.append(
            _goal(
                f"{of}, vs starsessions' request.session",
                "sessions",
                of,
                1.25,
                "starsessions 30min rolling",
            )
        )
        litestar = f"Litestar: read + write ({kind})"
        goals.append(
            _goal(
                f"{litestar}, vs its server-side sessions",
                "sessions",
                litestar,
                1.25,
                "Litestar server-side sessions",
            )
        )
    return goals


GOALS: tuple[Goal, ...] = (
    _goal(
        "memory sequential, vs unstorage on node",
        "memory",
        "sequential set+get",
        1.2,
        "unstorage memory (node)",
    ),
    _goal(
        "memory sequential, vs the fastest Python peer",
        "memory",
        "sequential set+get",
        2.0,
        *_PYTHON_MEMORY,
    ),
    _goal(
        "redis sequential, vs raw redis-py",
        "redis",
        "sequential set+get",
        0.95,
        "raw redis-py asyncio + orjson",
    ),
    _goal(
        "redis batches, vs raw MSET/MGET",
        "redis",
        "batches of 1000",
        0.85,
        "raw redis-py MSET/MGET + orjson",
    ),
    _goal(
        "redis batches, vs unstorage on node",
        "redis",
        "batches of 1000",
        2.0,
        "unstorage redis (node)",
    ),
    _goal(
        "sqlite sequential, vs aiosqlite",
        "sqlite",
        "sequential set+get",
        2.0,
        "aiosqlite, commit per write",
    ),
    _goal(
        "S3 batches, vs our sequential loop (20 ms proxy)",
        "s3",
        "1000 keys set+get, 20 ms each way",
        8.0,
        "unistorage set_item/get_item loop",
    ),
    _goal(
        "S3 batches, vs node's batches (20 ms proxy)",
        "s3",
        "1000 keys set+get, 20 ms each way",
        1.0,
        "unstorage s3 setItems/getItems (node)",
    ),
    _goal(
        "S3 batches, vs node's batches (direct)",
        "s3",
        "1000 keys set+get, direct",
        1.0,
        "unstorage s3 setItems/getItems (node)",
    ),
    *_session_goals(),
    *_server_goals(),
)


def read(goal: Goal, run: dict[str, Any]) -> Reading | None:
    """``goal``'s ratio in ``run`` (the lowest over its subjects), or None if it has none."""
    found = []
    for result in run["results"]:
        if (
            result["suite"] == goal.suite
            and result["case"] == goal.case
            and result["subject"] in goal.subjects
            and result.get("ours_ratio") is not None
        ):
            found.append(
                Reading(
                    result["ours_ratio"],
                    result.get("ours_low"),
                    result.get("ours_high"),
                    result["subject"],
                )
            )
    return min(found, key=lambda reading: reading.ratio, default=None)


def judge(goal: Goal, readings: Sequence[Reading]) -> str:
    """met (in every run), missed (in none), mixed; "one run" while there is only one."""
    held = [reading.ratio >= goal.at for reading in readings]
    if len(held) < 2:
        return "one run" if held else "no run"
    return "met" if all(held) else "missed" if not any(held) else "mixed"


def _newest(goal: Goal, runs: Sequence[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, Reading]]:
    """Of ``runs`` (newest first), the first that measured ``goal`` and the next one of the
    same commit; failing that, the one just after it."""
    measured = []
    for path, run in runs:
        reading = read(goal, run)
        if reading is not None:
            measured.append((path, run.get("commit"), reading))
    if len(measured) < 2:
        return [(path, reading) for path, _, reading in measured]
    (path, commit, reading), earlier = measured[0], measured[1:]
    again = next((item for item in earlier if item[1] == commit), earlier[0])
    return [(path, reading), (again[0], again[2])]


def report(
    runs: Sequence[tuple[Path, dict[str, Any]]],
    goals: Iterable[Goal] = GOALS,
    *,
    made: Callable[[str], int] = commit_time,
) -> str:
    """The Markdown table of ``goals`` in ``runs``, and the runs each figure came from.

    The newest figure is of the newest code: runs are ordered by when their commit was
    ``made`` (seconds; 0 where unknown), then by the time in their file names, so that an old
    commit measured later for comparison does not pass for the current figure.
    """
    runs = sorted(
        runs, key=lambda pair: (made(str(pair[1].get("commit") or "")), pair[0].name), reverse=True
    )
    lines = [
        "| goal | newest run | the run before (same commit where kept) | verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    by_path = dict(runs)
    used: dict[Path, dict[str, Any]] = {}
    tally: dict[str, int] = {}
    for goal in goals:
        newest = _newest(goal, runs)
        cells = [str(reading) for _, reading in newest] + ["-"] * (2 - len(newest))
        verdict = judge(goal, [reading for _, reading in newest])
        tally[verdict] = tally.get(verdict, 0) + 1
        used.update((path, by_path[path]) for path, _ in newest)
        lines.append(f"| {goal.title} (goal {goal.at:g}x) | {cells[0]} | {cells[1]} | {verdict} |")
    lines.append("")
    lines.append(", ".join(f"{count} {verdict}" for verdict, count in sorted(tally.items())))
    lines.append("")
    lines.append("Runs:")
    for path, run in sorted(used.items(), key=lambda pair: pair[0].name):
        load_before = run.get("load") or [0.0]
        load_after = run.get("load_after") or [0.0]
        lines.append(
            f"- `{path.name}`: commit {str(run.get('commit', ''))[:8]}"
            f"{' (changed tree)' if run.get('dirty') else ''}, load {load_before[0]:.1f}"
            f" before, {load_after[0]:.1f} after"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("runs", nargs="*", type=Path, help="results files (default: the history)")
    args = parser.parse_args(argv)
    paths = args.runs or sorted(HISTORY.glob("*.json"))
    print(report([(path, load(path)) for path in paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
