"""The prefill/decode split: disaggregated pools, measured phase time, the stated default ratio."""

import pytest
from report_fleet import HOUR, Fleet, minutes

from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.cli.reports.split import split_report

PRICES = [
    PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
    PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.0),
]


def rows_by(report, key):
    return {row[key]: row for row in report.rows}


def disaggregated_pair(engine):
    """llama-70b served by a prefill pool and a decode pool for one hour.

    Prefill pool: one H100 at 700 W, 10,000 input tokens/s (36,000,000): 2.00 + 0.7 kWh x 0.10
    = 2.07 USD, all prefill; 2.07 / 36 = 0.0575 USD per million input tokens.
    Decode pool: two H100s at 500 W, 2,000 output tokens/s (7,200,000): 2 x 2.00 + 1.0 kWh x
    0.10 = 4.10 USD, all decode; 4.10 / 7.2 = 0.569444 USD per million output tokens.
    """
    fleet = Fleet(length_minutes=60)
    fleet.gpu("node-p", "GPU-p1", "H100", "hopper", 700.0)
    fleet.gpu("node-d", "GPU-d1", "H100", "hopper", 500.0)
    fleet.gpu("node-d", "GPU-d2", "H100", "hopper", 500.0)
    fleet.endpoint(
        "node-p",
        "llama-prefill",
        ["GPU-p1"],
        "llama-70b",
        input_per_s=10_000,
        role="prefill",
        engine="dynamo",
        prefill_per_s=4.0,
        decode_per_s=0.0,
    )
    fleet.endpoint(
        "node-d",
        "llama-decode",
        ["GPU-d1", "GPU-d2"],
        "llama-70b",
        output_per_s=2_000,
        role="decode",
        engine="dynamo",
        prefill_per_s=0.0,
        decode_per_s=30.0,
    )
    fleet.store(engine)
    set_prices(engine, PRICES)


def test_a_disaggregated_pair_is_priced_from_each_pools_own_gpus(engine):
    disaggregated_pair(engine)

    report = split_report(engine, HOUR, HOUR + 3600)

    rows = rows_by(report, "endpoint")
    prefill, decode = rows["llama-prefill"], rows["llama-decode"]
    assert (prefill["method"], decode["method"]) == ("disaggregated", "disaggregated")
    assert (prefill["prefill_usd"], prefill["decode_usd"]) == (2.07, 0.0)
    assert (decode["prefill_usd"], decode["decode_usd"]) == (0.0, 4.1)
    assert prefill["prefill_gpu_seconds"] == pytest.approx(3600.0)
    assert decode["decode_gpu_seconds"] == pytest.approx(7200.0)
    assert prefill["prefill_kwh"] == pytest.approx(0.7)
    assert decode["decode_kwh"] == pytest.approx(1.0)
    assert prefill["usd_per_m_input"] == pytest.approx(2.07 / 36, rel=1e-12)
    assert prefill["usd_per_m_output"] is None
    assert decode["usd_per_m_output"] == pytest.approx(4.10 / 7.2, rel=1e-12)
    assert decode["usd_per_m_input"] is None
    assert not prefill["estimate"] and not decode["estimate"]


def test_grouping_by_model_joins_the_two_pools_of_a_model(engine):
    disaggregated_pair(engine)

    [row] = split_report(engine, HOUR, HOUR + 3600, ["model"]).rows

    assert row["method"] == "disaggregated"
    assert (row["prefill_usd"], row["decode_usd"]) == (2.07, 4.1)
    assert row["usd_per_m_input"] == pytest.approx(0.0575, rel=1e-12)
    assert row["usd_per_m_output"] == pytest.approx(4.10 / 7.2, rel=1e-12)


def aggregated(fleet, name, gpu, model, **counters):
    fleet.gpu(f"node-{name}", gpu, "H100", "hopper", 600.0)
    fleet.endpoint(
        f"node-{name}", name, [gpu], model, input_per_s=3_000, output_per_s=1_000, **counters
    )


def test_an_aggregated_endpoint_is_split_by_measured_phase_time(engine):
    """One H100, 600 W, one hour: 2.00 + 0.6 x 0.10 = 2.06 USD for 10,800,000 input and
    3,600,000 output tokens. The engine measured 0.5 s of prefill and 1.5 s of decode per second,
    so prefill is a quarter: 0.515 USD, 900 GPU-s, 0.15 kWh; decode 1.545 USD, 2,700 GPU-s,
    0.45 kWh. 0.515 / 10.8 = 0.0476852 USD/M input; 1.545 / 3.6 = 0.4291667 USD/M output.
    """
    fleet = Fleet(length_minutes=60)
    aggregated(fleet, "agg", "GPU-g", "mistral", prefill_per_s=0.5, decode_per_s=1.5)
    fleet.store(engine)
    set_prices(engine, PRICES)

    [row] = split_report(engine, HOUR, HOUR + 3600).rows

    assert row["method"] == "phase time"
    assert not row["estimate"]
    assert (row["prefill_usd"], row["decode_usd"]) == (0.515, 1.545)
    assert (row["prefill_gpu_seconds"], row["decode_gpu_seconds"]) == (
        pytest.approx(900.0),
        pytest.approx(2700.0),
    )
    assert (row["prefill_kwh"], row["decode_kwh"]) == (pytest.approx(0.15), pytest.approx(0.45))
    assert row["usd_per_m_input"] == pytest.approx(0.515 / 10.8, rel=1e-12)
    assert row["usd_per_m_output"] == pytest.approx(1.545 / 3.6, rel=1e-12)


