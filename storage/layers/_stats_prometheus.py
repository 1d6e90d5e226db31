"""Prometheus text exposition (format 0.0.4) of `Stats` snapshots.

The format's rules followed here: one ``# HELP`` and one ``# TYPE`` line per metric name,
before its samples, with every sample of one metric in one group; counters end in
``_total``; a histogram's ``_bucket`` samples are cumulative with an ``le`` label, the last
``le="+Inf"`` equal to ``_count``, then ``_sum`` and ``_count``; label values escape ``\\``,
``"`` and line feeds; the text ends with a line feed.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ["Series", "exposition"]

#: One layer's labels (``driver``, perhaps ``mount``) and its snapshot's ``operations``.
Series: TypeAlias = "tuple[dict[str, str], dict[str, dict[str, Any]]]"

# (metric suffix, snapshot field, help text); counters taken straight from a snapshot field.
_COUNTERS = (
    ("operations_total", "calls", "Driver calls by operation, failed ones included."),
    ("hits_total", "hits", "Reads that found a value (per key in a batch)."),
    ("misses_total", "misses", "Reads that found no value (per key in a batch)."),
    ("read_bytes_total", "bytes_read", "Value bytes returned by the driver."),
    ("written_bytes_total", "bytes_written", "Value bytes sent to the driver."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def exposition(series: list[Series], prefix: str) -> str:
    """The text Prometheus scrapes for ``series``, metric names starting ``prefix_``."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> str:
        full = f"{prefix}_{name}"
        lines.append(f"# HELP {full} {help_text}")
        lines.append(f"# TYPE {full} {kind}")
        return full

    for suffix, field, help_text in _COUNTERS:
        name = family(suffix, "counter", help_text)
        for labels, operations in series:
            for operation, numbers in operations.items():
                if field in numbers:
                    shown = _labels({**labels, "operation": operation})
                    lines.append(f"{name}{{{shown}}} {numbers[field]}")

    name = family("errors_total", "counter", "Failed driver calls by operation and error type.")
    for labels, operations in series:
        for operation, numbers in operations.items():
            for error, count in sorted(numbers["errors"].items()):
                shown = _labels({**labels, "operation": operation, "error": error})
                lines.append(f"{name}{{{shown}}} {count}")

    name = family(
        "operation_duration_seconds", "histogram", "Time spent in the driver per call, seconds."
    )
    for labels, operations in series:
        for operation, numbers in operations.items():
            shown = _labels({**labels, "operation": operation})
            latency = numbers["latency"]
            for bound, count in latency["buckets"].items():
                lines.append(f'{name}_bucket{{{shown},le="{bound}"}} {count}')
            lines.append(f"{name}_sum{{{shown}}} {latency['sum']!r}")
            lines.append(f"{name}_count{{{shown}}} {latency['count']}")
    return "\n".join(lines) + "\n"
