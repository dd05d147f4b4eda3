"""USD per million tokens per day or week, per group, so that a change shows up as a step.

Each period is a small cost report of its own: the same rows, idle treated the same way within
the period. Each row also carries the change from the same group's previous period, and the
notes list the largest steps (an engine upgrade, a price change, a traffic shift).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine

from wattledger.cli.reports.cost import (
    COST_MEASURES,
    check_idle_mode,
    cost_rows,
    problems,
    total_row,
)
from wattledger.cli.reports.idle import idle_note
from wattledger.cli.reports.prices import PriceBook
from wattledger.cli.reports.report import (
    Report,
    check_window,
    unmapped_notes,
    unpriced_notes,
    window_note,
)
from wattledger.cli.reports.usage_query import (
    Group,
    ReportError,
    aggregate,
    check_dimensions,
)

PERIODS = ("hour", "day", "week", "month")
PERIOD_FORMATS = {
    "hour": "%Y-%m-%dT%H:00Z",
    "day": "%Y-%m-%d",
    "week": "%Y-%m-%d",
    "month": "%Y-%m",
}
STEP = 0.2  # a change of at least this much from one period to the next is listed as a step
STEPS_LISTED = 5


def trend_report(
    engine: Engine,
    since: int,
    until: int,
    by: Sequence[str] = ("model",),
    *,
    every: str = "day",
    idle: str = "none",
    where: Mapping[str, str | Sequence[str]] | None = None,
) -> Report:
    by = check_dimensions(by)
    if every not in PERIODS:
        raise ReportError(f"--every must be one of {', '.join(PERIODS)}, not {every!r}")
    check_idle_mode(idle)
    check_window(since, until)

    prices = PriceBook.load(engine)
    with engine.connect() as conn:
        groups = aggregate(
            conn, prices, since, until, by, bucket=every, where=where, measures=COST_MEASURES
        )
        unpriced, unmapped = problems(conn, prices, since, until, groups, where)

    per_period: dict[int, list[Group]] = defaultdict(list)
    for group in groups:
        per_period[group.key[-1]].append(Group(group.key[:-1], group.sums))
    rows = []
    for start in sorted(per_period):
        for row in cost_rows(by, sorted(per_period[start], key=lambda grp: grp.key), idle):
            rows.append({"period": period_label(start, every), "period_start": start, **row})
    rows.sort(key=lambda row: (tuple(row[name] for name in by), row["period_start"]))
    _changes(rows, by)

    label = "week starting Monday" if every == "week" else every
    notes = [
        window_note(since, until),
        f"One row per {label} (UTC) and {', '.join(by)}.",
        idle_note(idle),
    ]
    notes += _step_notes(rows, by)
    notes += unpriced_notes(unpriced, no_prices=prices.empty)
    notes += unmapped_notes(unmapped)
    total = total_row(rows, ["period", *by])
    total["period_start"] = None
    total["change"] = None
    return Report(rows, total, notes, unpriced)


# Limitation: days and weeks are UTC; a fleet far from UTC sees its days cut at another hour.
def period_label(start: int, every: str) -> str:
    return datetime.fromtimestamp(start, tz=UTC).strftime(PERIOD_FORMATS[every])


def _changes(rows: list[dict], by: Sequence[str]) -> None:
    """Each row's relative change in USD per million tokens from its group's previous period."""
    previous: dict[tuple, float | None] = {}
    for row in rows:
        key = tuple(row[name] for name in by)
        before, now = previous.get(key), row["usd_per_mtok"]
        row["change"] = now / before - 1.0 if before and now is not None else None
        previous[key] = now


def _step_notes(rows: list[dict], by: Sequence[str]) -> list[str]:
    steps = [row for row in rows if row["change"] is not None and abs(row["change"]) >= STEP]
    steps.sort(key=lambda row: -abs(row["change"]))
    notes = []
    for row in steps[:STEPS_LISTED]:
        name = " / ".join(str(row[k]) for k in by)
        before = row["usd_per_mtok"] / (1.0 + row["change"])
        notes.append(
            f"STEP: {name} from {row['period']}: {before:.4g} -> {row['usd_per_mtok']:.4g} USD per "
            f"million tokens ({row['change']:+.0%})."
        )
    return notes
