"""``wattledger price`` and ``db`` commands, end to end through click."""

import json

import pytest
from click.testing import CliRunner

from wattledger.cli.main import cli


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTLEDGER_DB", f"sqlite:///{tmp_path / 'w.db'}")
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    assert invoke("db", "upgrade").exit_code == 0
    return invoke


def test_set_then_list_prices_as_json(run):
    assert (
        run(
            "price", "set", "--sku", "H100", "--usd-per-gpu-hour", "2.00", "--from", "2026-11-01"
        ).exit_code
        == 0
    )
    assert (
        run("price", "set", "--sku", "B200", "--capex-usd", "43800", "--years", "5").exit_code == 0
    )
    assert (
        run("price", "set", "--site", "default", "--usd-per-kwh", "0.10", "--pue", "1.25").exit_code
        == 0
    )

    rows = json.loads(run("price", "list", "--format", "json").output)["rows"]

    assert [
        (
            r["scope"],
            r["key"],
            r["effective_from"],
            r["usd_per_gpu_hour"],
            r["usd_per_kwh"],
            r["pue"],
        )
        for r in rows
    ] == [
        ("site", "default", "2000-01-01T00:00:00Z", None, 0.10, 1.25),
        ("sku", "B200", "2000-01-01T00:00:00Z", 1.0, None, None),  # 43,800 USD over 5 x 8,760 hours
        ("sku", "H100", "2026-11-01T00:00:00Z", 2.00, None, None),
    ]


def test_setting_the_same_start_again_replaces_the_price(run):
    run("price", "set", "--sku", "H100", "--usd-per-gpu-hour", "2.00", "--from", "2026-11-01")
    run("price", "set", "--sku", "H100", "--usd-per-gpu-hour", "2.50", "--from", "2026-11-01")

    rows = json.loads(run("price", "list", "--format", "json").output)["rows"]

    assert [r["usd_per_gpu_hour"] for r in rows] == [2.50]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sku", "H100"], "give --usd-per-gpu-hour, or --capex-usd and --years"),
        (["--sku", "H100", "--site", "dc1", "--usd-per-kwh", "1"], "give exactly one of --sku"),
        (["--sku", "H100", "--usd-per-kwh", "0.1"], "electricity price and PUE belong to a site"),
        (["--site", "dc1", "--usd-per-kwh", "0.1", "--pue", "0.8"], "PUE is at least 1.0"),
        (["--sku", "H100", "--capex-usd", "30000"], "--capex-usd needs --years"),
        (["--sku", "H100", "--usd-per-gpu-hour", "-2"], "--usd-per-gpu-hour must not be negative"),
    ],
)
def test_bad_prices_are_one_line_errors(run, args, message):
    result = run("price", "set", *args)

    assert result.exit_code == 2
    assert message in result.output
    assert result.output.count("\n") == 1


def test_import_toml_and_csv(run, tmp_path):
    toml = tmp_path / "prices.toml"
    toml.write_text(
        '[[sku]]\nsku = "H200"\nusd_per_gpu_hour = 1.41\neffective_from = 2026-10-01\n'
        '[[site]]\nsite = "dc1"\nusd_per_kwh = 0.08\npue = 1.3\neffective_from = "2026-10-01"\n'
    )
    csv = tmp_path / "prices.csv"
    csv.write_text(
        "scope,key,effective_from,usd_per_gpu_hour,note\nsku,GB300,2026-10-01,2.65,contract 7\n"
    )

    assert "imported 2 price entries" in run("price", "import", str(toml)).output
    assert "imported 1 price entries" in run("price", "import", str(csv)).output

    rows = json.loads(run("price", "list", "--format", "json").output)["rows"]
    assert [(r["key"], r["usd_per_gpu_hour"], r["usd_per_kwh"], r["note"]) for r in rows] == [
        ("dc1", None, 0.08, None),
        ("GB300", 2.65, None, "contract 7"),
        ("H200", 1.41, None, None),
    ]


def test_a_bad_price_file_names_the_line(run, tmp_path):
    csv = tmp_path / "prices.csv"
    csv.write_text("scope,key,effective_from,usd_per_gpu_hour\nsku,H100,2026-10-01,two\n")

    result = run("price", "import", str(csv))

    assert result.exit_code == 2
    assert "line 2: usd_per_gpu_hour must be a number, not 'two'" in result.output


def test_example_tiers_are_applied_only_when_named(run):
    assert json.loads(run("price", "list", "--format", "json").output)["rows"] == []

    run("price", "import", "--example", "hyperscaler", "--from", "2026-01-01")

    rows = {
        r["key"]: r for r in json.loads(run("price", "list", "--format", "json").output)["rows"]
    }
    assert rows["H200"]["usd_per_gpu_hour"] == 1.41
    assert rows["GB300"]["usd_per_gpu_hour"] == 2.652
    assert rows["H100"]["note"] == "example: InferenceX/SemiAnalysis hyperscaler tier"


