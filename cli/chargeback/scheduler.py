"""Running the configured exports on their cron schedules with APScheduler 3.

The schedule lives in the store's ``apscheduler_jobs`` table (APScheduler's SQLAlchemy job
store), so it survives restarts: a job whose next run time passed while the scheduler was down
fires once when it comes back (missed runs are coalesced, never dropped). Each run exports every
due period (see :func:`runs.due_periods`), so one late run catches up all that were missed.

Several schedulers may share one database (for availability). APScheduler 3 does not coordinate
them, so each may fire the same job; the ``export_runs`` lock decides which one writes each
period, and the other skips it.

APScheduler stores a job as a reference to a module-level function and its arguments, here the
export's name; the function finds the export settings, database and clock through the runner
bound to the executor thread that calls it, so two schedulers in one process stay apart.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from wattledger.cli.chargeback import runs
from wattledger.cli.chargeback.export import ExportResult, export_chargeback
from wattledger.cli.chargeback.periods import Period
from wattledger.cli.chargeback.schedule_settings import ScheduledExport, ScheduleSettings
from wattledger.cli.chargeback.settings import ChargebackSettings
from wattledger.collector import schema as s
from wattledger.errors import WattledgerError

logger = logging.getLogger(__name__)

_bound = threading.local()


@dataclass(frozen=True)
class Outcome:
    """What one run did with one period: exported it, found it taken, or failed."""

    job: str
    period: Period
    status: str
    result: ExportResult | None = None
    error: str | None = None


class ExportRunner:
    """Runs one export job at a time: finds its due periods, takes each lock, writes the file."""

    def __init__(
        self,
        engine: Engine,
        chargeback: ChargebackSettings,
        schedule: ScheduleSettings,
        *,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        self.chargeback = chargeback
        self.schedule = schedule
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def run(self, name: str) -> list[Outcome]:
        job = self.schedule.export(name)
        if job is None:
            logger.warning("scheduled job %r is not in the configuration; nothing to do", name)
            return []
        now = int(self.clock())
        outcomes = []
        for period in runs.due_periods(self.engine, job.name, job.period, now, job.catch_up):
            held = runs.claim(
                self.engine,
                job.name,
                period,
                self.owner,
                self._now_ns(),
                self.schedule.lock_timeout_s,
            )
            if held is None:
                logger.info(
                    "%s %s: exported or being exported by another scheduler", job.name, period.label
                )
                outcomes.append(Outcome(job.name, period, "skipped"))
                continue
            outcomes.append(self._export(job, held, now))
        return outcomes

    def _export(self, job: ScheduledExport, held: runs.Claim, now: int) -> Outcome:
        period = held.period
        try:
            result = export_chargeback(
                self.engine,
                self.chargeback,
                period.start,
                period.end,
                path=job.path_for(period),
                fmt=job.fmt,
                granularity=job.granularity,
                now=now,
                # A scheduled series keeps one file per period, even a period without usage, so
                # the export is not retried at every tick for a period that will stay empty.
                allow_empty=True,
            )
        except WattledgerError as exc:
            logger.error("%s %s: export failed: %s", job.name, period.label, exc)
            runs.fail(self.engine, held, str(exc), self._now_ns())
            return Outcome(job.name, period, runs.FAILED, error=str(exc))
        except Exception as exc:
            logger.exception("%s %s: export failed", job.name, period.label)
            runs.fail(self.engine, held, f"internal error: {exc!r}", self._now_ns())
            return Outcome(job.name, period, runs.FAILED, error=repr(exc))

        runs.finish(
            self.engine,
            held,
            path=str(result.path),
            sha256=result.sha256,
            rows=result.rows,
            now_ns=self._now_ns(),
        )
        if not result.rows:
            logger.warning(
                "%s %s: no usage in this period; wrote %s without rows",
                job.name,
                period.label,
                result.path,
            )
        logger.info(
            "%s %s: %d rows, %s USD, written to %s",
            job.name,
            period.label,
            result.rows,
            result.total_usd,
            result.path,
        )
        return Outcome(job.name, period, runs.DONE, result=result)

    def _now_ns(self) -> int:
        return int(self.clock() * 1e9)


def run_export_job(name: str) -> None:
    """The function APScheduler stores and calls; the runner comes from the executor thread."""
    runner: ExportRunner | None = getattr(_bound, "runner", None)
    if runner is None:
        logger.error("export job %r ran outside an export scheduler; skipped", name)
        return
    runner.run(name)


def _bind_runner(runner: ExportRunner) -> None:
    _bound.runner = runner


class ExportScheduler:
    """APScheduler with its job store in the wattledger database, running :class:`ExportRunner`."""

    def __init__(
        self,
        engine: Engine,
        chargeback: ChargebackSettings,
        schedule: ScheduleSettings,
        *,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self.schedule = schedule
        self.runner = ExportRunner(engine, chargeback, schedule, clock=clock, owner=owner)
        executor = ThreadPoolExecutor(
            1, pool_kwargs={"initializer": _bind_runner, "initargs": (self.runner,)}
        )
        self._scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=engine, tablename=s.scheduler_jobs.name)
            },
            executors={"default": executor},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=UTC,
        )

    def start(self) -> None:
        """Bring the stored schedule in line with the configuration, then start firing."""
        self._scheduler.start(paused=True)
        self._sync_jobs()
        self._scheduler.resume()

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def _sync_jobs(self) -> None:
        # Limitation: schedulers sharing a database must share one [schedule] section; each one
        # removes the stored jobs its own configuration does not name.
        wanted = {job.name: job for job in self.schedule.exports}
        for stored in self._scheduler.get_jobs():
            if stored.id not in wanted:
                logger.info("removing scheduled export %r: it is no longer configured", stored.id)
                self._scheduler.remove_job(stored.id)
        for name, export in wanted.items():
            stored = self._scheduler.get_job(name)
            if stored is not None and _same_schedule(stored, export.trigger, name):
                continue  # keep its stored next run time, so a run missed while down still fires
            self._scheduler.add_job(
                run_export_job,
                trigger=export.trigger,
                args=(name,),
                id=name,
                name=name,
                replace_existing=True,
            )
            logger.info("scheduled export %r: %s", name, export.cron)


def _same_schedule(stored, trigger, name: str) -> bool:
    return (
        stored.func is run_export_job
        and tuple(stored.args) == (name,)
        and str(stored.trigger) == str(trigger)
        and str(stored.trigger.timezone) == str(trigger.timezone)
    )
