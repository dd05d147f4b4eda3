"""Rendering rows as a rich table, JSON or CSV, the three formats every report speaks.

A command builds a list of dicts and a list of :class:`Column`; this module turns them into
output. Numbers stay numbers in JSON and CSV (full precision, no thousands separators); only the
table rounds them for reading.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")


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
        if isinstance(value, float) and math.isnan(value):
            return "n/a"
        return f"{value:,.{places}f}"

    return render


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
        document: dict[str, Any] = {"rows": [_plain(row, columns) for row in rows]}
        if total is not None:
            document["total"] = _plain(total, columns)
        if title:
            document["title"] = title
        notes = list(footer)
        if notes:
            document["notes"] = notes
        click.echo(json.dumps(document, indent=2, default=_json_default))
        return

    if fmt == "csv":
        click.echo(to_csv(rows, columns, total=total), nl=False)
        for line in footer:
            click.echo(line, err=True)
        return

    console = console or Console()
    table = Table(title=title, show_footer=total is not None, header_style="bold")
    for column in columns:
        footer_text = ""
        if total is not None:
            footer_text = _cell(total.get(column.key), column)
        table.add_column(column.heading, justify=column.justify, footer=footer_text)
    for row in rows:
        table.add_row(*(_cell(row.get(column.key), column) for column in columns))
    console.print(table)
    for line in footer:
        console.print(line, highlight=False, markup=False)


def to_csv(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    *,
    total: dict[str, Any] | None = None,
) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.key for column in columns])
    for row in list(rows) + ([total] if total is not None else []):
        writer.writerow(["" if row.get(c.key) is None else row.get(c.key) for c in columns])
    return buffer.getvalue()


def _cell(value: Any, column: Column) -> str:
    if column.fmt is not None:
        return column.fmt(value)
    return text(value)


def _plain(row: dict[str, Any], columns: Sequence[Column]) -> dict[str, Any]:
    return {column.key: row.get(column.key) for column in columns}


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
