"""Every report gives the same rows, totals and notes on SQLite and on PostgreSQL."""

import math

import pytest
from conftest import _truncate_all
from report_fleet import HOUR, Fleet, minutes

from wattledger.cli.reports.compare import compare_report
from wattledger.cli.reports.cost import cost_report
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.cli.reports.split import split_report
from wattledger.cli.reports.trend import trend_report

pytestmark = pytest.mark.postgres


def mixed_fleet(engine):
    """Two hours with a bit of everything: an idle GPU, a half-idle endpoint, a disaggregated
    pair, phase time and its absence, a MIG GPU shared by two models, an unpriced SKU, a
    price change inside an hour, and two sites with their own electricity prices."""
    fleet = Fleet(length_minutes=120)
    fleet.gpu("h1", "GPU-h1", "H200", "hopper", 650.0, utilization=0.7, site="dc1")
    fleet.gpu("h2", "GPU-h2", "H200", "hopper", 150.0, site="dc1")
    fleet.gpu("b1", "GPU-b1", "GB300", "blackwell", 1200.0, site="dc2")
    fleet.gpu("b2", "GPU-b2", "GB300", "blackwell", 1100.0, site="dc2")
    fleet.gpu("b3", "GPU-b3", "GB300", "blackwell", 900.0, site="dc2")
    fleet.gpu("m", "GPU-m", "H100", "hopper", 400.0)
    fleet.mig("m", "MIG-1", "GPU-m", "H100", "hopper", 4 / 7)
    fleet.mig("m", "MIG-2", "GPU-m", "H100", "hopper", 3 / 7)
    fleet.gpu("x", "GPU-x", "X100", "blackwell", 300.0)
    fleet.endpoint(
        "h1",
        "chat",
        ["GPU-h1"],
        "llama",
        input_per_s=900,
        output_per_s=90,
        active=minutes(1, 80),
        prefill_per_s=0.3,
        decode_per_s=2.1,
    )
    fleet.endpoint(
        "b1", "pre", ["GPU-b1"], "llama", input_per_s=40_000, role="prefill", engine="dynamo"
    )
    fleet.endpoint(
        "b2",
        "dec",
        ["GPU-b2", "GPU-b3"],
        "llama",
        output_per_s=12_000,
        role="decode",
        engine="dynamo",
    )
    fleet.endpoint(
        "m", "small-a", ["MIG-1"], "qwen", input_per_s=300, output_per_s=100, engine="sglang"
    )
    fleet.endpoint(
        "m", "small-b", ["MIG-2"], "phi", input_per_s=200, output_per_s=50, active=minutes(31, 120)
    )
    fleet.endpoint("x", "odd", ["GPU-x"], "qwen", output_per_s=70)
    fleet.store(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H200", 0, usd_per_gpu_hour=1.41),
            PriceEntry("sku", "H200", HOUR + 2700, usd_per_gpu_hour=1.60),
            PriceEntry("sku", "GB300", 0, capex_usd=92_000.0, amortization_years=4.0),
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("site", "default", 0, usd_per_kwh=0.09, pue=1.3),
            PriceEntry("site", "dc2", HOUR + 3600, usd_per_kwh=0.12, pue=1.15),
        ],
    )


def reports(engine):
    window = (HOUR, HOUR + 7200)
    return {
        "cost": cost_report(engine, *window, ["architecture", "model"], idle="proportional"),
        "cost-by-device": cost_report(engine, *window, ["node", "device"]),
        "split": split_report(engine, *window, ["endpoint", "model"], idle="even"),
        "compare": compare_report(engine, *window),
        "trend": trend_report(engine, *window, ["model"], every="hour"),
    }


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_reports_agree_on_sqlite_and_postgresql(sqlite_engine, request):
    postgres = request.getfixturevalue("_pg_engine")
    _truncate_all(postgres)
    mixed_fleet(sqlite_engine)
    mixed_fleet(postgres)

    on_sqlite, on_postgres = reports(sqlite_engine), reports(postgres)

    for name in on_sqlite:
        lite, pg = on_sqlite[name], on_postgres[name]
        assert lite.rows, name
        assert same(lite.rows, pg.rows), name
        assert same(lite.total, pg.total), name
        assert lite.notes == pg.notes, name
    assert [gpu["uuid"] for gpu in on_sqlite["cost"].unpriced] == ["GPU-x"]
    assert on_sqlite["cost"].total["total_usd"] == pytest.approx(
        sum(r["total_usd"] for r in on_sqlite["cost"].rows)
    )
