"""``wattledger report``: what the fleet's tokens cost, split and compared."""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.progress import BarColumn, Progress, TextColumn

from wattledger.cli.app import TIME, App, db_option, pass_app
from wattledger.cli.output import Column, emit, fixed, format_option
from wattledger.cli.reports.cost import IDLE_MODES, cost_report
from wattledger.cli.reports.usage_query import DIMENSIONS
from wattledger.collector.usage import pending_hours, refresh
from wattledger.timeutil import ceil_hour, floor_hour


@click.group("report")
def report_group() -> None:
    """Cost per million tokens, prefill/decode split, and comparisons across your fleet."""


def window_options(func: Callable) -> Callable:
    func = click.option("--until", type=TIME, default="now", show_default=True,
                        help="End of the window (exclusive), rounded up to the hour.")(func)
    func = click.option("--since", type=TIME, default="7d", show_default=True,
                        help="Start of the window: 2026-11-01, 2026-11-01T10:00, 2026-11, or an age like 24h or 7d.")(func)
    return func


def by_option(default: str) -> Callable:
    def parse(_ctx, _param, value: str) -> list[str]:
        names = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [n for n in names if n not in DIMENSIONS]
        if unknown or not names:
            raise click.BadParameter(f"choose one or more of {', '.join(DIMENSIONS)}, comma-separated")
        return names

    return click.option("--by", default=default, show_default=True, callback=parse,
                        help=f"Group rows by one or more of: {', '.join(DIMENSIONS)} (comma-separated).")


def refresh_usage(engine, quiet: bool) -> None:
    """Attribute any hours that changed since the last report, with a progress bar when slow."""
    pending = pending_hours(engine)
    if not pending:
        return
    if quiet or pending < 48:
        refresh(engine)
        return
    with Progress(TextColumn("attributing usage"), BarColumn(), TextColumn("{task.completed}/{task.total} hours"),
                  transient=True) as progress:
        task = progress.add_task("usage", total=pending)
        refresh(engine, progress=lambda done, total: progress.update(task, completed=done, total=total))


def hour_window(since: int, until: int) -> tuple[int, int]:
    return floor_hour(since), ceil_hour(until)


COST_COLUMNS_LEAD = [
    Column("gpu_hours", "GPU-h", fixed(2)),
    Column("energy_kwh", "kWh", fixed(2)),
    Column("input_tokens", "Input tok", fixed(0)),
    Column("output_tokens", "Output tok", fixed(0)),
    Column("cost_usd", "Cost USD", fixed(2)),
    Column("idle_usd", "Idle USD", fixed(2)),
    Column("usd_per_mtok", "USD/Mtok", fixed(4)),
    Column("j_per_token", "J/token", fixed(3)),
]
COST_COLUMNS_DATA = [
    Column("cached_tokens", "Cached tok", fixed(0)),
    Column("requests", "Requests", fixed(0)),
    Column("serving_usd", "Serving USD", fixed(2)),
    Column("total_usd", "Total USD", fixed(2)),
    Column("utilization", "Util", fixed(3)),
    Column("unpriced_gpu_hours", "Unpriced GPU-h", fixed(2)),
]


@report_group.command("cost")
@window_options
@by_option("model")
@click.option("--idle", type=click.Choice(IDLE_MODES), default="none", show_default=True,
              help="Keep idle GPU cost apart (none), or share it out evenly or in proportion to serving cost.")
@format_option()
@click.option("--plot", type=click.Path(dir_okay=False), help="Also draw USD per million tokens per row to this PNG.")
@db_option
@pass_app
def cost_command(app: App, since: int, until: int, by: list[str], idle: str, fmt: str, plot: str | None,
                 db_url: str | None) -> None:
    """Cost per million tokens, GPU-hours, energy and idle cost, per group.

    Each row's cost is its GPUs' time (USD per GPU-hour) and energy (kWh x PUE x USD per kWh)
    while they served tokens, each hour at the prices in force then; idle time is kept apart.

    \b
    Examples:
      wattledger report cost --since 2026-11-01 --until 2026-12-01 --by architecture,model
      wattledger report cost --since 24h --by node --idle proportional --format csv
    """
    engine = app.engine(db_url)
    refresh_usage(engine, quiet=fmt != "table")
    since, until = hour_window(since, until)
    report = cost_report(engine, since, until, by, idle=idle)

    columns = [Column(name, name.capitalize(), justify="left") for name in by] + COST_COLUMNS_LEAD
    if fmt != "table":
        columns += COST_COLUMNS_DATA
    if not report.rows:
        report.notes.append("No usage in this window. Is an agent running, and is the window right?")
    emit(report.rows, columns, fmt, title="Cost per million tokens", total=report.total, footer=report.notes)
    if plot:
        from wattledger.cli.reports.plots import bar_chart

        bar_chart(report.rows, by, "usd_per_mtok", "USD per million tokens", plot)
        click.echo(f"plot written to {plot}", err=fmt != "table")

