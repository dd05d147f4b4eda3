"""Prices over time in reports: changes mid-period, owned GPUs, site electricity, unpriced GPUs."""

import pytest
from report_fleet import HOUR, Fleet

from wattledger.cli.reports.cost import cost_report
from wattledger.cli.reports.price_periods import price_periods
from wattledger.cli.reports.prices import PriceBook, PriceEntry, set_prices


def one_gpu(fleet: Fleet, uuid="GPU-h100", sku="H100", watts=500.0, output_per_s=1_000.0, **gpu):
    fleet.gpu("node-a", uuid, sku, "hopper", watts, **gpu)
    fleet.endpoint("node-a", f"{uuid}-serve", [uuid], "llama", output_per_s=output_per_s)


def test_a_price_change_on_the_hour_charges_each_hour_at_its_own_price(engine):
    """Two hours of one H100 at 500 W serving 1,000 output tokens/s.

    Hour 1 at 2.00 USD/GPU-h: 2.00 + 0.5 kWh x PUE 1.5 x 0.10 USD/kWh = 2.075.
    Hour 2 at 3.00 USD/GPU-h: 3.00 + 0.075 = 3.075. Window: 5.15 USD for 7,200,000 tokens,
    5.15 / 7.2 = 0.7152777... USD per million tokens.
    """
    fleet = Fleet(length_minutes=120)
    one_gpu(fleet)
    fleet.store(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("sku", "H100", HOUR + 3600, usd_per_gpu_hour=3.00),
            PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.5),
        ],
    )

    both = cost_report(engine, HOUR, HOUR + 7200, ["model"])
    second = cost_report(engine, HOUR + 3600, HOUR + 7200, ["model"])

    assert both.rows[0]["cost_usd"] == 5.15
    assert both.rows[0]["usd_per_mtok"] == pytest.approx(5.15 / 7.2, rel=1e-12)
    assert second.rows[0]["cost_usd"] == 3.075
    assert both.unpriced == []


def test_a_price_change_inside_an_hour_charges_that_hour_at_the_time_weighted_mean(engine):
    """A change at 16:30: half the hour at 2.00, half at 3.00: 2.50 USD (no electricity price)."""
    fleet = Fleet(length_minutes=60)
    one_gpu(fleet)
    fleet.store(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("sku", "H100", HOUR + 1800, usd_per_gpu_hour=3.00),
        ],
    )

    [row] = cost_report(engine, HOUR, HOUR + 3600, ["model"]).rows

    assert row["cost_usd"] == 2.5
    assert row["energy_kwh"] == pytest.approx(0.5, abs=1e-12)


def test_an_owned_gpu_is_charged_its_amortised_capex_and_a_site_its_own_electricity(engine):
    """A B200 bought for 43,800 USD over 5 years: 43,800 / (5 x 8,760) = 1.00 USD per GPU-hour.

    It runs at site dc1 (0.20 USD/kWh, PUE 1.2), not the default site (0.10): 1,000 W for an
    hour = 1 kWh x 1.2 x 0.20 = 0.24 USD. Cost 1.24 USD.
    """
    fleet = Fleet(length_minutes=60)
    one_gpu(fleet, uuid="GPU-b200", sku="B200", watts=1000.0, site="dc1")
    fleet.store(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "B200", 0, capex_usd=43_800.0, amortization_years=5.0),
            PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.0),
            PriceEntry("site", "dc1", 0, usd_per_kwh=0.20, pue=1.2),
        ],
    )

    [row] = cost_report(engine, HOUR, HOUR + 3600, ["site"]).rows

    assert row["site"] == "dc1"
    assert row["cost_usd"] == 1.24


def test_a_gpu_without_a_price_is_named_and_never_free(engine):
    """GPU-x100 (SKU X100) has no price: its row has no cost per token, and the notes name it."""
    fleet = Fleet(length_minutes=60)
    one_gpu(fleet)
    fleet.gpu("node-b", "GPU-x100", "X100", "hopper", 400.0)
    fleet.endpoint("node-b", "x-serve", ["GPU-x100"], "qwen", output_per_s=500.0)
    fleet.store(engine)
    set_prices(engine, [PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00)])

    report = cost_report(engine, HOUR, HOUR + 3600, ["model"])

    rows = {row["model"]: row for row in report.rows}
    assert rows["llama"]["usd_per_mtok"] == pytest.approx(2.00 / 3.6, rel=1e-12)
    assert rows["qwen"]["usd_per_mtok"] is None
    assert rows["qwen"]["unpriced_gpu_hours"] == pytest.approx(1.0, abs=1e-12)
    assert report.total["usd_per_mtok"] is None
    assert [(gpu["uuid"], gpu["sku"], gpu["seconds"]) for gpu in report.unpriced] == [
        ("GPU-x100", "X100", 3600.0)
    ]
    [note] = [n for n in report.notes if n.startswith("UNPRICED")]
    assert "GPU-x100" in note and "1.00 GPU-hours" in note and "'X100'" in note


