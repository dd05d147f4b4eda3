"""Chargeback exports of the test fleet: exact dollars per cost centre, idle modes, FOCUS columns,
reconciliation with the cost report, byte-identical reruns, and the refusals.

The fleet and its hourly figures are in test_chargeback_fleet. Each day of it costs 24.60 USD:
on 2026-11-30 (22:00-24:00) search serves for 8.30, ads for 8.25 and the idle GPU costs 8.05;
on 2026-12-01 (00:00-02:00) search serves for 2.075 and idles for 6.225, ads serves for 8.25 and
the idle GPU costs 8.05.
"""

import csv
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import delete
from test_chargeback_fleet import CHARGEBACK, END, PRICES, START, build_fleet

from wattledger.cli.chargeback.export import ExportError, export_chargeback
from wattledger.cli.chargeback.focus import COLUMN_NAMES
from wattledger.cli.chargeback.settings import parse_chargeback
from wattledger.cli.reports.cost import cost_report
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.collector import schema as s

NOW = END + 86_400
NOV_30, DEC_1 = "2026-11-30T22:00:00Z", "2026-12-01T00:00:00Z"


def export(
    engine, path, *, idle="none", granularity="day", fmt="csv", since=START, until=END, **extra
):
    settings = parse_chargeback({**CHARGEBACK, "idle": idle, **extra})
    return export_chargeback(
        engine, settings, since, until, path=path, fmt=fmt, granularity=granularity, now=NOW
    )


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def by_line(rows):
    """Rows keyed by (charge period start, cost centre, kind, resource)."""
    return {
        (r["ChargePeriodStart"], r["SubAccountId"], r["x_ChargeKind"], r["ResourceName"]): r
        for r in rows
    }


def billed(rows):
    return {key: Decimal(row["BilledCost"]) for key, row in by_line(rows).items()}


def test_daily_export_charges_each_centre_its_serving_and_idle_time(engine, tmp_path):
    build_fleet(engine)

    result = export(engine, tmp_path / "daily.csv")

    rows = read_csv(result.path)
    assert billed(rows) == {
        (NOV_30, "ads", "serving", "qwen-32b"): Decimal("8.25"),
        (NOV_30, "platform", "idle", "GPU-c0"): Decimal("8.05"),
        (NOV_30, "search", "serving", "llama-70b"): Decimal("8.30"),
        (DEC_1, "ads", "serving", "qwen-32b"): Decimal("8.25"),
        (DEC_1, "platform", "idle", "GPU-c0"): Decimal("8.05"),
        (DEC_1, "search", "idle", "llama-70b"): Decimal("6.225"),
        (DEC_1, "search", "serving", "llama-70b"): Decimal("2.075"),
    }
    assert result.rows == 7
    assert result.total_usd == Decimal("49.20")
    assert list(rows[0]) == list(COLUMN_NAMES)


def test_a_serving_row_fills_every_focus_column(engine, tmp_path):
    build_fleet(engine)

    rows = read_csv(export(engine, tmp_path / "daily.csv").path)

    row = by_line(rows)[(DEC_1, "search", "serving", "llama-70b")]
    assert row == {
        "BilledCost": "2.0750000000",
        "BillingAccountId": "gpu-fleet",
        "BillingAccountName": "GPU inference fleet",
        "BillingCurrency": "USD",
        "BillingPeriodEnd": "2027-01-01T00:00:00Z",
        "BillingPeriodStart": "2026-12-01T00:00:00Z",
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeDescription": "llama-3.1-70b served by endpoint llama-70b on node node-a",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": "2026-12-01T02:00:00Z",
        "ChargePeriodStart": "2026-12-01T00:00:00Z",
        "ConsumedQuantity": "2400000.000000",
        "ConsumedUnit": "Tokens",
        "ContractedCost": "2.0750000000",
        "EffectiveCost": "2.0750000000",
        "InvoiceId": "",
        "InvoiceIssuerName": "GPU inference fleet",
        "ListCost": "2.0750000000",
        "ListUnitPrice": "2.0750000000000000",
        "PricingCategory": "Standard",
        "PricingQuantity": "1.000000000",
        "PricingUnit": "GPU-Hours",
        "ProviderName": "GPU inference fleet",
        "PublisherName": "GPU inference fleet",
        "RegionId": "dc1",
        "RegionName": "dc1",
        "ResourceId": "node-a/endpoints/llama-70b",
        "ResourceName": "llama-70b",
        "ResourceType": "Inference Endpoint",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": "llama-3.1-70b",
        "ServiceSubcategory": "Generative AI",
        "SubAccountId": "search",
        "SubAccountName": "Search",
        "Tags": '{"team":"search","wattledger/cost-centre":"search"}',
        "x_ChargeKind": "serving",
        "x_CostCentre": "search",
        "x_Node": "node-a",
        "x_GpuSku": "H100",
        "x_GpuArchitecture": "hopper",
        "x_GpuHours": "1.000000000",
        "x_EnergyKWh": "0.600000000",
        "x_InputTokens": "1800000.000000",
        "x_OutputTokens": "600000.000000",
        "x_SharedIdleCost": "0.0000000000",
        # 2.075 USD / 2.4 million tokens
        "x_UsdPerMillionTokens": "0.8645833333",
    }


