"""Fleet-scale ingest: OTLP batches of 10,000 GPUs and 2,000 endpoints through real collectors.

Each export round is one request per node (1,250 nodes of 8 GPUs; 2,000 endpoints spread over
them): 5 GPU points per GPU and 6 engine points per endpoint, 62,000 points a round. The
requests are serialized and gzipped beforehand, then POSTed by client threads to one or more
``wattledger collector serve`` processes writing to the same database. The first round creates
every series; the rounds after it are the steady state a fleet lives in, and their rate is the
figure that counts.

For scale, the same delta and gauge rows are bulk-inserted into the same tables with nothing
else going on (``COPY`` on PostgreSQL, ``executemany`` on SQLite): the floor the database
allows. With ``--duplicate``, every request is also sent a second time to another collector at
once, and the store is checked to hold each point once.

Run: python benchmarks/bench_ingest.py [--db sqlite|postgresql|both] [--collectors N]
     [--rounds R] [--clients C] [--duplicate]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from sqlalchemy import create_engine, func, select, text

from wattledger import contract as c
from wattledger.collector import schema as s
from wattledger.collector.db import open_engine
from wattledger.migrations import runner

S = 1_000_000_000
T0 = 1_764_000_000 * S
NODES, GPUS_PER_NODE, ENDPOINTS = 1_250, 8, 2_000
PG_ADMIN = os.environ.get("WATTLEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}


def kv(key: str, value) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, tuple):
        any_value = AnyValue()
        any_value.array_value.values.extend(AnyValue(string_value=v) for v in value)
        return KeyValue(key=key, value=any_value)
    return KeyValue(key=key, value=AnyValue(double_value=value))


def node_request(node: int, endpoints: list[int], round_no: int) -> ExportMetricsServiceRequest:
    """One node's export at ``round_no`` (a minute apart), as the agent would send it."""
    t_ns = T0 + (round_no + 1) * 60 * S
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    name = f"node-{node:05d}"
    rm.resource.attributes.extend(
        [
            kv(c.RES_SERVICE_NAME, c.SERVICE_NAME),
            kv(c.RES_HOST_NAME, name),
            kv(c.RES_NODE, name),
            kv(c.RES_CLUSTER, "bench"),
            kv(c.RES_SITE, "dc1"),
        ]
    )
    metrics = rm.scope_metrics.add().metrics
    uuids = [f"GPU-{node:05d}-{g}" for g in range(GPUS_PER_NODE)]

    def metric(name_: str, kind: str):
        m = metrics.add()
        m.name = name_
        if kind == "gauge":
            return m.gauge.data_points
        m.sum.is_monotonic = kind == "counter"
        m.sum.aggregation_temporality = CUMULATIVE
        return m.sum.data_points

    def point(points, attrs, value, start=True):
        dp = points.add()
        dp.attributes.extend(kv(k, v) for k, v in attrs.items())
        dp.start_time_unix_nano = T0 if start else 0
        dp.time_unix_nano = t_ns
        dp.as_double = value

    gpu_base = {
        c.ATTR_HW_TYPE: "gpu",
        c.ATTR_HW_NAME: "NVIDIA H100 80GB HBM3",
        c.ATTR_HW_VENDOR: "nvidia",
        c.ATTR_ARCHITECTURE: "hopper",
        c.ATTR_SKU: "H100",
    }
    energy = metric(c.METRIC_ENERGY, "counter")
    power = metric(c.METRIC_POWER, "gauge")
    util = metric(c.METRIC_UTILIZATION, "gauge")
    used = metric(c.METRIC_MEMORY_USAGE, "updown")
    limit = metric(c.METRIC_MEMORY_LIMIT, "updown")
    for uuid in uuids:
        attrs = {**gpu_base, c.ATTR_HW_ID: uuid}
        point(energy, {**attrs, c.ATTR_ENERGY_SOURCE: "counter"}, 42_000.0 * (round_no + 1))
        point(power, attrs, 700.0, start=False)
        point(util, attrs, 0.9, start=False)
        point(used, attrs, 6.0e10, start=False)
        point(limit, attrs, 8.0e10, start=False)

    tokens = metric(c.METRIC_TOKENS, "counter")
    finished = metric(c.METRIC_REQUESTS, "counter")
    phases = metric(c.METRIC_PHASE_TIME, "counter")
    for e in endpoints:
        attrs = {
            c.ATTR_ENDPOINT: f"ep-{e:05d}",
            c.ATTR_ENGINE: "vllm",
            c.ATTR_MODEL: "llama-70b",
            c.ATTR_ROLE: "aggregated",
            c.ATTR_GPU_IDS: tuple(uuids[:4] if e % 2 else uuids[4:]),
        }
        k = round_no + 1
        for token_type, per_round in (
            ("input", 90_000.0),
            ("input_cached", 9_000.0),
            ("output", 30_000.0),
        ):
            point(tokens, {**attrs, c.ATTR_TOKEN_TYPE: token_type}, per_round * k)
        point(finished, attrs, 60.0 * k)
        for phase, per_round in (("prefill", 12.0), ("decode", 45.0)):
            point(phases, {**attrs, c.ATTR_PHASE: phase}, per_round * k)
    return request


