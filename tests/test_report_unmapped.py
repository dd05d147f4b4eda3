"""Tokens of an endpoint whose GPUs nobody mapped: no cost or energy per token that pretends.

One hour; H100s at 2.00 USD/GPU-h, B200 at 4.00, 0.10 USD/kWh, PUE 1.25.

* GPU-a (H100, 600 W) runs endpoint chat (vLLM, model chat): 1,000 input and 500 output
  tokens/s all hour, 5,400,000 tokens, 2.00 + 0.6 x 1.25 x 0.10 = 2.075 USD.
* GPU-b (H100, 200 W) runs no endpoint the agent knows of: 2.025 USD idle.
* Endpoint blind (vLLM, model chat, node-b) names no GPU: 500 output tokens/s, 1,800,000 tokens
  on a usage row without a device, so with no GPU time, energy or cost.
* GPU-c (B200, 1,000 W) runs endpoint code (TensorRT-LLM, model chat): 2,000 output tokens/s,
  7,200,000 tokens, 4.00 + 1 x 1.25 x 0.10 = 4.125 USD.

Counted with blind's tokens, model chat would cost (2.075 + 4.125) / 14.4 M = 0.4306 USD/Mtok
instead of nothing it can honestly state.
"""

import csv

import pytest
from report_fleet import HOUR, Fleet

from wattledger.cli.chargeback.export import export_chargeback
from wattledger.cli.chargeback.settings import parse_chargeback
from wattledger.cli.reports.compare import compare_report
from wattledger.cli.reports.cost import cost_report
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.cli.reports.split import split_report
from wattledger.cli.reports.trend import trend_report

UNTIL = HOUR + 3600
NOTE = (
    "UNMAPPED: endpoint node-b/blind served 1,800,000 tokens on GPUs wattledger does not know, "
    "so they carry no GPU time, energy or cost; rows holding them, and the total, show no cost "
    "or energy per token. Fix: map its GPUs in [[agent.endpoints]] gpus, or make sure the "
    "engine's process is visible to the agent."
)


@pytest.fixture
def blind_fleet(engine):
    fleet = Fleet(length_minutes=60)
    fleet.gpu("node-a", "GPU-a", "H100", "hopper", 600.0)
    fleet.gpu("node-b", "GPU-b", "H100", "hopper", 200.0)
    fleet.gpu("node-c", "GPU-c", "B200", "blackwell", 1000.0)
    fleet.endpoint("node-a", "chat", ["GPU-a"], "chat", input_per_s=1_000, output_per_s=500)
    fleet.endpoint("node-b", "blind", [], "chat", output_per_s=500)
    fleet.endpoint("node-c", "code", ["GPU-c"], "chat", output_per_s=2_000, engine="trtllm")
    fleet.store(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("sku", "B200", 0, usd_per_gpu_hour=4.00),
            PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.25),
        ],
    )
    return engine


def test_a_row_with_unmapped_tokens_has_no_cost_or_energy_per_token(blind_fleet):
    report = cost_report(blind_fleet, HOUR, UNTIL, ["model"])

    chat = {row["model"]: row for row in report.rows}["chat"]
    assert chat["cost_usd"] == 6.2
    assert chat["output_tokens"] == pytest.approx(10_800_000)
    assert chat["unmapped_tokens"] == pytest.approx(1_800_000)
    assert chat["usd_per_mtok"] is None and chat["j_per_token"] is None
    assert report.total["usd_per_mtok"] is None and report.total["j_per_token"] is None
    assert report.total["unmapped_tokens"] == pytest.approx(1_800_000)
    assert NOTE in report.notes


def test_endpoints_with_known_gpus_keep_their_cost_per_token(blind_fleet):
    report = cost_report(blind_fleet, HOUR, UNTIL, ["endpoint"])

    rows = {row["endpoint"]: row for row in report.rows}
    assert rows["chat"]["usd_per_mtok"] == pytest.approx(2.075 / 5.4, rel=1e-12)
    assert rows["code"]["usd_per_mtok"] == pytest.approx(4.125 / 7.2, rel=1e-12)
    assert rows["blind"]["cost_usd"] == 0.0
    assert rows["blind"]["usd_per_mtok"] is None and rows["blind"]["j_per_token"] is None


