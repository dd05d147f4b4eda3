"""One chargeback export: a window of the store, allocated, as a FOCUS file.

The window must be whole hours (the store's resolution) and closed: an export of a period that
has not ended would change when rerun, so it is refused unless asked for. GPU time without a
price is refused too, because a finance file must not show a cost as zero that is only unknown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine

from wattledger.cli.chargeback.allocation import BUCKET_SECONDS, collect
from wattledger.cli.chargeback.focus import focus_rows
from wattledger.cli.chargeback.settings import ChargebackSettings
from wattledger.cli.chargeback.writers import write_rows
from wattledger.cli.reports.prices import PriceBook
from wattledger.cli.reports.usage_query import unpriced_gpus
from wattledger.collector.db import scan_serially
from wattledger.collector.usage import refresh
from wattledger.errors import WattledgerError
from wattledger.timeutil import HOUR_S, iso

logger = logging.getLogger(__name__)


class ExportError(WattledgerError):
    exit_code = 2


@dataclass(frozen=True)
class ExportResult:
    path: Path
    fmt: str
    since: int
    until: int
    rows: int
    total_usd: Decimal
    sha256: str
    notes: list[str] = field(default_factory=list)


def export_chargeback(
    engine: Engine,
    settings: ChargebackSettings,
    since: int,
    until: int,
    *,
    path: Path,
    fmt: str,
    granularity: str,
    now: int,
    allow_open: bool = False,
    allow_empty: bool = False,
) -> ExportResult:
    """Allocate ``[since, until)`` to cost centres and write it to ``path`` in ``fmt``.

    A window without usage is refused unless ``allow_empty``: a file with no rows is more often
    a wrong window or a stopped agent than a period nobody used, and FOCUS tools reject it.
    """
    check_window(since, until, now, allow_open=allow_open)
    refresh(engine)

    prices = PriceBook.load(engine)
    with engine.connect() as conn:
        _serial_sums(conn)
        allocation = collect(conn, prices, since, until, granularity, settings)
        if allocation.unpriced_seconds > 0:
            raise ExportError(_unpriced_message(unpriced_gpus(conn, prices, since, until)))

    if not allocation.lines and not allow_empty:
        raise ExportError(
            f"no usage in {iso(since)} to {iso(until)}; nothing to export (check the window "
            "and that agents report, or pass --allow-empty to write a file without rows)"
        )
    rows = focus_rows(allocation.lines, settings, since, until, BUCKET_SECONDS[granularity])
    written = write_rows(rows, path, fmt)
    total = sum((row["BilledCost"] for row in rows), Decimal(0))
    return ExportResult(
        written.path, fmt, since, until, len(rows), total, written.sha256, allocation.notes
    )


def _serial_sums(conn) -> None:
    """Keep PostgreSQL from summing in parallel workers, whose order changes from run to run.

    Floating-point sums depend on their order; one process scanning the rows sums them in the
    same order on every rerun, so the rounded amounts, and the file's bytes, stay the same.
    """
    # Limitation: rows rewritten in place (a VACUUM FULL, a CLUSTER) change the scan order and
    # may move an amount across a 1e-10 rounding step; exact NUMERIC sums would not.
    scan_serially(conn)


def check_window(since: int, until: int, now: int, *, allow_open: bool) -> None:
    if until <= since:
        raise ExportError(f"the window is empty: it ends {iso(until)}, not after {iso(since)}")
    for name, moment in (("start", since), ("end", until)):
        if moment % HOUR_S:
            raise ExportError(
                f"the window's {name} {iso(moment)} is not on the hour; usage is kept per hour"
            )
    if until > now and not allow_open:
        raise ExportError(
            f"the period ending {iso(until)} is still open (now {iso(now)}): its figures would "
            "change; export it once it has ended, or pass --allow-open"
        )


def _unpriced_message(gpus: list[dict]) -> str:
    skus = sorted({gpu["sku"] or "(unknown)" for gpu in gpus})
    hours = sum(gpu["seconds"] for gpu in gpus) / 3600
    return (
        f"{len(gpus)} GPU(s) have {hours:.2f} GPU-hours with no price in this window "
        f"(SKU {', '.join(skus)}); "
        "set one with: wattledger price set --sku SKU --usd-per-gpu-hour N"
    )
