"""``wattledger schedule``: run the configured chargeback exports on their cron schedules."""

from __future__ import annotations

import logging
import signal
import threading

import click
from sqlalchemy import select

from wattledger.cli.app import App, db_option, pass_app
from wattledger.cli.chargeback.runs import recent
from wattledger.cli.chargeback.schedule_settings import ScheduleSettings, parse_schedule
from wattledger.cli.chargeback.scheduler import ExportScheduler
from wattledger.cli.chargeback.settings import parse_chargeback
from wattledger.cli.output import Column, emit, format_option, text
from wattledger.collector import schema as s
from wattledger.errors import ConfigError
from wattledger.timeutil import iso

logger = logging.getLogger(__name__)

WATCHDOG_PING_S = 5.0


@click.group("schedule")
def schedule_group() -> None:
    """Scheduled chargeback exports ([schedule] in the config file)."""


@schedule_group.command("run")
@db_option
@pass_app
def run_command(app: App, db_url: str | None) -> None:
    """Run the exports of [[schedule.exports]] until stopped (SIGTERM or Ctrl-C).

    The schedule is kept in the database, so it survives restarts and runs missed while the
    machine was down are caught up. Several schedulers may share a database: a lock there
    makes sure each period is written once.

    \b
    Example (in the config file):
      [[schedule.exports]]
      name = "monthly-focus"
      cron = "0 3 1 * *"
      period = "month"
      path = "/var/lib/wattledger/exports/focus-{period}.parquet"
    """
    schedule, chargeback = _settings(app)
    if app.verbose < 2:  # APScheduler logs every run at INFO; -vv shows it
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if not schedule.exports:
        raise ConfigError(
            "no exports are scheduled; add a [[schedule.exports]] table to the config file"
        )
    engine = app.engine(db_url)

    scheduler = ExportScheduler(engine, chargeback, schedule)
    stop = threading.Event()

    def _on_signal(signum, _frame):
        logger.info("signal %d: stopping the scheduler", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    scheduler.start()
    for name, when in sorted(scheduler.next_runs().items()):
        click.echo(f"scheduled {name}: next run {when.isoformat() if when else 'paused'}", err=True)
    _notify("READY=1")
    while not stop.wait(WATCHDOG_PING_S):
        _notify("WATCHDOG=1")
    _notify("STOPPING=1")
    scheduler.shutdown(wait=True)
    click.echo("scheduler stopped", err=True)


@schedule_group.command("status")
@format_option()
@db_option
@pass_app
def status_command(app: App, fmt: str, db_url: str | None) -> None:
    """The configured exports with their next run, and the latest export runs."""
    schedule, _ = _settings(app)
    engine = app.engine(db_url)
    jobs = s.scheduler_jobs
    with engine.connect() as conn:
        next_runs = dict(conn.execute(select(jobs.c.id, jobs.c.next_run_time)).all())

    rows = [
        {
            "name": job.name,
            "cron": job.cron,
            "period": job.period,
            "format": job.fmt,
            "path": job.path,
            "next_run": iso(int(next_runs[job.name])) if next_runs.get(job.name) else None,
        }
        for job in schedule.exports
    ]
    columns = [
        Column(key, key.replace("_", " ").capitalize(), text, "left")
        for key in ("name", "cron", "period", "format", "path", "next_run")
    ]
    emit(rows, columns, fmt, title="Scheduled exports")

    history = [
        {**run, "period_start": iso(run["period_start"]), "period_end": iso(run["period_end"])}
        for run in recent(engine)
    ]
    run_columns = [
        Column(key, key.replace("_", " ").capitalize(), text, "left")
        for key in ("job", "period_start", "period_end", "status", "rows", "path", "error")
    ]
    emit(history, run_columns, fmt, title="Latest export runs")


def _settings(app: App) -> tuple[ScheduleSettings, object]:
    config = app.config
    where = str(config.source or "config")
    chargeback = parse_chargeback(config.chargeback, where)
    return parse_schedule(config.schedule, chargeback, where), chargeback


def _notify(state: str) -> None:
    """Tell systemd (Type=notify) how the service is doing; a no-op outside systemd."""
    import sdnotify

    sdnotify.SystemdNotifier().notify(state)
