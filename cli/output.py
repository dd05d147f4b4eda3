"""Rendering rows as a rich table, JSON or CSV, the three formats every report speaks.

A command builds a list of dicts and a list of :class:`Column`; this module turns them into
output. Numbers stay numbers in JSON and CSV (no thousands separators), cleared of float noise:
a count (tokens, requests) that is whole is written as an integer, and any other number is
rounded to :data:`MACHINE_PLACES` decimals, which leaves the reports' amounts (rounded to 1e-6
USD) as they are. A number that is not finite is written as null (JSON) or empty (CSV), with a
note, never as ``Infinity`` or ``NaN``. Only the table rounds further, for reading.

A table goes to a terminal at the terminal's width; to a pipe or a file it is drawn as wide as
it needs (at least :data:`PIPE_WIDTH` columns), so no cell is cut short.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

FORMATS = ("table", "json", "csv")
MACHINE_PLACES = 9
PIPE_WIDTH = 200
COUNT_SUFFIXES = ("tokens", "requests")
NOT_FINITE_NOTE = (
    "Some figures were not finite numbers (a price or a reading out of range) and are written "
    "as {empty}; check the prices with 'wattledger price list'."
)


@dataclass(frozen=True)
class Column:
    """One output column: the key in each row, its heading, and how a table shows its value."""

    key: str
    heading: str
    fmt: Callable[[Any], str] | None = None
    justify: str = "right"


def fixed(places: int) -> Callable[[Any], str]:
    """Format a number with a fixed number of decimals and thousands separators."""

    def render(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float) and not math.isfinite(value):
            return "n/a"
        return f"{value:,.{places}f}"

    return render


def make_console() -> Console:
    """A console for tables: the terminal's width, or a wide one for a pipe or a file."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=PIPE_WIDTH)


def text(value: Any) -> str:
    return "-" if value is None else str(value)


def format_option(default: str = "table") -> Callable:
    """The shared ``--format`` option."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Output as a table for reading, JSON or CSV for tools.",
    )


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    fmt: str,
    *,
    title: str | None = None,
    footer: Iterable[str] = (),
    total: dict[str, Any] | None = None,
    console: Console | None = None,
) -> None:
    """Write ``rows`` to standard output in ``fmt``.

    ``footer`` lines (method notes, sources) appear under a table and go to standard error for
    JSON and CSV, so machine-readable output stays clean.
    """
    if fmt == "json":
        cleaner = _Cleaner()
        document: dict[str, Any] = {"rows": [cleaner.row(row, columns) for row in rows]}
        if total is not None:
            document["total"] = cleaner.row(total, columns)
        if title:
            document["title"] = title
        notes = list(footer) + cleaner.notes("null")
        if notes:
            document["notes"] = notes
        click.echo(json.dumps(document, indent=2, default=_json_default, allow_nan=False))
        return

    if fmt == "csv":
        cleaner = _Cleaner()
        click.echo(to_csv(rows, columns, total=total, cleaner=cleaner), nl=False)
        for line in list(footer) + cleaner.notes("empty cells"):
            click.echo(line, err=True)
        return

    console = console or make_console()
    table = Table(title=title, show_footer=total is not None, header_style="bold")
    for column in columns:
        footer_text = ""
        if total is not None:
            footer_text = _cell(total.get(column.key), column)
        table.add_column(column.heading, justify=column.justify, footer=footer_text)
    for row in rows:
        table.add_row(*(_cell(row.get(column.key), column) for column in columns))
    _print_whole(console, table)
    for line in footer:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _print_whole(console: Console, table: Table) -> None:
    """Print ``table`` at the terminal's width, or anywhere else as wide as it needs."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width


def to_csv(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    *,
    total: dict[str, Any] | None = None,
    cleaner: _Cleaner | None = None,
) -> str:
    cleaner = cleaner or _Cleaner()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.key for column in columns])
    for row in list(rows) + ([total] if total is not None else []):
        plain = cleaner.row(row, columns)
        writer.writerow(["" if plain[c.key] is None else plain[c.key] for c in columns])
    return buffer.getvalue()


def machine_value(key: str, value: Any) -> Any:
    """``value`` as JSON and CSV write it: whole counts as integers, other floats rounded.

    A float that is not finite is returned as is; :class:`_Cleaner` turns it into null.
    """
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    rounded = round(value, MACHINE_PLACES)
    if key.endswith(COUNT_SUFFIXES) and rounded.is_integer():
        return int(rounded)
    return rounded + 0.0  # never -0.0


class _Cleaner:
    """Clears the rows of one output of float noise and counts the figures that are not finite."""

    def __init__(self) -> None:
        self.not_finite = 0

    def row(self, row: dict[str, Any], columns: Sequence[Column]) -> dict[str, Any]:
        plain = {}
        for column in columns:
            value = machine_value(column.key, row.get(column.key))
            if isinstance(value, float) and not math.isfinite(value):
                self.not_finite += 1
                value = None
            plain[column.key] = value
        return plain

    def notes(self, empty: str) -> list[str]:
        return [NOT_FINITE_NOTE.format(empty=empty)] if self.not_finite else []


def _cell(value: Any, column: Column) -> str:
    if column.fmt is not None:
        return column.fmt(value)
    return text(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
