"""APScheduler with its job store in the wattledger database, on SQLite and PostgreSQL.

The schedules fire on the real clock (every second, or once at a chosen second); the runner's
own clock, which decides the periods due, is held at 1 Dec 02:05, after the test fleet's four
hours. Before each test one scheduler has already exported the first hour (22:00), so three
hours are due.
"""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from test_chargeback_fleet import CHARGEBACK, START, build_fleet

from wattledger.cli.chargeback import export as export_module
from wattledger.cli.chargeback import runs
from wattledger.cli.chargeback.schedule_settings import parse_schedule
from wattledger.cli.chargeback.scheduler import ExportRunner, ExportScheduler
from wattledger.cli.chargeback.settings import parse_chargeback
from wattledger.collector import schema as s
from wattledger.collector.db import open_engine

H = 3600
ALL_HOURS = ["2026-11-30T22.csv", "2026-11-30T23.csv", "2026-12-01T00.csv", "2026-12-01T01.csv"]

pytestmark = pytest.mark.slow


def settings(tmp_path, cron="* * * * * *", name="hourly"):
    chargeback = parse_chargeback(CHARGEBACK)
    schedule = parse_schedule(
        {
            "exports": [
                {
                    "name": name,
                    "cron": cron,
                    "period": "hour",
                    "path": str(tmp_path / "out" / "{period}.csv"),
                }
            ]
        },
        chargeback,
    )
    return chargeback, schedule


def first_hour_exported(engine, tmp_path):
    """The fleet, with 22:00 already exported by an earlier scheduler."""
    build_fleet(engine)
    chargeback, schedule = settings(tmp_path)
    [done] = ExportRunner(
        engine, chargeback, schedule, clock=lambda: START + H + 300, owner="earlier"
    ).run("hourly")
    assert done.status == "done"


def done_periods(engine):
    with engine.connect() as conn:
        query = select(s.export_runs.c.period_start, s.export_runs.c.owner).where(
            s.export_runs.c.status == "done"
        )
        return sorted(conn.execute(query).all())


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def second_engine(engine):
    return open_engine(engine.url.render_as_string(hide_password=False))


def test_a_run_missed_while_down_fires_when_the_scheduler_comes_back(engine, tmp_path):
    first_hour_exported(engine, tmp_path)
    fire = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    once_a_year = f"{fire.second} {fire.minute} {fire.hour} {fire.day} {fire.month} *"
    chargeback, schedule = settings(tmp_path, cron=once_a_year)
    clock = lambda: START + 4 * H + 300  # noqa: E731

    before = ExportScheduler(engine, chargeback, schedule, clock=clock, owner="before")
    before.start()
    stored = before.next_runs()
    before.shutdown()
    while datetime.now(UTC) < fire + timedelta(seconds=1):  # the machine is down at fire time
        time.sleep(0.1)
    assert len(done_periods(engine)) == 1

    restarted_engine = second_engine(engine)
    after = ExportScheduler(restarted_engine, chargeback, schedule, clock=clock, owner="after")
    after.start()
    caught_up = wait_for(lambda: len(done_periods(engine)) == 4)
    next_run = after.next_runs()["hourly"]
    after.shutdown()
    restarted_engine.dispose()

    assert stored == {"hourly": fire}
    assert caught_up, done_periods(engine)
    assert [owner for _, owner in done_periods(engine)] == ["earlier", "after", "after", "after"]
    assert next_run == fire.replace(year=fire.year + 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ALL_HOURS


def test_two_schedulers_on_one_database_write_each_period_once(engine, tmp_path, monkeypatch):
    first_hour_exported(engine, tmp_path)
    lock = threading.Lock()
    writes, claims, fired = [], [], []
    real_write, real_claim, real_run = export_module.write_rows, runs.claim, ExportRunner.run

    def counting_write(rows, path, fmt):
        with lock:
            writes.append(path.name)
        return real_write(rows, path, fmt)

    def recording_claim(engine_, job, period, owner, now_ns, timeout_s):
        held = real_claim(engine_, job, period, owner, now_ns, timeout_s)
        with lock:
            claims.append((owner, period.label, held is not None))
        return held

    def recording_run(runner, name):
        with lock:
            fired.append(runner.owner)
        return real_run(runner, name)

    monkeypatch.setattr(export_module, "write_rows", counting_write)
    monkeypatch.setattr(runs, "claim", recording_claim)
    monkeypatch.setattr(ExportRunner, "run", recording_run)
    chargeback, schedule = settings(tmp_path)
    clock = lambda: START + 4 * H + 300  # noqa: E731
    engine_b = second_engine(engine)
    a = ExportScheduler(engine, chargeback, schedule, clock=clock, owner="a")
    b = ExportScheduler(engine_b, chargeback, schedule, clock=clock, owner="b")

    a.start()
    b.start()
    finished = wait_for(lambda: len(done_periods(engine)) == 4)
    time.sleep(2.5)  # a few more fires of both, with nothing left to do
    a.shutdown()
    b.shutdown()
    engine_b.dispose()

    assert finished, done_periods(engine)
    assert sorted(writes) == ALL_HOURS[1:]  # each hour after 22:00 written exactly once
    assert {"a", "b"} <= set(fired)  # both schedulers ran the job, several times
    for hour in ("2026-11-30T23", "2026-12-01T00", "2026-12-01T01"):
        assert sum(won for _, label, won in claims if label == hour) == 1, claims
    assert {owner for _, owner in done_periods(engine)} <= {"earlier", "a", "b"}
    with engine.connect() as conn:
        statuses = conn.execute(select(s.export_runs.c.status)).scalars().all()
    assert statuses == ["done"] * 4


def test_the_stored_schedule_follows_the_configuration(engine, tmp_path):
    chargeback, yearly = settings(tmp_path, cron="0 0 1 1 *", name="yearly")
    _, hourly = settings(tmp_path, cron="5 * * * *", name="hourly")
    _, hourly_changed = settings(tmp_path, cron="10 * * * *", name="hourly")

    def stored():
        with engine.connect() as conn:
            return dict(
                conn.execute(select(s.scheduler_jobs.c.id, s.scheduler_jobs.c.next_run_time)).all()
            )

    for schedule in (yearly, hourly):
        scheduler = ExportScheduler(engine, chargeback, schedule)
        scheduler.start()
        scheduler.shutdown()
    after_hourly = stored()
    scheduler = ExportScheduler(engine, chargeback, hourly_changed)
    scheduler.start()
    scheduler.shutdown()

    assert list(after_hourly) == ["hourly"]  # the yearly job left the configuration, and the store
    minute = datetime.fromtimestamp(stored()["hourly"], tz=UTC).minute
    assert datetime.fromtimestamp(after_hourly["hourly"], tz=UTC).minute == 5
    assert minute == 10
