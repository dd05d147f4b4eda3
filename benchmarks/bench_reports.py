"""How fast the reports are on a month of a 1,000-GPU fleet, against a bare SQL aggregation.

What it builds: 1,000 GPUs (125 nodes of 8; half H200/Hopper, half GB300/Blackwell), two
endpoints per node on four GPUs each (a few nodes run one, leaving four GPUs idle), engines
vLLM, SGLang (both with phase time) and TensorRT-LLM (without), one or two models per endpoint,
traffic that follows the time of day, over 30 days.

How: feeding 30 days of one-minute points for 1,000 GPUs through the ingest path would be about
43 million points per metric, far too slow for a benchmark. So the benchmark writes what the
ingest path would have left behind: the ``series`` rows and, in bulk, their ``rollup_hourly``
rows, each the sum of the sixty one-minute readings of its hour (energy and token deltas with
the seconds they cover and the seconds they grew in; utilization as the sum and count of sixty
samples). It marks every hour dirty, as ingest does, and then runs the store's own attribution
(``collector.usage.refresh``) to build ``usage_hourly``; that refresh is timed as its own figure.

Then each report (``cost`` by model and by architecture, ``compare``, and for information
``split`` and ``trend``) is timed over the whole month, median of several runs after a warm-up,
against a bare aggregation of ``usage_hourly`` with the same grouping (summing the measures, no
prices). Goal: under 2 s per report and within 2x of the bare query. Runs on SQLite (a temporary
file) and on PostgreSQL (a database created for the run and dropped after).

Run: python benchmarks/bench_reports.py [--gpus 1000] [--days 30] [--runs 5]
     [--pg postgresql://postgres@127.0.0.1:5432/test | --no-pg]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from wattledger import contract as c
from wattledger.cli.reports.compare import compare_report
from wattledger.cli.reports.cost import cost_report
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.cli.reports.split import split_report
from wattledger.cli.reports.trend import trend_report
from wattledger.collector import schema as s
from wattledger.collector.db import normalise_url, open_engine
from wattledger.collector.usage import refresh
from wattledger.migrations import runner

START = 1_761_955_200  # 2025-11-01T00:00:00Z
NS = 1_000_000_000
GPUS_PER_NODE = 8
ENGINES = ("vllm", "sglang", "trtllm")
MODELS = ("llama-3.1-70b", "qwen2.5-72b", "deepseek-v3", "mistral-large")
GOAL_SECONDS = 2.0
GOAL_RATIO = 2.0


# --- the fleet --------------------------------------------------------------------------------


def fleet_layout(gpus: int, rng: random.Random):
    """GPU rows, endpoint rows with their GPUs and models, and per-GPU/endpoint traits."""
    gpu_rows, endpoints = [], []
    nodes = (gpus + GPUS_PER_NODE - 1) // GPUS_PER_NODE
    for node_index in range(nodes):
        node = f"node-{node_index:03d}"
        hopper = node_index % 2 == 0
        sku, arch = ("H200", "hopper") if hopper else ("GB300", "blackwell")
        uuids = [
            f"GPU-{node_index:03d}-{i}"
            for i in range(GPUS_PER_NODE)
            if node_index * GPUS_PER_NODE + i < gpus
        ]
        for uuid in uuids:
            gpu_rows.append(
                {
                    "uuid": uuid,
                    "node": node,
                    "site": "dc1" if node_index % 3 else "dc2",
                    "sku": sku,
                    "architecture": arch,
                    "name": f"NVIDIA {sku}",
                    "watts": 700.0 if hopper else 1200.0,
                }
            )
        halves = [uuids[:4], uuids[4:]] if node_index % 25 else [uuids[:4]]  # a few nodes half idle
        for half, gpu_ids in enumerate(halves):
            if not gpu_ids:
                continue
            engine = ENGINES[(node_index + half) % len(ENGINES)]
            models = [MODELS[(node_index // 2 + half) % len(MODELS)]]
            if (node_index + half) % 5 == 0:
                models.append(models[0] + "-lora-support")
            endpoints.append(
                {
                    "node": node,
                    "name": f"{node}-{engine}-{half}",
                    "engine": engine,
                    "gpus": gpu_ids,
                    "models": models,
                    "tokens_per_s": (900.0 if hopper else 6_000.0)
                    * len(gpu_ids)
                    * rng.uniform(0.8, 1.2),
                }
            )
    return gpu_rows, endpoints


def traffic(hour_index: int) -> float:
    """Share of the hour an endpoint is busy: a day curve between 35% and 100%."""
    hour_of_day = hour_index % 24
    return 0.35 + 0.65 * (1 - abs(hour_of_day - 15) / 15)


def build(engine, gpus: int, days: int) -> dict:
    """Write dimensions, series and hourly rollups for ``days`` of the fleet; mark hours dirty."""
    rng = random.Random(7)
    gpu_rows, endpoints = fleet_layout(gpus, rng)
    hours = days * 24
    end_ns = (START + hours * 3600) * NS
    now = time.time_ns()

    with engine.begin() as conn:
        conn.execute(
            s.gpus.insert(),
            [
                {k: g[k] for k in ("uuid", "node", "site", "sku", "architecture", "name")}
                | {"tags": "{}", "first_seen_ns": START * NS, "last_seen_ns": end_ns}
                for g in gpu_rows
            ],
        )
        conn.execute(
            s.endpoints.insert(),
            [
                {
                    "node": e["node"],
                    "name": e["name"],
                    "engine": e["engine"],
                    "engine_version": "1.0",
                    "role": c.ROLE_AGGREGATED,
                    "tags": "{}",
                    "first_seen_ns": START * NS,
                    "last_seen_ns": end_ns,
                }
                for e in endpoints
            ],
        )
        ids = {
            (n, name): i
            for i, n, name in conn.execute(text("SELECT id, node, name FROM endpoints"))
        }
        conn.execute(
            s.endpoint_gpus.insert(),
            [
                {
                    "endpoint_id": ids[(e["node"], e["name"])],
                    "gpu_uuid": uuid,
                    "first_seen_ns": START * NS,
                    "last_seen_ns": end_ns,
                }
                for e in endpoints
                for uuid in e["gpus"]
            ],
        )

        series = []  # (metric, node, gpu_uuid, endpoint_id, model, label, owner row)
        for g in gpu_rows:
            series.append((c.METRIC_ENERGY, g["node"], g["uuid"], None, None, None, g))
            series.append((c.METRIC_UTILIZATION, g["node"], g["uuid"], None, None, None, g))
        for e in endpoints:
            eid = ids[(e["node"], e["name"])]
            for model in e["models"]:
                labels = [
                    (c.METRIC_TOKENS, c.TOKEN_INPUT),
                    (c.METRIC_TOKENS, c.TOKEN_OUTPUT),
                    (c.METRIC_REQUESTS, None),
                ]
                if e["engine"] != "trtllm":
                    labels += [
                        (c.METRIC_PHASE_TIME, c.PHASE_PREFILL),
                        (c.METRIC_PHASE_TIME, c.PHASE_DECODE),
                    ]
                for metric, label in labels:
                    series.append((metric, e["node"], None, eid, model, label, e))
        conn.execute(
            s.series.insert(),
            [
                {
                    "key_hash": hashlib.sha256(repr(item[:6]).encode()).hexdigest(),
                    "metric": item[0],
                    "node": item[1],
                    "gpu_uuid": item[2],
                    "endpoint_id": item[3],
                    "model": item[4],
                    "label": item[5],
                    "attrs": "{}",
                    "created_ns": now,
                }
                for item in series
            ],
        )
        series_ids = {
            (metric, gpu, eid, model, label): sid
            for sid, metric, gpu, eid, model, label in conn.execute(
                text("SELECT id, metric, gpu_uuid, endpoint_id, model, label FROM series")
            )
        }

    rollups = rollup_rows(series, series_ids, hours, rng)
    bulk_insert(engine, rollups)
    with engine.begin() as conn:
        conn.execute(
            s.dirty_hours.insert(), [{"hour": START + h * 3600, "version": 1} for h in range(hours)]
        )
    return {
        "gpus": len(gpu_rows),
        "endpoints": len(endpoints),
        "series": len(series),
        "rollups": len(rollups),
    }


def rollup_rows(series, series_ids, hours: int, rng: random.Random) -> list[tuple]:
    """(series_id, hour, value, seconds, active_seconds, samples), each of 60 minute readings."""
    rows = []
    for metric, _node, gpu, eid, model, label, owner in series:
        sid = series_ids[(metric, gpu, eid, model, label)]
        for h in range(hours):
            hour = START + h * 3600
            busy = traffic(h)
            if metric == c.METRIC_ENERGY:
                watts = owner["watts"] * (0.45 + 0.55 * busy) * rng.uniform(0.97, 1.03)
                rows.append((sid, hour, watts * 3600.0, 3600.0, 3600.0, 0))
            elif metric == c.METRIC_UTILIZATION:
                rows.append((sid, hour, 60 * busy * 0.9, 0.0, 0.0, 60))
            else:
                active_minutes = max(1, round(60 * busy))
                share = 1.0 / len(owner["models"])
                per_s = owner["tokens_per_s"] * share
                if metric == c.METRIC_TOKENS:
                    value = per_s * active_minutes * 60 * (0.75 if label == c.TOKEN_INPUT else 0.25)
                elif metric == c.METRIC_REQUESTS:
                    value = per_s * active_minutes * 60 / 1_500
                else:
                    value = active_minutes * 60 * 16 * (0.2 if label == c.PHASE_PREFILL else 0.8)
                rows.append((sid, hour, value, 3600.0, active_minutes * 60.0, 0))
    return rows


def bulk_insert(engine, rows: list[tuple]) -> None:
    columns = "series_id, hour, value, seconds, active_seconds, samples"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY rollup_hourly ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            # A large page cache keeps the hour index's pages in memory while it is filled.
            cursor.execute("PRAGMA cache_size=-1000000")
            cursor.execute("BEGIN")  # the driver autocommits: one transaction, not millions
            cursor.executemany(
                f"INSERT INTO rollup_hourly ({columns}) VALUES (?, ?, ?, ?, ?, ?)", rows
            )
        raw.commit()
    finally:
        raw.close()


# --- timing -----------------------------------------------------------------------------------


def median_seconds(func: Callable[[], object], runs: int) -> float:
    func()  # warm-up: caches, query plans
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        func()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


WINDOW_SQL = "WHERE u.hour >= :a AND u.hour < :b"
JOIN_GPUS = "LEFT JOIN gpus g ON g.uuid = u.gpu_uuid"
BARE = {
    "model": f"SELECT u.model, {{sums}} FROM usage_hourly u {WINDOW_SQL} GROUP BY u.model",
    "architecture": f"SELECT g.architecture, {{sums}} FROM usage_hourly u {JOIN_GPUS} {WINDOW_SQL} "
    "GROUP BY g.architecture",
    "architecture,model": f"SELECT g.architecture, u.model, {{sums}} FROM usage_hourly u "
    f"{JOIN_GPUS} {WINDOW_SQL} GROUP BY g.architecture, u.model",
    "endpoint,model": "SELECT e.name, u.model, {sums} FROM usage_hourly u "
    f"LEFT JOIN endpoints e ON e.id = u.endpoint_id {WINDOW_SQL} GROUP BY e.name, u.model",
    "day,model": "SELECT u.hour - u.hour % 86400 AS day, u.model, {sums} FROM usage_hourly u "
    f"{WINDOW_SQL} GROUP BY u.hour - u.hour % 86400, u.model",
}
SUMS = ", ".join(
    f"SUM(u.{m})"
    for m in (
        "gpu_seconds",
        "serving_seconds",
        "energy_j",
        "serving_energy_j",
        "input_tokens",
        "output_tokens",
    )
)


def bare(engine, grouping: str, since: int, until: int) -> Callable[[], object]:
    query = text(BARE[grouping].format(sums=SUMS))

    def run():
        with engine.connect() as conn:
            return conn.execute(query, {"a": since, "b": until}).all()

    return run


def bench_database(label: str, engine, gpus: int, days: int, runs: int) -> list[tuple]:
    runner.upgrade(engine)
    began = time.perf_counter()
    sizes = build(engine, gpus, days)
    build_s = time.perf_counter() - began

    began = time.perf_counter()
    hours = refresh(engine)
    refresh_s = time.perf_counter() - began
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    with engine.connect() as conn:
        usage_rows = conn.execute(text("SELECT COUNT(*) FROM usage_hourly")).scalar_one()

    set_prices(
        engine,
        [
            PriceEntry("sku", "H200", 0, usd_per_gpu_hour=1.41),
            PriceEntry(
                "sku", "H200", START + 15 * 86_400 + 1800, usd_per_gpu_hour=1.30
            ),  # mid-month, mid-hour
            PriceEntry("sku", "GB300", 0, usd_per_gpu_hour=2.65),
            PriceEntry("site", "default", 0, usd_per_kwh=0.08, pue=1.3),
            PriceEntry("site", "dc2", 0, usd_per_kwh=0.11, pue=1.2),
        ],
    )
    since, until = START, START + days * 86_400

    print(
        f"\n{label}: {sizes['gpus']} GPUs, {sizes['endpoints']} endpoints, "
        f"{sizes['series']} series, {sizes['rollups']:,} hourly rollup rows "
        f"(bulk, built in {build_s:.1f} s)"
    )
    print(
        f"  refresh (attribution of {hours} hours into {usage_rows:,} usage_hourly rows): "
        f"{refresh_s:.1f} s, {refresh_s / hours * 1000:.0f} ms per fleet-hour"
    )

    cases = [
        ("cost --by model", lambda: cost_report(engine, since, until, ["model"]), "model"),
        (
            "cost --by architecture",
            lambda: cost_report(engine, since, until, ["architecture"]),
            "architecture",
        ),
        (
            "compare (hopper vs blackwell, by model)",
            lambda: compare_report(engine, since, until),
            "architecture,model",
        ),
        (
            "split --by endpoint,model",
            lambda: split_report(engine, since, until, ["endpoint", "model"]),
            "endpoint,model",
        ),
        (
            "trend --every day --by model",
            lambda: trend_report(engine, since, until, ["model"]),
            "day,model",
        ),
    ]
    results = []
    goal = f"goal (<{GOAL_SECONDS:g} s, <={GOAL_RATIO:g}x)"
    print(f"  {'report':44} {'report s':>9} {'bare s':>8} {'ratio':>6}  {goal}")
    for name, report, grouping in cases:
        report_s = median_seconds(report, runs)
        bare_s = median_seconds(bare(engine, grouping, since, until), runs)
        ratio = report_s / bare_s
        verdict = "ok" if report_s < GOAL_SECONDS and ratio <= GOAL_RATIO else "MISSED"
        bare_note = f"(bare: GROUP BY {grouping})"
        print(f"  {name:44} {report_s:9.3f} {bare_s:8.3f} {ratio:6.2f}  {verdict} {bare_note}")
        results.append((label, name, report_s, bare_s, ratio))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--pg",
        default=os.environ.get("WATTLEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
        help="PostgreSQL server to create the benchmark database on.",
    )
    parser.add_argument("--no-pg", action="store_true", help="Run on SQLite only.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            bench_database("SQLite", engine, args.gpus, args.days, args.runs)
        finally:
            engine.dispose()

    if args.no_pg:
        return
    admin = create_engine(normalise_url(args.pg), isolation_level="AUTOCOMMIT")
    name = f"wattledger_bench_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        engine = open_engine(admin.url.set(database=name).render_as_string(hide_password=False))
        try:
            bench_database("PostgreSQL", engine, args.gpus, args.days, args.runs)
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
