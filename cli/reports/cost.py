"""The cost report: GPU-hours, energy, tokens and dollars per group, with idle kept apart.

Each row's cost is what its endpoints' GPUs cost while serving tokens; the rest of the GPUs' time
is idle cost. Idle stays in its own column (``--idle none``), or the whole idle pool is shared
out across the rows that served tokens, equally (``even``) or in proportion to their serving cost
(``proportional``). Either way the total line is the sum of the rows, and USD per million tokens
is a row's cost divided by its input plus output tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from wattledger.cli.reports.prices import PriceBook
from wattledger.cli.reports.usage_query import Group, ReportError, aggregate, check_dimensions, unpriced_gpus
from wattledger.timeutil import iso

IDLE_MODES = ("none", "even", "proportional")
USD_PLACES = 6
J_PER_KWH = 3.6e6


@dataclass
class Report:
    """Rows, their total, and the notes that say how the numbers were made."""

    rows: list[dict]
    total: dict
    notes: list[str] = field(default_factory=list)
    unpriced: list[dict] = field(default_factory=list)


def cost_report(
    engine: Engine,
    since: int,
    until: int,
    by: Sequence[str],
    *,
    idle: str = "none",
) -> Report:
    by = check_dimensions(by)
    if idle not in IDLE_MODES:
        raise ReportError(f"--idle must be one of {', '.join(IDLE_MODES)}, not {idle!r}")
    if until <= since:
        raise ReportError(f"the window is empty: --until {iso(until)} is not after --since {iso(since)}")

    prices = PriceBook.load(engine)
    with engine.connect() as conn:
        groups = aggregate(conn, prices, since, until, by)
        unpriced = unpriced_gpus(conn, prices, since, until)

    rows = [_base_row(by, group) for group in sorted(groups, key=lambda grp: grp.key)]
    _share_idle(rows, idle)
    for row in rows:
        _finish(row)
    total = _total(rows, by)

    notes = [
        f"Window {iso(since)} to {iso(until)}; each hour charged at the prices in force then.",
        _idle_note(idle),
    ]
    if prices.empty:
        notes.append("No prices are set: every GPU is unpriced. Set them with 'wattledger price set'.")
    for gpu in unpriced:
        notes.append(
            f"UNPRICED: {gpu['uuid']} ({gpu['name'] or gpu['sku']}, node {gpu['node']}) has "
            f"{gpu['seconds'] / 3600:.2f} GPU-hours with no price for SKU {gpu['sku']!r}; "
            "its cost is missing from the rows, not zero."
        )
    return Report(rows, total, notes, unpriced)


def _base_row(by: Sequence[str], group: Group) -> dict:
    d = group.sums
    serving = d["serving_time_usd"] + d["serving_energy_usd"]
    total = d["time_usd"] + d["energy_usd"]
    row = dict(zip(by, group.key, strict=True))
    row.update(
        gpu_hours=d["gpu_seconds"] / 3600.0,
        energy_kwh=d["energy_j"] / J_PER_KWH,
        input_tokens=d["input_tokens"],
        output_tokens=d["output_tokens"],
        cached_tokens=d["cached_tokens"],
        requests=d["requests"],
        serving_usd=serving,
        idle_usd=max(0.0, total - serving),
        cost_usd=serving,
        attributed_energy_j=d["serving_energy_j"],
        idle_energy_j=max(0.0, d["energy_j"] - d["serving_energy_j"]),
        unpriced_gpu_hours=d["unpriced_seconds"] / 3600.0,
        utilization=(d["util_busy_seconds"] / d["util_known_seconds"]) if d["util_known_seconds"] else None,
    )
    return row


def _share_idle(rows: list[dict], mode: str) -> None:
    """Move the idle pool into the rows that served tokens, as ``mode`` says."""
    if mode == "none":
        return
    receivers = [row for row in rows if row["input_tokens"] + row["output_tokens"] > 0]
    if not receivers:
        return
    pool_usd = sum(row["idle_usd"] for row in rows)
    pool_j = sum(row["idle_energy_j"] for row in rows)
    serving_total = sum(row["serving_usd"] for row in receivers)

    for row in rows:
        row["idle_usd"] = 0.0
        row["idle_energy_j"] = 0.0
    for row in receivers:
        if mode == "proportional" and serving_total > 0:
            weight = row["serving_usd"] / serving_total
        else:
            weight = 1.0 / len(receivers)
        row["cost_usd"] = row["serving_usd"] + pool_usd * weight
        row["attributed_energy_j"] += pool_j * weight


def _finish(row: dict) -> None:
    tokens = row["input_tokens"] + row["output_tokens"]
    row["cost_usd"] = round(row["cost_usd"], USD_PLACES)
    row["idle_usd"] = round(row["idle_usd"], USD_PLACES)
    row["serving_usd"] = round(row["serving_usd"], USD_PLACES)
    row["total_usd"] = round(row["cost_usd"] + row["idle_usd"], USD_PLACES)
    row["usd_per_mtok"] = row["cost_usd"] / tokens * 1e6 if tokens else None
    row["j_per_token"] = row["attributed_energy_j"] / tokens if tokens else None


def _total(rows: list[dict], by: Sequence[str]) -> dict:
    total = {name: "TOTAL" if i == 0 else "" for i, name in enumerate(by)}
    for name in (
        "gpu_hours", "energy_kwh", "input_tokens", "output_tokens", "cached_tokens", "requests",
        "attributed_energy_j", "unpriced_gpu_hours",
    ):
        total[name] = sum(row[name] for row in rows)
    for name in ("serving_usd", "cost_usd", "idle_usd", "total_usd"):
        total[name] = round(sum(row[name] for row in rows), USD_PLACES)
    tokens = total["input_tokens"] + total["output_tokens"]
    total["usd_per_mtok"] = total["cost_usd"] / tokens * 1e6 if tokens else None
    total["j_per_token"] = total["attributed_energy_j"] / tokens if tokens else None
    known = [(row["utilization"], row["gpu_hours"]) for row in rows if row["utilization"] is not None]
    hours = sum(h for _, h in known)
    total["utilization"] = sum(u * h for u, h in known) / hours if hours else None
    return total


def _idle_note(mode: str) -> str:
    if mode == "none":
        return (
            "Idle: GPU time in which no tokens were served is in idle_usd, apart from cost_usd; "
            "USD per million tokens uses cost_usd."
        )
    how = "equally" if mode == "even" else "in proportion to serving cost"
    return f"Idle: all idle GPU cost is shared {how} across the rows that served tokens."
