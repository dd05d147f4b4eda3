"""``wattledger token``: the bearer tokens agents present to the collector."""

from __future__ import annotations

import click

from wattledger.cli.app import App, db_option, pass_app
from wattledger.cli.output import Column, emit, format_option, text
from wattledger.collector.auth import create_token, list_tokens, revoke_token
from wattledger.timeutil import iso

NS_PER_S = 1_000_000_000


@click.group("token")
def token_group() -> None:
    """Create, list and revoke the tokens agents write with."""


@token_group.command("create")
@click.argument("name")
@click.option(
    "--node",
    "nodes",
    multiple=True,
    metavar="NODE",
    help="Node the token may write for; repeat for more. Default: any node.",
)
@db_option
@pass_app
def create_command(app: App, name: str, nodes: tuple[str, ...], db_url: str | None) -> None:
    """Make a token called NAME and print it once; only its hash is stored.

    \b
    Examples:
      wattledger token create gpu-node-7 --node gpu-node-7 > /etc/wattledger/agent.token
      wattledger token create fleet-east
    """
    token = create_token(app.engine(db_url), name, nodes)
    scope = ", ".join(sorted(set(nodes))) if nodes else "any node"
    click.echo(f"token {name!r} created for {scope}; it is shown only this once", err=True)
    click.echo(token)


@token_group.command("revoke")
@click.argument("name")
@db_option
@pass_app
def revoke_command(app: App, name: str, db_url: str | None) -> None:
    """Revoke the token called NAME; collectors refuse it within ten seconds."""
    revoke_token(app.engine(db_url), name)
    click.echo(f"token {name!r} revoked")


@token_group.command("list")
@format_option()
@db_option
@pass_app
def list_command(app: App, fmt: str, db_url: str | None) -> None:
    """Show every token: its nodes, when it was made, last used and revoked."""
    rows = [
        {
            "id": info.id,
            "name": info.name,
            "nodes": ", ".join(info.nodes) if info.nodes else "any",
            "created": _when(info.created_ns),
            "last_used": _when(info.last_used_ns),
            "revoked": _when(info.revoked_ns),
        }
        for info in list_tokens(app.engine(db_url))
    ]
    columns = [
        Column("id", "Id"),
        Column("name", "Name", justify="left"),
        Column("nodes", "Nodes", justify="left"),
        Column("created", "Created (UTC)", text, justify="left"),
        Column("last_used", "Last used (UTC)", text, justify="left"),
        Column("revoked", "Revoked (UTC)", text, justify="left"),
    ]
    emit(rows, columns, fmt, title="Agent tokens")


def _when(ns: int | None) -> str | None:
    return iso(ns // NS_PER_S) if ns else None
