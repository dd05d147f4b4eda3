"""Group commit: requests that arrive together share a transaction, each with its own outcome."""

import sqlite3
import threading
import time

import pytest
from sqlalchemy import func, select

from wattledger import contract as c
from wattledger.collector import schema as s
from wattledger.collector.groupcommit import GroupCommit
from wattledger.collector.ingest import Ingestor, LimitExceeded
from wattledger.collector.points import COUNTER, Point

S = 1_000_000_000
T0 = 1_764_000_000 * S


class GatedWriter:
    """A write function whose first call waits until the test lets it go.

    While the first call is held, the other callers queue up behind its leader, so the second
    call is known to carry all of them.
    """

    def __init__(self, refuse=()) -> None:
        self.calls: list[list[str]] = []
        self.stored: list[str] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.refuse = set(refuse)

    def __call__(self, jobs) -> None:
        self.calls.append(list(jobs))
        if len(self.calls) == 1:
            self.first_started.set()
            self.release.wait(10)
        bad = [job for job in jobs if isinstance(job, str) and job in self.refuse]
        if bad:
            raise ValueError(f"refused {bad[0]}")
        self.stored.extend(jobs)


def run_in_threads(group, jobs):
    errors: dict[str, BaseException] = {}

    def run(job):
        try:
            group.run(job, 1)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions
            errors[job] = exc

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    return threads, errors


def queue_behind_first(group, writer, jobs):
    """Start ``first`` and hold it; queue the rest behind it; then let everything run."""
    first, *rest = jobs
    threads, errors = run_in_threads(group, jobs)
    threads[0].start()
    assert writer.first_started.wait(10)
    for thread in threads[1:]:
        thread.start()
    while len(group._queue) < len(rest):
        threading.Event().wait(0.001)
    writer.release.set()
    for thread in threads:
        thread.join(10)
    return errors


def test_a_lone_job_is_written_at_once_by_its_own_caller():
    stored = []
    group = GroupCommit(stored.extend, max_size=100)

    group.run("a", 1)

    assert stored == ["a"]
    assert (group.groups, group.jobs) == (1, 1)


def test_jobs_that_arrive_during_a_write_share_the_next_one():
    writer = GatedWriter()
    group = GroupCommit(writer, max_size=100)

    errors = queue_behind_first(group, writer, ["a", "b", "c", "d"])

    assert errors == {}
    assert writer.calls == [["a"], ["b", "c", "d"]]
    assert sorted(writer.stored) == ["a", "b", "c", "d"]
    assert (group.groups, group.jobs) == (2, 4)


def test_a_group_is_bounded_by_the_summed_size_of_its_jobs():
    writer = GatedWriter()
    group = GroupCommit(writer, max_size=2)

    errors = queue_behind_first(group, writer, ["a", "b", "c", "d", "e"])

    assert errors == {}
    assert writer.calls == [["a"], ["b", "c"], ["d", "e"]]


def test_a_failing_job_fails_alone_and_the_others_of_its_group_are_stored():
    writer = GatedWriter(refuse={"c"})
    group = GroupCommit(writer, max_size=100)

    errors = queue_behind_first(group, writer, ["a", "b", "c", "d"])

    # The shared write failed whole; each job was then written alone.
    assert writer.calls == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]
    assert sorted(writer.stored) == ["a", "b", "d"]
    assert list(errors) == ["c"] and str(errors["c"]) == "refused c"


def test_an_error_of_a_lone_job_reaches_its_caller():
    def refuse(jobs):
        raise RuntimeError("database down")

    group = GroupCommit(refuse, max_size=10)

    with pytest.raises(RuntimeError, match="database down"):
        group.run("a", 1)
    # The failure did not leave the group stuck: the next job is led again.
    with pytest.raises(RuntimeError, match="database down"):
        group.run("b", 1)


RESOURCE_OF = {n: {c.RES_NODE: f"node-{n}"} for n in range(8)}


def node_energy(node: int, minute: int, joules: float) -> Point:
    attrs = {c.ATTR_HW_ID: f"GPU-{node}", c.ATTR_ENERGY_SOURCE: "counter"}
    return Point(
        c.METRIC_ENERGY, COUNTER, RESOURCE_OF[node], attrs, T0, T0 + minute * 60 * S, joules
    )


def test_concurrent_requests_are_each_stored_once_with_their_own_counts(engine):
    ingestor = Ingestor(engine)
    results = {}

    def send(node: int) -> None:
        # Each node sends minutes 1..5 of a counter growing 42,000 J a minute, one per request.
        results[node] = [
            ingestor.ingest([node_energy(node, m, 42_000.0 * m)]).stored_deltas for m in range(1, 6)
        ]

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == {n: [1, 1, 1, 1, 1] for n in range(8)}
    with engine.connect() as conn:
        count, joules = conn.execute(
            select(func.count(), func.sum(s.deltas.c.value)).select_from(s.deltas)
        ).one()
    assert (count, joules) == (40, 8 * 5 * 42_000.0)


