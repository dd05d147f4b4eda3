"""What every report shares: its result shape, its window check, and the notes under it.

A report is rows, a total line that is the sum of the rows, and notes that say how the numbers
were made: the window, the currency, how idle time was treated, and the GPUs that had no price,
per node and SKU. An unpriced GPU is named, never counted as free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wattledger.cli.reports.usage_query import ReportError
from wattledger.timeutil import iso

CURRENCY = "USD"
J_PER_KWH = 3.6e6
USD_PLACES = 6
UNPRICED_EPSILON_H = 1e-9


@dataclass
class Report:
    """Rows, their total, and the notes that say how the numbers were made."""

    rows: list[dict]
    total: dict
    notes: list[str] = field(default_factory=list)
    unpriced: list[dict] = field(default_factory=list)


def check_window(since: int, until: int) -> None:
    if until <= since:
        raise ReportError(
            f"the window is empty: --until {iso(until)} is not after --since {iso(since)}"
        )


def window_note(since: int, until: int) -> str:
    return (
        f"Window {iso(since)} to {iso(until)}; amounts in {CURRENCY}, each hour charged at the "
        "prices in force then."
    )


def unpriced_notes(unpriced: list[dict], *, no_prices: bool) -> list[str]:
    """One line per node and SKU whose GPUs' time in the window had no GPU-hour price."""
    notes = []
    if no_prices:
        notes.append(
            "No prices are set: every GPU is unpriced. Set them with 'wattledger price set'."
        )
    groups: dict[tuple[str, str], list[dict]] = {}
    for gpu in unpriced:
        groups.setdefault((gpu["node"] or "(unknown node)", gpu["sku"] or ""), []).append(gpu)
    for (node, sku), gpus in sorted(groups.items()):
        hours = sum(gpu["seconds"] for gpu in gpus) / 3600
        count = f"1 GPU ({gpus[0]['uuid']})" if len(gpus) == 1 else f"{len(gpus)} GPUs"
        its = "its" if len(gpus) == 1 else "their"
        if sku:
            fix = f"set one: wattledger price set --sku {sku} --usd-per-gpu-hour N --from DATE"
            what = f"SKU {sku!r}"
        else:
            fix = f"the agent on {node} reported no SKU for them; check its NVML device names"
            what = "an unknown SKU"
        notes.append(
            f"UNPRICED: node {node}, {what}: {count}, {hours:.2f} GPU-hours with no price; "
            f"{its} cost is missing from the figures, not zero; {fix}."
        )
    return notes


def unmapped_notes(endpoints: list[dict]) -> list[str]:
    """One line per endpoint whose tokens ran on GPUs the agent could not name."""
    notes = []
    for found in endpoints:
        notes.append(
            f"UNMAPPED: endpoint {found['node']}/{found['endpoint']} served "
            f"{found['tokens']:,.0f} tokens on GPUs wattledger does not know, so they carry no GPU "
            "time, energy or cost; rows holding them, and the total, show no cost or energy per "
            "token. Fix: map its GPUs in [[agent.endpoints]] gpus, or make sure the engine's "
            "process is visible to the agent."
        )
    return notes


def per_million(usd: float | None, tokens: float) -> float | None:
    return usd / tokens * 1e6 if usd is not None and tokens else None


def is_unpriced(row: dict) -> bool:
    """Whether some of a row's GPU time had no price (its costs are then incomplete)."""
    return row.get("unpriced_gpu_hours", 0.0) > UNPRICED_EPSILON_H


def has_unmapped(row: dict) -> bool:
    """Whether a row holds tokens from GPUs nobody knows (they carry no cost or energy)."""
    return row.get("unmapped_tokens", 0.0) > 0
