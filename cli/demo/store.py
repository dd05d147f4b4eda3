"""The demo's own SQLite file: made fresh, marked as a demo, priced, and never mistaken for yours.

The file is built aside (``<name>.partial``) and renamed into place when the run is complete, so
an interrupted run leaves no half-made database. A demo database carries SQLite's
``application_id`` header field set to :data:`DEMO_APPLICATION_ID`; a file without it is never
overwritten, and an earlier demo is replaced only with ``--force``.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, func, select

from wattledger import contract as c
from wattledger.cli.database import SQLITE_PREFIX
from wattledger.cli.demo.figures import BOARDS
from wattledger.cli.reports.prices import SCOPE_SITE, SCOPE_SKU, PriceEntry
from wattledger.collector import schema as s
from wattledger.collector.db import (
    fold_sqlite_wal,
    open_engine,
    read_sqlite_application_id,
    stamp_sqlite_application_id,
)
from wattledger.errors import ConfigError
from wattledger.migrations import runner

logger = logging.getLogger(__name__)

DEFAULT_PATH = "wattledger-demo.db"
DEMO_APPLICATION_ID = 0x574C444D  # "WLDM" in the SQLite header
PARTIAL_SUFFIX = ".partial"
SIDE_FILES = ("-wal", "-shm", "-journal")


def demo_path(db: str | None) -> Path:
    """The SQLite file for ``--db``: a path, or a ``sqlite:///`` URL."""
    text = db or DEFAULT_PATH
    if "://" in text:
        if not text.startswith(SQLITE_PREFIX) or text == SQLITE_PREFIX:
            raise ConfigError(
                f"--db {text!r}: the demo writes its own SQLite file; give a path such as "
                f"{DEFAULT_PATH} (or sqlite:///{DEFAULT_PATH})"
            )
        text = text[len(SQLITE_PREFIX) :]
    return Path(text).expanduser()


def url_of(path: Path) -> str:
    return f"{SQLITE_PREFIX}{path}"


def is_demo_database(path: Path) -> bool:
    """Whether ``path`` is a SQLite file marked as a wattledger demo (opened read-only)."""
    return read_sqlite_application_id(path) == DEMO_APPLICATION_ID


def check_target(path: Path, *, force: bool) -> None:
    """Refuse a path holding anything but an earlier demo, and an earlier demo without --force."""
    if not path.exists():
        return
    if path.is_dir():
        raise ConfigError(
            f"--db {path} is a directory; give a file path such as {path / DEFAULT_PATH}"
        )
    if not is_demo_database(path):
        raise ConfigError(
            f"{path} exists and is not a wattledger demo database; the demo never overwrites "
            "other files: give another --db path"
        )
    if not force:
        raise ConfigError(
            f"{path} holds an earlier demo run; add --force to replace it, or give another "
            "--db path"
        )


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def create(path: Path) -> Engine:
    """A fresh database at ``path`` with the current schema, marked as a demo."""
    remove(path)
    engine = open_engine(url_of(path))
    runner.upgrade(engine)
    stamp_sqlite_application_id(engine, DEMO_APPLICATION_ID)
    return engine


def settle(engine: Engine, partial: Path, final: Path) -> None:
    """Close every connection, fold the write-ahead log into the file, and move it into place."""
    engine.dispose()
    fold_sqlite_wal(partial)
    remove(final)
    os.replace(partial, final)


def remove(path: Path) -> None:
    """Delete a SQLite file and its side files, if there."""
    for name in (path.name, *(path.name + side for side in SIDE_FILES)):
        path.with_name(name).unlink(missing_ok=True)


def demo_prices(
    tier: str, usd_per_kwh: float, pue: float, site: str, effective_from: int
) -> list[PriceEntry]:
    """GPU-hour prices of the chosen tier for every SKU, and the site's electricity."""
    entries = [
        PriceEntry(
            SCOPE_SKU,
            sku,
            effective_from,
            usd_per_gpu_hour=board.usd_per_gpu_hour[tier].value,
            note=f"wattledger demo: SemiAnalysis TCO, {tier} tier",
        )
        for sku, board in BOARDS.items()
    ]
    entries.append(
        PriceEntry(
            SCOPE_SITE,
            site,
            effective_from,
            usd_per_kwh=usd_per_kwh,
            pue=pue,
            note="wattledger demo: stated electricity price and PUE",
        )
    )
    return entries


@dataclass
class StoredTotals:
    """What the store's deltas add up to: joules per GPU, tokens per model and type."""

    joules_by_gpu: dict[str, float] = field(default_factory=dict)
    tokens: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))

    @property
    def joules(self) -> float:
        return sum(self.joules_by_gpu.values())


def stored_totals(engine: Engine) -> StoredTotals:
    """Sum every stored counter delta of GPU energy and engine tokens."""
    totals = StoredTotals()
    query = (
        select(
            s.series.c.metric,
            s.series.c.gpu_uuid,
            s.series.c.model,
            s.series.c.label,
            func.sum(s.deltas.c.value),
        )
        .join(s.deltas, s.deltas.c.series_id == s.series.c.id)
        .where(s.series.c.metric.in_((c.METRIC_ENERGY, c.METRIC_TOKENS)))
        .group_by(s.series.c.metric, s.series.c.gpu_uuid, s.series.c.model, s.series.c.label)
    )
    with engine.connect() as conn:
        for metric, gpu_uuid, model, label, value in conn.execute(query):
            if metric == c.METRIC_ENERGY:
                totals.joules_by_gpu[gpu_uuid] = totals.joules_by_gpu.get(gpu_uuid, 0.0) + value
            else:
                totals.tokens[(model, label)] += value
    return totals
