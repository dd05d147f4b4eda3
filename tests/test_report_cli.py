"""``wattledger report cost|split|compare|trend`` end to end through click."""

import csv
import io
import json

import pytest
from click.testing import CliRunner
from report_fleet import Fleet, minutes

from wattledger.cli.main import cli
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.collector.db import open_engine
from wattledger.migrations import runner

WINDOW = ["--since", "2025-11-24T16:00", "--until", "2025-11-24T17:00"]
REPORTS = ["cost", "split", "compare", "trend"]


@pytest.fixture
def fleet_db(tmp_path, monkeypatch):
    """One hour of a small fleet; GPU-x (SKU X100) has no price.

    hopper: GPU-a (H100, 600 W) runs chat (minutes 1-30, 1,000 in + 500 out tokens/s) and GPU-b
    (H100, 200 W) runs nothing. blackwell: GPU-c (B200, 1,000 W) runs code all hour (2,000 in +
    1,000 out tokens/s, phase 1:3); GPU-x (X100) runs fast (500 out tokens/s).
    Prices: H100 2.00, B200 4.00 USD/GPU-h, 0.10 USD/kWh, PUE 1.25.
    """
    url = f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("WATTLEDGER_DB", url)
    monkeypatch.setenv("COLUMNS", "200")  # tables at full width, no cell cut short
    engine = open_engine(url)
    runner.upgrade(engine)
    fleet = Fleet(length_minutes=60)
    fleet.gpu("node-a", "GPU-a", "H100", "hopper", 600.0)
    fleet.gpu("node-b", "GPU-b", "H100", "hopper", 200.0)
    fleet.gpu("node-c", "GPU-c", "B200", "blackwell", 1000.0)
    fleet.gpu("node-x", "GPU-x", "X100", "blackwell", 400.0)
    fleet.endpoint(
        "node-a",
        "chat",
        ["GPU-a"],
        "chat",
        input_per_s=1_000,
        output_per_s=500,
        active=minutes(1, 30),
    )
    fleet.endpoint(
        "node-c",
        "code",
        ["GPU-c"],
        "coder",
        input_per_s=2_000,
        output_per_s=1_000,
        prefill_per_s=0.5,
        decode_per_s=1.5,
        engine="trtllm",
    )
    fleet.endpoint("node-x", "fast", ["GPU-x"], "coder", output_per_s=500)
    fleet.store(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("sku", "B200", 0, usd_per_gpu_hour=4.00),
            PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.25),
        ],
    )
    engine.dispose()
    return url


def run(*args):
    return CliRunner().invoke(cli, ["report", *args])


def as_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cost_as_json_rows_add_up_to_the_total_and_name_the_unpriced_gpu(fleet_db):
    """chat 1.0375 serving + 1.0375 idle; coder: GPU-c 4.00 + 1 kWh x 1.25 x 0.10 = 4.125,
    and GPU-x's electricity 0.4 x 1.25 x 0.10 = 0.05 (its GPU-hour is unpriced): 4.175;
    (no endpoint): GPU-b 2.025 idle."""
    document = as_json(run("cost", *WINDOW, "--format", "json"))

    rows = {row["model"]: row for row in document["rows"]}
    assert rows["chat"]["cost_usd"] == 1.0375
    assert rows["coder"]["cost_usd"] == 4.175
    assert rows["coder"]["usd_per_mtok"] is None  # GPU-x has no price: not free, unknown
    assert rows["coder"]["unpriced_gpu_hours"] == pytest.approx(1.0)
    assert document["total"]["cost_usd"] == pytest.approx(
        sum(r["cost_usd"] for r in document["rows"])
    )
    assert document["total"]["idle_usd"] == 3.0625
    assert any(
        note.startswith("UNPRICED: node node-x, SKU 'X100': 1 GPU (GPU-x), 1.00 GPU-hours")
        for note in document["notes"]
    )


def test_cost_as_csv_has_a_header_the_rows_and_the_total_line(fleet_db):
    result = run("cost", *WINDOW, "--by", "architecture", "--format", "csv")

    assert result.exit_code == 0, result.output
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [line["architecture"] for line in lines] == ["blackwell", "hopper", "TOTAL"]
    assert float(lines[0]["cost_usd"]) + float(lines[1]["cost_usd"]) == pytest.approx(
        float(lines[2]["cost_usd"])
    )
    assert "UNPRICED: node node-x, SKU 'X100'" in result.stderr


def test_cost_table_shows_cents_that_add_up(fleet_db):
    """Idle cells 2.025 (GPU-b) and 1.0375 (chat) would show 2.03 + 1.04 = 3.07 against a total
    of 3.06; largest-remainder rounding shows 2.02 + 1.04 = 3.06."""
    result = run("cost", *WINDOW, "--by", "model")

    assert result.exit_code == 0, result.output
    table = result.stdout
    idle = {
        line.split("│")[1].strip(): line.split("│")[7].strip()
        for line in table.splitlines()
        if line.count("│") > 8
    }
    assert (idle["(no endpoint)"], idle["chat"], idle["coder"], idle["TOTAL"]) == (
        "2.02",
        "1.04",
        "0.00",
        "3.06",
    )
    assert "unpriced" in table  # coder's USD/Mtok cell


