"""Bulk writes that both SQLite and PostgreSQL understand: insert-or-ignore and add-on-conflict.

SQLAlchemy Core's dialect inserts render ``ON CONFLICT`` for either database, and executing one
statement with a list of parameter sets lets the driver batch the rows (``insertmanyvalues``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

CHUNK = 2_000


def _insert(conn: Connection, table: Table):
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Insert ``rows``; a row whose ``keys`` already exist is left as it is."""
    if not rows:
        return
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
    for start in range(0, len(rows), CHUNK):
        conn.execute(stmt, list(rows[start : start + CHUNK]))


def upsert_add(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    add: Sequence[str],
) -> None:
    """Insert ``rows``; where ``keys`` exist, add each ``add`` column to the stored value."""
    if not rows:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.c[name] + stmt.excluded[name] for name in add},
    )
    for start in range(0, len(rows), CHUNK):
        conn.execute(stmt, list(rows[start : start + CHUNK]))


def upsert_replace(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    replace: Sequence[str],
    *,
    keep_min: Sequence[str] = (),
) -> None:
    """Insert ``rows``; where ``keys`` exist, overwrite ``replace`` columns.

    Columns in ``keep_min`` keep the smaller of the stored and the new value (first-seen times).
    """
    if not rows:
        return
    stmt = _insert(conn, table)
    updates = {name: stmt.excluded[name] for name in replace}
    for name in keep_min:
        updates[name] = _least(conn, table.c[name], stmt.excluded[name])
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=updates)
    for start in range(0, len(rows), CHUNK):
        conn.execute(stmt, list(rows[start : start + CHUNK]))


def _least(conn: Connection, a, b):
    from sqlalchemy import func

    # SQLite's two-argument min() is its LEAST.
    return func.least(a, b) if conn.dialect.name == "postgresql" else func.min(a, b)