def test_idle_gpu_rows_name_the_gpu_and_carry_no_tokens(engine, tmp_path):
    build_fleet(engine)

    rows = read_csv(export(engine, tmp_path / "daily.csv").path)

    row = by_line(rows)[(NOV_30, "platform", "idle", "GPU-c0")]
    assert row["ServiceName"] == "Unallocated GPU capacity"
    assert row["ResourceId"] == "node-c/gpus/GPU-c0"
    assert row["ResourceType"] == "GPU"
    assert row["ChargeDescription"] == "Idle time of GPU GPU-c0 on node node-c, used by no endpoint"
    assert row["RegionId"] == row["RegionName"] == ""  # node-c has no site
    assert row["BillingPeriodStart"] == "2026-11-01T00:00:00Z"
    assert row["BillingPeriodEnd"] == "2026-12-01T00:00:00Z"
    assert row["ConsumedQuantity"] == "0.000000"
    assert row["PricingQuantity"] == "2.000000000"
    assert row["ListUnitPrice"] == "4.0250000000000000"  # 4.00 + 0.2 kWh x 1.25 x 0.10
    assert row["x_EnergyKWh"] == "0.400000000"
    assert row["x_UsdPerMillionTokens"] == ""
    assert row["Tags"] == '{"wattledger/cost-centre":"platform"}'


def test_even_idle_is_shared_equally_by_the_centres_that_served_that_day(engine, tmp_path):
    build_fleet(engine)

    rows = read_csv(export(engine, tmp_path / "even.csv", idle="even").path)

    # 30 Nov: 8.05 idle, half each; 1 Dec: 8.05 + 6.225 = 14.275 idle, 7.1375 each.
    assert billed(rows) == {
        (NOV_30, "ads", "serving", "qwen-32b"): Decimal("12.275"),
        (NOV_30, "search", "serving", "llama-70b"): Decimal("12.325"),
        (DEC_1, "ads", "serving", "qwen-32b"): Decimal("15.3875"),
        (DEC_1, "search", "serving", "llama-70b"): Decimal("9.2125"),
    }
    search = by_line(rows)[(DEC_1, "search", "serving", "llama-70b")]
    assert search["x_SharedIdleCost"] == "7.1375000000"
    assert search["PricingQuantity"] == "3.500000000"  # 1 GPU-hour served + half of 5 idle
    assert search["x_EnergyKWh"] == "1.700000000"  # 0.6 + half of (0.4 + 1.8)
    assert search["ListUnitPrice"] == "2.6321428571428571"  # 9.2125 / 3.5
    assert search["ChargeDescription"].endswith(", with a share of idle GPU time")


def test_proportional_idle_follows_serving_cost(engine, tmp_path):
    build_fleet(engine)

    rows = read_csv(export(engine, tmp_path / "proportional.csv", idle="proportional").path)

    # Each day costs 24.60, so each serving line is scaled by 24.60 / (serving cost of its day).
    got = billed(rows)
    assert got[(NOV_30, "ads", "serving", "qwen-32b")] == Decimal(
        "12.2628398792"
    )  # 8.25 x 24.60/16.55
    assert got[(NOV_30, "search", "serving", "llama-70b")] == Decimal(
        "12.3371601208"
    )  # 8.30 x 24.60/16.55
    assert got[(DEC_1, "ads", "serving", "qwen-32b")] == Decimal(
        "19.6561743341"
    )  # 8.25 x 24.60/10.325
    assert got[(DEC_1, "search", "serving", "llama-70b")] == Decimal(
        "4.9438256659"
    )  # 2.075 x 24.60/10.325
    assert sum(got.values()) == Decimal("49.20")


def test_idle_centre_takes_all_idle_time(engine, tmp_path):
    build_fleet(engine)

    rows = read_csv(
        export(engine, tmp_path / "centre.csv", idle="centre", idle_centre="platform").path
    )

    assert billed(rows) == {
        (NOV_30, "ads", "serving", "qwen-32b"): Decimal("8.25"),
        (NOV_30, "platform", "idle", "GPU-c0"): Decimal("8.05"),
        (NOV_30, "search", "serving", "llama-70b"): Decimal("8.30"),
        (DEC_1, "ads", "serving", "qwen-32b"): Decimal("8.25"),
        (DEC_1, "platform", "idle", "GPU-c0"): Decimal("8.05"),
        (DEC_1, "platform", "idle", "llama-70b"): Decimal("6.225"),
        (DEC_1, "search", "serving", "llama-70b"): Decimal("2.075"),
    }
    moved = by_line(rows)[(DEC_1, "platform", "idle", "llama-70b")]
    assert moved["Tags"] == '{"team":"search","wattledger/cost-centre":"platform"}'


