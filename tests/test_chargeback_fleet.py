"""The small fleet every chargeback test bills, and the cost report figures it must give.

Four hours, 2026-11-30 22:00 to 2026-12-01 02:00 UTC (so a daily export crosses a month and a
billing period), points once a minute:

* node-a (site dc1, tag team=search): two H100 at 600 W running endpoint ``llama-70b``
  (model ``llama-3.1-70b``), which serves 1,000 input and 333.3 output tokens per second in the
  first 150 minutes and nothing after: full hours at 22:00 and 23:00, half of 00:00, idle at 01:00.
* node-b (site dc2, tag team=ads): one B200 at 1,000 W running ``qwen-32b`` (model
  ``qwen2.5-32b``), serving 500 input and 250 output tokens per second throughout.
* node-c (no site, no tags): one B200 at 200 W that no endpoint uses.

Prices: H100 2.00 USD and B200 4.00 USD per GPU-hour; electricity 0.10 USD per kWh at PUE 1.25.
So an H100-hour costs 2.00 + 0.6 x 1.25 x 0.10 = 2.075 USD, a busy B200-hour 4.125 USD and the
idle B200-hour 4.025 USD.

By hour (USD):       22:00   23:00   00:00           01:00    total
  llama-70b serving   4.15    4.15   2.075           -       10.375
  llama-70b idle      -       -      2.075           4.15     6.225
  qwen-32b serving    4.125   4.125  4.125           4.125   16.50
  node-c GPU idle     4.025   4.025  4.025           4.025   16.10
  all                                                        49.20
"""

import pytest

from wattledger import contract as c
from wattledger.cli.reports.cost import cost_report
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.collector.ingest import Ingestor
from wattledger.collector.points import COUNTER, Point
from wattledger.collector.usage import refresh

S = 1_000_000_000
START = 1_796_076_000  # 2026-11-30T22:00:00Z
HOURS = 4
NOV_30, DEC_1 = START - 22 * 3600, START + 2 * 3600
END = START + HOURS * 3600

NODES = {
    "node-a": {c.RES_NODE: "node-a", c.RES_SITE: "dc1", c.RES_TAG_PREFIX + "team": "search"},
    "node-b": {c.RES_NODE: "node-b", c.RES_SITE: "dc2", c.RES_TAG_PREFIX + "team": "ads"},
    "node-c": {c.RES_NODE: "node-c"},
}
# uuid: (node, sku, architecture, watts)
GPUS = {
    "GPU-a0": ("node-a", "H100", "hopper", 600.0),
    "GPU-a1": ("node-a", "H100", "hopper", 600.0),
    "GPU-b0": ("node-b", "B200", "blackwell", 1000.0),
    "GPU-c0": ("node-c", "B200", "blackwell", 200.0),
}
# name: (node, model, gpus, input/s, output/s, minutes served from the start)
ENDPOINTS = {
    "llama-70b": ("node-a", "llama-3.1-70b", ("GPU-a0", "GPU-a1"), 1000.0, 1000.0 / 3, 150),
    "qwen-32b": ("node-b", "qwen2.5-32b", ("GPU-b0",), 500.0, 250.0, HOURS * 60),
}
PRICES = [
    PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
    PriceEntry("sku", "B200", 0, usd_per_gpu_hour=4.00),
    PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.25),
]
TOTAL_USD = 49.20

CHARGEBACK = {
    "centres": {"search": "Search", "ads": "Ads", "platform": "Platform"},
    "default_centre": "platform",
    "rules": [
        {"centre": "search", "tags": {"team": "search"}},
        {"centre": "ads", "model": "qwen*"},
    ],
}


def fleet_points(start: int = START, hours: int = HOURS, step_s: int = 60) -> list[Point]:
    """The fleet's cumulative counters, every ``step_s`` seconds from ``start`` for ``hours``.

    The serving pattern repeats every four hours, so a longer fleet costs 49.20 USD per block.
    """
    t0 = start * S
    cycle = HOURS * 3600
    points = []
    for step in range(1, hours * 3600 // step_s + 1):
        elapsed = step * step_s
        t = t0 + elapsed * S
        for uuid, (node, sku, arch, watts) in GPUS.items():
            gpu = {
                c.ATTR_HW_ID: uuid,
                c.ATTR_SKU: sku,
                c.ATTR_ARCHITECTURE: arch,
                c.ATTR_HW_NAME: f"NVIDIA {sku}",
            }
            points.append(Point(c.METRIC_ENERGY, COUNTER, NODES[node], gpu, t0, t, watts * elapsed))
        for name, (node, model, gpus, input_rate, output_rate, served) in ENDPOINTS.items():
            cycles, into_cycle = divmod(elapsed, cycle)
            busy_seconds = cycles * served * 60.0 + min(into_cycle, served * 60)
            for token_type, rate in ((c.TOKEN_INPUT, input_rate), (c.TOKEN_OUTPUT, output_rate)):
                attrs = {
                    c.ATTR_ENDPOINT: name,
                    c.ATTR_ENGINE: "vllm",
                    c.ATTR_MODEL: model,
                    c.ATTR_TOKEN_TYPE: token_type,
                    c.ATTR_GPU_IDS: gpus,
                }
                points.append(
                    Point(c.METRIC_TOKENS, COUNTER, NODES[node], attrs, t0, t, rate * busy_seconds)
                )
    return points


def build_fleet(engine, start: int = START, hours: int = HOURS, step_s: int = 60) -> None:
    Ingestor(engine).ingest(fleet_points(start, hours, step_s))
    set_prices(engine, PRICES)
    refresh(engine)


def test_fleet_cost_report_by_endpoint(engine):
    build_fleet(engine)

    report = cost_report(engine, START, END, ["endpoint"])

    rows = {row["endpoint"]: row for row in report.rows}
    assert rows["llama-70b"]["cost_usd"] == pytest.approx(10.375, abs=1e-9)
    assert rows["llama-70b"]["idle_usd"] == pytest.approx(6.225, abs=1e-9)
    assert rows["llama-70b"]["input_tokens"] == pytest.approx(9_000_000, abs=1e-3)
    assert rows["llama-70b"]["output_tokens"] == pytest.approx(3_000_000, abs=1e-3)
    assert rows["qwen-32b"]["cost_usd"] == pytest.approx(16.50, abs=1e-9)
    assert rows["qwen-32b"]["idle_usd"] == pytest.approx(0.0, abs=1e-9)
    assert rows["(no endpoint)"]["idle_usd"] == pytest.approx(16.10, abs=1e-9)
    assert report.total["total_usd"] == pytest.approx(TOTAL_USD, abs=1e-9)
