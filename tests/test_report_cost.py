"""The cost report: idle GPU time kept apart or shared, totals that add up, MIG instances."""

import pytest
from report_fleet import HOUR, Fleet, minutes

from wattledger.cli.reports.cost import cost_report
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.cli.reports.rounding import for_display, largest_remainder
from wattledger.cli.reports.usage_query import ReportError

PRICES = [
    PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
    PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.25),
]


def idle_fleet(engine):
    """One hour, H100s at 2.00 USD/GPU-h, 0.10 USD/kWh, PUE 1.25.

    * GPU-a, 600 W: endpoint chat (model chat) serves minutes 1-30 only, 1,000 input and 500
      output tokens/s: 2.00 + 0.6 x 1.25 x 0.10 = 2.075 USD, half serving (1.0375), half idle
      (1.0375); 1,800,000 + 900,000 = 2,700,000 tokens.
    * GPU-b, 200 W: no endpoint, all idle: 2.00 + 0.2 x 1.25 x 0.10 = 2.025 USD.
    * GPU-c, 600 W: endpoint code (model coder) serves all hour, 2,000 input and 1,000 output
      tokens/s: 2.075 USD serving; 10,800,000 tokens.
    """
    fleet = Fleet(length_minutes=60)
    fleet.gpu("node-a", "GPU-a", "H100", "hopper", 600.0)
    fleet.gpu("node-b", "GPU-b", "H100", "hopper", 200.0)
    fleet.gpu("node-c", "GPU-c", "H100", "hopper", 600.0)
    fleet.endpoint(
        "node-a",
        "chat",
        ["GPU-a"],
        "chat",
        input_per_s=1_000,
        output_per_s=500,
        active=minutes(1, 30),
    )
    fleet.endpoint("node-c", "code", ["GPU-c"], "coder", input_per_s=2_000, output_per_s=1_000)
    fleet.store(engine)
    set_prices(engine, PRICES)


def by_model(report):
    return {row["model"]: row for row in report.rows}


def test_idle_is_kept_apart_by_default(engine):
    """chat: cost 1.0375, idle 1.0375, 1.0375 / 2.7 = 0.38426 USD/Mtok; serving energy
    0.3 kWh = 1,080,000 J over 2,700,000 tokens = 0.4 J/token. coder: 2.075, 2.075 / 10.8.
    (no endpoint): idle 2.025. Totals: cost 3.1125, idle 3.0625, all 6.175 USD.
    """
    idle_fleet(engine)

    report = cost_report(engine, HOUR, HOUR + 3600, ["model"])

    rows = by_model(report)
    assert [(m, r["cost_usd"], r["idle_usd"]) for m, r in rows.items()] == [
        ("(no endpoint)", 0.0, 2.025),
        ("chat", 1.0375, 1.0375),
        ("coder", 2.075, 0.0),
    ]
    assert rows["chat"]["usd_per_mtok"] == pytest.approx(1.0375 / 2.7, rel=1e-12)
    assert rows["chat"]["j_per_token"] == pytest.approx(0.4, rel=1e-12)
    assert rows["coder"]["usd_per_mtok"] == pytest.approx(2.075 / 10.8, rel=1e-12)
    assert rows["(no endpoint)"]["usd_per_mtok"] is None
    assert (report.total["cost_usd"], report.total["idle_usd"], report.total["total_usd"]) == (
        3.1125,
        3.0625,
        6.175,
    )
    assert report.total["gpu_hours"] == pytest.approx(3.0, abs=1e-12)


def test_idle_shared_evenly(engine):
    """The idle pool 2.025 + 1.0375 = 3.0625 in halves to chat and coder (1.53125 each):
    chat 1.0375 + 1.53125 = 2.56875, coder 2.075 + 1.53125 = 3.60625; total 6.175.
    """
    idle_fleet(engine)

    report = cost_report(engine, HOUR, HOUR + 3600, ["model"], idle="even")

    rows = by_model(report)
    assert (rows["chat"]["cost_usd"], rows["coder"]["cost_usd"]) == (2.56875, 3.60625)
    assert rows["(no endpoint)"]["cost_usd"] == 0.0
    assert all(row["idle_usd"] == 0.0 for row in report.rows)
    assert rows["chat"]["idle_shared_usd"] == 1.53125
    assert report.total["cost_usd"] == 6.175


def test_idle_shared_in_proportion_to_serving_cost(engine):
    """Serving costs 1.0375 and 2.075 (one third, two thirds) share 3.0625:
    chat 1.0375 + 3.0625 / 3 = 2.0583333, coder 2.075 + 3.0625 x 2 / 3 = 4.1166667; total 6.175.
    """
    idle_fleet(engine)

    report = cost_report(engine, HOUR, HOUR + 3600, ["model"], idle="proportional")

    rows = by_model(report)
    assert rows["chat"]["cost_usd"] == pytest.approx(1.0375 + 3.0625 / 3, abs=1e-6)
    assert rows["coder"]["cost_usd"] == pytest.approx(2.075 + 3.0625 * 2 / 3, abs=1e-6)
    assert report.total["cost_usd"] == pytest.approx(6.175, abs=1e-9)
    assert rows["chat"]["usd_per_mtok"] == pytest.approx(rows["chat"]["cost_usd"] / 2.7, rel=1e-12)


def test_the_total_is_the_sum_of_the_rows_in_every_idle_mode(engine):
    idle_fleet(engine)

    for idle in ("none", "even", "proportional"):
        report = cost_report(engine, HOUR, HOUR + 3600, ["node", "model"], idle=idle)
        for column in (
            "cost_usd",
            "idle_usd",
            "total_usd",
            "gpu_hours",
            "energy_kwh",
            "input_tokens",
        ):
            assert report.total[column] == pytest.approx(
                sum(row[column] for row in report.rows), abs=1e-9
            )