@pytest.mark.parametrize("idle", ["none", "even", "proportional", "centre"])
@pytest.mark.parametrize("granularity", ["hour", "day"])
def test_export_total_equals_the_cost_report_to_the_cent(engine, tmp_path, idle, granularity):
    build_fleet(engine)
    extra = {"idle_centre": "platform"} if idle == "centre" else {}

    result = export(engine, tmp_path / "x.csv", idle=idle, granularity=granularity, **extra)

    report = cost_report(engine, START, END, ["model"], idle="none")
    assert (
        round(result.total_usd, 2)
        == round(Decimal(repr(report.total["total_usd"])), 2)
        == Decimal("49.20")
    )
    assert sum(Decimal(r["BilledCost"]) for r in read_csv(result.path)) == result.total_usd


def test_awkward_prices_still_reconcile_to_the_cent(engine, tmp_path):
    build_fleet(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.3456789),
            PriceEntry("sku", "B200", START + 7200, usd_per_gpu_hour=3.987654),  # from 1 Dec 00:00
            PriceEntry("site", "default", 0, usd_per_kwh=0.123457, pue=1.17),
        ],
    )

    result = export(engine, tmp_path / "x.csv", idle="proportional", granularity="hour")

    report = cost_report(engine, START, END, ["endpoint"])
    # Hand-checked: 8 H100-hours x 2.3456789; 4 B200-hours x 4.00 on 30 Nov and 4 x 3.987654 on
    # 1 Dec; energy (4.8 + 4.0 + 0.8) kWh x 1.17 x 0.123457. That is 52.10271622 USD.
    expected = 8 * 2.3456789 + 4 * 4.00 + 4 * 3.987654 + 9.6 * 1.17 * 0.123457
    assert expected == pytest.approx(52.10271622, abs=1e-8)
    assert report.total["total_usd"] == pytest.approx(expected, abs=1e-6)
    assert abs(result.total_usd - Decimal(repr(expected))) < Decimal("0.000001")
    assert round(result.total_usd, 2) == round(Decimal(repr(report.total["total_usd"])), 2)


def test_hourly_rows_cover_each_hour_and_its_billing_month(engine, tmp_path):
    build_fleet(engine)

    rows = read_csv(export(engine, tmp_path / "hourly.csv", granularity="hour").path)

    hours = sorted(
        {(r["ChargePeriodStart"], r["ChargePeriodEnd"], r["BillingPeriodStart"]) for r in rows}
    )
    assert hours == [
        ("2026-11-30T22:00:00Z", "2026-11-30T23:00:00Z", "2026-11-01T00:00:00Z"),
        ("2026-11-30T23:00:00Z", "2026-12-01T00:00:00Z", "2026-11-01T00:00:00Z"),
        ("2026-12-01T00:00:00Z", "2026-12-01T01:00:00Z", "2026-12-01T00:00:00Z"),
        ("2026-12-01T01:00:00Z", "2026-12-01T02:00:00Z", "2026-12-01T00:00:00Z"),
    ]
    assert len(rows) == 13
    half = by_line(rows)[("2026-12-01T00:00:00Z", "search", "idle", "llama-70b")]
    assert (half["BilledCost"], half["PricingQuantity"]) == ("2.0750000000", "1.000000000")