def test_split_as_json_and_csv(fleet_db):
    """code: 4.125 USD split by phase time 1:3: prefill 1.03125, decode 3.09375."""
    document = as_json(run("split", *WINDOW, "--format", "json"))
    rows = {row["endpoint"]: row for row in document["rows"]}
    assert rows["code"]["method"] == "phase time"
    assert (rows["code"]["prefill_usd"], rows["code"]["decode_usd"]) == (1.03125, 3.09375)
    assert rows["chat"]["method"] == "default ratio (estimate)"
    assert any(
        note.startswith("UNPRICED: node node-x, SKU 'X100': 1 GPU (GPU-x)")
        for note in document["notes"]
    )

    result = run("split", *WINDOW, "--format", "csv", "--by", "model")
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [line["model"] for line in lines] == ["(no endpoint)", "chat", "coder", "TOTAL"]
    assert "estimate" in lines[0] and "method" in lines[0]


def test_compare_as_json_and_csv(fleet_db):
    document = as_json(
        run("compare", *WINDOW, "--along", "sku", "--a", "H100", "--b", "B200", "--format", "json")
    )
    [row] = [r for r in document["rows"] if r["model"] == "chat"] or [None]
    assert row["a"] == "H100" and row["b_tokens"] is None  # chat runs on H100 only
    assert row["why"] == "B200 does not run this"

    document = as_json(run("compare", *WINDOW, "--format", "json"))
    coder = {r["model"]: r for r in document["rows"]}["coder"]
    assert coder["b_unpriced"] is True and coder["ratio"] is None
    assert any(
        note.startswith("UNPRICED: node node-x, SKU 'X100': 1 GPU (GPU-x)")
        for note in document["notes"]
    )

    result = run("compare", *WINDOW, "--format", "csv")
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {
        "a_usd_per_mtok",
        "b_usd_per_mtok",
        "ratio",
        "factor_price",
        "factor_throughput",
    } <= set(lines[0])


def test_compare_with_a_missing_value_is_a_one_line_error(fleet_db):
    result = run("compare", *WINDOW, "--b", "ampere")

    assert result.exit_code == 2
    assert (
        result.stderr
        == "error: no architecture 'ampere' (--b) in this window; present: blackwell, hopper\n"
    )


def test_trend_as_json_and_csv(fleet_db):
    document = as_json(run("trend", *WINDOW, "--every", "hour", "--format", "json"))
    assert [(r["period"], r["model"]) for r in document["rows"]] == [
        ("2025-11-24T16:00Z", "(no endpoint)"),
        ("2025-11-24T16:00Z", "chat"),
        ("2025-11-24T16:00Z", "coder"),
    ]
    assert any(
        note.startswith("UNPRICED: node node-x, SKU 'X100': 1 GPU (GPU-x)")
        for note in document["notes"]
    )

    result = run("trend", *WINDOW, "--format", "csv")
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    assert lines[-1]["period"] == "TOTAL" and "change" in lines[0]


@pytest.mark.parametrize("report", REPORTS)
def test_bad_by_is_a_usage_error(fleet_db, report):
    result = run(report, *WINDOW, "--by", "colour")

    assert result.exit_code == 2
    assert "Invalid value for '--by': choose one or more of model, endpoint" in result.stderr


@pytest.mark.parametrize("report", ["cost", "split", "trend"])
def test_a_window_without_usage_says_so(fleet_db, report):
    document = as_json(
        run(report, "--since", "2026-01-01", "--until", "2026-01-02", "--format", "json")
    )

    assert document["rows"] == []
    assert (
        "No usage in this window. Is an agent running, and is the window right?"
        in document["notes"]
    )


@pytest.mark.parametrize("report", ["cost", "split", "trend"])
def test_a_where_that_matches_nothing_says_so_and_how_to_list_values(fleet_db, report):
    document = as_json(
        run(report, *WINDOW, "--where", "model=nosuch", "--where", "node=a b", "--format", "json")
    )

    assert document["rows"] == []
    assert document["notes"][-1] == (
        "No usage matches --where model=nosuch --where 'node=a b' in this window; "
        "wattledger report cost --since 2025-11-24T16:00:00Z --until 2025-11-24T17:00:00Z "
        "--by model,node lists the values there are."
    )
    assert not any("Is an agent running" in note for note in document["notes"])


def test_a_where_that_matches_nothing_says_so_under_the_table(fleet_db):
    result = run("cost", *WINDOW, "--where", "model=nosuch")

    assert result.exit_code == 0
    assert "No usage matches --where model=nosuch in this window;" in result.stdout
    assert "Is an agent running" not in result.stdout


