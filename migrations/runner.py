"""Alembic driven from code: ``wattledger db upgrade`` and the schema-is-current check.

There is no alembic.ini to keep in step: the script location is this package's folder and the
URL is wattledger's own setting.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from wattledger.collector.db import describe
from wattledger.errors import DatabaseError

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    # ConfigParser treats % as interpolation; a password may contain one.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head()


def all_revisions() -> list[str]:
    """Every revision from the first to the head, in upgrade order."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current(engine: Engine) -> None:
    """Refuse to run on a schema that is missing or behind, naming the command that fixes it."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    where = describe(engine)
    if current is None:
        raise DatabaseError(
            f"database {where} has no wattledger schema; run: wattledger db upgrade --db '{where}'"
        )
    raise DatabaseError(
        f"database {where} is at schema {current} but this wattledger needs {head}; "
        f"run: wattledger db upgrade --db '{where}'"
    )
