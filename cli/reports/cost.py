"""The cost report: GPU-hours, energy, tokens and dollars per group, with idle kept apart.

Each row's cost is what its endpoints' GPUs cost while serving tokens; the rest of the GPUs' time
is idle cost, kept apart or shared out (see ``idle``). The total line is the sum of the rows, and
USD per million tokens is a row's cost divided by its input plus output tokens.

A cost (or energy) per token is not given where it would mislead: for a row with unpriced GPU
time (its cost is incomplete), and for a row holding *unmapped* tokens, served by an endpoint
whose GPUs the agent could not name (they carry no GPU time, energy or cost, so counting them
would make tokens look cheap). The total line follows the same rule: it shows no cost or energy
per token while any row has unpriced time or unmapped tokens, and the notes say which GPUs and
endpoints to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from wattledger.cli.reports.idle import IDLE_MODES, idle_note, share_idle
from wattledger.cli.reports.prices import PriceBook
from wattledger.cli.reports.report import (
    J_PER_KWH,
    USD_PLACES,
    Report,
    check_window,
    has_unmapped,
    is_unpriced,
    per_million,
    unmapped_notes,
    unpriced_notes,
    window_note,
)
from wattledger.cli.reports.usage_query import (
    Group,
    ReportError,
    aggregate,
    check_dimensions,
    unmapped_endpoints,
    unpriced_gpus,
)

__all__ = ["COST_MEASURES", "IDLE_MODES", "Report", "cost_report", "cost_rows", "total_row"]

# The sums the cost rows need (besides those pricing needs).
COST_MEASURES = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "requests",
    "util_busy_seconds",
    "util_known_seconds",
)
ADDITIVE = (
    "gpu_hours",
    "energy_kwh",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "requests",
    "attributed_energy_j",
    "unpriced_gpu_hours",
    "unmapped_tokens",
)
ADDITIVE_USD = ("serving_usd", "cost_usd", "idle_usd", "idle_shared_usd", "total_usd")


def cost_report(
    engine: Engine,
    since: int,
    until: int,
    by: Sequence[str],
    *,
    idle: str = "none",
    where: Mapping[str, str | Sequence[str]] | None = None,
) -> Report:
    by = check_dimensions(by)
    check_idle_mode(idle)
    check_window(since, until)

    prices = PriceBook.load(engine)
    with engine.connect() as conn:
        groups = aggregate(conn, prices, since, until, by, where=where, measures=COST_MEASURES)
        unpriced, unmapped = problems(conn, prices, since, until, groups, where)

    rows = cost_rows(by, sorted(groups, key=lambda grp: grp.key), idle)
    notes = [window_note(since, until), idle_note(idle)]
    notes += unpriced_notes(unpriced, no_prices=prices.empty)
    notes += unmapped_notes(unmapped)
    return Report(rows, total_row(rows, by), notes, unpriced)


def problems(
    conn: Connection,
    prices: PriceBook,
    since: int,
    until: int,
    groups: Sequence[Group],
    where: Mapping[str, str | Sequence[str]] | None,
) -> tuple[list[dict], list[dict]]:
    """The unpriced GPUs and the endpoints with unmapped tokens, looked up only when present."""
    unpriced, unmapped = [], []
    if any(group.sums["unpriced_seconds"] > 0 for group in groups):
        unpriced = unpriced_gpus(conn, prices, since, until)
    if any(unmapped_tokens(group.sums) > 0 for group in groups):
        unmapped = unmapped_endpoints(conn, prices, since, until, where)
    return unpriced, unmapped


def unmapped_tokens(sums: Mapping[str, float]) -> float:
    return sums["unmapped_input_tokens"] + sums["unmapped_output_tokens"]


def check_idle_mode(idle: str) -> None:
    if idle not in IDLE_MODES:
        raise ReportError(f"--idle must be one of {', '.join(IDLE_MODES)}, not {idle!r}")


def cost_rows(by: Sequence[str], groups: Sequence[Group], idle: str) -> list[dict]:
    """Priced rows of ``groups``, idle treated as ``idle`` says, ready to show."""
    rows = [base_row(by, group) for group in groups]
    share_idle(rows, idle)
    for row in rows:
        _finish(row)
    return rows


def base_row(by: Sequence[str], group: Group) -> dict:
    d = group.sums
    serving = d["serving_time_usd"] + d["serving_energy_usd"]
    total = d["time_usd"] + d["energy_usd"]
    row = dict(zip(by, group.key, strict=False))
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
        unmapped_tokens=unmapped_tokens(d),
        utilization=(d["util_busy_seconds"] / d["util_known_seconds"])
        if d["util_known_seconds"]
        else None,
    )
    return row


def _finish(row: dict) -> None:
    tokens = row["input_tokens"] + row["output_tokens"]
    for name in ("cost_usd", "idle_usd", "serving_usd", "idle_shared_usd"):
        row[name] = round(row[name], USD_PLACES)
    row["total_usd"] = round(row["cost_usd"] + row["idle_usd"], USD_PLACES)
    _per_token(row, tokens)


def _per_token(row: dict, tokens: float) -> None:
    """Cost and energy per token, unless unpriced time or unmapped tokens would make them low."""
    unmapped = has_unmapped(row)
    row["usd_per_mtok"] = (
        None if is_unpriced(row) or unmapped else per_million(row["cost_usd"], tokens)
    )
    row["j_per_token"] = row["attributed_energy_j"] / tokens if tokens and not unmapped else None


def total_row(rows: list[dict], by: Sequence[str]) -> dict:
    """The sum of the rows, labelled TOTAL in the first key column."""
    total = {name: "TOTAL" if i == 0 else "" for i, name in enumerate(by)}
    for name in ADDITIVE:
        total[name] = sum(row[name] for row in rows)
    for name in ADDITIVE_USD:
        total[name] = round(sum(row[name] for row in rows), USD_PLACES)
    _per_token(total, total["input_tokens"] + total["output_tokens"])
    known = [
        (row["utilization"], row["gpu_hours"]) for row in rows if row["utilization"] is not None
    ]
    hours = sum(h for _, h in known)
    total["utilization"] = sum(util * h for util, h in known) / hours if hours else None
    return total
