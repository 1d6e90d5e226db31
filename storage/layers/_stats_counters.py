"""The counters `Stats` keeps per operation, and their snapshot as plain data."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

__all__ = ["Counters"]


class Counters:
    """The counters of one operation; latency counts are per bucket, cumulated when shown.

    ``kind`` is ``"read"`` (hits, misses, bytes read), ``"write"`` (bytes written) or
    anything else (calls, errors and latency only); ``bounds`` are the buckets' upper bounds.
    """

    __slots__ = ("bounds", "bytes", "counts", "errors", "hits", "kind", "misses", "seconds")

    def __init__(self, kind: str, bounds: tuple[float, ...]) -> None:
        self.kind = kind
        self.bounds = list(bounds)  # bisect is faster on a list than on a tuple
        self.reset()

    def reset(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)
        self.seconds = 0.0
        self.errors: dict[str, int] = {}
        self.hits = 0
        self.misses = 0
        self.bytes = 0

    def observe(self, elapsed: float) -> None:
        self.counts[bisect_left(self.bounds, elapsed)] += 1
        self.seconds += elapsed

    def failed(self, elapsed: float, exc: Exception) -> None:
        self.counts[bisect_left(self.bounds, elapsed)] += 1
        self.seconds += elapsed
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1

    def read(self, elapsed: float, value: bytes | None) -> None:
        self.counts[bisect_left(self.bounds, elapsed)] += 1
        self.seconds += elapsed
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
            self.bytes += len(value)

    def batch(self, values: list[bytes | None]) -> None:
        found = [value for value in values if value is not None]
        self.hits += len(found)
        self.misses += len(values) - len(found)
        self.bytes += sum(map(len, found))

    def wrote(self, elapsed: float, size: int) -> None:
        self.counts[bisect_left(self.bounds, elapsed)] += 1
        self.seconds += elapsed
        self.bytes += size

    def snapshot(self) -> dict[str, Any]:
        calls = sum(self.counts)
        shown: dict[str, Any] = {"calls": calls, "errors": dict(self.errors)}
        if self.kind == "read":
            shown.update(hits=self.hits, misses=self.misses, bytes_read=self.bytes)
        elif self.kind == "write":
            shown["bytes_written"] = self.bytes
        buckets: dict[str, int] = {}
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            buckets[repr(bound)] = running
        buckets["+Inf"] = calls
        shown["latency"] = {"count": calls, "sum": self.seconds, "buckets": buckets}
        return shown