def test_one_request_over_a_limit_is_refused_alone_inside_a_shared_transaction(engine):
    ingestor = Ingestor(engine, max_series_per_node=1)
    writer = GatedWriter()
    real_store = ingestor._store

    def store(jobs):
        writer(jobs)
        real_store(jobs)

    ingestor._store = store
    requests = {
        "first": [node_energy(3, 1, 42_000.0)],
        "fine": [node_energy(2, 1, 42_000.0)],
        "over": [node_energy(1, 1, 42_000.0), _second_gpu(1)],
    }
    outcomes = {}

    def send(name):
        try:
            outcomes[name] = ingestor.ingest(requests[name]).stored_deltas
        except LimitExceeded as exc:
            outcomes[name] = str(exc)

    threads = {name: threading.Thread(target=send, args=(name,)) for name in requests}
    threads["first"].start()
    assert writer.first_started.wait(10)
    threads["fine"].start()
    threads["over"].start()
    while len(ingestor._group._queue) < 2:
        threading.Event().wait(0.001)
    writer.release.set()
    for thread in threads.values():
        thread.join(30)

    # "fine" and "over" shared a transaction that the limit rolled back; each was retried alone.
    assert [len(call) for call in writer.calls] == [1, 2, 1, 1]
    assert outcomes == {
        "first": 1,
        "fine": 1,
        "over": "node 'node-1' would have 2 series; the limit is 1 per node "
        "(collector option --max-series-per-node)",
    }
    with engine.connect() as conn:
        nodes = conn.execute(select(s.series.c.node).order_by(s.series.c.node)).scalars().all()
    assert nodes == ["node-2", "node-3"]


def _second_gpu(node: int) -> Point:
    attrs = {c.ATTR_HW_ID: f"GPU-{node}-b", c.ATTR_ENERGY_SOURCE: "counter"}
    return Point(c.METRIC_ENERGY, COUNTER, RESOURCE_OF[node], attrs, T0, T0 + 60 * S, 1.0)


@pytest.mark.parametrize("chunk_rows", [50_000, 1], ids=["one-statement", "row-by-row-chunks"])
def test_both_write_paths_store_the_same_rows(engine, monkeypatch, chunk_rows):
    from wattledger.collector import batchwrite

    monkeypatch.setattr(batchwrite, "PG_ALL_ROWS", chunk_rows)
    ingestor = Ingestor(engine)
    for minute in (1, 2, 61):
        ingestor.ingest([node_energy(n, minute, 42_000.0 * minute) for n in range(3)])

    with engine.connect() as conn:
        deltas = conn.execute(
            select(s.deltas.c.end_ns, s.deltas.c.value).order_by(s.deltas.c.end_ns).limit(3)
        ).all()
        hours = conn.execute(
            select(s.rollup_hourly.c.hour, func.sum(s.rollup_hourly.c.value))
            .group_by(s.rollup_hourly.c.hour)
            .order_by(s.rollup_hourly.c.hour)
        ).all()
        dirty = conn.execute(select(s.dirty_hours.c.hour, s.dirty_hours.c.version)).all()
        last = conn.execute(select(func.max(s.series.c.last_value))).scalar()

    hour0 = T0 // S
    assert [tuple(row) for row in deltas] == [(T0 + 60 * S, 42_000.0)] * 3
    # Minute 61 splits 59 minutes into the first hour and 1 minute into the second, per GPU.
    assert [tuple(row) for row in hours] == [
        (hour0, 3 * 42_000.0 * 60),
        (hour0 + 3600, 3 * 42_000.0),
    ]
    assert sorted(tuple(row) for row in dirty) == [(hour0, 3), (hour0 + 3600, 1)]
    assert last == 42_000.0 * 61


def test_a_failure_of_the_store_fails_the_whole_group_without_retrying_each_job():
    class Outage(Exception):
        pass

    calls = []
    writer = GatedWriter()

    def write(jobs):
        writer(jobs)
        calls.append(list(jobs))
        if len(calls) > 1:
            raise Outage("database is locked")

    group = GroupCommit(write, max_size=100, shared_failure=lambda exc: isinstance(exc, Outage))
    errors = queue_behind_first(group, writer, ["a", "b", "c", "d"])

    assert calls == [["a"], ["b", "c", "d"]]  # no retries one by one
    assert sorted(errors) == ["b", "c", "d"]
    assert {str(error) for error in errors.values()} == {"database is locked"}


def test_a_writer_holding_sqlite_makes_a_batch_fail_after_the_lock_wait(tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from wattledger.collector import batchwrite
    from wattledger.collector.db import SQLITE_BUSY_TIMEOUT_MS, open_engine
    from wattledger.migrations import runner

    monkeypatch.setattr(batchwrite, "LOCK_WAIT_S", 0.3)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_engine(url)
    runner.upgrade(engine)
    ingestor = Ingestor(engine)
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            ingestor.ingest([node_energy(1, 1, 42_000.0)])
        waited = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert 0.3 <= waited < 3.0  # the short wait, not the 30 s busy timeout
    assert ingestor.ingest([node_energy(1, 1, 42_000.0)]).stored_deltas == 1
    with engine.connect() as conn:
        # The pooled connection is back on the normal busy timeout.
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_lock_held_on_postgresql_makes_a_batch_fail_after_the_lock_wait(engine, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from wattledger.collector import batchwrite

    monkeypatch.setattr(batchwrite, "LOCK_WAIT_S", 0.3)
    ingestor = Ingestor(engine)
    ingestor.ingest([node_energy(1, 1, 42_000.0)])  # the series exists; only deltas will wait

    with engine.connect() as holder:
        holder.exec_driver_sql("LOCK TABLE deltas IN EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"):
            ingestor.ingest([node_energy(1, 2, 84_000.0)])
        waited = time.monotonic() - started
        holder.rollback()

    assert 0.3 <= waited < 3.0
    assert ingestor.ingest([node_energy(1, 2, 84_000.0)]).stored_deltas == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.sum(s.deltas.c.value))).scalar() == 84_000.0
        # The bounds were the transaction's own: this session has the server's defaults.
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