def test_a_database_without_schema_is_refused_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / "fresh.db").touch()  # what SQLite makes before its first table
    monkeypatch.setenv("WATTLEDGER_DB", f"sqlite:///{tmp_path / 'fresh.db'}")

    result = CliRunner().invoke(cli, ["price", "list"])

    assert result.exit_code == 4
    assert "has no wattledger schema; run: wattledger db upgrade" in result.output


def test_setting_the_same_start_again_says_what_it_replaced(run):
    first = run("price", "set", "--sku", "H100", "--usd-per-gpu-hour", "2", "--from", "2026-11")
    again = run("price", "set", "--sku", "H100", "--usd-per-gpu-hour", "2.5", "--from", "2026-11")
    site = run("price", "set", "--site", "dc1", "--usd-per-kwh", "0.1", "--pue", "1.2")
    site_again = run("price", "set", "--site", "dc1", "--usd-per-kwh", "0.12")

    assert first.output == "price for sku H100 set from 2026-11-01T00:00:00Z\n"
    assert again.output == (
        "price for sku H100 set from 2026-11-01T00:00:00Z; "
        "replaced the earlier price from then (was 2 USD/GPU-h)\n"
    )
    assert "replaced" not in site.output
    assert site_again.output.endswith("(was 0.1 USD/kWh at PUE 1.2)\n")


@pytest.mark.parametrize("given", ["h100", "nvidia h100", " H100 ", "Gb200"])
def test_a_sku_is_stored_as_the_agent_spells_it(run, given):
    result = run("price", "set", "--sku", given, "--usd-per-gpu-hour", "2")

    assert result.exit_code == 0
    assert "note:" not in result.output
    rows = json.loads(run("price", "list", "--format", "json").output)["rows"]
    assert [row["key"] for row in rows] == [given.strip().split()[-1].upper()]


def test_a_full_device_name_is_kept_and_the_sku_is_suggested(run):
    result = run("price", "set", "--sku", "NVIDIA H100 80GB HBM3", "--usd-per-gpu-hour", "2")

    assert result.exit_code == 0
    assert result.output.splitlines()[0] == (
        "note: the agent reports a GPU named 'NVIDIA H100 80GB HBM3' as SKU H100; prices apply "
        "by SKU, so this one may match no GPU: use --sku H100"
    )
    rows = json.loads(run("price", "list", "--format", "json").output)["rows"]
    assert [row["key"] for row in rows] == ["NVIDIA H100 80GB HBM3"]


def test_an_unknown_board_keeps_its_spelling(run):
    run("price", "set", "--sku", "RTX PRO 6000 Blackwell", "--usd-per-gpu-hour", "1.1")

    rows = json.loads(run("price", "list", "--format", "json").output)["rows"]
    assert [row["key"] for row in rows] == ["RTX PRO 6000 Blackwell"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sku", "H100", "--usd-per-gpu-hour", "inf"], "--usd-per-gpu-hour must be a finite"),
        (["--sku", "H100", "--usd-per-gpu-hour", "nan"], "--usd-per-gpu-hour must be a finite"),
        (["--sku", "H100", "--capex-usd", "nan", "--years", "4"], "--capex-usd must be a finite"),
        (["--sku", "H100", "--capex-usd", "3e4", "--years", "inf"], "--years must be a finite"),
        (["--site", "x", "--usd-per-kwh", "-inf"], "--usd-per-kwh must be a finite number"),
        (["--site", "x", "--usd-per-kwh", "0.1", "--pue", "1e300"], "--pue 1e+300 is beyond"),
        (["--sku", "H100", "--usd-per-gpu-hour", "2e6"], "--usd-per-gpu-hour 2e+06 is beyond"),
        (["--sku", "H100", "--capex-usd", "3e4", "--years", "500"], "--years 500 is beyond"),
    ],
)
def test_non_finite_and_absurd_prices_are_refused(run, args, message):
    result = run("price", "set", *args)

    assert result.exit_code == 2
    assert result.output.startswith("error: " + message)
    assert len(result.output.splitlines()) == 1
    assert json.loads(run("price", "list", "--format", "json").output)["rows"] == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('sku = "H100"\n', "sku must be tables written [[sku]], one per price"),
        ("site = [1, 2]\n", "site must be tables written [[site]]"),
        (
            '[[sku]]\nsku = "H100"\nusd_per_gpu_hour = inf\neffective_from = 2026-01-01\n',
            "[[sku]] #1: usd_per_gpu_hour must be a finite number (got inf)",
        ),
        (
            '[[site]]\nsite = "x"\nusd_per_kwh = 0.1\npue = nan\neffective_from = 2026-01-01\n',
            "[[site]] #1: pue must be a finite number (got nan)",
        ),
        (
            '[[sku]]\nsku = "H100"\nusd_per_gpu_hour = true\neffective_from = 2026-01-01\n',
            "usd_per_gpu_hour must be a number, not True",
        ),
    ],
)
def test_bad_price_files_are_one_line_errors(run, tmp_path, text, message):
    path = tmp_path / "prices.toml"
    path.write_text(text)

    result = run("price", "import", str(path))

    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.splitlines()) == 1


