"""Hopper versus Blackwell (or any two groups): per-model figures and the ratio's factors."""

import math

import pytest
from report_fleet import HOUR, Fleet, minutes

from wattledger.cli.reports.compare import compare_report
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.cli.reports.usage_query import ReportError


def published_fleet(engine, gb300_price=2.65):
    """An H200 at 1.41 USD/GPU-h serving 90 tokens/s; a GB300 at 2.65 serving 6,000 tokens/s.

    H200: 1.41 / (90 x 3600 / 1e6) = 1.41 / 0.324 = 4.35185 USD per million tokens.
    GB300: 2.65 / (6,000 x 3600 / 1e6) = 2.65 / 21.6 = 0.122685 USD per million tokens.
    Ratio 4.35185 / 0.122685 = 35.4717 = price 1.41 / 2.65 = 0.532075 x energy 1 (no electricity
    price) x throughput 6,000 / 90 = 66.6667 x serving share 1 / 1.
    """
    fleet = Fleet(length_minutes=60)
    fleet.gpu("hopper-node", "GPU-h200", "H200", "hopper", 600.0)
    fleet.gpu("blackwell-node", "GPU-gb300", "GB300", "blackwell", 1200.0)
    fleet.endpoint("hopper-node", "h-serve", ["GPU-h200"], "model-x", output_per_s=90.0)
    fleet.endpoint(
        "blackwell-node", "b-serve", ["GPU-gb300"], "model-x", output_per_s=6_000.0, engine="trtllm"
    )
    fleet.store(engine)
    prices = [PriceEntry("sku", "H200", 0, usd_per_gpu_hour=1.41)]
    if gb300_price is not None:
        prices.append(PriceEntry("sku", "GB300", 0, usd_per_gpu_hour=gb300_price))
    set_prices(engine, prices)


def test_published_hopper_and_blackwell_figures_come_out_exactly(engine):
    published_fleet(engine)

    report = compare_report(engine, HOUR, HOUR + 3600)

    [row] = report.rows
    assert (row["model"], row["a"], row["b"]) == ("model-x", "hopper", "blackwell")
    assert row["a_usd_per_mtok"] == pytest.approx(1.41 / 0.324, rel=1e-12)
    assert round(row["a_usd_per_mtok"], 2) == 4.35
    assert row["b_usd_per_mtok"] == pytest.approx(2.65 / 21.6, rel=1e-12)
    assert round(row["b_usd_per_mtok"], 3) == 0.123
    assert (row["a_tokens_per_gpu_s"], row["b_tokens_per_gpu_s"]) == (
        pytest.approx(90.0),
        pytest.approx(6000.0),
    )
    assert (row["a_usd_per_gpu_hour"], row["b_usd_per_gpu_hour"]) == (
        pytest.approx(1.41),
        pytest.approx(2.65),
    )
    assert (row["a_watts"], row["b_watts"]) == (pytest.approx(600.0), pytest.approx(1200.0))
    assert row["a_j_per_token"] == pytest.approx(600 / 90, rel=1e-12)
    assert row["b_j_per_token"] == pytest.approx(0.2, rel=1e-12)

    assert row["ratio"] == pytest.approx((1.41 / 0.324) / (2.65 / 21.6), rel=1e-12)
    assert row["factor_price"] == pytest.approx(1.41 / 2.65, rel=1e-12)
    assert row["factor_energy"] == 1.0
    assert row["factor_throughput"] == pytest.approx(6000 / 90, rel=1e-12)
    assert row["factor_serving_share"] == 1.0
    assert row["factor_product"] == pytest.approx(row["ratio"], rel=1e-12)
    assert row["factor_gpu_hour_cost"] == pytest.approx(1.41 / 2.65, rel=1e-12)
    assert round(row["ratio"], 2) == 35.47
    assert (
        "model-x: hopper costs 35.5x blackwell per token, mostly because blackwell serves 66.7x "
        "the tokens per GPU-second that hopper does; offsetting part of that, blackwell's "
        "GPU-hours cost 1.88x hopper's (energy included)." in report.notes
    )


