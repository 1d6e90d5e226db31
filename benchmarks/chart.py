"""The chart of a run: per case, each subject's ratio to the floor as a bar, with its spread
over the rounds as an error bar (lowest to highest per-round ratio)."""

from __future__ import annotations

from pathlib import Path

from .harness import Result

__all__ = ["chart"]


def chart(results: list[Result], path: Path) -> Path | None:
    """Draw ``results`` into ``path`` (PNG); None when matplotlib is missing or nothing has
    a floor to be compared with."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels: list[str] = []
    ratios: list[float] = []
    below: list[float] = []
    above: list[float] = []
    colors: list[str] = []
    for row in results:
        if row.floor:
            value, low, high = 1.0, 1.0, 1.0
        elif row.ratio is not None:
            value = row.ratio
            low, high = row.ratio_low or value, row.ratio_high or value
        else:
            continue
        labels.append(f"{row.suite}: {row.case} | {row.subject}")
        ratios.append(value)
        below.append(max(0.0, value - low))
        above.append(max(0.0, high - value))
        colors.append("tab:green" if row.ours else ("tab:gray" if row.floor else "tab:blue"))
    if not labels:
        return None
    figure, axes = plt.subplots(figsize=(12, max(3.0, 0.26 * len(labels) + 1)))
    axes.barh(range(len(labels)), ratios, color=colors, xerr=[below, above], capsize=2)
    axes.set_yticks(range(len(labels)), labels, fontsize=6)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel(
        "rate relative to the case's floor (1.0), median of per-round ratios; "
        "bars: lowest to highest round; green is unistorage"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
