"""The ``--db`` a person gives, checked before the store is opened.

A plain path (no ``://``) is a SQLite file, as the demo prints it. A SQLite file is looked at
before SQLAlchemy opens it, so that a typo gives one line naming the path and the fix: a command
that reads the store never creates an empty file (or its folders) where none was, a file that is
not SQLite is not mistaken for a store, and a path through a file or a name too long for the
file system is refused by name.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from wattledger.collector.db import normalise_url, open_engine
from wattledger.errors import DatabaseError

logger = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
SQLITE_HEADER = b"SQLite format 3\x00"
PATH_MAX = 4096


def as_database_url(text: str) -> str:
    """``text`` as a database URL: a plain file path becomes a SQLite URL."""
    text = text.strip()
    if "://" in text:
        return text
    return SQLITE_PREFIX + str(Path(text).expanduser())


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or None for another database, memory or a driver URI."""
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError:
        return None  # open_engine names the bad URL
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def check_sqlite_target(url: str, *, create: bool) -> None:
    """Refuse a SQLite path that cannot be a wattledger store; with ``create`` it may be new.

    Without ``create`` (every command but ``db upgrade`` and a single-node agent), a missing
    file is an error that names the command that makes it.
    """
    path = sqlite_path(url)
    if path is None:
        return
    _check_name_lengths(path)
    _check_folders(path)
    if path.is_dir():
        raise DatabaseError(
            f"--db {path} is a directory; give a database file, e.g. {path / 'wattledger.db'}"
        )
    if not path.exists():
        if create:
            return
        raise DatabaseError(
            f"no wattledger database at {path}; create it with: "
            f"wattledger db upgrade --db {SQLITE_PREFIX}{path}"
        )
    _check_sqlite_file(path)


def open_store(url: str) -> Engine:
    """``open_engine``, with a folder it cannot create reported in one line."""
    try:
        return open_engine(url)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the folder for database {url}: {exc.strerror or exc}"
        ) from None


def _check_name_lengths(path: Path) -> None:
    if len(os.fsencode(str(path.absolute()))) >= PATH_MAX:
        raise DatabaseError(
            f"--db: the path is {len(str(path))} characters long, more than the file system "
            f"allows ({PATH_MAX}); give a shorter path"
        )
    limit = _name_max(path)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise DatabaseError(
                f"--db: the name {part[:24]}... is {len(part)} characters long, more than the "
                f"file system allows ({limit}); give a shorter path"
            )


def _name_max(path: Path) -> int:
    """The longest file name the file system under ``path`` allows."""
    for folder in path.absolute().parents:
        try:
            return os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def _check_folders(path: Path) -> None:
    """Every existing folder on the way must be a folder, not a file."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise DatabaseError(
                f"--db {path}: {parent} is a file, not a folder; give a path in a folder"
            )


def _check_sqlite_file(path: Path) -> None:
    try:
        with path.open("rb") as stream:
            header = stream.read(len(SQLITE_HEADER))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise DatabaseError(
                f"cannot read database {path}: permission denied; check the file's owner and mode"
            ) from None
        raise DatabaseError(f"cannot read database {path}: {exc.strerror or exc}") from None
    # An empty file is what SQLite itself makes before the first table: a new database.
    if header and header != SQLITE_HEADER:
        raise DatabaseError(
            f"{path} is not a SQLite database (file is not a database); check --db, "
            "or WATTLEDGER_DB and db in the config file"
        )
