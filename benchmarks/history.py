"""Where results go: ``results/<name>.json`` (the latest run, with its chart) and a copy in
``results/history/<date>-<commit>.json`` for every full run, kept in git, so that any run can
be compared with any earlier one (``python -m benchmarks.compare A.json B.json``).

Each file records the commit, whether the tree had changes, the machine's core count and its
load before and after the run, beside every result.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .chart import chart
from .harness import Result

__all__ = ["HISTORY", "RESULTS", "commit_time", "load", "machine", "save"]

RESULTS = Path(__file__).parent / "results"
HISTORY = RESULTS / "history"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def commit_time(commit: str) -> int:
    """When ``commit`` was made, in seconds since the epoch (0 where git does not know it)."""
    stamp = _git("show", "-s", "--format=%ct", commit) if commit else ""
    return int(stamp) if stamp.isdigit() else 0


def machine() -> dict[str, Any]:
    """The facts a result depends on besides the code: cores, load, Python, when."""
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }


def save(
    results: list[Result],
    name: str,
    *,
    started: dict[str, Any],
    suites: list[str],
    keep: bool,
) -> tuple[Path, Path | None, Path | None]:
    """Write ``results/<name>.json`` and its chart; with ``keep``, a copy in the history.

    Returns the JSON path, the chart's path (None without matplotlib) and the history copy's.
    """
    RESULTS.mkdir(exist_ok=True)
    commit = _git("rev-parse", "HEAD")
    payload = {
        **started,
        "commit": commit,
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", "benchmarks")),
        "suites": suites,
        "load_after": list(os.getloadavg()),
        "results": [{**asdict(r), "rate": r.rate} for r in results],
    }
    text = json.dumps(payload, indent=1)
    json_path = RESULTS / f"{name}.json"
    json_path.write_text(text)
    kept = None
    if keep:
        HISTORY.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = HISTORY / f"{stamp}-{commit[:8] or 'nocommit'}-{'-'.join(suites)[:60]}.json"
        kept.write_text(text)
    return json_path, chart(results, RESULTS / f"{name}.png"), kept


def load(path: Path) -> dict[str, Any]:
    """A results file as written by `save`."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data
