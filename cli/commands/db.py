"""``wattledger db``: create and upgrade the schema, and rebuild derived tables."""

from __future__ import annotations

import click
from alembic.util import CommandError

from wattledger.cli.app import App, db_option, pass_app
from wattledger.collector.db import check_reachable, describe
from wattledger.errors import ConfigError, DatabaseError


@click.group("db")
def db_group() -> None:
    """Create, upgrade and inspect the wattledger database."""


@db_group.command("upgrade")
@db_option
@click.option("--revision", default="head", show_default=True, help="Target schema revision.")
@pass_app
def upgrade_command(app: App, db_url: str | None, revision: str) -> None:
    """Create the schema, or bring it to the current revision. Safe to run again.

    \b
    Example:
      wattledger db upgrade --db postgresql://wattledger@db.internal/wattledger
    """
    from wattledger.migrations import runner

    known = runner.all_revisions()
    if revision != "head" and revision not in known:
        raise ConfigError(
            f"--revision {revision!r} is not a schema revision of this wattledger; "
            f"use head or one of {', '.join(known)}"
        )
    engine = app.engine(db_url, require_schema=False, create=True)
    check_reachable(engine)
    before = runner.current_revision(engine)
    try:
        runner.upgrade(engine, revision)
    except CommandError as exc:
        raise DatabaseError(f"cannot upgrade {describe(engine)}: {exc}") from None
    after = runner.current_revision(engine)
    if before == after:
        click.echo(f"{describe(engine)} is already at schema {after}")
    else:
        click.echo(f"{describe(engine)} upgraded from {before or 'empty'} to schema {after}")


@db_group.command("status")
@db_option
@pass_app
def status_command(app: App, db_url: str | None) -> None:
    """Show the schema revision of the database and the one this wattledger needs."""
    from wattledger.migrations import runner

    engine = app.engine(db_url, require_schema=False)
    check_reachable(engine)
    current, head = runner.current_revision(engine), runner.head_revision()
    state = "current" if current == head else "behind: run wattledger db upgrade"
    click.echo(f"{describe(engine)}: schema {current or 'none'}, needed {head} ({state})")


@db_group.command("rebuild")
@db_option
@pass_app
def rebuild_command(app: App, db_url: str | None) -> None:
    """Recompute hourly rollups and usage attribution from the stored deltas and samples."""
    from wattledger.collector.rollup import rebuild
    from wattledger.collector.usage import refresh

    engine = app.engine(db_url)
    rows = rebuild(engine)
    hours = refresh(engine)
    click.echo(f"rebuilt {rows} hourly rollup rows and attributed {hours} hours")