def test_displayed_cents_add_up_to_the_displayed_total(engine):
    """Idle column rounded cell by cell: 2.025 -> 2.03 and 1.0375 -> 1.04 show 3.07, but the
    total 3.0625 shows 3.06. Largest remainder: floors 2.02 + 1.03 + 0.00 = 3.05; one cent is
    missing and goes to the largest remainder (1.0375: 0.0075 beats 2.025: 0.005): 2.02, 1.04.
    Cost: 1.0375 + 2.075 = 3.1125 shows 3.11; floors 1.03 + 2.07 = 3.10, and the missing cent
    goes to 1.0375 (0.0075 beats 0.005): 1.04 + 2.07 = 3.11.
    """
    idle_fleet(engine)
    report = cost_report(engine, HOUR, HOUR + 3600, ["model"])

    rows, total = for_display(report.rows, report.total, {"idle_usd": 2, "cost_usd": 2})

    assert [row["idle_usd"] for row in rows] == [2.02, 1.04, 0.0]
    assert total["idle_usd"] == 3.06
    assert [row["cost_usd"] for row in rows] == [0.0, 1.04, 2.07]
    assert total["cost_usd"] == 3.11


def test_largest_remainder_rounding():
    """Three thirds show 0.34 + 0.33 + 0.33 = 1.00; 2.075 shows 2.08 as a person expects."""
    assert largest_remainder([1 / 3, 1 / 3, 1 / 3], 2) == ([0.34, 0.33, 0.33], 1.0)
    assert largest_remainder([2.075], 2) == ([2.08], 2.08)
    assert largest_remainder([0.004, 0.004, 0.004], 2) == ([0.01, 0.0, 0.0], 0.01)
    assert largest_remainder([1_499_999.6, 0.4], 0) == ([1_500_000.0, 0.0], 1_500_000.0)


def test_a_mig_gpu_shared_by_two_models(engine):
    """An H100 at 400 W for an hour, 2.00 USD/GPU-h, no electricity price, in MIG mode.

    MIG-1 gets share 0.5 (0.5 GPU-h, 720,000 J): endpoint small-a (llama-8b) serves all hour at
    100 output tokens/s: 1.00 USD serving, 360,000 tokens, 2.7778 USD/Mtok, 2 J/token.
    MIG-2 gets share 0.25 (0.25 GPU-h): small-b (qwen-7b) serves minutes 1-30 at 50 tokens/s:
    serving half of it, 0.25 USD, idle 0.25 USD, 90,000 tokens, 2.7778 USD/Mtok.
    The unshared 0.25 stays with the parent GPU: 0.50 USD idle, no endpoint. Total 2.00 USD.
    """
    fleet = Fleet(length_minutes=60)
    fleet.gpu("node-m", "GPU-m", "H100", "hopper", 400.0)
    fleet.mig("node-m", "MIG-1", "GPU-m", "H100", "hopper", 0.5)
    fleet.mig("node-m", "MIG-2", "GPU-m", "H100", "hopper", 0.25)
    fleet.endpoint("node-m", "small-a", ["MIG-1"], "llama-8b", output_per_s=100.0)
    fleet.endpoint(
        "node-m", "small-b", ["MIG-2"], "qwen-7b", output_per_s=50.0, active=minutes(1, 30)
    )
    fleet.store(engine)
    set_prices(engine, [PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00)])

    report = cost_report(engine, HOUR, HOUR + 3600, ["model"])
    devices = cost_report(engine, HOUR, HOUR + 3600, ["device", "gpu"])

    rows = by_model(report)
    assert [(m, r["gpu_hours"], r["cost_usd"], r["idle_usd"]) for m, r in rows.items()] == [
        ("(no endpoint)", pytest.approx(0.25), 0.0, 0.5),
        ("llama-8b", pytest.approx(0.5), 1.0, 0.0),
        ("qwen-7b", pytest.approx(0.25), 0.25, 0.25),
    ]
    assert rows["llama-8b"]["usd_per_mtok"] == pytest.approx(1.0 / 0.36, rel=1e-12)
    assert rows["llama-8b"]["j_per_token"] == pytest.approx(2.0, rel=1e-12)
    assert rows["qwen-7b"]["usd_per_mtok"] == pytest.approx(0.25 / 0.09, rel=1e-12)
    assert report.total["total_usd"] == 2.0
    assert [(r["device"], r["gpu"], r["total_usd"]) for r in devices.rows] == [
        ("GPU-m", "GPU-m", 0.5),
        ("MIG-1", "GPU-m", 1.0),
        ("MIG-2", "GPU-m", 0.5),
    ]


def test_where_keeps_only_matching_usage(engine):
    idle_fleet(engine)

    report = cost_report(engine, HOUR, HOUR + 3600, ["node"], where={"model": "coder"})

    assert [(row["node"], row["cost_usd"]) for row in report.rows] == [("node-c", 2.075)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": ["colour"]}, "cannot group by colour"),
        ({"by": ["model"], "idle": "some"}, "--idle must be one of none, even, proportional"),
        ({"by": ["model"], "where": {"colour": "red"}}, "cannot filter on colour"),
    ],
)
def test_bad_arguments_are_one_line_errors(sqlite_engine, kwargs, message):
    with pytest.raises(ReportError, match=message):
        cost_report(sqlite_engine, HOUR, HOUR + 3600, **kwargs)


def test_an_empty_window_is_an_error(sqlite_engine):
    with pytest.raises(ReportError, match="the window is empty"):
        cost_report(sqlite_engine, HOUR, HOUR, ["model"])
