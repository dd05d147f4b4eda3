"""Pictures for reports, drawn with matplotlib without a display."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402


def bar_chart(rows: Sequence[dict], by: Sequence[str], value: str, label: str, path: str) -> None:
    """One bar per row: the row's ``by`` values against ``value``."""
    names = [" / ".join(str(row[k]) for k in by) for row in rows if row.get(value) is not None]
    heights = [row[value] for row in rows if row.get(value) is not None]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
    bars = ax.bar(names, heights, color="#3b7dd8")
    ax.bar_label(bars, fmt="%.4g", fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(label + " by " + ", ".join(by))
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