def test_a_csv_price_file_with_nan_or_bad_bytes_is_refused(run, tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("scope,key,effective_from,usd_per_gpu_hour\nsku,H100,2026-01-01,NaN\n")
    result = run("price", "import", str(path))
    assert (
        result.output
        == f"error: {path} line 2: usd_per_gpu_hour must be a finite number (got nan)\n"
    )

    path.write_bytes(b"scope,key,effective_from,note\nsku,H100,2026-01-01,caf\xe9\n")
    result = run("price", "import", str(path))
    assert (
        result.output == f"error: price file {path} is not UTF-8 text (byte 53); save it as UTF-8\n"
    )


def test_importing_an_example_tier_reads_from_as_a_time(run):
    bad = run("price", "import", "--example", "rental", "--from", "garbage")
    assert bad.exit_code == 2
    assert "Invalid value for '--from': cannot read 'garbage' as a time" in bad.output

    first = run("price", "import", "--example", "rental", "--from", "2026-11")
    again = run("price", "import", "--example", "rental", "--from", "2026-11")
    count = len(json.loads(run("price", "list", "--format", "json").output)["rows"])
    assert first.output.endswith("(published figures, not your contract)\n")
    assert again.output.endswith(f"; {count} replaced earlier entries with the same start\n")


@pytest.fixture
def reported(tmp_path):
    add_gpus(tmp_path)


def add_gpus(tmp_path):
    """GPUs of two SKUs (and one that reported none) in the store ``run`` uses."""
    from sqlalchemy import insert

    from wattledger.collector import schema as s
    from wattledger.collector.db import open_engine

    engine = open_engine(f"sqlite:///{tmp_path / 'w.db'}")
    gpu = {"node": "node-a", "tags": "{}", "first_seen_ns": 0, "last_seen_ns": 0}
    with engine.begin() as conn:
        conn.execute(
            insert(s.gpus),
            [
                {**gpu, "uuid": "GPU-1", "sku": "H200"},
                {**gpu, "uuid": "GPU-2", "sku": "H100"},
                {**gpu, "uuid": "GPU-3", "sku": None},
            ],
        )
    engine.dispose()


def test_a_sku_no_gpu_reported_is_stored_with_a_warning_and_a_close_match(run, reported):
    result = run("price", "set", "--sku", "H1OO", "--usd-per-gpu-hour", "2", "--from", "2026-11")

    assert result.exit_code == 0
    assert result.stderr == (
        "warning: no GPU has reported SKU 'H1OO' yet; reported SKUs: H100, H200; "
        "did you mean --sku H100?\n"
    )
    assert result.stdout == "price for sku H1OO set from 2026-11-01T00:00:00Z\n"
    rows = json.loads(run("price", "list", "--format", "json").output)["rows"]
    assert [row["key"] for row in rows] == ["H1OO"]


def test_a_sku_without_a_close_match_is_warned_about_without_a_suggestion(run, reported):
    result = run("price", "set", "--sku", "GB300", "--usd-per-gpu-hour", "2", "--from", "2026-11")

    assert result.stderr == (
        "warning: no GPU has reported SKU 'GB300' yet; reported SKUs: H100, H200\n"
    )


def test_a_reported_sku_or_an_empty_fleet_gives_no_warning(run, tmp_path):
    before = run("price", "set", "--sku", "B200", "--usd-per-gpu-hour", "3", "--from", "2026-11")
    add_gpus(tmp_path)  # GPUs report after the first price is set
    after = run("price", "set", "--sku", "h200", "--usd-per-gpu-hour", "3", "--from", "2026-11")

    assert before.stderr == ""
    assert after.stderr == ""


def test_a_defaulted_start_is_stated_plainly(run):
    result = run("price", "set", "--sku", "H100", "--usd-per-gpu-hour", "2")

    assert result.output == (
        "price for sku H100 set from 2000-01-01T00:00:00Z "
        "(the default without --from: it covers all usage before any later price)\n"
    )
