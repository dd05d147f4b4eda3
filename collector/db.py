"""Database connections: which database, how to open it, and whether its schema is current.

The database comes from ``--db``, else ``WATTLEDGER_DB``, else a SQLite file in the user's data
directory. SQLite is opened in WAL mode with a busy timeout, and transactions start with
``BEGIN IMMEDIATE`` so two writers queue instead of failing half-way. A connection marked
:data:`READ_ONLY` begins deferred instead and never waits for the writer.
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
# Execution option of a connection that only reads: on SQLite its transactions begin deferred,
# so they neither wait for nor hold up the writer.
READ_ONLY = "wattledger_read_only"


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
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the folder {folder} for the SQLite file: {exc.strerror}"
            ) from None
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
        if connection.get_execution_options().get(READ_ONLY):
            # A reader in WAL mode never waits for the writer: no write lock to queue for.
            connection.exec_driver_sql("BEGIN")
        else:
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


# Statements about the database itself rather than its data. They live here, beside the other
# driver settings, so no module above the store hands SQL to a database as text.


def read_sqlite_application_id(path: Path) -> int | None:
    """The ``application_id`` stamped in a SQLite file's header, or None if it is not SQLite."""
    import contextlib
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            (application_id,) = conn.execute("PRAGMA application_id").fetchone()
    except sqlite3.Error:
        return None
    return application_id


def stamp_sqlite_application_id(engine: Engine, application_id: int) -> None:
    """Write ``application_id`` into a SQLite file's header (marks what made the file)."""
    if not isinstance(application_id, int) or not 0 <= application_id < 2**31:
        raise ValueError(f"a SQLite application_id is a 32-bit integer, not {application_id!r}")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"PRAGMA application_id = {application_id:d}")


def fold_sqlite_wal(path: Path) -> None:
    """Fold a closed SQLite file's write-ahead log into it, leaving one self-contained file."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")


def scan_serially(conn) -> None:
    """Keep PostgreSQL from splitting this transaction's scans across parallel workers.

    Floating-point sums depend on their order; a serial scan sums in the same order each time.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
