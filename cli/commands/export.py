"""``wattledger export``: cost files for finance tools."""

from __future__ import annotations

import time
from pathlib import Path

import click

from wattledger.cli.app import TIME, App, OutputFile, db_option, pass_app
from wattledger.cli.chargeback.export import ExportError, export_chargeback
from wattledger.cli.chargeback.periods import GRANULARITIES, parse_period
from wattledger.cli.chargeback.settings import parse_chargeback
from wattledger.cli.chargeback.writers import FORMATS, format_for
from wattledger.timeutil import iso


@click.group("export")
def export_group() -> None:
    """Export costs in formats finance tools load: FOCUS CSV and Parquet."""


@export_group.command("chargeback")
@click.option(
    "--period",
    help="A month (2026-11), ISO week (2026-W45), day (2026-11-05) or hour (2026-11-05T14).",
)
@click.option(
    "--since", type=TIME, help="Start of the window instead of --period (on the hour, UTC)."
)
@click.option("--until", type=TIME, help="End of the window (exclusive) instead of --period.")
@click.option(
    "--granularity",
    type=click.Choice(GRANULARITIES),
    help="Length of one charge period in the file. Default: chargeback.granularity, else day.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Default: from --out's extension (.csv or .parquet); a name without one is csv.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=OutputFile(),
    help="File to write, in a folder that exists; it is written aside and renamed into place.",
)
@click.option(
    "--allow-open",
    is_flag=True,
    help="Export a period that has not ended yet (its figures will change).",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Write a file without rows when the window has no usage (refused by default).",
)
@db_option
@pass_app
def chargeback_command(
    app: App,
    period: str | None,
    since: int | None,
    until: int | None,
    granularity: str | None,
    fmt: str | None,
    out: Path,
    allow_open: bool,
    allow_empty: bool,
    db_url: str | None,
) -> None:
    """Inference cost per cost centre, model and period as a FOCUS 1.2 file.

    Cost centres come from the [chargeback] rules of the config file; idle GPU time is kept
    apart, charged to one centre, or shared out, as [chargeback] idle says. The file's total
    equals 'wattledger report cost' for the same window to the cent, and rerunning the export
    gives the same bytes. The format follows --out's extension (.csv or .parquet).

    \b
    Examples:
      wattledger export chargeback --period 2026-11 --format parquet --out nov.parquet
      wattledger export chargeback --since 2026-11-01 --until 2026-11-08 \\
          --granularity hour --out week.csv
    """
    config = app.config
    settings = parse_chargeback(config.chargeback, str(config.source or "config"))
    since, until = _window(period, since, until)
    fmt = format_for(out, fmt)
    engine = app.engine(db_url)

    result = export_chargeback(
        engine,
        settings,
        since,
        until,
        path=out,
        fmt=fmt,
        granularity=granularity or settings.granularity,
        now=int(time.time()),
        allow_open=allow_open,
        allow_empty=allow_empty,
    )
    click.echo(
        f"wrote {result.rows} rows ({result.fmt}, {result.total_usd:.2f} USD, "
        f"{iso(since)} to {iso(until)}) to {result.path}; sha256 {result.sha256}",
        err=True,
    )
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


def _window(period: str | None, since: int | None, until: int | None) -> tuple[int, int]:
    if period and (since is not None or until is not None):
        raise ExportError("give --period or --since/--until, not both")
    if period:
        chosen = parse_period(period)
        return chosen.start, chosen.end
    if since is None or until is None:
        raise ExportError(
            "say which window to export: --period 2026-11, or both --since and --until"
        )
    return since, until
