"""The benchmark harness: time subjects side by side in one run, print ratios, save JSON + PNG.

A suite module (``benchmarks/bench_*.py``) defines ``async def run(bench: Bench) -> None`` and
calls `Bench.measure` once per (case, subject). Within a case the subject marked ``floor=True``
is the raw client every other subject is compared with; ``ours=True`` marks unistorage.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Bench", "Result", "Subject", "node_available", "run_node"]

RESULTS = Path(__file__).parent / "results"
NODE_DIR = Path(__file__).parent / "node"


@dataclass
class Result:
    """One subject's best rate in one case."""

    suite: str
    case: str
    subject: str
    ops: int
    seconds: float
    unit: str = "ops"
    floor: bool = False
    ours: bool = False
    note: str = ""
    #: From `Bench.rounds`: the median, lowest and highest of this subject's rate divided by
    #: the floor's rate in the same round.
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Subject:
    """One contender of `Bench.rounds`: ``body()`` does some operations and returns how many."""

    name: str
    body: Callable[[], Awaitable[int]]
    floor: bool = False
    ours: bool = False
    unit: str = "ops"


@dataclass
class Bench:
    """Collects results for one suite; `measure` runs a subject ``repeat`` times, keeps the best."""

    suite: str
    results: list[Result] = field(default_factory=list)
    scale: float = 1.0

    def n(self, count: int) -> int:
        """Scale an iteration count (``--quick`` runs a tenth)."""
        return max(1, int(count * self.scale))

    async def measure(
        self,
        case: str,
        subject: str,
        body: Callable[[], Awaitable[int]],
        *,
        repeat: int = 3,
        unit: str = "ops",
        floor: bool = False,
        ours: bool = False,
        note: str = "",
    ) -> Result:
        """Time ``body()`` (which returns how many operations it did); keep the fastest run."""
        best = float("inf")
        ops = 0
        for _ in range(repeat):
            start = time.perf_counter()
            ops = await body()
            best = min(best, time.perf_counter() - start)
        return self.add(case, subject, ops, best, unit=unit, floor=floor, ours=ours, note=note)

    async def rounds(self, case: str, subjects: list[Subject], *, rounds: int = 7) -> list[Result]:
        """Run ``subjects`` in alternating rounds (A B C A B C ...) and record, per subject, its
        median rate and its median ratio to the floor computed round by round, with the spread.

        Alternating makes a slow moment of a shared machine fall on every subject alike, so the
        ratios hold from one run to the next even when the rates do not.
        """
        floor = next(subject for subject in subjects if subject.floor)
        rates: dict[str, list[float]] = {subject.name: [] for subject in subjects}
        ops: dict[str, int] = {}
        for subject in subjects:  # one warm-up each, unrecorded
            await subject.body()
        for _ in range(max(1, rounds)):
            for subject in subjects:
                start = time.perf_counter()
                ops[subject.name] = await subject.body()
                elapsed = time.perf_counter() - start
                rates[subject.name].append(ops[subject.name] / elapsed if elapsed > 0 else 0.0)
        results: list[Result] = []
        for subject in subjects:
            ratios = sorted(
                mine / base
                for mine, base in zip(rates[subject.name], rates[floor.name], strict=True)
                if base
            )
            rate = statistics.median(rates[subject.name])
            result = Result(
                self.suite,
                case,
                subject.name,
                ops[subject.name],
                ops[subject.name] / rate if rate else 0.0,
                subject.unit,
                subject.floor,
                subject.ours,
                ratio=statistics.median(ratios) if ratios else None,
                ratio_low=ratios[0] if ratios else None,
                ratio_high=ratios[-1] if ratios else None,
            )
            self.results.append(result)
            results.append(result)
            spread = (
                f"  {result.ratio:.2f}x [{result.ratio_low:.2f}-{result.ratio_high:.2f}]"
                if result.ratio is not None and not subject.floor
                else ""
            )
            print(f"  {case:<34} {subject.name:<34} {rate:>14,.0f} {subject.unit}/s{spread}")
        return results

    def measure_sync(
        self,
        case: str,
        subject: str,
        body: Callable[[], int],
        *,
        repeat: int = 3,
        unit: str = "ops",
        floor: bool = False,
        ours: bool = False,
        note: str = "",
    ) -> Result:
        """`measure` for a synchronous body."""
        best = float("inf")
        ops = 0
        for _ in range(repeat):
            start = time.perf_counter()
            ops = body()
            best = min(best, time.perf_counter() - start)
        return self.add(case, subject, ops, best, unit=unit, floor=floor, ours=ours, note=note)

    def add(
        self,
        case: str,
        subject: str,
        ops: int,
        seconds: float,
        *,
        unit: str = "ops",
        floor: bool = False,
        ours: bool = False,
        note: str = "",
    ) -> Result:
        """Record a measurement taken elsewhere (say, by the node script)."""
        result = Result(self.suite, case, subject, ops, seconds, unit, floor, ours, note)
        self.results.append(result)
        print(f"  {case:<34} {subject:<34} {result.rate:>14,.0f} {unit}/s", flush=True)
        return result