def test_every_factor_of_the_ratio_with_energy_and_idle_time(engine):
    """One hour, 0.10 USD/kWh x PUE 1.2 = 0.12 USD per GPU kWh.

    A (hopper): H100 at 2.00 USD/GPU-h, 700 W, serving 1,000 tokens/s in minutes 1-45 only.
      P = 2.00, E = 0.7 x 0.12 = 0.084, S = 0.75, thr = 1,000; 2.084 USD / 2.7 Mtok = 0.771852.
    B (blackwell): B200 at 4.00, 1,000 W, 4,000 tokens/s all hour.
      P = 4.00, E = 0.12, S = 1, thr = 4,000; 4.12 USD / 14.4 Mtok = 0.286111.
    Ratio 0.771852 / 0.286111 = 2.697735 = price 0.5 x energy (1 + 0.084/2) / (1 + 0.12/4) =
    1.042 / 1.03 = 1.011650 x throughput 4 x serving share 1 / 0.75 = 1.333333.
    Joules per token: 2,520,000 / 2,700,000 = 0.93333 and 3,600,000 / 14,400,000 = 0.25.
    """
    fleet = Fleet(length_minutes=60)
    fleet.gpu("h", "GPU-h100", "H100", "hopper", 700.0, utilization=0.6)
    fleet.gpu("b", "GPU-b200", "B200", "blackwell", 1000.0, utilization=0.9)
    fleet.endpoint(
        "h", "h-serve", ["GPU-h100"], "llama", output_per_s=1_000.0, active=minutes(1, 45)
    )
    fleet.endpoint("b", "b-serve", ["GPU-b200"], "llama", output_per_s=4_000.0)
    fleet.store(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("sku", "B200", 0, usd_per_gpu_hour=4.00),
            PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.2),
        ],
    )

    report = compare_report(engine, HOUR, HOUR + 3600)
    [row] = report.rows

    assert row["a_usd_per_mtok"] == pytest.approx(2.084 / 2.7, rel=1e-12)
    assert row["b_usd_per_mtok"] == pytest.approx(4.12 / 14.4, rel=1e-12)
    assert row["a_serving_share"] == pytest.approx(0.75, rel=1e-12)
    assert row["a_energy_usd_per_gpu_hour"] == pytest.approx(0.084, rel=1e-12)
    assert (row["a_utilization"], row["b_utilization"]) == (pytest.approx(0.6), pytest.approx(0.9))
    assert row["factor_price"] == pytest.approx(0.5, rel=1e-12)
    assert row["factor_energy"] == pytest.approx(1.042 / 1.03, rel=1e-12)
    assert row["factor_throughput"] == pytest.approx(4.0, rel=1e-12)
    assert row["factor_serving_share"] == pytest.approx(1 / 0.75, rel=1e-12)
    expected = (2.084 / 2.7) / (4.12 / 14.4)
    assert row["ratio"] == pytest.approx(expected, rel=1e-12)
    product = (
        row["factor_price"]
        * row["factor_energy"]
        * row["factor_throughput"]
        * row["factor_serving_share"]
    )
    assert product == pytest.approx(row["ratio"], rel=1e-12)
    assert math.isclose(row["factor_product"], row["ratio"], rel_tol=1e-12)
    assert (row["a_j_per_token"], row["b_j_per_token"]) == (
        pytest.approx(2.52 / 2.7),
        pytest.approx(0.25),
    )
    assert row["j_per_token_ratio"] == pytest.approx((2.52 / 2.7) / 0.25, rel=1e-12)
    assert row["factor_gpu_hour_cost"] == pytest.approx(2.084 / 4.12, rel=1e-12)
    assert (
        "llama: hopper costs 2.7x blackwell per token, mostly because blackwell serves 4x the "
        "tokens per GPU-second that hopper does, and also because blackwell's GPUs spend 1.33x "
        "the share of their time serving that hopper's do; offsetting part of that, blackwell's "
        "GPU-hours cost 1.98x hopper's (energy included)." in report.notes
    )


def test_a_zero_gpu_hour_price_reports_price_and_energy_as_one_factor(engine):
    """A fully paid-off H100 (0 USD/GPU-h) still draws 700 W: E = 0.084, so A's GPU-hour costs
    0.084 against B's 4.12, factor 0.084 / 4.12, and the product still equals the ratio."""
    fleet = Fleet(length_minutes=60)
    fleet.gpu("h", "GPU-h100", "H100", "hopper", 700.0)
    fleet.gpu("b", "GPU-b200", "B200", "blackwell", 1000.0)
    fleet.endpoint("h", "h-serve", ["GPU-h100"], "llama", output_per_s=1_000.0)
    fleet.endpoint("b", "b-serve", ["GPU-b200"], "llama", output_per_s=4_000.0)
    fleet.store(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=0.0),
            PriceEntry("sku", "B200", 0, usd_per_gpu_hour=4.00),
            PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.2),
        ],
    )

    [row] = compare_report(engine, HOUR, HOUR + 3600).rows

    assert row["factor_price"] is None and row["factor_energy"] is None
    assert row["factor_gpu_hour_cost"] == pytest.approx(0.084 / 4.12, rel=1e-12)
    assert row["ratio"] == pytest.approx((0.084 / 3.6) / (4.12 / 14.4), rel=1e-12)
    assert row["factor_product"] == pytest.approx(row["ratio"], rel=1e-12)


