"""Periods in UTC: the hours, days, ISO weeks and calendar months an export covers.

A period is half-open, ``[start, end)`` in seconds since the epoch, so the end of one is the start
of the next and FOCUS's exclusive ``ChargePeriodEnd`` is simply ``end``. Each period has a label
used in file names: ``2026-11-05T14`` (hour), ``2026-11-05`` (day), ``2026-W45`` (ISO week) and
``2026-11`` (month).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from wattledger.errors import WattledgerError
from wattledger.timeutil import (
    DAY_S,
    EARLIEST_S,
    HOUR_S,
    LATEST_S,
    RANGE_TEXT,
    day_start,
    week_start,
)

PERIOD_KINDS = ("hour", "day", "week", "month")
GRANULARITIES = ("hour", "day")

_HOUR = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class PeriodError(WattledgerError):
    exit_code = 2


@dataclass(frozen=True, order=True)
class Period:
    """One hour, day, ISO week or month: ``[start, end)`` in seconds since the epoch."""

    start: int
    end: int
    kind: str

    @property
    def label(self) -> str:
        moment = _utc(self.start)
        if self.kind == "hour":
            return moment.strftime("%Y-%m-%dT%H")
        if self.kind == "day":
            return moment.strftime("%Y-%m-%d")
        if self.kind == "week":
            year, week, _ = moment.isocalendar()
            return f"{year}-W{week:02d}"
        return moment.strftime("%Y-%m")

    def previous(self) -> Period:
        return containing(self.kind, self.start - 1)

    def following(self) -> Period:
        return containing(self.kind, self.end)


def containing(kind: str, t: int) -> Period:
    """The period of ``kind`` that holds the moment ``t``."""
    if kind == "hour":
        start = t - t % HOUR_S
        return Period(start, start + HOUR_S, kind)
    if kind == "day":
        start = day_start(t)
        return Period(start, start + DAY_S, kind)
    if kind == "week":
        start = week_start(t)
        return Period(start, start + 7 * DAY_S, kind)
    if kind == "month":
        start, end = month_of(t)
        return Period(start, end, kind)
    raise PeriodError(f"unknown period {kind!r}; use one of {', '.join(PERIOD_KINDS)}")


def last_complete(kind: str, now: int) -> Period:
    """The latest period of ``kind`` that has ended by ``now``."""
    return containing(kind, now).previous()


def between(kind: str, first: Period, last: Period) -> list[Period]:
    """Every period of ``kind`` from ``first`` to ``last``, both included."""
    periods = []
    period = containing(kind, first.start)
    while period.start <= last.start:
        periods.append(period)
        period = period.following()
    return periods


def month_of(t: int) -> tuple[int, int]:
    """First second of the calendar month holding ``t`` and of the month after it."""
    moment = _utc(t)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    end = datetime(moment.year + (moment.month == 12), moment.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()), int(end.timestamp())


def parse_period(text: str) -> Period:
    """A period as people write it: 2026-11, 2026-W45, 2026-11-05 or 2026-11-05T14."""
    text = text.strip()
    try:
        period = _parse(text)
    except (ValueError, OverflowError):
        raise PeriodError(
            f"{text!r} is not a real date; check the month, day, week or hour"
        ) from None
    if period.start < EARLIEST_S or period.end > LATEST_S:
        raise PeriodError(
            f"{text!r} is outside the times wattledger keeps ({RANGE_TEXT}); give a period in range"
        )
    return period


def _parse(text: str) -> Period:
    if match := _MONTH.match(text):
        return containing("month", _stamp(int(match[1]), int(match[2]), 1))
    if match := _DAY.match(text):
        return containing("day", _stamp(int(match[1]), int(match[2]), int(match[3])))
    if match := _HOUR.match(text):
        day = _stamp(int(match[1]), int(match[2]), int(match[3]))
        hour = int(match[4])
        if hour > 23:
            raise ValueError(f"hour {hour}")
        return containing("hour", day + hour * HOUR_S)
    if match := _WEEK.match(text):
        monday = datetime.fromisocalendar(int(match[1]), int(match[2]), 1).replace(tzinfo=UTC)
        return containing("week", int(monday.timestamp()))
    raise PeriodError(
        f"cannot read {text!r} as a period; use a month (2026-11), an ISO week (2026-W45), "
        "a day (2026-11-05) or an hour (2026-11-05T14)"
    )


def _stamp(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


def _utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)
