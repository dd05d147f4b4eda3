"""The worked examples every cost figure must reproduce, on SQLite and PostgreSQL.

One H100 over exactly one hour: its energy counter rises by 2,160,000 J (600 W mean) while its
vLLM endpoint serves 3,000,000 input and 1,000,000 output tokens. At 2.00 USD per GPU-hour,
0.10 USD per kWh and PUE 1.25: cost = 2.00 + 0.6 kWh x 1.25 x 0.10 = 2.075 USD, blended
0.51875 USD per million tokens, 0.54 J per token.

Published checks (no electricity price): an H200 at 1.41 USD per GPU-hour serving 90 tokens/s is
1.41 / (90 x 3600 / 1e6) = 4.3518... USD per million tokens; a GB300 at 2.65 USD per GPU-hour
serving 6,000 tokens/s is 2.65 / 21.6 = 0.12268... USD per million tokens.
"""

import pytest

from wattledger import contract as c
from wattledger.cli.reports.cost import cost_report
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.collector.ingest import Ingestor
from wattledger.collector.points import COUNTER, Point
from wattledger.collector.usage import refresh

S = 1_000_000_000
HOUR = 1_764_000_000  # an hour boundary, in seconds
T0 = HOUR * S


def one_gpu_hour(node, uuid, sku, arch, watts, input_per_s, output_per_s):
    """Points of one GPU and its endpoint, once a minute for exactly one hour."""
    resource = {c.RES_NODE: node}
    gpu = {
        c.ATTR_HW_ID: uuid,
        c.ATTR_SKU: sku,
        c.ATTR_ARCHITECTURE: arch,
        c.ATTR_HW_NAME: f"NVIDIA {sku}",
    }
    points = []
    for minute in range(1, 61):
        t = T0 + minute * 60 * S
        points.append(Point(c.METRIC_ENERGY, COUNTER, resource, gpu, T0, t, watts * minute * 60.0))
        for token_type, rate in (("input", input_per_s), ("output", output_per_s)):
            attrs = {
                c.ATTR_ENDPOINT: f"{node}-serve",
                c.ATTR_ENGINE: "vllm",
                c.ATTR_MODEL: "model-x",
                c.ATTR_TOKEN_TYPE: token_type,
                c.ATTR_GPU_IDS: (uuid,),
            }
            points.append(
                Point(c.METRIC_TOKENS, COUNTER, resource, attrs, T0, t, rate * minute * 60.0)
            )
    return points


def test_one_h100_hour_costs_2_075_usd(engine):
    Ingestor(engine).ingest(
        one_gpu_hour(
            "node-a", "GPU-h100", "H100", "hopper", 600.0, 3_000_000 / 3600, 1_000_000 / 3600
        )
    )
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.25),
        ],
    )
    refresh(engine)

    report = cost_report(engine, HOUR, HOUR + 3600, ["model"])

    [row] = report.rows
    assert row["model"] == "model-x"
    assert row["gpu_hours"] == pytest.approx(1.0, abs=1e-12)
    assert row["energy_kwh"] == pytest.approx(0.6, abs=1e-12)
    assert row["input_tokens"] == pytest.approx(3_000_000, abs=1e-6)
    assert row["output_tokens"] == pytest.approx(1_000_000, abs=1e-6)
    assert row["cost_usd"] == 2.075
    assert row["idle_usd"] == 0.0
    assert row["usd_per_mtok"] == pytest.approx(0.51875, abs=1e-12)
    assert row["j_per_token"] == pytest.approx(0.54, abs=1e-12)
    assert report.total["cost_usd"] == 2.075
    assert report.unpriced == []


def test_published_h200_and_gb300_figures(engine):
    Ingestor(engine).ingest(
        one_gpu_hour("hopper-node", "GPU-h200", "H200", "hopper", 600.0, 0.0, 90.0)
        + one_gpu_hour("blackwell-node", "GPU-gb300", "GB300", "blackwell", 1200.0, 0.0, 6_000.0)
    )
    set_prices(
        engine,
        [
            PriceEntry("sku", "H200", 0, usd_per_gpu_hour=1.41),
            PriceEntry("sku", "GB300", 0, usd_per_gpu_hour=2.65),
        ],
    )
    refresh(engine)

    rows = {
        row["architecture"]: row
        for row in cost_report(engine, HOUR, HOUR + 3600, ["architecture"]).rows
    }

    assert rows["hopper"]["usd_per_mtok"] == pytest.approx(1.41 / 0.324, rel=1e-9)
    assert round(rows["hopper"]["usd_per_mtok"], 2) == 4.35
    assert rows["blackwell"]["usd_per_mtok"] == pytest.approx(2.65 / 21.6, rel=1e-9)
    assert round(rows["blackwell"]["usd_per_mtok"], 3) == 0.123