def test_a_price_that_starts_inside_the_window_leaves_the_time_before_it_unpriced(engine):
    """H100 priced only from the second hour: 1 GPU-hour unpriced, 2.00 USD for the other."""
    fleet = Fleet(length_minutes=120)
    one_gpu(fleet)
    fleet.store(engine)
    set_prices(engine, [PriceEntry("sku", "H100", HOUR + 3600, usd_per_gpu_hour=2.00)])

    report = cost_report(engine, HOUR, HOUR + 7200, ["model"])

    [row] = report.rows
    assert row["cost_usd"] == 2.0
    assert row["unpriced_gpu_hours"] == pytest.approx(1.0, abs=1e-12)
    assert row["usd_per_mtok"] is None
    assert [gpu["uuid"] for gpu in report.unpriced] == ["GPU-h100"]


def test_price_periods_cut_the_window_at_each_change_and_blend_the_hour_of_a_change():
    """Window 16:00-20:00. H100: 2.00 from before, 3.00 from 17:15. Site default: 0.10 x PUE 1.5
    from 18:00. B200: 4.00 from 16:30. Cuts: 17:00 and 18:00 (the hour holding 17:15), 18:00
    (the site), 16:00 and 17:00 (the hour holding 16:30). Periods: [16,17) H100 2.00; [17,18)
    2.00 x 0.25 + 3.00 x 0.75 = 2.75; [18,20) 3.00. B200 in [16,17): half the hour priced, a
    mean of 0.5 x 4.00 = 2.00 with the unpriced half counted as zero. Electricity: unpriced
    before 18:00, then 0.10 x 1.5 = 0.15 USD per GPU kWh.
    """
    book = PriceBook(
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("sku", "H100", HOUR + 4500, usd_per_gpu_hour=3.00),
            PriceEntry("sku", "B200", HOUR + 1800, usd_per_gpu_hour=4.00),
            PriceEntry("site", "default", HOUR + 7200, usd_per_kwh=0.10, pue=1.5),
        ]
    )

    periods = price_periods(book, ["H100", "B200"], [None], HOUR, HOUR + 4 * 3600)

    assert periods.bounds == (HOUR, HOUR + 3600, HOUR + 7200, HOUR + 4 * 3600)
    rates = {(r.sku, r.period): (r.usd_per_gpu_hour, r.priced_fraction) for r in periods.gpu_rates}
    assert rates[("H100", 0)] == (2.00, 1.0)
    assert rates[("H100", 1)] == (2.75, 1.0)
    assert rates[("H100", 2)] == (3.00, 1.0)
    assert rates[("B200", 0)] == (2.00, 0.5)
    assert rates[("B200", 1)] == (4.00, 1.0)
    assert {(r.site, r.period): r.usd_per_gpu_kwh for r in periods.power_rates} == {
        ("", 2): pytest.approx(0.15)
    }


def test_unpriced_gpus_are_grouped_per_node_and_sku(engine):
    """Three X100s on node-b and one on node-c, an hour each, no price: two notes, not four."""
    fleet = Fleet(length_minutes=60)
    one_gpu(fleet)
    for node, uuid in (("node-b", "GPU-b1"), ("node-b", "GPU-b2"), ("node-b", "GPU-b3")):
        fleet.gpu(node, uuid, "X100", "hopper", 400.0)
    fleet.gpu("node-c", "GPU-c1", "X100", "hopper", 400.0)
    fleet.store(engine)
    set_prices(engine, [PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00)])

    report = cost_report(engine, HOUR, HOUR + 3600, ["model"])

    assert [n for n in report.notes if n.startswith("UNPRICED")] == [
        "UNPRICED: node node-b, SKU 'X100': 3 GPUs, 3.00 GPU-hours with no price; their cost is "
        "missing from the figures, not zero; set one: wattledger price set --sku X100 "
        "--usd-per-gpu-hour N --from DATE.",
        "UNPRICED: node node-c, SKU 'X100': 1 GPU (GPU-c1), 1.00 GPU-hours with no price; its "
        "cost is missing from the figures, not zero; set one: wattledger price set --sku X100 "
        "--usd-per-gpu-hour N --from DATE.",
    ]
