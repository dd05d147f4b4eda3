"""Times as people type them and as the store keeps them.

The store keeps integers (nanoseconds for points, seconds for hours); people type dates
(``2026-11-01``), date-times (``2026-11-01T10:00``, taken as UTC unless they carry an offset),
months (``2026-11``) and ages (``24h``, ``7d``, ``2w``). Everything is UTC.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

HOUR_S = 3600
DAY_S = 86_400

_AGE = re.compile(r"^(\d+)\s*([hdw])$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class TimeFormatError(ValueError):
    pass


# The times wattledger accepts: from the Unix epoch to the start of year 9999, which leaves room
# to round a time up to its hour, day, week or month and still name it as a calendar date.
EARLIEST_S = 0
LATEST_S = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp())
RANGE_TEXT = "1970-01-01 to 9999-01-01"
_FORMATS_HINT = "use 2026-11-01, 2026-11-01T10:00, 2026-11 or an age like 24h, 7d"


def parse_time(text: str, *, now: float | None = None) -> int:
    """Seconds since the epoch for ``text``; ages count back from ``now``."""
    text = text.strip()
    now = time.time() if now is None else now
    age = _AGE.match(text)
    if age:
        amount, unit = int(age.group(1)), age.group(2)
        moment = now - amount * {"h": HOUR_S, "d": DAY_S, "w": 7 * DAY_S}[unit]
        if moment < EARLIEST_S:
            raise TimeFormatError(
                f"{text!r} reaches back before 1970-01-01, the earliest time wattledger keeps; "
                "give a shorter age or a date"
            )
        return int(moment)
    if text == "now":
        return int(now)
    month = _MONTH.match(text)
    if month:
        return month_bounds(text)[0]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimeFormatError(f"cannot read {text!r} as a time; {_FORMATS_HINT}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        moment = parsed.timestamp()
    except (OverflowError, ValueError):
        moment = float("nan")
    return _in_range(text, moment)


def _in_range(text: str, moment: float) -> int:
    if not EARLIEST_S <= moment <= LATEST_S:
        raise TimeFormatError(
            f"{text!r} is outside the times wattledger keeps ({RANGE_TEXT}); give a date in range"
        )
    return int(moment)


def month_bounds(text: str) -> tuple[int, int]:
    """First second of the month ``YYYY-MM`` and of the month after it."""
    match = _MONTH.match(text.strip())
    if not match:
        raise TimeFormatError(f"cannot read {text!r} as a month; use YYYY-MM, e.g. 2026-11")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        raise TimeFormatError(f"{text!r} has no month {month}; use 01 to 12")
    if not 1970 <= year <= 9998:
        raise TimeFormatError(
            f"{text!r} is outside the times wattledger keeps ({RANGE_TEXT}); give a month in range"
        )
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()), int(end.timestamp())


def floor_hour(t_s: int) -> int:
    return t_s - t_s % HOUR_S


def ceil_hour(t_s: int) -> int:
    return floor_hour(t_s + HOUR_S - 1)


def iso(t_s: int) -> str:
    return datetime.fromtimestamp(t_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_start(t_s: int) -> int:
    return t_s - t_s % DAY_S


def week_start(t_s: int) -> int:
    """Monday 00:00 UTC of the week holding ``t_s``."""
    day = day_start(t_s)
    weekday = datetime.fromtimestamp(day, tz=UTC).weekday()
    return day - weekday * DAY_S


__all__ = ["parse_time", "month_bounds", "floor_hour", "ceil_hour", "iso", "timedelta"]
