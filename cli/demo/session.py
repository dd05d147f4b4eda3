"""One demo run from start to finish: a fresh database, prices, the simulated day, the report.

The database is built aside and moved into place only when everything succeeded; on any failure
(or Ctrl-C) the partial file is removed and an earlier demo database is left as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wattledger.cli.demo import simulation, store
from wattledger.cli.demo.simulation import RunResult, Window
from wattledger.cli.demo.store import StoredTotals
from wattledger.cli.reports.cost import Report, cost_report
from wattledger.cli.reports.prices import PriceEntry, set_prices, validate
from wattledger.collector.usage import refresh

logger = logging.getLogger(__name__)

REPORT_BY = ("architecture", "model")
JOULE_TOLERANCE = 1e-3  # the NVML energy counter counts whole millijoules


@dataclass
class Outcome:
    path: Path
    run: RunResult
    stored: StoredTotals
    report: Report

    def energy_matches(self) -> bool:
        truth = self.run.truth.joules_by_gpu
        stored = self.stored.joules_by_gpu
        return set(truth) == set(stored) and all(
            abs(stored[uuid] - joules) <= JOULE_TOLERANCE for uuid, joules in truth.items()
        )

    def tokens_match(self) -> bool:
        truth = {key: value for key, value in self.run.truth.tokens.items() if value}
        stored = {key: value for key, value in self.stored.tokens.items() if value}
        return truth == stored


def build(
    path: Path,
    window: Window,
    prices: list[PriceEntry],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Simulate ``window`` into a new demo database at ``path`` and report on it."""
    for entry in prices:
        validate(entry)
    partial = store.partial_path(path)
    engine = store.create(partial)
    try:
        set_prices(engine, prices)
        result = simulation.run(engine, window, progress=progress)
        refresh(engine)
        stored = store.stored_totals(engine)
        report = cost_report(engine, window.since_s, window.until_s, list(REPORT_BY))
        store.settle(engine, partial, path)
    except BaseException:
        engine.dispose()
        store.remove(partial)
        raise
    return Outcome(path, result, stored, report)