def test_compare_with_a_where_that_matches_nothing_names_the_where(fleet_db):
    result = run("compare", *WINDOW, "--where", "model=nosuch", "--where", "model=other")

    assert result.exit_code == 2
    assert result.stderr == (
        "error: no architecture 'hopper' (--a) in this window with --where model=nosuch "
        "--where model=other; present: none\n"
    )


def test_compare_in_a_window_without_usage_names_no_values(fleet_db):
    result = run("compare", "--since", "2026-01-01", "--until", "2026-01-02")

    assert result.exit_code == 2
    assert "present: none" in result.stderr


@pytest.mark.parametrize("report", REPORTS)
def test_an_empty_window_is_a_one_line_error(fleet_db, report):
    result = run(report, "--since", "2025-11-24T16:00", "--until", "2025-11-24T16:00")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: the window is empty")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("report", REPORTS)
def test_every_report_names_the_unpriced_gpu_in_its_table_notes(fleet_db, report):
    result = run(report, *WINDOW)

    assert result.exit_code == 0, result.output
    assert (
        "UNPRICED: node node-x, SKU 'X100': 1 GPU (GPU-x), 1.00 GPU-hours with no price; its cost "
        "is missing from the figures, not zero; set one: wattledger price set --sku X100 "
        "--usd-per-gpu-hour N --from DATE." in result.stdout
    )


@pytest.mark.parametrize("report", REPORTS)
def test_plot_writes_a_png(fleet_db, report, tmp_path):
    path = tmp_path / f"{report}.png"

    result = run(report, *WINDOW, "--plot", str(path))

    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("report", REPORTS)
def test_help_has_examples(report):
    result = CliRunner().invoke(cli, ["report", report, "--help"])

    assert result.exit_code == 0
    assert "Examples:" in result.output and f"wattledger report {report}" in result.output


def test_where_filters_and_a_bad_where_is_a_usage_error(fleet_db):
    document = as_json(
        run("cost", *WINDOW, "--by", "node", "--where", "model=chat", "--format", "json")
    )
    assert [row["node"] for row in document["rows"]] == ["node-a"]

    result = run("cost", *WINDOW, "--where", "colour=red")
    assert result.exit_code == 2 and "use DIMENSION=VALUE" in result.stderr


def test_repeated_where_on_one_dimension_keeps_either_value(fleet_db):
    """chat runs on node-a, coder on node-c and node-x: both models give all three nodes; a
    second dimension must hold as well."""
    either = as_json(
        run(
            "cost",
            *WINDOW,
            *("--by", "node", "--where", "model=chat", "--where", "model=coder"),
            "--format",
            "json",
        )
    )
    assert [row["node"] for row in either["rows"]] == ["node-a", "node-c", "node-x"]
    assert either["total"]["cost_usd"] == 1.0375 + 4.175

    both = as_json(
        run(
            "cost",
            *WINDOW,
            *("--by", "node", "--where", "model=coder", "--where", "node=node-c"),
            "--format",
            "json",
        )
    )
    assert [row["node"] for row in both["rows"]] == ["node-c"]

    help_text = CliRunner().invoke(cli, ["report", "cost", "--help"]).output
    assert "values of one dimension are alternatives" in " ".join(help_text.split())


@pytest.mark.parametrize("report", ["cost", "split", "trend"])
def test_a_dimension_named_twice_in_by_groups_once(fleet_db, report):
    twice = as_json(run(report, *WINDOW, "--by", "model,model", "--format", "json"))
    once = as_json(run(report, *WINDOW, "--by", "model", "--format", "json"))

    assert twice == once


def test_the_library_refuses_a_dimension_named_twice():
    from wattledger.cli.reports.usage_query import ReportError, check_dimensions

    with pytest.raises(ReportError, match="cannot group by model twice; name each dimension once"):
        check_dimensions(["model", "node", "model"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing/x.png", "the folder '{tmp}/missing' does not exist; create it first"),
        (
            "x.txt",
            "'{tmp}/x.txt' must end in .png, .svg or .pdf (the picture's format), e.g. x.png",
        ),
        ("noext", "'{tmp}/noext' must end in .png, .svg or .pdf"),
    ],
)
@pytest.mark.parametrize("report", REPORTS)
def test_a_plot_path_that_cannot_be_written_is_a_usage_error(
    fleet_db, tmp_path, report, name, message
):
    result = run(report, *WINDOW, "--plot", str(tmp_path / name))

    assert result.exit_code == 2
    assert message.format(tmp=tmp_path) in " ".join(result.stderr.split())
    assert not (tmp_path / name).exists() and not (tmp_path / "noext.png").exists()


def test_a_plot_may_be_svg_or_pdf(fleet_db, tmp_path):
    for suffix, magic in ((".svg", b"<?xml"), (".pdf", b"%PDF")):
        path = tmp_path / f"cost{suffix}"
        result = run("cost", *WINDOW, "--plot", str(path))
        assert result.exit_code == 0, result.output
        assert path.read_bytes().startswith(magic)