def node_available() -> bool:
    """True when node and the npm packages of ``benchmarks/node`` are installed."""
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "unstorage").is_dir()


def run_node(script: str, *args: str, timeout: float = 300) -> list[dict[str, Any]]:
    """Run ``benchmarks/node/<script>`` and parse its JSON lines ({case, subject, ops, seconds})."""
    completed = subprocess.run(
        ["node", str(NODE_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        cwd=NODE_DIR,
    )
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


def table(results: list[Result]) -> str:
    """A plain-text table: each case's subjects with rate, ratio to the floor, and ours/them."""
    lines: list[str] = []
    cases: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        cases.setdefault((result.suite, result.case), []).append(result)
    header = f"{'case':<34} {'subject':<34} {'rate/s':>14} {'vs floor':>9} {'ours/it':>8}"
    for (suite, case), rows in cases.items():
        floor = next((row for row in rows if row.floor), None)
        ours = next((row for row in rows if row.ours), None)
        lines.append(f"\n[{suite}] {case}")
        lines.append(header)
        for row in sorted(rows, key=lambda r: -r.rate):
            vs_floor = f"{row.rate / floor.rate:.2f}x" if floor and floor.rate else "-"
            if row.ratio is not None and not row.floor:
                vs_floor = f"{row.ratio:.2f}x"
            vs_ours = (
                f"{ours.rate / row.rate:.2f}x" if ours and row.rate and row is not ours else "-"
            )
            marker = " (floor)" if row.floor else (" (ours)" if row.ours else "")
            spread = (
                f"  [{row.ratio_low:.2f}-{row.ratio_high:.2f}]"
                if row.ratio_low is not None and row.ratio_high is not None and not row.floor
                else ""
            )
            lines.append(
                f"{'':<34} {(row.subject + marker)[:34]:<34} {row.rate:>14,.0f} {vs_floor:>9} {vs_ours:>8}{spread}"
            )
    return "\n".join(lines)


def compare(results: list[Result], name: str = "latest") -> str:
    """How each subject's rate moved since the last saved ``results/<name>.json``, if any."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return ""
    try:
        previous = json.loads(path.read_text())
        before = {(r["suite"], r["case"], r["subject"]): r["rate"] for r in previous["results"]}
    except (ValueError, KeyError, TypeError):
        return ""
    lines = [f"\nchange since the last run ({previous.get('when', '?')}):"]
    for result in results:
        old = before.get((result.suite, result.case, result.subject))
        if old:
            lines.append(
                f"  {result.suite:<9} {result.case[:34]:<34} {result.subject[:34]:<34} "
                f"{result.rate / old:>6.2f}x"
            )
    return "\n".join(lines) if len(lines) > 1 else ""


def save(results: list[Result], name: str = "latest") -> tuple[Path, Path | None]:
    """Write ``results/<name>.json`` and, when matplotlib is there, ``results/<name>.png``."""
    RESULTS.mkdir(exist_ok=True)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    payload = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit,
        "load": os.getloadavg(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": [{**asdict(r), "rate": r.rate} for r in results],
    }
    json_path = RESULTS / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2))
    return json_path, _chart(results, RESULTS / f"{name}.png")


def _chart(results: list[Result], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cases: dict[str, list[Result]] = {}
    for result in results:
        cases.setdefault(f"{result.suite}: {result.case}", []).append(result)
    labels: list[str] = []
    ratios: list[float] = []
    colors: list[str] = []
    for case, rows in cases.items():
        floor = next((row for row in rows if row.floor), None)
        if floor is None or not floor.rate:
            continue
        for row in rows:
            labels.append(f"{case} | {row.subject}")
            ratios.append(row.rate / floor.rate)
            colors.append("tab:green" if row.ours else ("tab:gray" if row.floor else "tab:blue"))
    if not labels:
        return None
    height = max(3.0, 0.28 * len(labels) + 1)
    figure, axes = plt.subplots(figsize=(11, height))
    axes.barh(range(len(labels)), ratios, color=colors)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("throughput relative to the raw client (floor = 1.0); green is unistorage")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
