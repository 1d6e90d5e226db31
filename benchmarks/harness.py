"""The benchmark harness: subjects take turns, round after round, and each is reported as its
median ratio to the case's floor (and to unistorage), computed round by round, with the spread.

A suite module (``benchmarks/bench_*.py``) defines ``async def run(bench: Bench) -> None`` and
calls `Bench.rounds` once per case. Within a case the subject marked ``floor=True`` is the raw
client every other subject is compared with; ``ours=True`` marks unistorage. Alternating
rounds make a slow moment of a shared machine fall on every subject alike, so the ratios hold
from one run to the next even when the rates do not. A subject timed elsewhere (a node
process, a load generator) returns a `Sample` with its own seconds and latencies.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Bench", "Body", "Result", "Sample", "Subject", "peak_kib", "table"]


@dataclass(frozen=True)
class Sample:
    """One round measured by the subject itself: operations, seconds, latency percentiles."""

    ops: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None


#: A round of a subject: returns how many operations it did (timed here), or a `Sample`.
Body = Callable[[], Awaitable["int | Sample"]]


@dataclass
class Result:
    """One subject in one case: its median rate and its ratios with their spread."""

    suite: str
    case: str
    subject: str
    ops: int
    seconds: float
    unit: str = "ops"
    floor: bool = False
    ours: bool = False
    note: str = ""
    #: Median, lowest and highest of this subject's rate over the floor's, round by round.
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    #: Median, lowest and highest of unistorage's rate over this subject's, round by round.
    ours_ratio: float | None = None
    ours_low: float | None = None
    ours_high: float | None = None
    #: Median over the rounds of each round's latency percentiles (from a `Sample`).
    p50_ms: float | None = None
    p99_ms: float | None = None
    rounds: int = 0
    #: The tracemalloc peak of one run of the subject, where a suite measured it.
    peak_kib: float | None = None

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Subject:
    """One contender of `Bench.rounds`: ``body()`` runs one round."""

    name: str
    body: Body
    floor: bool = False
    ours: bool = False
    unit: str = "ops"


def _spread(mine: list[float], base: list[float]) -> tuple[float, float, float] | None:
    ratios = sorted(a / b for a, b in zip(mine, base, strict=True) if a and b)
    if not ratios:
        return None
    return statistics.median(ratios), ratios[0], ratios[-1]


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


@dataclass
class Bench:
    """Collects the results of one suite. ``scale`` shrinks iteration counts (``--quick``),
    ``default_rounds`` is how many rounds a case takes when it does not say, ``min_seconds``
    how long a round lasts at least."""

    suite: str
    results: list[Result] = field(default_factory=list)
    scale: float = 1.0
    default_rounds: int = 15
    full: bool = False
    #: The shortest round: a subject's body runs again until its round has lasted this long.
    min_seconds: float = 0.5

    def n(self, count: int) -> int:
        """Scale an iteration count (``--quick`` runs a tenth)."""
        return max(1, int(count * self.scale))

    async def rounds(
        self, case: str, subjects: list[Subject], *, rounds: int | None = None, warmup: int = 1
    ) -> list[Result]:
        """Run ``subjects`` in alternating rounds (A B C, B C A, C A B, ...) after ``warmup``
        unrecorded turns, and record each one's median rate and its ratios to the floor and to
        ours."""
        count = max(1, rounds if rounds is not None else self.default_rounds)
        if self.scale < 1:
            count = min(count, 3)
        floor = next((s for s in subjects if s.floor), subjects[0])
        ours = next((s for s in subjects if s.ours), None)
        rates: dict[str, list[float]] = {s.name: [] for s in subjects}
        p50: dict[str, list[float | None]] = {s.name: [] for s in subjects}
        p99: dict[str, list[float | None]] = {s.name: [] for s in subjects}
        ops: dict[str, int] = {}
        for _ in range(warmup):
            for subject in subjects:
                await subject.body()
        for turn in range(count):
            # Each round starts one subject further on, so no subject always follows the same
            # one (a node round's garbage, a server's warm cache) or always goes first.
            shift = turn % len(subjects)
            for subject in subjects[shift:] + subjects[:shift]:
                sample = await self._turn(subject)
                ops[subject.name] = sample.ops
                rate = sample.ops / sample.seconds if sample.seconds > 0 else 0.0
                rates[subject.name].append(rate)
                p50[subject.name].append(sample.p50_ms)
                p99[subject.name].append(sample.p99_ms)
        results = []
        for subject in subjects:
            rate = statistics.median(rates[subject.name])
            result = Result(
                self.suite,
                case,
                subject.name,
                ops[subject.name],
                ops[subject.name] / rate if rate else 0.0,
                subject.unit,
                subject is floor,
                subject.ours,
                p50_ms=_median(p50[subject.name]),
                p99_ms=_median(p99[subject.name]),
                rounds=count,
            )
            if subject is not floor:
                vs_floor = _spread(rates[subject.name], rates[floor.name])
                if vs_floor:
                    result.ratio, result.ratio_low, result.ratio_high = vs_floor
            if ours is not None and subject is not ours:
                vs_ours = _spread(rates[ours.name], rates[subject.name])
                if vs_ours:
                    result.ours_ratio, result.ours_low, result.ours_high = vs_ours
            self.results.append(result)
            results.append(result)
            print(f"  {_line(result)}", flush=True)
        return results

    async def _turn(self, subject: Subject) -> Sample:
        """One round of ``subject``: its body, again and again until the round has lasted
        `min_seconds` (a round of a tenth of a second is one time slice of a busy machine)."""
        ops, seconds, last = 0, 0.0, Sample(0, 0.0)
        while True:
            start = time.perf_counter()
            done = await subject.body()
            elapsed = time.perf_counter() - start
            last = done if isinstance(done, Sample) else Sample(done, elapsed)
            ops, seconds = ops + last.ops, seconds + last.seconds
            if seconds >= self.min_seconds or last.seconds <= 0:
                return Sample(ops, seconds, last.p50_ms, last.p99_ms)

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
        """Record one measurement taken elsewhere (no rounds: no spread)."""
        result = Result(self.suite, case, subject, ops, seconds, unit, floor, ours, note)
        self.results.append(result)
        print(f"  {_line(result)}", flush=True)
        return result


def _line(result: Result) -> str:
    parts = [
        f"{result.case[:40]:<40} {result.subject[:36]:<36} {result.rate:>13,.0f} {result.unit}/s"
    ]
    if result.ratio is not None:
        parts.append(f"{result.ratio:.2f}x [{result.ratio_low:.2f}-{result.ratio_high:.2f}]")
    if result.p50_ms is not None:
        parts.append(f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms or 0:.2f} ms")
    return "  ".join(parts)


def _times(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x [{low:.2f}-{high:.2f}]"


def table(results: list[Result]) -> str:
    """A plain-text table: per case, each subject's rate, its ratio to the floor and
    unistorage's ratio to it (medians of per-round ratios, with the lowest and highest)."""
    lines: list[str] = []
    cases: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        cases.setdefault((result.suite, result.case), []).append(result)
    header = (
        f"{'':<4}{'subject':<38} {'rate/s':>13} {'vs floor':>19} {'ours/it':>19} {'p50/p99 ms':>14}"
    )
    for (suite, case), rows in cases.items():
        lines.append(f"\n[{suite}] {case}")
        lines.append(header)
        for row in sorted(rows, key=lambda r: -r.rate):
            marker = " (floor)" if row.floor else (" (ours)" if row.ours else "")
            latency = f"{row.p50_ms:.2f}/{row.p99_ms or 0:.2f}" if row.p50_ms is not None else ""
            lines.append(
                f"{'':<4}{(row.subject + marker)[:38]:<38} {row.rate:>13,.0f} "
                f"{_times(row.ratio, row.ratio_low, row.ratio_high):>19} "
                f"{_times(row.ours_ratio, row.ours_low, row.ours_high):>19} {latency:>14}"
            )
    return "\n".join(lines)


async def peak_kib(body: Callable[[], Awaitable[int]]) -> float:
    """The tracemalloc peak of one run of ``body``, in KiB."""
    tracemalloc.start()
    try:
        await body()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()
