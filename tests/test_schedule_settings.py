"""The [schedule] section: cron expressions in crontab's meaning, and one clear error at start."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from wattledger.cli.chargeback.periods import parse_period
from wattledger.cli.chargeback.schedule_settings import cron_trigger, parse_schedule
from wattledger.cli.chargeback.settings import parse_chargeback
from wattledger.errors import ConfigError

SUNDAY = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # a Sunday, noon


def job(tmp_path: Path, **fields) -> dict:
    return {
        "name": "daily",
        "cron": "30 2 * * *",
        "period": "day",
        "path": str(tmp_path / "{job}-{period}.csv"),
        **fields,
    }


def parse(raw: dict, granularity: str = "day"):
    return parse_schedule(raw, parse_chargeback({"granularity": granularity}), "wl.toml")


def next_fires(expression: str, count: int = 3, after: datetime = SUNDAY) -> list[str]:
    trigger = cron_trigger(expression)
    fires, previous = [], None
    now = after
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        fires.append(fire.strftime("%a %d %H:%M:%S"))
        previous, now = fire, fire
    return fires


def test_a_scheduled_export_with_its_defaults(tmp_path):
    schedule = parse({"exports": [job(tmp_path)]})

    [export] = schedule.exports
    assert (export.name, export.period, export.granularity, export.fmt, export.catch_up) == (
        "daily",
        "day",
        "day",
        "csv",
        31,
    )
    assert schedule.lock_timeout_s == 3600.0
    assert export.path_for(parse_period("2026-11-05")) == tmp_path / "daily-2026-11-05.csv"
    assert next_fires(export.cron) == ["Mon 30 02:30:00", "Tue 01 02:30:00", "Wed 02 02:30:00"]


def test_hourly_periods_default_to_hourly_charges_and_paths_render_every_placeholder(tmp_path):
    path = str(tmp_path / "{job}" / "{period}_{start}_{end}.parquet")
    schedule = parse({"exports": [job(tmp_path, name="h", period="hour", path=path)]})

    [export] = schedule.exports
    assert (export.granularity, export.fmt) == ("hour", "parquet")
    assert export.path_for(parse_period("2026-11-05T14")) == (
        tmp_path / "h" / "2026-11-05T14_20261105T140000Z_20261105T150000Z.parquet"
    )


@pytest.mark.parametrize(
    ("weekday", "fires"),
    [
        ("1-5", ["Mon 30 03:00:00", "Tue 01 03:00:00", "Wed 02 03:00:00"]),
        ("0", ["Sun 06 03:00:00", "Sun 13 03:00:00", "Sun 20 03:00:00"]),
        ("7", ["Sun 06 03:00:00", "Sun 13 03:00:00", "Sun 20 03:00:00"]),
        ("5-7", ["Fri 04 03:00:00", "Sat 05 03:00:00", "Sun 06 03:00:00"]),
        ("*/3", ["Wed 02 03:00:00", "Sat 05 03:00:00", "Sun 06 03:00:00"]),
        ("mon,fri", ["Mon 30 03:00:00", "Fri 04 03:00:00", "Mon 07 03:00:00"]),
    ],
)
def test_weekdays_mean_what_crontab_means(weekday, fires):
    # Crontab counts Sunday as 0 (and 7); APScheduler 3 alone would take 0 as Monday.
    assert next_fires(f"0 3 * * {weekday}") == fires


def test_a_sixth_leading_field_gives_seconds():
    assert next_fires("*/20 * * * * *") == ["Sun 29 12:00:00", "Sun 29 12:00:20", "Sun 29 12:00:40"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"cron": "61 * * * *"},
            "wl.toml: schedule.exports[0] (daily).cron '61 * * * *' is not a valid cron "
            "expression: "
            "Error validating expression '61': the last value (61) is higher than the maximum "
            "value (59)",
        ),
        (
            {"cron": "0 3 * *"},
            "wl.toml: schedule.exports[0] (daily).cron '0 3 * *' is not a valid cron expression: "
            "expected 5 fields (minute hour day month weekday), got 4",
        ),
        (
            {"cron": "0 3 * * 8"},
            "wl.toml: schedule.exports[0] (daily).cron '0 3 * * 8' is not a valid cron expression: "
            "weekday '8' is not 0-7 or a day name",
        ),
        (
            {"period": "year"},
            "wl.toml: schedule.exports[0] (daily).period is 'year'; use one of hour, day, week, "
            "month",
        ),
        (
            {"period": "hour", "granularity": "day"},
            "wl.toml: schedule.exports[0] (daily): an hourly period cannot have day charge "
            "periods; use hour",
        ),
        (
            {"format": "xlsx"},
            "wl.toml: schedule.exports[0] (daily).format is 'xlsx'; "
            "use csv or parquet (or end the path in .csv or .parquet)",
        ),
        (
            {"format": "parquet"},
            "wl.toml: schedule.exports[0] (daily).path ends in .csv but the format is parquet; "
            "end the path in .parquet",
        ),
        (
            {"path": "exports/{period}.csv"},
            "wl.toml: schedule.exports[0] (daily).path 'exports/{period}.csv' should be an "
            "absolute path",
        ),
        (
            {"path": "/tmp/{month}.csv"},
            "wl.toml: schedule.exports[0] (daily).path '/tmp/{month}.csv' has a bad placeholder "
            "('month'); "
            "use {job}, {period}, {start}, {end}",
        ),
        (
            {"catch_up": 0},
            "wl.toml: schedule.exports[0] (daily).catch_up should be a whole number of periods, "
            "at least 1",
        ),
        (
            {"name": "daily report"},
            "wl.toml: schedule.exports[0].name 'daily report' should be letters, digits, "
            "'.', '_' or '-'",
        ),
        ({"when": "daily"}, "wl.toml: unknown setting schedule.exports[0].when"),
    ],
)
def test_bad_exports_are_one_line_errors_naming_the_key(tmp_path, fields, message):
    with pytest.raises(ConfigError) as caught:
        parse({"exports": [job(tmp_path, **fields)]})

    assert str(caught.value) == message


def test_an_unwritable_directory_is_an_error_at_start(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the export directory should be")

    with pytest.raises(ConfigError) as caught:
        parse({"exports": [job(tmp_path, path=str(blocker / "exports" / "{period}.csv"))]})

    assert str(caught.value) == (
        f"wl.toml: schedule.exports[0] (daily).path: {blocker} is not a writable directory for "
        "this "
        "user; create it with the right owner or choose another path"
    )


def test_missing_directories_are_fine_when_they_can_be_made(tmp_path):
    schedule = parse({"exports": [job(tmp_path, path=str(tmp_path / "a" / "b" / "{period}.csv"))]})

    assert schedule.exports[0].path.endswith("{period}.csv")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"exports": [{"name": "x"}]},
            "wl.toml: schedule.exports[0].cron is missing; give it as text",
        ),
        ({"lock_timeout_s": -1}, "wl.toml: schedule.lock_timeout_s should be seconds above zero"),
        (
            {"export": []},
            "wl.toml: unknown setting schedule.export; did you mean schedule.exports?",
        ),
    ],
)
def test_bad_schedule_settings(raw, message):
    with pytest.raises(ConfigError) as caught:
        parse(raw)

    assert str(caught.value) == message


def test_names_must_be_unique(tmp_path):
    with pytest.raises(ConfigError, match="the name 'daily' is used twice"):
        parse({"exports": [job(tmp_path), job(tmp_path, cron="0 4 * * *")]})


REPO = Path(__file__).resolve().parent.parent


def test_the_example_config_is_valid(tmp_path):
    from wattledger.config import load_config

    text = (REPO / "deploy" / "config" / "scheduler.toml").read_text()
    example = tmp_path / "scheduler.toml"
    example.write_text(text.replace("/var/lib/wattledger", str(tmp_path)))

    config = load_config(example, environ={})
    chargeback = parse_chargeback(config.chargeback, str(example))
    schedule = parse_schedule(config.schedule, chargeback, str(example))

    assert [job.name for job in schedule.exports] == ["daily-focus", "monthly-focus"]
    assert (chargeback.idle, chargeback.idle_centre, len(chargeback.rules)) == (
        "centre",
        "platform",
        4,
    )


def test_the_systemd_unit_notifies_and_is_hardened_like_the_others():
    def settings_of(name):
        lines = (REPO / "deploy" / "systemd" / name).read_text().splitlines()
        return {
            tuple(line.split("=", 1)) for line in lines if "=" in line and not line.startswith("#")
        }

    scheduler = settings_of("wattledger-scheduler.service")
    collector = settings_of("wattledger-collector.service")

    assert ("Type", "notify") in scheduler
    assert ("WatchdogSec", "30") in scheduler
    assert any(key == "ExecStart" and value.endswith("schedule run") for key, value in scheduler)
    hardening = {
        (k, v)
        for k, v in collector
        if k.startswith(
            (
                "Protect",
                "Restrict",
                "SystemCall",
                "NoNew",
                "Capability",
                "Lock",
                "Memory",
                "PrivateDevices",
            )
        )
    }
    assert hardening <= scheduler
