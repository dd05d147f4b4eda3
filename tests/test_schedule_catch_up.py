"""Scheduled exports with a controllable clock: catching up after downtime, retrying failures,
taking over a dead scheduler's run. The fleet costs 12.30 USD in each of its four hours."""

import csv
from decimal import Decimal

from sqlalchemy import delete, select, update
from test_chargeback_fleet import CHARGEBACK, PRICES, START, build_fleet

from wattledger.cli.chargeback.schedule_settings import parse_schedule
from wattledger.cli.chargeback.scheduler import ExportRunner
from wattledger.cli.chargeback.settings import parse_chargeback
from wattledger.cli.reports.prices import set_prices
from wattledger.collector import schema as s

H = 3600
NAMES = {"hour": "hourly", "day": "daily"}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def runner(engine, tmp_path, clock, *, period="hour", owner="scheduler-a", **job):
    chargeback = parse_chargeback(CHARGEBACK)
    schedule = parse_schedule(
        {
            "exports": [
                {
                    "name": NAMES[period],
                    "cron": "5 * * * *",
                    "period": period,
                    "path": str(tmp_path / "{job}" / "{period}.csv"),
                    **job,
                }
            ]
        },
        chargeback,
    )
    return ExportRunner(engine, chargeback, schedule, clock=clock, owner=owner)


def costs(path):
    with path.open(newline="") as stream:
        return {
            (r["x_ChargeKind"], r["ResourceName"]): Decimal(r["BilledCost"])
            for r in csv.DictReader(stream)
        }


def export_runs(engine):
    with engine.connect() as conn:
        query = select(
            s.export_runs.c.job,
            s.export_runs.c.period_start,
            s.export_runs.c.status,
            s.export_runs.c.owner,
        ).order_by(s.export_runs.c.period_start)
        return [tuple(row) for row in conn.execute(query)]


def test_missed_hours_are_caught_up_after_downtime(engine, tmp_path):
    build_fleet(engine)
    clock = Clock(START + 2 * H + 300)  # 1 Dec 00:05
    hourly = runner(engine, tmp_path, clock)

    first = hourly.run("hourly")
    clock.t = START + 4 * H + 300  # down from 00:05 until 02:05: the 01:05 run never happened
    caught_up = hourly.run("hourly")
    clock.t += 60
    again = hourly.run("hourly")

    assert [(o.period.label, o.status, o.result.total_usd) for o in first] == [
        ("2026-11-30T23", "done", Decimal("12.30"))
    ]
    assert [(o.period.label, o.status, o.result.total_usd) for o in caught_up] == [
        ("2026-12-01T00", "done", Decimal("12.30")),
        ("2026-12-01T01", "done", Decimal("12.30")),
    ]
    assert again == []
    assert costs(tmp_path / "hourly" / "2026-12-01T00.csv") == {
        ("serving", "qwen-32b"): Decimal("4.125"),
        ("idle", "GPU-c0"): Decimal("4.025"),
        ("idle", "llama-70b"): Decimal("2.075"),
        ("serving", "llama-70b"): Decimal("2.075"),
    }
    assert costs(tmp_path / "hourly" / "2026-12-01T01.csv")[("idle", "llama-70b")] == Decimal(
        "4.15"
    )
    assert [status for *_, status, _ in export_runs(engine)] == ["done", "done", "done"]
    assert sorted(p.name for p in (tmp_path / "hourly").iterdir()) == [
        "2026-11-30T23.csv",
        "2026-12-01T00.csv",
        "2026-12-01T01.csv",
    ]


def test_a_daily_export_waits_for_the_day_to_end(engine, tmp_path):
    build_fleet(engine)
    clock = Clock(START + 2 * H + 60)  # 1 Dec 00:01: 30 Nov has ended, 1 Dec has not
    daily = runner(engine, tmp_path, clock, period="day")

    [nov_30] = daily.run("daily")
    clock.t = START + 26 * H + 60  # 2 Dec 00:01
    [dec_1] = daily.run("daily")

    assert (nov_30.period.label, nov_30.result.total_usd) == ("2026-11-30", Decimal("24.60"))
    assert (dec_1.period.label, dec_1.result.total_usd) == ("2026-12-01", Decimal("24.60"))


def test_a_failed_export_is_recorded_and_retried_by_the_next_run(engine, tmp_path):
    build_fleet(engine)
    with engine.begin() as conn:
        conn.execute(delete(s.prices).where(s.prices.c.key == "B200"))
    clock = Clock(START + 2 * H + 300)
    hourly = runner(engine, tmp_path, clock)

    [failed] = hourly.run("hourly")
    with engine.connect() as conn:
        error = conn.execute(select(s.export_runs.c.error)).scalar_one()
    set_prices(engine, PRICES)
    clock.t += H
    retried = hourly.run("hourly")

    assert failed.status == "failed"
    assert error.startswith("2 GPU(s) have 2.00 GPU-hours with no price in this window (SKU B200)")
    assert [(o.period.label, o.status) for o in retried] == [
        ("2026-11-30T23", "done"),
        ("2026-12-01T00", "done"),
    ]
    assert sorted(p.name for p in (tmp_path / "hourly").iterdir()) == [
        "2026-11-30T23.csv",
        "2026-12-01T00.csv",
    ]


def test_a_run_left_running_by_a_dead_scheduler_is_taken_over_after_the_lock_timeout(
    engine, tmp_path
):
    build_fleet(engine)
    clock = Clock(START + 2 * H + 300)
    dead = runner(engine, tmp_path, clock, owner="dead")
    dead.run("hourly")
    with engine.begin() as conn:  # as if it had crashed half-way through
        conn.execute(update(s.export_runs).values(status="running", finished_ns=None))
    alive = runner(engine, tmp_path, clock, owner="alive")

    skipped = alive.run("hourly")
    clock.t += 3601
    taken = alive.run("hourly")

    assert [o.status for o in skipped] == ["skipped"]
    assert [(o.period.label, o.status) for o in taken] == [
        ("2026-11-30T23", "done"),
        ("2026-12-01T00", "done"),
    ]
    assert [owner for *_, owner in export_runs(engine)] == ["alive", "alive"]
