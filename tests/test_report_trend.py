"""USD per million tokens per day or week: an engine upgrade shows up as a step."""

import pytest
from report_fleet import DAY, HOUR, Fleet

from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.cli.reports.trend import trend_report

MONDAY = HOUR - HOUR % DAY  # 2025-11-24T00:00:00Z


def upgrade_fleet(engine):
    """Two days of one H100 at 2.00 USD/GPU-h (no electricity price) serving llama-70b.

    Day 1 (vLLM): 500 output tokens/s, 43,200,000 tokens for 48.00 USD: 1.1111 USD/Mtok.
    Day 2 (moved to TensorRT-LLM): 1,000 tokens/s, 86,400,000 tokens for 48.00: 0.5556 USD/Mtok,
    a step of -50%. The week: 96.00 USD for 129,600,000 tokens, 0.7407 USD/Mtok.
    """
    fleet = Fleet(start=MONDAY, length_minutes=2 * 24 * 60)
    fleet.gpu("node-a", "GPU-a", "H100", "hopper", 600.0)
    fleet.endpoint(
        "node-a",
        "serve",
        ["GPU-a"],
        "llama-70b",
        output_per_s=lambda minute: 500.0 if minute <= 24 * 60 else 1_000.0,
    )
    fleet.store(engine)
    set_prices(engine, [PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00)])


def test_a_daily_trend_shows_the_upgrade_as_a_step(engine):
    upgrade_fleet(engine)

    report = trend_report(engine, MONDAY, MONDAY + 2 * DAY, ["model"], every="day")

    assert [(r["period"], r["model"], r["cost_usd"], r["output_tokens"]) for r in report.rows] == [
        ("2025-11-24", "llama-70b", 48.0, pytest.approx(43_200_000)),
        ("2025-11-25", "llama-70b", 48.0, pytest.approx(86_400_000)),
    ]
    first, second = report.rows
    assert first["usd_per_mtok"] == pytest.approx(48 / 43.2, rel=1e-12)
    assert second["usd_per_mtok"] == pytest.approx(48 / 86.4, rel=1e-12)
    assert first["change"] is None
    assert second["change"] == pytest.approx(-0.5, rel=1e-12)
    assert (
        "STEP: llama-70b from 2025-11-25: 1.111 -> 0.5556 USD per million tokens (-50%)."
        in report.notes
    )
    assert report.total["cost_usd"] == 96.0


def test_a_weekly_trend_sums_the_days_of_the_week(engine):
    upgrade_fleet(engine)

    report = trend_report(engine, MONDAY, MONDAY + 2 * DAY, ["model"], every="week")

    [row] = report.rows
    assert (row["period"], row["period_start"]) == ("2025-11-24", MONDAY)
    assert row["usd_per_mtok"] == pytest.approx(96 / 129.6, rel=1e-12)


def test_a_week_starts_on_monday_even_when_the_window_does_not(engine):
    """A window from Wednesday 2025-11-26 to Tuesday 2025-12-02 spans two weeks, starting on
    Mondays 2025-11-24 and 2025-12-01. Each day serves 1,000 tokens/s on one H100 at 2.00."""
    wednesday = MONDAY + 2 * DAY
    fleet = Fleet(start=wednesday, length_minutes=7 * 24 * 60)
    fleet.gpu("node-a", "GPU-a", "H100", "hopper", 600.0)
    fleet.endpoint("node-a", "serve", ["GPU-a"], "llama-70b", output_per_s=1_000.0)
    fleet.store(engine)
    set_prices(engine, [PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00)])

    report = trend_report(engine, wednesday, wednesday + 7 * DAY, ["model"], every="week")

    assert [(r["period"], r["cost_usd"]) for r in report.rows] == [
        ("2025-11-24", 240.0),
        ("2025-12-01", 96.0),
    ]
