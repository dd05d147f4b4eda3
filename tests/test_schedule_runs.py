"""The export_runs lock and the periods a scheduled export owes, on SQLite and PostgreSQL."""

import threading

from sqlalchemy import select, update

from wattledger.cli.chargeback import runs
from wattledger.cli.chargeback.periods import parse_period
from wattledger.collector import schema as s
from wattledger.collector.db import open_engine

NS = 1_000_000_000
NOV_5 = parse_period("2026-11-05")
NOW_NS = NOV_5.end * NS + 60 * NS
HOUR_S = 3600.0


def rows(engine):
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(select(s.export_runs).order_by(s.export_runs.c.id)).mappings()
        ]


def test_one_claim_per_period_until_it_fails(engine):
    first = runs.claim(engine, "daily", NOV_5, "a", NOW_NS, HOUR_S)
    second = runs.claim(engine, "daily", NOV_5, "b", NOW_NS, HOUR_S)
    other_job = runs.claim(engine, "weekly", NOV_5, "b", NOW_NS, HOUR_S)

    assert first is not None and first.owner == "a"
    assert second is None
    assert other_job is not None

    assert runs.fail(engine, first, "disk full", NOW_NS + NS)
    retry = runs.claim(engine, "daily", NOV_5, "b", NOW_NS + 2 * NS, HOUR_S)

    assert retry is not None and retry.run_id == first.run_id
    [row] = [r for r in rows(engine) if r["job"] == "daily"]
    assert (row["status"], row["owner"], row["error"]) == ("running", "b", None)


def test_a_done_period_is_never_claimed_again(engine):
    held = runs.claim(engine, "daily", NOV_5, "a", NOW_NS, HOUR_S)
    assert runs.finish(engine, held, path="/x.csv", sha256="ab" * 32, rows=7, now_ns=NOW_NS + NS)

    assert runs.claim(engine, "daily", NOV_5, "b", NOW_NS + 10 * 3600 * NS, HOUR_S) is None
    [row] = rows(engine)
    assert (row["status"], row["path"], row["rows"], row["finished_ns"]) == (
        "done",
        "/x.csv",
        7,
        NOW_NS + NS,
    )


def test_a_stale_run_is_taken_over_and_its_late_finish_is_refused(engine):
    dead = runs.claim(engine, "daily", NOV_5, "dead", NOW_NS, HOUR_S)

    assert runs.claim(engine, "daily", NOV_5, "b", NOW_NS + 3599 * NS, HOUR_S) is None
    taken = runs.claim(engine, "daily", NOV_5, "b", NOW_NS + 3601 * NS, HOUR_S)

    assert taken is not None and taken.run_id == dead.run_id
    assert not runs.finish(
        engine, dead, path="/x.csv", sha256="0" * 64, rows=1, now_ns=NOW_NS + 3602 * NS
    )
    assert runs.finish(
        engine, taken, path="/x.csv", sha256="1" * 64, rows=1, now_ns=NOW_NS + 3603 * NS
    )
    [row] = rows(engine)
    assert (row["status"], row["owner"], row["sha256"]) == ("done", "b", "1" * 64)


def test_racing_claims_from_separate_connections_let_exactly_one_through(engine):
    url = engine.url.render_as_string(hide_password=False)
    engines = [open_engine(url) for _ in range(8)]
    start = threading.Barrier(len(engines))
    won = []

    def contend(index, own_engine):
        start.wait()
        held = runs.claim(own_engine, "daily", NOV_5, f"scheduler-{index}", NOW_NS, HOUR_S)
        if held is not None:
            won.append(held)

    threads = [threading.Thread(target=contend, args=(i, e)) for i, e in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for own_engine in engines:
        own_engine.dispose()

    assert len(won) == 1
    [row] = rows(engine)
    assert row["owner"] == won[0].owner


def test_a_job_without_history_owes_only_the_latest_ended_period(engine):
    now = parse_period("2026-11-07").start + 600  # 7 Nov 00:10

    assert [p.label for p in runs.due_periods(engine, "daily", "day", now, 31)] == ["2026-11-06"]
    assert [p.label for p in runs.due_periods(engine, "monthly", "month", now, 31)] == ["2026-10"]


def test_after_downtime_every_missed_period_is_due_oldest_first(engine):
    done = runs.claim(engine, "daily", NOV_5, "a", NOW_NS, HOUR_S)
    runs.finish(engine, done, path="/x", sha256="0" * 64, rows=1, now_ns=NOW_NS)
    now = parse_period("2026-11-09").start + 600  # down from 6 Nov to 9 Nov 00:10

    due = runs.due_periods(engine, "daily", "day", now, 31)

    assert [p.label for p in due] == ["2026-11-06", "2026-11-07", "2026-11-08"]
    assert [p.label for p in runs.due_periods(engine, "daily", "day", now, 2)] == [
        "2026-11-07",
        "2026-11-08",
    ]


def test_failed_and_unfinished_periods_stay_due(engine):
    for day in ("2026-11-05", "2026-11-06", "2026-11-07"):
        held = runs.claim(engine, "daily", parse_period(day), "a", NOW_NS, HOUR_S)
        if day == "2026-11-06":
            runs.fail(engine, held, "no price", NOW_NS)
        elif day == "2026-11-05":
            runs.finish(engine, held, path="/x", sha256="0" * 64, rows=1, now_ns=NOW_NS)
    with engine.begin() as conn:  # 7 Nov is still 'running' (its scheduler may be busy or dead)
        conn.execute(
            update(s.export_runs).where(s.export_runs.c.status == "running").values(owner="a")
        )

    due = runs.due_periods(engine, "daily", "day", parse_period("2026-11-08").end + 60, 31)

    assert [p.label for p in due] == ["2026-11-06", "2026-11-07", "2026-11-08"]