@pytest.mark.parametrize(("weight", "prefill_usd"), [(3.0, 1.03), (2.0, 1.236)])
def test_without_phase_time_the_stated_default_ratio_is_used_and_marked_an_estimate(
    engine, weight, prefill_usd
):
    """2.06 USD for 3,000 input and 1,000 output tokens/s and no phase time. An output token
    weighing 3 input tokens: prefill share 3,000 / (3,000 + 3 x 1,000) = 0.5, 1.03 USD. Weighing
    2: 3,000 / 5,000 = 0.6, 1.236 USD (decode 0.824).
    """
    fleet = Fleet(length_minutes=60)
    aggregated(fleet, "est", "GPU-e", "phi")
    fleet.store(engine)
    set_prices(engine, PRICES)

    report = split_report(engine, HOUR, HOUR + 3600, output_token_weight=weight)

    [row] = report.rows
    assert row["method"] == "default ratio (estimate)"
    assert row["estimate"] is True
    assert row["prefill_usd"] == prefill_usd
    assert row["decode_usd"] == pytest.approx(2.06 - prefill_usd, abs=1e-6)
    assert any(note.startswith("ESTIMATE") for note in report.notes)
    assert f"an output token weighing {weight:g} input tokens" in " ".join(report.notes)


def test_a_row_that_mixes_methods_names_each_with_its_share(engine):
    """Two hours; phase counters grow in hour 1 only (1:3), so hour 2 falls back to the ratio.
    Hour 1: 2.06 x 0.25 = 0.515 prefill. Hour 2: 2.06 x 0.5 = 1.03 prefill. Prefill 1.545,
    decode 4.12 - 1.545 = 2.575; each method covers half the serving time.
    """
    fleet = Fleet(length_minutes=120)
    fleet.gpu("node-x", "GPU-x", "H100", "hopper", 600.0)
    fleet.endpoint(
        "node-x",
        "mixed",
        ["GPU-x"],
        "gemma",
        input_per_s=3_000,
        output_per_s=1_000,
        prefill_per_s=0.5,
        decode_per_s=1.5,
        phase_active=minutes(1, 60),
    )
    fleet.store(engine)
    set_prices(engine, PRICES)

    [row] = split_report(engine, HOUR, HOUR + 7200).rows

    assert row["method"] == "phase time 50% + default ratio 50% (estimate)"
    assert (row["phase_time_share"], row["default_ratio_share"]) == (
        pytest.approx(0.5),
        pytest.approx(0.5),
    )
    assert (row["prefill_usd"], row["decode_usd"]) == (1.545, 2.575)


def test_shared_idle_is_split_like_the_rows_serving_cost(engine):
    """The endpoint serves minutes 1-30 (phase 1:3): serving 1.03 USD, idle 1.03 USD.
    Idle kept apart: prefill 0.2575, decode 0.7725, idle 1.03. Shared (it is the only row that
    served): prefill 0.2575 + 1.03 / 4 = 0.515, decode 0.7725 + 1.03 x 3 / 4 = 1.545.
    """
    fleet = Fleet(length_minutes=60)
    fleet.gpu("node-h", "GPU-h", "H100", "hopper", 600.0)
    fleet.endpoint(
        "node-h",
        "half",
        ["GPU-h"],
        "mistral",
        input_per_s=3_000,
        output_per_s=1_000,
        prefill_per_s=0.5,
        decode_per_s=1.5,
        active=minutes(1, 30),
    )
    fleet.store(engine)
    set_prices(engine, PRICES)

    [kept] = split_report(engine, HOUR, HOUR + 3600).rows
    [shared] = split_report(engine, HOUR, HOUR + 3600, idle="proportional").rows

    assert (kept["prefill_usd"], kept["decode_usd"], kept["idle_usd"]) == (0.2575, 0.7725, 1.03)
    assert (shared["prefill_usd"], shared["decode_usd"], shared["idle_usd"]) == (0.515, 1.545, 0.0)
    assert shared["idle_shared_usd"] == 1.03


def test_the_split_total_is_the_sum_of_its_rows(engine):
    disaggregated_pair(engine)

    report = split_report(engine, HOUR, HOUR + 3600)

    for column in ("prefill_usd", "decode_usd", "idle_usd", "prefill_gpu_seconds", "input_tokens"):
        assert report.total[column] == pytest.approx(
            sum(row[column] for row in report.rows), abs=1e-9
        )
    assert report.total["method"] == "disaggregated"
    assert report.total["usd_per_m_input"] == pytest.approx(0.0575, rel=1e-12)
