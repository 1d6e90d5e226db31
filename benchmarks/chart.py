"""The chart of a run: per case, each subject's ratio to the floor as a bar, with its spread
over the rounds as an error bar (lowest to highest per-round ratio)."""

from __future__ import annotations

from pathlib import Path

from .harness import Result

__all__ = ["Panel", "chart", "curves"]


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


#: One panel of `curves`: x label, y label, and series name -> (x, y) points.
Panel = tuple[str, str, dict[str, list[tuple[float, float]]]]


def curves(panels: list[Panel], path: Path) -> Path | None:
    """Draw each panel as log-log lines, one per series, side by side into ``path`` (PNG);
    None when matplotlib is missing or there is nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, (x_label, y_label, series) in zip(axes[0], panels, strict=True):
        for name, points in sorted(series.items()):
            points = sorted(points)
            axis.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(x_label)
        axis.set_ylabel(y_label)
        axis.grid(True, which="both", linewidth=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