def test_a_window_that_starts_mid_day_clips_the_first_charge_period(engine, tmp_path):
    build_fleet(engine)

    rows = read_csv(export(engine, tmp_path / "x.csv", since=START + 3600).path)

    first = sorted({r["ChargePeriodStart"] for r in rows})[0]
    assert first == "2026-11-30T23:00:00Z"
    assert billed(rows)[("2026-11-30T23:00:00Z", "search", "serving", "llama-70b")] == Decimal(
        "4.15"
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_rerunning_an_export_gives_the_same_bytes_and_leaves_nothing_aside(engine, tmp_path, fmt):
    build_fleet(engine)
    target = tmp_path / "out" / f"focus.{fmt}"

    first = export(engine, target, fmt=fmt)
    before = target.read_bytes()
    target.write_bytes(b"stale")
    second = export(engine, target, fmt=fmt)

    assert target.read_bytes() == before
    assert first.sha256 == second.sha256
    assert [p.name for p in target.parent.iterdir()] == [f"focus.{fmt}"]


def test_parquet_has_decimal_and_utc_timestamp_types_and_the_csv_values(engine, tmp_path):
    build_fleet(engine)

    export(engine, tmp_path / "x.parquet", fmt="parquet")
    export(engine, tmp_path / "x.csv", fmt="csv")

    table = pq.read_table(tmp_path / "x.parquet")
    schema = table.schema
    assert schema.field("BilledCost").type == pa.decimal128(28, 10)
    assert schema.field("ListUnitPrice").type == pa.decimal128(28, 16)
    assert schema.field("PricingQuantity").type == pa.decimal128(28, 9)
    assert schema.field("ConsumedQuantity").type == pa.decimal128(28, 6)
    assert schema.field("ChargePeriodStart").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("Tags").type == pa.string()
    assert schema.names == list(COLUMN_NAMES)

    parquet_rows = table.to_pylist()
    csv_rows = read_csv(tmp_path / "x.csv")
    assert len(parquet_rows) == len(csv_rows) == 7
    for from_parquet, from_csv in zip(parquet_rows, csv_rows, strict=True):
        assert str(from_parquet["BilledCost"]) == from_csv["BilledCost"]
        assert from_parquet["ChargePeriodStart"] == datetime.fromisoformat(
            from_csv["ChargePeriodStart"]
        )
        assert from_parquet["ChargeClass"] is None and from_parquet["InvoiceId"] is None
    assert parquet_rows[0]["ChargePeriodStart"].tzinfo is not None
    assert parquet_rows[0]["ChargePeriodStart"] == datetime(2026, 11, 30, 22, tzinfo=UTC)


def test_an_open_period_is_refused_unless_asked_for(engine, tmp_path):
    build_fleet(engine)
    settings = parse_chargeback(CHARGEBACK)

    with pytest.raises(ExportError) as refused:
        export_chargeback(
            engine,
            settings,
            START,
            END,
            path=tmp_path / "x.csv",
            fmt="csv",
            granularity="day",
            now=END - 60,
        )
    result = export_chargeback(
        engine,
        settings,
        START,
        END,
        path=tmp_path / "x.csv",
        fmt="csv",
        granularity="day",
        now=END - 60,
        allow_open=True,
    )

    assert str(refused.value) == (
        "the period ending 2026-12-01T02:00:00Z is still open (now 2026-12-01T01:59:00Z): "
        "its figures "
        "would change; export it once it has ended, or pass --allow-open"
    )
    assert result.total_usd == Decimal("49.20")


def test_unpriced_gpu_time_is_refused_not_exported_as_free(engine, tmp_path):
    build_fleet(engine)
    with engine.begin() as conn:
        conn.execute(delete(s.prices).where(s.prices.c.key == "B200"))

    with pytest.raises(ExportError) as refused:
        export(engine, tmp_path / "x.csv")

    assert str(refused.value) == (
        "2 GPU(s) have 8.00 GPU-hours with no price in this window (SKU B200); "
        "set one with: wattledger price set --sku SKU --usd-per-gpu-hour N"
    )
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (
            START,
            START,
            "the window is empty: it ends 2026-11-30T22:00:00Z, not after 2026-11-30T22:00:00Z",
        ),
        (
            START + 60,
            END,
            "the window's start 2026-11-30T22:01:00Z is not on the hour; usage is kept per hour",
        ),
    ],
)
def test_bad_windows_are_refused(engine, tmp_path, since, until, message):
    with pytest.raises(ExportError) as refused:
        export(engine, tmp_path / "x.csv", since=since, until=until)

    assert str(refused.value) == message


def test_prices_used_are_the_test_fleets():
    assert [p.key for p in PRICES] == ["H100", "B200", "default"]


@pytest.mark.parametrize("idle", ["none", "even", "proportional"])
def test_list_cost_is_list_unit_price_times_pricing_quantity(engine, tmp_path, idle):
    """FOCUS's price identity, to the validator's tolerance (1e-9 relative), on every row."""
    build_fleet(engine)
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.3456789),
            PriceEntry("site", "default", 0, usd_per_kwh=0.123457, pue=1.17),
        ],
    )

    rows = read_csv(export(engine, tmp_path / "x.csv", idle=idle, granularity="hour").path)

    for row in rows:
        unit, quantity, cost = (
            Decimal(row[k]) for k in ("ListUnitPrice", "PricingQuantity", "ListCost")
        )
        assert abs(unit * quantity - cost) <= Decimal("1e-9") * max(abs(cost), 1), row
        assert abs(float(unit) * float(quantity) - float(cost)) <= 1e-9 * max(
            abs(float(cost)), 1
        ), row
        assert row["ListCost"] == row["BilledCost"] == row["EffectiveCost"] == row["ContractedCost"]
