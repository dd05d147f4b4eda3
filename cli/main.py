"""The ``wattledger`` command."""

from __future__ import annotations

import click

from wattledger import __version__
from wattledger.cli.app import App, WattledgerGroup, setup_logging
from wattledger.cli.commands.agent import agent_group
from wattledger.cli.commands.collector import collector_group
from wattledger.cli.commands.db import db_group
from wattledger.cli.commands.demo import demo_command
from wattledger.cli.commands.export import export_group
from wattledger.cli.commands.price import price_group
from wattledger.cli.commands.report import report_group
from wattledger.cli.commands.schedule import schedule_group
from wattledger.cli.commands.token import token_group


@click.group(
    cls=WattledgerGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="wattledger")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    envvar="WATTLEDGER_CONFIG",
    help="TOML config file. Default: WATTLEDGER_CONFIG, "
    "else wattledger.toml in your config directory.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """What a million tokens really costs on your GPU inference fleet, and why.

    \b
    Start here:
      wattledger demo                      a simulated Hopper + Blackwell fleet, then its reports
      wattledger db upgrade                create the database (SQLite by default)
      wattledger agent run                 sample GPUs and engines on this node
      wattledger collector serve           receive agents' OTLP and store it
      wattledger price set --sku H100 --usd-per-gpu-hour 2.00
      wattledger report cost --by architecture,model
    """
    setup_logging(verbose)
    app = ctx.ensure_object(App)
    app.config_path = config_path
    app.verbose = verbose
    ctx.call_on_close(app.close)
    if config_path:
        # Read and checked now, not when a command first reads a setting: a command given all it
        # needs by flags would otherwise run without ever looking at the file named, and a typo
        # in it would pass unnoticed.
        app.config  # noqa: B018 - loading it is the check


cli.add_command(agent_group)
cli.add_command(db_group)
cli.add_command(price_group)
cli.add_command(report_group)
cli.add_command(collector_group)
cli.add_command(demo_command)
cli.add_command(export_group)
cli.add_command(schedule_group)
cli.add_command(token_group)


def main() -> None:
    cli()
