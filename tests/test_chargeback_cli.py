"""``wattledger export chargeback`` end to end through click, with a config file."""

import csv

import pytest
from click.testing import CliRunner
from test_chargeback_fleet import build_fleet

from wattledger.cli.main import cli
from wattledger.collector.db import open_engine
from wattledger.migrations import runner

CONFIG = """
[chargeback]
default_centre = "platform"
billing_account_id = "acme-gpu"

[chargeback.centres]
search = "Search"
ads = "Ads"
platform = "Platform"

[[chargeback.rules]]
centre = "search"
tags = { team = "search" }

[[chargeback.rules]]
centre = "ads"
model = "qwen*"
"""


@pytest.fixture
def run(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = open_engine(url)
    runner.upgrade(engine)
    build_fleet(engine)
    engine.dispose()
    config = tmp_path / "wattledger.toml"
    config.write_text(CONFIG)
    monkeypatch.setenv("WATTLEDGER_DB", url)
    monkeypatch.setenv("WATTLEDGER_CONFIG", str(config))

    def invoke(*args):
        return CliRunner().invoke(cli, ["export", "chargeback", *args], catch_exceptions=False)

    return invoke


def test_export_a_month_as_parquet_and_csv(run, tmp_path):
    parquet = run("--period", "2026-11", "--out", str(tmp_path / "nov.parquet"))
    as_csv = run("--period", "2026-11", "--granularity", "hour", "--out", str(tmp_path / "nov.csv"))

    assert parquet.exit_code == 0, parquet.output
    assert parquet.stderr.startswith(
        "wrote 3 rows (parquet, 24.60 USD, 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z) to "
    )
    assert as_csv.exit_code == 0, as_csv.output
    with (tmp_path / "nov.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 6
    assert {row["BillingAccountId"] for row in rows} == {"acme-gpu"}
    assert sorted({row["SubAccountName"] for row in rows}) == ["Ads", "Platform", "Search"]


def test_a_month_still_open_is_refused_unless_asked_for(run, tmp_path):
    refused = run("--period", "2026-12", "--out", str(tmp_path / "dec.csv"))
    written_when_refused = (tmp_path / "dec.csv").exists()
    allowed = run("--period", "2026-12", "--allow-open", "--out", str(tmp_path / "dec.csv"))

    assert refused.exit_code == 2
    assert refused.output.startswith(
        "error: the period ending 2027-01-01T00:00:00Z is still open (now "
    )
    assert refused.output.count("\n") == 1
    assert not written_when_refused
    assert allowed.exit_code == 0, allowed.output
    assert "24.60 USD" in allowed.stderr


def test_since_and_until_give_the_window(run, tmp_path):
    result = run(
        "--since",
        "2026-11-30T23:00",
        "--until",
        "2026-12-01T01:00",
        "--format",
        "csv",
        "--out",
        str(tmp_path / "two-hours"),
    )

    assert result.exit_code == 0, result.output
    assert "(csv, 24.60 USD, 2026-11-30T23:00:00Z to 2026-12-01T01:00:00Z)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--period", "2026-11", "--since", "2026-11-01"],
            "error: give --period or --since/--until, not both\n",
        ),
        ([], "error: say which window to export: --period 2026-11, or both --since and --until\n"),
        (
            ["--period", "November"],
            "error: cannot read 'November' as a period; use a month (2026-11), an ISO week "
            "(2026-W45), "
            "a day (2026-11-05) or an hour (2026-11-05T14)\n",
        ),
        (
            ["--period", "2026-13"],
            "error: '2026-13' is not a real date; check the month, day, week or hour\n",
        ),
        (
            ["--period", "9999-W52"],
            "error: '9999-W52' is outside the times wattledger keeps (1970-01-01 to 9999-01-01); "
            "give a period in range\n",
        ),
        (
            ["--period", "0001-01"],
            "error: '0001-01' is outside the times wattledger keeps (1970-01-01 to 9999-01-01); "
            "give a period in range\n",
        ),
        (
            ["--period", "1969-12-31T23"],
            "error: '1969-12-31T23' is outside the times wattledger keeps (1970-01-01 to "
            "9999-01-01); give a period in range\n",
        ),
    ],
)
def test_bad_windows_are_one_line_errors(run, tmp_path, args, message):
    result = run(*args, "--out", str(tmp_path / "x.csv"))

    assert result.exit_code == 2
    assert result.output == message


def test_bad_chargeback_config_is_one_line_error(run, tmp_path):
    (tmp_path / "wattledger.toml").write_text(CONFIG.replace('centre = "ads"', 'centre = "adz"'))

    result = run("--period", "2026-11", "--out", str(tmp_path / "x.csv"))

    assert result.exit_code == 2
    assert result.output == (
        f"error: {tmp_path / 'wattledger.toml'}: chargeback.rules[1].centre names cost centre "
        "'adz', "
        "which is not in chargeback.centres (did you mean 'ads'?); declare it there\n"
    )


@pytest.mark.parametrize(
    ("args", "name", "message"),
    [
        (
            [],
            "x.xlsx",
            "error: --out x.xlsx: .xlsx is not an export format; name the file .csv or .parquet\n",
        ),
        (
            ["--format", "csv"],
            "x.xlsx",
            "error: --out x.xlsx: .xlsx is not an export format; name the file .csv or .parquet\n",
        ),
        (
            ["--format", "parquet"],
            "x.csv",
            "error: --out x.csv is named .csv but --format is parquet; name the file .parquet, "
            "or leave out --format\n",
        ),
        (
            ["--format", "csv"],
            "x.PARQUET",
            "error: --out x.PARQUET is named .parquet but --format is csv; name the file .csv, "
            "or leave out --format\n",
        ),
    ],
)
def test_a_file_name_that_disagrees_with_the_format_is_refused(run, tmp_path, args, name, message):
    result = run("--period", "2026-11", *args, "--out", str(tmp_path / name))

    assert result.exit_code == 2
    assert result.output == message
    assert not (tmp_path / name).exists()


def test_a_window_without_usage_is_refused_unless_allowed(run, tmp_path):
    refused = run("--period", "2026-10", "--out", str(tmp_path / "oct.csv"))
    allowed = run("--period", "2026-10", "--allow-empty", "--out", str(tmp_path / "oct.csv"))

    assert refused.exit_code == 2
    assert refused.output == (
        "error: no usage in 2026-10-01T00:00:00Z to 2026-11-01T00:00:00Z; nothing to export "
        "(check the window and that agents report, or pass --allow-empty to write a file "
        "without rows)\n"
    )
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stderr.startswith("wrote 0 rows (csv, 0.00 USD,")
    assert (tmp_path / "oct.csv").read_text().count("\n") == 1  # the header alone


def test_help_says_the_total_matches_the_cost_report_to_the_cent():
    text = " ".join(CliRunner().invoke(cli, ["export", "chargeback", "--help"]).output.split())

    assert "equals 'wattledger report cost' for the same window to the cent" in text
    assert "--allow-empty" in text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing/dir/x.csv", "the folder '{tmp}/missing/dir' does not exist; create it first"),
        ("", "'{tmp}' is a directory; give a file name"),
    ],
)
def test_an_out_path_that_cannot_be_written_is_refused_like_a_plot(run, tmp_path, name, message):
    result = run("--period", "2026-11", "--allow-empty", "--out", str(tmp_path / name))

    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '--out': {message.format(tmp=tmp_path)}"
    )
    assert not (tmp_path / "missing").exists()
