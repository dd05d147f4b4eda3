"""The ``export_runs`` table: which periods each scheduled export has written, and the lock.

A scheduler writes a period only after inserting its row (job, period) with status
``running``; the table's unique key on (job, period_start, period_end) lets exactly one insert
succeed, whichever database and however many schedulers share it. The winner writes the file and
marks the row ``done`` (or ``failed``, with the error). A ``failed`` row, or a ``running`` row
older than the lock timeout (its scheduler died mid-export), can be taken over, again by one
scheduler only: the takeover is an update that must still find the row as it was read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from wattledger.cli.chargeback.periods import Period, containing, last_complete
from wattledger.collector import schema as s

logger = logging.getLogger(__name__)

RUNNING = "running"
DONE = "done"
FAILED = "failed"

runs = s.export_runs


@dataclass(frozen=True)
class Claim:
    """The right to write one period of one job, held by ``owner``."""

    run_id: int
    job: str
    period: Period
    owner: str


def claim(
    engine: Engine, job: str, period: Period, owner: str, now_ns: int, timeout_s: float
) -> Claim | None:
    """Take the lock for ``period`` of ``job``, or None if it is done or another holds it."""
    row = {
        "job": job,
        "period_start": period.start,
        "period_end": period.end,
        "status": RUNNING,
        "owner": owner,
        "started_ns": now_ns,
    }
    try:
        with engine.begin() as conn:
            run_id = conn.execute(insert(runs).values(**row).returning(runs.c.id)).scalar_one()
        return Claim(run_id, job, period, owner)
    except IntegrityError:
        pass

    with engine.begin() as conn:
        existing = conn.execute(
            select(runs.c.id, runs.c.status, runs.c.started_ns, runs.c.owner).where(
                runs.c.job == job,
                runs.c.period_start == period.start,
                runs.c.period_end == period.end,
            )
        ).one_or_none()
        if existing is None or existing.status == DONE:
            return None
        # Limitation: a run slower than the timeout is taken over while it still writes; both then
        # write the same bytes (exports are deterministic) and rename them into place in turn.
        stale = now_ns - existing.started_ns > timeout_s * 1e9
        if existing.status == RUNNING and not stale:
            return None
        taken = conn.execute(
            update(runs)
            .where(
                runs.c.id == existing.id,
                runs.c.status == existing.status,
                runs.c.started_ns == existing.started_ns,
            )
            .values(status=RUNNING, owner=owner, started_ns=now_ns, finished_ns=None, error=None)
        )
    if taken.rowcount != 1:
        return None
    logger.warning(
        "%s %s: taking over a %s run of %s", job, period.label, existing.status, existing.owner
    )
    return Claim(existing.id, job, period, owner)


def finish(engine: Engine, held: Claim, *, path: str, sha256: str, rows: int, now_ns: int) -> bool:
    """Mark the period done; False if the lock was lost meanwhile (the run was taken over)."""
    return _close(
        engine, held, status=DONE, path=path, sha256=sha256, rows=rows, finished_ns=now_ns
    )


def fail(engine: Engine, held: Claim, message: str, now_ns: int) -> bool:
    return _close(engine, held, status=FAILED, error=message[:2000], finished_ns=now_ns)


def _close(engine: Engine, held: Claim, **values) -> bool:
    with engine.begin() as conn:
        result = conn.execute(
            update(runs)
            .where(runs.c.id == held.run_id, runs.c.owner == held.owner, runs.c.status == RUNNING)
            .values(**values)
        )
    if result.rowcount != 1:
        logger.warning(
            "%s %s: the run was taken over before it finished", held.job, held.period.label
        )
        return False
    return True


def due_periods(engine: Engine, job: str, kind: str, now: int, catch_up: int) -> list[Period]:
    """The periods ``job`` should export at ``now``, oldest first.

    Of the latest ``catch_up`` periods that have ended, those without a finished export, going
    back no further than the job's first recorded period; a job with no history exports just
    the latest period that has ended.
    """
    # Limitation: a period exported once is not exported again when late data for it arrives
    # afterwards (an agent's spool replayed after a long outage); rerun it by hand with
    # 'wattledger export chargeback' to the same path.
    latest = last_complete(kind, now)
    with engine.connect() as conn:
        history = conn.execute(
            select(runs.c.period_start, runs.c.status).where(runs.c.job == job)
        ).all()
    if not history:
        return [latest]

    first = containing(kind, min(start for start, _ in history))
    done = {start for start, status in history if status == DONE}
    due = []
    period = latest
    for _ in range(catch_up):
        if period.start < first.start:
            break
        if period.start not in done:
            due.append(period)
        period = period.previous()
    return list(reversed(due))


def recent(engine: Engine, limit: int = 20) -> list[dict]:
    """The latest export runs, newest first, for a status listing."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(runs).order_by(runs.c.period_start.desc(), runs.c.job).limit(limit)
        )
        return [dict(row) for row in rows.mappings()]
