"""The ``[schedule]`` section: which chargeback exports run when, and where they go.

Example::

    [schedule]
    lock_timeout_s = 3600            # a run still "running" after this long is taken over

    [[schedule.exports]]
    name = "daily-focus"
    cron = "30 2 * * *"              # crontab: minute hour day month weekday (UTC); a sixth,
                                     # leading field gives seconds
    period = "day"                   # hour | day | week | month: what one run exports
    granularity = "hour"             # hour | day: the length of one charge period in the file
    format = "parquet"               # csv | parquet (default: from the path's extension)
    path = "/var/lib/wattledger/exports/{job}/{period}.parquet"
    catch_up = 31                    # how many of the latest periods each run makes sure exist

A run exports the latest periods that have ended and have no finished export yet, so a run
missed while the machine was down is caught up by the next one. The path may use ``{job}``,
``{period}`` (``2026-11``, ``2026-W45``, ``2026-11-05``, ``2026-11-05T14``), ``{start}`` and
``{end}`` (``20261105T000000Z``). Everything is checked at start: a bad cron expression, an
unknown period or an unwritable directory is one clear error before anything is scheduled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from wattledger.cli.chargeback.periods import GRANULARITIES, PERIOD_KINDS, Period, containing
from wattledger.cli.chargeback.settings import ChargebackSettings, reject_unknown
from wattledger.cli.chargeback.writers import FORMATS
from wattledger.errors import ConfigError

SECTION_KEYS = {"exports", "lock_timeout_s"}
EXPORT_KEYS = {"name", "cron", "period", "granularity", "format", "path", "catch_up"}
PLACEHOLDERS = ("job", "period", "start", "end")
CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,149}$")
# A sample period, to try a path template on before anything runs.
SAMPLE = containing("day", 1_796_083_200)


@dataclass(frozen=True)
class ScheduledExport:
    name: str
    cron: str
    trigger: CronTrigger
    period: str
    granularity: str
    fmt: str
    path: str
    catch_up: int = 31

    def path_for(self, period: Period) -> Path:
        return Path(render_path(self.path, self.name, period))


@dataclass(frozen=True)
class ScheduleSettings:
    exports: tuple[ScheduledExport, ...] = ()
    lock_timeout_s: float = 3600.0

    def export(self, name: str) -> ScheduledExport | None:
        return next((job for job in self.exports if job.name == name), None)


def parse_schedule(
    raw: Mapping[str, Any], chargeback: ChargebackSettings, where: str = "config"
) -> ScheduleSettings:
    """Check the raw ``[schedule]`` table; raises :class:`ConfigError` naming the setting."""
    reject_unknown(raw, SECTION_KEYS, "schedule.", where)
    timeout = raw.get("lock_timeout_s", 3600.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"{where}: schedule.lock_timeout_s should be seconds above zero")

    items = raw.get("exports", [])
    if not isinstance(items, list):
        raise ConfigError(
            f"{where}: schedule.exports should be an array of tables ([[schedule.exports]])"
        )
    exports = tuple(_export(item, i, chargeback, where) for i, item in enumerate(items))
    names = [job.name for job in exports]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"{where}: schedule.exports: the name {name!r} is used twice; names must be unique"
            )
    return ScheduleSettings(exports, float(timeout))


def render_path(template: str, job: str, period: Period) -> str:
    return template.format_map(
        {
            "job": job,
            "period": period.label,
            "start": _compact(period.start),
            "end": _compact(period.end),
        }
    )


def cron_trigger(expression: str) -> CronTrigger:
    """A UTC trigger for a crontab line (five fields, or six with seconds first).

    Weekday numbers follow crontab (0 or 7 is Sunday), not APScheduler 3's own numbering.
    """
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    second, minute, hour, day, month, weekday = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_weekdays(weekday),
        timezone=UTC,
    )


def _export(item: Any, i: int, chargeback: ChargebackSettings, where: str) -> ScheduledExport:
    key = f"schedule.exports[{i}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: {key} should be a table with name, cron, period and path")
    reject_unknown(item, EXPORT_KEYS, key + ".", where)
    for required in ("name", "cron", "period", "path"):
        if not isinstance(item.get(required), str) or not item[required].strip():
            raise ConfigError(f"{where}: {key}.{required} is missing; give it as text")
    name = item["name"]
    if not NAME.match(name):
        raise ConfigError(
            f"{where}: {key}.name {name!r} should be letters, digits, '.', '_' or '-'"
        )
    key = f"schedule.exports[{i}] ({name})"

    try:
        trigger = cron_trigger(item["cron"])
    except ValueError as exc:
        raise ConfigError(
            f"{where}: {key}.cron {item['cron']!r} is not a valid cron expression: {exc}"
        ) from None

    period = item["period"]
    if period not in PERIOD_KINDS:
        raise ConfigError(
            f"{where}: {key}.period is {period!r}; use one of {', '.join(PERIOD_KINDS)}"
        )
    granularity = item.get("granularity", chargeback.granularity if period != "hour" else "hour")
    if granularity not in GRANULARITIES:
        raise ConfigError(
            f"{where}: {key}.granularity is {granularity!r}; use one of {', '.join(GRANULARITIES)}"
        )
    if period == "hour" and granularity != "hour":
        raise ConfigError(
            f"{where}: {key}: an hourly period cannot have {granularity} charge periods; use hour"
        )

    path = item["path"]
    fmt = item.get("format") or Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(
            f"{where}: {key}.format is {fmt!r}; "
            "use csv or parquet (or end the path in .csv or .parquet)"
        )
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix and "{" not in suffix and suffix != fmt:
        raise ConfigError(
            f"{where}: {key}.path ends in .{suffix} but the format is {fmt}; end the path in .{fmt}"
        )
    _check_path(path, name, f"{where}: {key}.path")

    catch_up = item.get("catch_up", 31)
    if isinstance(catch_up, bool) or not isinstance(catch_up, int) or catch_up < 1:
        raise ConfigError(
            f"{where}: {key}.catch_up should be a whole number of periods, at least 1"
        )
    return ScheduledExport(name, item["cron"], trigger, period, granularity, fmt, path, catch_up)


def _check_path(template: str, name: str, key: str) -> None:
    """The template renders, and its directory exists or can be made, and is writable."""
    try:
        rendered = Path(render_path(template, name, SAMPLE)).expanduser()
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{key} {template!r} has a bad placeholder ({exc}); use {{{'}, {'.join(PLACEHOLDERS)}}}"
        ) from None
    if not rendered.is_absolute():
        raise ConfigError(f"{key} {template!r} should be an absolute path")
    if rendered.is_dir():
        raise ConfigError(
            f"{key} {template!r} names a directory; give a file name (with {{period}})"
        )
    directory = rendered.parent
    while not directory.exists():
        directory = directory.parent
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}: {directory} is not a writable directory for this user; "
            "create it with the right owner or choose another path"
        )


def _weekdays(field: str) -> str:
    """A crontab weekday field as APScheduler day names (crontab: 0 and 7 are Sunday)."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for token in field.split(","):
        spec, _, step = token.partition("/")
        stride = _number(step, "weekday step") if step else 1
        if spec == "*":
            low, high = 0, 6
        elif "-" in spec:
            low, high = (_day(part) for part in spec.split("-", 1))
        else:
            low = _day(spec)
            high = 6 if step else low
        if high < low or stride < 1:
            raise ValueError(f"weekday range {token!r} is empty")
        days.update(day % 7 for day in range(low, high + 1, stride))
    return ",".join(CRON_DAYS[day] for day in sorted(days))


def _day(text: str) -> int:
    text = text.strip().lower()
    if text[:3] in CRON_DAYS and text.isalpha():
        return CRON_DAYS.index(text[:3])
    day = _number(text, "weekday")
    if not 0 <= day <= 7:
        raise ValueError(f"weekday {text!r} is not 0-7 or a day name")
    return day


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a number")
    return int(text)


def _compact(t: int) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
