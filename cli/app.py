"""What every command shares: configuration, the database, logging, and how errors are shown.

Errors a person can fix reach the terminal as one line (``error: ...``) with a non-zero exit
status, never as a traceback; ``-v`` adds the traceback for a bug report.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError as SqlDatabaseError
from sqlalchemy.exc import OperationalError, ProgrammingError

from wattledger.cli.database import as_database_url, check_sqlite_target, open_store
from wattledger.collector.db import describe, resolve_db_url
from wattledger.config import Config, load_config
from wattledger.errors import DatabaseError, WattledgerError
from wattledger.timeutil import TimeFormatError, parse_time

logger = logging.getLogger(__name__)


@dataclass
class App:
    """Per-invocation state handed to commands through click's context."""

    config_path: str | None = None
    verbose: int = 0
    _engines: dict[str, Engine] = field(default_factory=dict)
    _current: set[str] = field(default_factory=set)

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    def db_url(self, explicit: str | None = None) -> str:
        """The database URL: the flag, else WATTLEDGER_DB, else the config, else the default.

        A plain file path is taken as a SQLite file.
        """
        return as_database_url(resolve_db_url(explicit or self.config.db))

    def engine(
        self, explicit: str | None = None, *, require_schema: bool = True, create: bool = False
    ) -> Engine:
        """The store, checked to be reachable and (by default) at the current schema.

        A SQLite file that does not exist is created only with ``create``; otherwise its absence
        is a one-line error naming ``wattledger db upgrade``.
        """
        url = self.db_url(explicit)
        engine = self._engines.get(url)
        if engine is None:
            check_sqlite_target(url, create=create)
            engine = self._engines[url] = open_store(url)
        if require_schema and url not in self._current:
            from wattledger.migrations.runner import require_current

            try:
                require_current(engine)
            except OperationalError as exc:
                raise DatabaseError(
                    f"cannot reach database {describe(engine)}: {_first_line(exc)}"
                ) from None
            self._current.add(url)
        return engine

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()


pass_app = click.make_pass_decorator(App, ensure=True)


def db_option(func: Callable) -> Callable:
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        help="Database: a SQLite file path, sqlite:///PATH or postgresql://USER@HOST/DB. "
        "Default: WATTLEDGER_DB, then db in the config file, "
        "then a SQLite file in your data directory.",
    )(func)


class TimeParam(click.ParamType):
    """A time as people type it: 2026-11-01, 2026-11-01T10:00, 2026-11, now, or 24h / 7d ago."""

    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_time(value)
        except TimeFormatError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()


class OutputFile(click.ParamType):
    """A file to write, in a folder that exists and is writable.

    A missing folder is refused rather than made: it is more often a typo in the path than a
    folder wanted, and the file would land where no one looks.
    """

    name = "FILE"

    def convert(self, value, param, ctx):
        path = Path(value).expanduser()
        folder = path.parent
        if path.is_dir():
            self.fail(f"{value!r} is a directory; give a file name", param, ctx)
        if not folder.is_dir():
            self.fail(f"the folder {str(folder)!r} does not exist; create it first", param, ctx)
        if not os.access(folder, os.W_OK):
            self.fail(f"cannot write in the folder {str(folder)!r}; pick another", param, ctx)
        return path


class FiniteRange(click.FloatRange):
    """A finite number within bounds: ``inf`` and ``nan`` are refused, as no setting means them."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class WattledgerGroup(click.Group):
    """A click group that turns known errors into one line and a clean exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except WattledgerError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except OperationalError as exc:
            _fail(ctx, f"database error: {_first_line(exc)}", DatabaseError.exit_code)
        except ProgrammingError as exc:
            _fail(
                ctx,
                f"database error: {_first_line(exc)}; "
                "is the schema current? run: wattledger db upgrade",
                DatabaseError.exit_code,
            )
        except SqlDatabaseError as exc:
            _fail(ctx, f"database error: {_first_line(exc)}; check --db", DatabaseError.exit_code)


def _fail(ctx: click.Context, message: str, code: int) -> None:
    app = ctx.find_object(App)
    if app is not None and app.verbose:
        logger.exception("failed")
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
