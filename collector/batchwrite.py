"""The ingest's hot writes, in as few round trips as each database allows.

Every statement here is fixed text with bound parameters. On PostgreSQL a batch's writes are
one statement over arrays (``unnest``, sent as array literals), so a batch of any size costs a
handful of round trips; on SQLite, which runs in-process, each table's write is one
``executemany`` over plain tuples.

New deltas and gauge samples cannot collide with stored ones: the ingest writes only points
after the last one stored for their series, read under the series' row lock. ``ON CONFLICT DO
NOTHING`` stays as a second guard.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, text

from wattledger.collector.db import SQLITE_BUSY_TIMEOUT_MS

CHUNK = 5_000
PG_ALL_ROWS = 50_000

# How long a batch waits for another writer's locks, and how long its statements may run. An
# agent gives up on a request after 10 s; a batch held up longer is answered 503 (retry later)
# while the agent still listens, instead of piling up behind a lock it cannot see.
LOCK_WAIT_S = 5.0
STATEMENT_LIMIT_S = 30.0
PG_BOUND_WAITS = text(
    "SELECT set_config('lock_timeout', :lock, true), "
    "set_config('statement_timeout', :statement, true)"
)

PG_SERIES_IDS = text(
    "SELECT id, key_hash FROM series WHERE key_hash = ANY(CAST(:keys AS varchar[]))"
)
# LockRows sits above the sort, so rows are locked in id order whatever the plan.
PG_LOCK = text(
    "SELECT s.id, s.start_ns, s.last_ns, s.last_value "
    "FROM unnest(CAST(:ids AS bigint[])) AS v(id) JOIN series AS s ON s.id = v.id "
    "ORDER BY s.id FOR UPDATE OF s"
)
# Everything a batch writes after reading its series' state, in one statement and one round
# trip. Each part writes another table, so no row is touched twice; an empty array writes nothing.
# Parameters: d* deltas, g* gauge samples, r* rollups, h* dirty hours, s* series states.
PG_ALL = text(
    "WITH "
    "new_deltas AS (INSERT INTO deltas (series_id, end_ns, start_ns, value) "
    "SELECT * FROM unnest(CAST(:da AS bigint[]), CAST(:db AS bigint[]), CAST(:dc AS bigint[]), "
    "CAST(:dd AS float8[])) ON CONFLICT DO NOTHING), "
    "new_gauges AS (INSERT INTO gauge_samples (series_id, t_ns, value) "
    "SELECT * FROM unnest(CAST(:ga AS bigint[]), CAST(:gb AS bigint[]), CAST(:gc AS float8[])) "
    "ON CONFLICT DO NOTHING), "
    "new_rollups AS (INSERT INTO rollup_hourly "
    "(series_id, hour, value, seconds, active_seconds, samples) "
    "SELECT * FROM unnest(CAST(:ra AS bigint[]), CAST(:rb AS bigint[]), CAST(:rc AS float8[]), "
    "CAST(:rd AS float8[]), CAST(:re AS float8[]), CAST(:rf AS bigint[])) "
    "ON CONFLICT (series_id, hour) DO UPDATE SET "
    "value = rollup_hourly.value + excluded.value, "
    "seconds = rollup_hourly.seconds + excluded.seconds, "
    "active_seconds = rollup_hourly.active_seconds + excluded.active_seconds, "
    "samples = rollup_hourly.samples + excluded.samples), "
    "dirty AS (INSERT INTO dirty_hours (hour, version) "
    "SELECT h, 1 FROM unnest(CAST(:ha AS bigint[])) AS v(h) "
    "ON CONFLICT (hour) DO UPDATE SET version = dirty_hours.version + 1), "
    "moved AS (UPDATE series "
    "SET start_ns = v.start_ns, last_ns = v.last_ns, last_value = v.last_value "
    "FROM unnest(CAST(:sa AS bigint[]), CAST(:sb AS bigint[]), CAST(:sc AS bigint[]), "
    "CAST(:sd AS float8[])) AS v(id, start_ns, last_ns, last_value) WHERE series.id = v.id) "
    "SELECT 1"
)

SQLITE_DELTAS = (
    "INSERT INTO deltas (series_id, end_ns, start_ns, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
SQLITE_GAUGES = (
    "INSERT INTO gauge_samples (series_id, t_ns, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)
SQLITE_ROLLUPS = (
    "INSERT INTO rollup_hourly (series_id, hour, value, seconds, active_seconds, samples) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (series_id, hour) DO UPDATE SET "
    "value = value + excluded.value, seconds = seconds + excluded.seconds, "
    "active_seconds = active_seconds + excluded.active_seconds, "
    "samples = samples + excluded.samples"
)
SQLITE_DIRTY = (
    "INSERT INTO dirty_hours (hour, version) VALUES (?, 1) "
    "ON CONFLICT (hour) DO UPDATE SET version = version + 1"
)
SQLITE_SERIES_STATE = "UPDATE series SET start_ns = ?, last_ns = ?, last_value = ? WHERE id = ?"


@contextmanager
def bounded_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction that waits at most :data:`LOCK_WAIT_S` for other writers' locks.

    PostgreSQL bounds lock waits and statements for this transaction only (``set_config`` with
    ``is_local``). SQLite waits for the write lock when the transaction begins, so the
    connection's busy timeout is shortened around it and restored before it goes back to the
    pool.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            conn.execute(
                PG_BOUND_WAITS,
                {
                    "lock": f"{int(LOCK_WAIT_S * 1000)}ms",
                    "statement": f"{int(STATEMENT_LIMIT_S * 1000)}ms",
                },
            )
            yield conn
        return

    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_S * 1000)}")
        try:
            with conn.begin():
                yield conn
        finally:
            try:
                raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            except sqlite3.Error:
                conn.invalidate()  # never pool a connection with the short timeout


class BatchWriter:
    """Reads and writes the rows of one batch on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        if self.postgres:
            # Plan each statement for its own arrays: a prepared statement's generic plan does
            # not know an array holds 50 ids and may walk the whole primary key instead.
            conn.connection.dbapi_connection.prepare_threshold = None

    def series_ids(self, key_hashes: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(key_hashes, CHUNK if self.postgres else 500):
            if self.postgres:
                rows = self.conn.execute(PG_SERIES_IDS, {"keys": list(chunk)})
            else:
                marks = ", ".join("?" * len(chunk))
                rows = self.conn.exec_driver_sql(
                    f"SELECT id, key_hash FROM series WHERE key_hash IN ({marks})", tuple(chunk)
                )
            found.update({key_hash: series_id for series_id, key_hash in rows})
        return found

    def lock_series(
        self, ids: Sequence[int]
    ) -> list[tuple[int, int | None, int | None, float | None]]:
        """The stored state of each series, locked until commit (in id order: no deadlocks).

        SQLite needs no row locks: its writers are serialised by ``BEGIN IMMEDIATE``.
        """
        ordered = sorted(ids)
        states = []
        for chunk in _chunks(ordered, CHUNK if self.postgres else 500):
            if self.postgres:
                rows = self.conn.execute(PG_LOCK, {"ids": _array_literal(chunk)})
            else:
                marks = ", ".join("?" * len(chunk))
                rows = self.conn.exec_driver_sql(
                    f"SELECT id, start_ns, last_ns, last_value FROM series WHERE id IN ({marks})",
                    tuple(chunk),
                )
            states.extend(tuple(row) for row in rows)
        return states

    def batch(
        self,
        deltas: list[tuple[int, int, int, float]],
        gauges: list[tuple[int, int, float]],
        rollups: list[tuple[int, int, float, float, float, int]],
        hours: list[int],
        states: list[tuple[int, int | None, int | None, float | None]],
    ) -> None:
        """Write a batch's deltas, gauge samples, rollups, dirty hours and series states.

        On PostgreSQL that is one statement per :data:`PG_ALL_ROWS` rows of the longest part;
        on SQLite one ``executemany`` per table.
        """
        dirty = [(hour,) for hour in hours]
        if not self.postgres:
            for statement, rows in (
                (SQLITE_DELTAS, deltas),
                (SQLITE_GAUGES, gauges),
                (SQLITE_ROLLUPS, rollups),
                (SQLITE_DIRTY, dirty),
                (SQLITE_SERIES_STATE, [(b, c, d, a) for a, b, c, d in states]),
            ):
                if rows:
                    self.conn.exec_driver_sql(statement, rows)
            return

        parts = {"d": (deltas, 4), "g": (gauges, 3), "r": (rollups, 6), "h": (dirty, 1)}
        parts["s"] = (states, 4)
        longest = max(len(rows) for rows, _width in parts.values())
        for start in range(0, longest, PG_ALL_ROWS):
            params = {}
            for prefix, (rows, width) in parts.items():
                chunk = rows[start : start + PG_ALL_ROWS]
                columns = list(zip(*chunk, strict=True)) if chunk else [()] * width
                for name, column in zip("abcdef", columns, strict=False):
                    params[prefix + name] = _array_literal(column)
            self.conn.execute(PG_ALL, params)


def _array_literal(values: Sequence[int | float | None]) -> str:
    """A PostgreSQL array literal of numbers (``{1,2.5,NULL}``), cast by the statement.

    The driver adapts a Python list one element at a time in Python; joining the numbers'
    exact ``repr`` is done in C and sends a tenth of the bytes. Only ints, finite floats and None
    reach here (the ingest refuses the rest), and ``repr`` of a float reads back to the same
    float.
    """
    if None in values:
        return "{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}"
    return "{" + ",".join(map(repr, values)) + "}"


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
