"""Report rows as a table shows them: rounded to add up, tokens in millions, unpriced named.

JSON and CSV carry the figures themselves; a table is for reading at a terminal's width. So its
token columns switch to millions (headed ``Mtok``) once the total reaches a million tokens, the
additive columns are rounded so that the rows add up to the total shown (``rounding``), and a
cost per token that has no value because GPU time was unpriced reads ``unpriced`` (``unmapped``
where tokens came from GPUs nobody mapped).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from wattledger.cli.output import Column, fixed
from wattledger.cli.reports.report import has_unmapped, is_unpriced
from wattledger.cli.reports.rounding import for_display

TOKEN_HEADINGS = {"input_tokens": "Mtok in", "output_tokens": "Mtok out"}
MILLION = 1e6
MILLION_PLACES = 2


def money_or_unpriced(places: int) -> Callable[[Any], str]:
    """A number, or the word ('unpriced', 'unmapped') that says why a cost per token is absent."""
    number = fixed(places)
    return lambda value: value if isinstance(value, str) else number(value)


def table_view(
    rows: Sequence[dict],
    total: dict | None,
    columns: Sequence[Column],
    places: Mapping[str, int],
    unpriced_keys: Sequence[str] = (),
) -> tuple[list[dict], dict | None, list[Column]]:
    """Copies of ``rows`` and ``total`` ready for a table, and the columns to show them with."""
    places = dict(places)
    columns = list(columns)
    shown = [dict(row) for row in rows]
    shown_total = dict(total) if total is not None else None

    if _in_millions(rows, total, columns):
        for i, column in enumerate(columns):
            if column.key not in TOKEN_HEADINGS:
                continue
            columns[i] = replace(
                column, heading=TOKEN_HEADINGS[column.key], fmt=fixed(MILLION_PLACES)
            )
            places[column.key] = MILLION_PLACES
            for row in [*shown, *([shown_total] if shown_total is not None else [])]:
                if row.get(column.key) is not None:
                    row[column.key] = row[column.key] / MILLION

    shown, shown_total = for_display(shown, shown_total, places)
    for row in [*shown, *([shown_total] if shown_total is not None else [])]:
        reason = "unpriced" if is_unpriced(row) else "unmapped" if has_unmapped(row) else None
        if reason:
            row.update({key: reason for key in unpriced_keys if row.get(key) is None})
    return shown, shown_total, columns


def _in_millions(rows: Sequence[dict], total: dict | None, columns: Sequence[Column]) -> bool:
    keys = [column.key for column in columns if column.key in TOKEN_HEADINGS]
    if not keys:
        return False
    largest = max(
        (abs(row.get(key) or 0.0) for row in [*rows, *([total] if total else [])] for key in keys),
        default=0.0,
    )
    return largest >= MILLION