def test_split_gives_no_output_price_where_output_tokens_are_unmapped(blind_fleet):
    report = split_report(blind_fleet, HOUR, UNTIL, ["endpoint"])

    rows = {row["endpoint"]: row for row in report.rows}
    assert rows["blind"]["usd_per_m_output"] is None
    assert rows["chat"]["usd_per_m_output"] is not None
    assert report.total["usd_per_m_output"] is None
    assert NOTE in report.notes


def test_trend_rows_follow_the_same_rule(blind_fleet):
    report = trend_report(blind_fleet, HOUR, UNTIL, ["model"], every="hour")

    [chat] = [row for row in report.rows if row["model"] == "chat"]
    assert chat["usd_per_mtok"] is None
    assert NOTE in report.notes


def test_compare_names_the_side_with_unmapped_tokens(blind_fleet):
    report = compare_report(blind_fleet, HOUR, UNTIL, along="engine", a="vllm", b="trtllm")

    [row] = report.rows
    assert row["a_usd_per_mtok"] is None and row["a_j_per_token"] is None
    assert row["a_tokens_per_gpu_s"] == pytest.approx(5_400_000 / 3600)  # mapped tokens only
    assert row["a_unmapped_tokens"] == pytest.approx(1_800_000)
    assert row["ratio"] is None
    assert row["why"] == "vllm has tokens from endpoints whose GPUs are not mapped"
    assert NOTE in report.notes


def test_the_chargeback_export_leaves_their_price_per_token_empty(blind_fleet, tmp_path):
    settings = parse_chargeback({"default_centre": "ml", "centres": {"ml": "ML"}})

    result = export_chargeback(
        blind_fleet,
        settings,
        HOUR,
        UNTIL,
        path=tmp_path / "x.csv",
        fmt="csv",
        granularity="hour",
        now=UNTIL + 3600,
    )

    with (tmp_path / "x.csv").open(newline="") as stream:
        rows = {row["ResourceName"]: row for row in csv.DictReader(stream)}
    assert rows["blind"]["x_UsdPerMillionTokens"] == ""
    assert rows["blind"]["ConsumedQuantity"] == "1800000.000000"
    assert rows["chat"]["x_UsdPerMillionTokens"] == "0.3842592593"
    assert result.notes == [
        "endpoint node-b/blind served 1,800,000 tokens on GPUs wattledger does not know; its "
        "rows carry no x_UsdPerMillionTokens. Fix: map its GPUs in [[agent.endpoints]] gpus, or "
        "make sure the engine's process is visible to the agent"
    ]


def test_the_cli_table_says_unmapped_and_json_counts_the_tokens(blind_fleet, monkeypatch):
    import json

    from click.testing import CliRunner

    from wattledger.cli.main import cli

    monkeypatch.setenv("WATTLEDGER_DB", blind_fleet.url.render_as_string(hide_password=False))
    window = ["--since", "2025-11-24T16:00", "--until", "2025-11-24T17:00"]

    table = CliRunner().invoke(cli, ["report", "cost", *window, "--by", "endpoint"])
    document = json.loads(
        CliRunner().invoke(cli, ["report", "cost", *window, "--format", "json"]).stdout
    )

    assert table.exit_code == 0, table.output
    [blind] = [line for line in table.stdout.splitlines() if "│ blind" in line]
    assert "unmapped" in blind
    assert NOTE in " ".join(table.stdout.split("\n"))
    assert document["total"]["unmapped_tokens"] == 1_800_000
    assert document["total"]["usd_per_mtok"] is None


def test_the_split_table_marks_only_the_price_the_unmapped_tokens_spoil(blind_fleet, monkeypatch):
    from click.testing import CliRunner

    from wattledger.cli.main import cli

    monkeypatch.setenv("WATTLEDGER_DB", blind_fleet.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "250")
    window = ["--since", "2025-11-24T16:00", "--until", "2025-11-24T17:00"]

    result = CliRunner().invoke(cli, ["report", "split", *window, "--by", "model"])

    assert result.exit_code == 0, result.output
    [chat] = [line for line in result.stdout.splitlines() if line.startswith("│ chat")]
    cells = [cell.strip() for cell in chat.split("│")[1:-1]]
    assert cells[-1] == "unmapped"  # USD/M out: blind's output tokens carry no cost
    # USD/M in: GPU-a's 2.075 USD split by tokens, an output token weighing 3 input tokens:
    # 3.6 / (3.6 + 3 x 1.8) = 0.4 of it, 0.83 USD, over 3.6 M input tokens = 0.2306.
    assert cells[-2] == "0.2306"
