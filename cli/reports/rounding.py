"""Rounding for display so that the shown rows add up to the shown total.

Rounding every cell on its own can leave a table whose cents do not add up (three rows of
0.333 show 0.33 each, total 1.00). Largest-remainder rounding fixes that: round the total,
round every row down, then hand the missing units to the rows that lost the most. Amounts are
read through their shortest decimal form, so 2.075 shows as 2.08, as a person expects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal


def largest_remainder(values: Sequence[float], places: int) -> tuple[list[float], float]:
    """``values`` rounded to ``places`` decimals so that they add up to their rounded sum."""
    unit = Decimal(1).scaleb(-places)
    exact = [Decimal(repr(float(v))) for v in values]
    total = sum(exact, Decimal(0)).quantize(unit, rounding=ROUND_HALF_UP)
    floors = [v.quantize(unit, rounding=ROUND_FLOOR) for v in exact]
    missing = int((total - sum(floors, Decimal(0))) / unit)

    # Largest remainders first; on a tie, the larger value, then the earlier row.
    order = sorted(range(len(values)), key=lambda i: (-(exact[i] - floors[i]), -exact[i], i))
    for i in order[:missing]:
        floors[i] += unit
    return [float(v) for v in floors], float(total)


def for_display(
    rows: Sequence[dict], total: dict | None, places: Mapping[str, int]
) -> tuple[list[dict], dict | None]:
    """Copies of ``rows`` and ``total`` with each column in ``places`` rounded to add up.

    A column whose total is not the plain sum of the rows (None anywhere), or that holds a number
    that is not finite, is left alone.
    """
    shown = [dict(row) for row in rows]
    shown_total = dict(total) if total is not None else None
    for column, digits in places.items():
        values = [row.get(column) for row in rows]
        if not values or any(v is None or not math.isfinite(v) for v in values):
            continue
        rounded, rounded_total = largest_remainder(values, digits)
        for row, value in zip(shown, rounded, strict=True):
            row[column] = value
        if shown_total is not None and column in shown_total:
            shown_total[column] = rounded_total
    return shown, shown_total