def test_an_unpriced_side_has_no_ratio_and_is_named(engine):
    published_fleet(engine, gb300_price=None)

    report = compare_report(engine, HOUR, HOUR + 3600)

    [row] = report.rows
    assert row["b_usd_per_mtok"] is None and row["ratio"] is None
    assert row["b_unpriced"] is True
    assert row["why"] == "blackwell has unpriced GPU time"
    assert row["b_tokens_per_gpu_s"] == pytest.approx(6000.0)  # what was measured is still shown
    assert any(
        note.startswith("UNPRICED: node blackwell-node, SKU 'GB300': 1 GPU (GPU-gb300)")
        for note in report.notes
    )
    assert "model-x: no ratio, blackwell has unpriced GPU time." in report.notes


def test_a_missing_value_is_an_error_naming_the_values_present(engine):
    fleet = Fleet(length_minutes=60)
    fleet.gpu("h", "GPU-h100", "H100", "hopper", 700.0)
    fleet.gpu("a", "GPU-a100", "A100", "ampere", 300.0)
    fleet.gpu("l", "GPU-l40s", "L40S", "ada", 300.0)
    fleet.endpoint("h", "h-serve", ["GPU-h100"], "llama", output_per_s=1_000.0)
    fleet.store(engine)

    with pytest.raises(
        ReportError,
        match=r"no architecture 'blackwell' \(--b\) in this window; present: ada, ampere, hopper",
    ):
        compare_report(engine, HOUR, HOUR + 3600)
    with pytest.raises(
        ReportError,
        match="give --a and --b to pick two values of sku; present in this window: "
        "A100, H100, L40S$",
    ):
        compare_report(engine, HOUR, HOUR + 3600, along="sku", a="A100")
    with pytest.raises(ReportError, match="--a and --b are both 'H100'"):
        compare_report(engine, HOUR, HOUR + 3600, along="sku", a="H100", b="H100")
    with pytest.raises(
        ReportError, match="cannot compare along 'colour'; choose from architecture"
    ):
        compare_report(engine, HOUR, HOUR + 3600, along="colour")


def test_with_two_values_present_one_side_given_picks_the_other(engine):
    published_fleet(engine)

    report = compare_report(engine, HOUR, HOUR + 3600, along="sku", a="GB300")

    assert (report.total["a"], report.total["b"]) == ("GB300", "H200")
    assert report.rows[0]["ratio"] == pytest.approx((2.65 / 21.6) / (1.41 / 0.324), rel=1e-12)


def test_compare_along_engine_and_a_model_on_one_side_only(engine):
    """vllm and trtllm each serve model-x; only vllm serves model-y, so model-y has no ratio."""
    published_fleet(engine)
    extra = Fleet(length_minutes=60)
    extra.gpu("hopper-node", "GPU-h200-2", "H200", "hopper", 600.0)
    extra.endpoint("hopper-node", "y-serve", ["GPU-h200-2"], "model-y", output_per_s=180.0)
    extra.store(engine)

    report = compare_report(engine, HOUR, HOUR + 3600, along="engine", a="vllm", b="trtllm")

    rows = {row["model"]: row for row in report.rows}
    assert rows["model-x"]["ratio"] == pytest.approx((1.41 / 0.324) / (2.65 / 21.6), rel=1e-12)
    assert rows["model-y"]["ratio"] is None
    assert rows["model-y"]["why"] == "trtllm does not run this"
    assert rows["model-y"]["a_usd_per_mtok"] == pytest.approx(1.41 / 0.648, rel=1e-12)
    # All models: vllm has 2 GPU-h at 1.41 for 972,000 tokens.
    assert report.total["a_usd_per_mtok"] == pytest.approx(2.82 / 0.972, rel=1e-12)


def test_the_table_labels_each_factor_with_its_direction_and_fills_the_gpu_hour_cost(
    engine, monkeypatch
):
    """The side table's A / B throughput 90 / 6,000 = 0.015x and the factor table's throughput
    B/A 66.6667 point opposite ways; the headings say so. GPU-h cost A/B = 1.41 / 2.65."""
    from click.testing import CliRunner

    from wattledger.cli.main import cli

    published_fleet(engine)
    monkeypatch.setenv("WATTLEDGER_DB", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "250")

    result = CliRunner().invoke(
        cli, ["report", "compare", "--since", "2025-11-24T16:00", "--until", "2025-11-24T17:00"]
    )

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [heading] = [line for line in lines if line.startswith("┃") and "USD/Mtok A/B" in line]
    assert [cell.strip() for cell in heading.split("┃")[1:-1]] == [
        "Model",
        "USD/Mtok A/B",
        "= GPU-h cost A/B",
        "x Throughput B/A",
        "x Serving share B/A",
        "GPU-h price A/B",
        "x Energy factor",
    ]
    [row] = [line for line in lines if line.startswith("│ model-x") and "35.4717" in line]
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "model-x",
        "35.4717",
        "0.5321",
        "66.6667",
        "1.0000",
        "0.5321",
        "1.0000",
    ]
    assert "0.015x" in result.stdout  # the side table's A / B throughput
