"""Pictures for reports, drawn with matplotlib without a display."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

BLUE = "#3b7dd8"
GREEN = "#4a9e5c"
LOG_SCALE_SPREAD = 20  # bars spanning more than this factor are drawn on a log scale


def bar_chart(rows: Sequence[dict], by: Sequence[str], value: str, label: str, path: str) -> None:
    """One bar per row: the row's ``by`` values against ``value``."""
    names = [" / ".join(str(row[k]) for k in by) for row in rows if row.get(value) is not None]
    heights = [row[value] for row in rows if row.get(value) is not None]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
    bars = ax.bar(names, heights, color=BLUE)
    ax.bar_label(bars, fmt="%.4g", fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(label + " by " + ", ".join(by))
    ax.tick_params(axis="x", rotation=30)
    _save(fig, path)


def paired_bars(
    names: Sequence[str],
    pairs: Sequence[tuple[float | None, float | None]],
    legend: tuple[str, str],
    label: str,
    title: str,
    path: str,
) -> None:
    """Two bars per name (A and B), for a side-by-side comparison; missing values leave a gap."""
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names) + 2), 4.5))
    width = 0.38
    positions = range(len(names))
    for offset, color, side, side_name in (
        (-width / 2, BLUE, 0, legend[0]),
        (width / 2, GREEN, 1, legend[1]),
    ):
        heights = [pair[side] if pair[side] is not None else float("nan") for pair in pairs]
        bars = ax.bar([p + offset for p in positions], heights, width, color=color, label=side_name)
        ax.bar_label(bars, labels=[_bar_text(pair[side]) for pair in pairs], fontsize=8)
    present = [v for pair in pairs for v in pair if v]
    if present and max(present) / min(present) > LOG_SCALE_SPREAD:
        ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _pos: f"{value:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda _value, _pos: ""))
    ax.set_xticks(list(positions), names, rotation=30 if len(names) > 3 else 0)
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def line_chart(
    series: dict[str, list[tuple[str, float | None]]], label: str, title: str, path: str
) -> None:
    """One line per series over shared period labels; a missing value breaks the line."""
    periods = sorted({period for points in series.values() for period, _ in points})
    fig, ax = plt.subplots(figsize=(max(7, 0.35 * len(periods) + 4), 4.5))
    for name, points in sorted(series.items()):
        values = dict(points)
        ys = [values.get(period) for period in periods]
        ax.plot(
            periods,
            [float("nan") if y is None else y for y in ys],
            marker="o",
            markersize=3,
            label=name,
        )
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.tick_params(axis="x", rotation=45)
    if len(series) > 1:
        ax.legend(fontsize=8)
    _save(fig, path)


def _bar_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