def fleet_rounds(rounds: int) -> tuple[list[list[bytes]], int]:
    owners = [e % NODES for e in range(ENDPOINTS)]
    per_node = {n: [e for e, owner in enumerate(owners) if owner == n] for n in range(NODES)}
    bodies, points = [], 0
    for r in range(rounds):
        batch = []
        for n in range(NODES):
            request = node_request(n, per_node[n], r)
            if r == 0:
                points += GPUS_PER_NODE * 5 + len(per_node[n]) * 6
            batch.append(gzip.compress(request.SerializeToString(), 1))
        bodies.append(batch)
    return bodies, points


def fresh_database(kind: str, workdir: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        return url, lambda: None
    admin = create_engine(
        PG_ADMIN.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"wattledger_bench_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin.url.set(database=name).render_as_string(hide_password=False), drop


def start_collectors(url: str, count: int, workdir: Path) -> list[tuple[subprocess.Popen, str]]:
    collectors = []
    for i in range(count):
        port = 47_000 + random.randrange(10_000)
        log = open(workdir / f"collector-{i}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from wattledger.cli.main import main; main()",
                "collector",
                "serve",
                "--no-auth",
                "--listen",
                f"127.0.0.1:{port}",
                "--db",
                url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        collectors.append((proc, f"http://127.0.0.1:{port}"))
    for proc, base in collectors:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"collector {base} did not start; see {workdir}")
            time.sleep(0.1)
    return collectors


def send_round(bodies: list[bytes], bases: list[str], clients: int, duplicate: bool) -> float:
    """POST every body once (twice with ``duplicate``); the seconds it took.

    Each client thread keeps one keep-alive connection per collector, through the standard
    library's ``http.client``, so the clients take as little of the shared cores as they can.
    """
    local = threading.local()

    def post(i: int, base: str) -> None:
        connections = local.__dict__.setdefault("connections", {})
        conn = connections.get(base)
        if conn is None:
            address = urlsplit(base).netloc
            conn = connections[base] = http.client.HTTPConnection(address, timeout=120)
        conn.request("POST", "/v1/metrics", body=bodies[i], headers=HEADERS)
        reply = conn.getresponse()
        text = reply.read()
        if reply.status != 200:
            raise SystemExit(f"collector answered {reply.status}: {text[:200]!r}")

    def one(i: int) -> None:
        post(i, bases[i % len(bases)])

    def pair(i: int) -> None:
        # The copy of each request goes to another collector at the same moment.
        with ThreadPoolExecutor(1) as other:
            copy = other.submit(post_copy, i)
            post(i, bases[i % len(bases)])
            copy.result()

    def post_copy(i: int) -> None:
        post(i, bases[(i + 1) % len(bases)])

    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        list(pool.map(pair if duplicate else one, range(len(bodies))))
        return time.perf_counter() - started


def cpu_seconds(collectors) -> dict[str, float]:
    """CPU seconds used so far by this process (the clients), the collectors and PostgreSQL.

    Everything shares this machine's cores, so the split shows where a round's time went.
    """

    def total(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system

    postgres = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            postgres += total(proc)
    return {
        "clients": total(psutil.Process()),
        "collectors": sum(total(psutil.Process(proc.pid)) for proc, _base in collectors),
        "postgres": postgres,
    }


def bare_insert_rate(url: str, points: int) -> float:
    """Rows per second for the same rows, bulk-inserted into the same tables and nothing else."""
    engine = open_engine(url)
    with engine.connect() as conn:
        series = conn.execute(select(s.series.c.id, s.series.c.metric)).all()
    counters = {c.METRIC_ENERGY, c.METRIC_TOKENS, c.METRIC_REQUESTS, c.METRIC_PHASE_TIME}
    t_ns = T0 + 10_000 * 60 * S
    deltas = [(sid, t_ns, t_ns - 60 * S, 1.0) for sid, metric in series if metric in counters]
    gauges = [(sid, t_ns, 1.0) for sid, metric in series if metric not in counters]
    assert len(deltas) + len(gauges) == points

    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        if engine.dialect.name == "postgresql":
            with cursor.copy("COPY deltas (series_id, end_ns, start_ns, value) FROM STDIN") as copy:
                for row in deltas:
                    copy.write_row(row)
            with cursor.copy("COPY gauge_samples (series_id, t_ns, value) FROM STDIN") as copy:
                for row in gauges:
                    copy.write_row(row)
        else:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(
                "INSERT INTO deltas (series_id, end_ns, start_ns, value) VALUES (?, ?, ?, ?)",
                deltas,
            )
            cursor.executemany(
                "INSERT INTO gauge_samples (series_id, t_ns, value) VALUES (?, ?, ?)", gauges
            )
        raw.commit()
        elapsed = time.perf_counter() - started
    finally:
        raw.close()
        engine.dispose()
    return points / elapsed


def check_once(url: str, rounds: int, points: int) -> str:
    engine = open_engine(url)
    with engine.connect() as conn:
        series = conn.execute(select(func.count()).select_from(s.series)).scalar()
        deltas = conn.execute(select(func.count()).select_from(s.deltas)).scalar()
        gauges = conn.execute(select(func.count()).select_from(s.gauge_samples)).scalar()
        energy = conn.execute(
            select(func.sum(s.deltas.c.value))
            .join(s.series, s.series.c.id == s.deltas.c.series_id)
            .where(s.series.c.metric == c.METRIC_ENERGY)
        ).scalar()
    engine.dispose()
    gpus = NODES * GPUS_PER_NODE
    counter_series = gpus + ENDPOINTS * 6
    expected = (
        points,
        counter_series * rounds,
        (points - counter_series) * rounds,
        42_000.0 * rounds * gpus,
    )
    found = (series, deltas, gauges, energy)
    verdict = "each point once" if found == expected else f"MISMATCH {found} != {expected}"
    return f"series={series} deltas={deltas} gauges={gauges} energy_J={energy:.0f}: {verdict}"


def run(kind: str, args, bodies, points) -> None:
    with tempfile.TemporaryDirectory(prefix="wattledger-bench-") as tmp:
        workdir = Path(tmp)
        url, drop = fresh_database(kind, workdir)
        try:
            runner.upgrade(open_engine(url))
            collectors = start_collectors(url, args.collectors, workdir)
            bases = [base for _proc, base in collectors]
            try:
                rates = []
                for r, batch in enumerate(bodies):
                    before = cpu_seconds(collectors)
                    elapsed = send_round(batch, bases, args.clients, args.duplicate)
                    used = {k: v - before[k] for k, v in cpu_seconds(collectors).items()}
                    rates.append(points / elapsed)
                    label = "first (creates series)" if r == 0 else "steady"
                    print(
                        f"  {kind:10s} round {r + 1}: {points / elapsed:10,.0f} points/s "
                        f"({label}); CPU s: clients {used['clients']:.1f}, "
                        f"collectors {used['collectors']:.1f}, postgres {used['postgres']:.1f} "
                        f"of {elapsed * os.cpu_count():.1f}"
                    )
            finally:
                for proc, _base in collectors:
                    proc.terminate()
                    proc.wait(60)
            print(f"  {kind:10s} {check_once(url, len(bodies), points)}")
            steady = sum(rates[1:]) / len(rates[1:]) if len(rates) > 1 else rates[0]
            floor = bare_insert_rate(url, points)
            print(
                f"  {kind:10s} steady {steady:,.0f} points/s with {args.collectors} collector(s); "
                f"bare bulk insert {floor:,.0f} rows/s; ratio {floor / steady:.2f}x"
            )
        finally:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--collectors", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--duplicate", action="store_true", help="send every request to two collectors at once"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    bodies, points = fleet_rounds(args.rounds)
    size = sum(len(b) for b in bodies[0])
    print(
        f"{NODES} nodes, {NODES * GPUS_PER_NODE} GPUs, {ENDPOINTS} endpoints: {points:,} points "
        f"per round in {len(bodies[0])} requests ({size / 1e6:.1f} MB gzip), built in "
        f"{time.perf_counter() - started:.1f}s"
    )
    for kind in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        run(kind, args, bodies, points)


if __name__ == "__main__":
    main()
