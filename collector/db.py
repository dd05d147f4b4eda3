"""Database connections: which database, how to open it, and whether its schema is current.

The database comes from ``--db``, else ``WATTLEDGER_DB``, else a SQLite file in the user's data
directory. SQLite is opened in WAL mode with a busy timeout so a report can read while the
collector writes, and write transactions start with ``BEGIN IMMEDIATE`` so two writers queue
instead of failing half-way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import platformdirs
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from wattledger.errors import DatabaseError

logger = logging.getLogger(__name__)

ENV_DB = "WATTLEDGER_DB"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_db_url() -> str:
    data_dir = Path(platformdirs.user_data_dir("wattledger", appauthor=False))
    return f"sqlite:///{data_dir / 'wattledger.db'}"


def resolve_db_url(explicit: str | None = None) -> str:
    """The database URL: the flag, else the environment, else the per-user default."""
    if explicit:
        return explicit
    return os.environ.get(ENV_DB) or default_db_url()


def normalise_url(url: str) -> str:
    """Accept the URLs people paste and map them to the driver wattledger ships (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_engine(url: str | None = None, *, pool: bool = True) -> Engine:
    """Create an engine for ``url`` with the settings each backend needs."""
    url = normalise_url(resolve_db_url(url))
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"database URL {url!r} is not valid; use sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB"
        ) from None

    if parsed.get_backend_name() == "sqlite":
        return _open_sqlite(url, parsed.database)
    if parsed.get_backend_name() == "postgresql":
        kwargs = {"pool_pre_ping": True} if pool else {"poolclass": NullPool}
        return create_engine(url, **kwargs)
    raise DatabaseError(
        f"database {parsed.get_backend_name()!r} is not supported; use SQLite or PostgreSQL"
    )


def _open_sqlite(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):  # pragma: no cover - exercised on every connect
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):  # pragma: no cover - exercised on every transaction
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def describe(engine: Engine) -> str:
    """The URL with any password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


def check_reachable(engine: Engine) -> None:
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(f"cannot reach database {describe(engine)}: {reason}") from None


def has_tables(engine: Engine) -> bool:
    return inspect(engine).has_table("series")
