"""The collector as a service: health, readiness, schema check, TLS, auth policy, SIGTERM."""

import shutil
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest
from click.testing import CliRunner
from otlp_build import T0, S, energy_request, post
from procs import Collector, get, wait_for
from sqlalchemy import func, select

from wattledger.cli.commands.collector import _readiness, _tls_context
from wattledger.cli.main import cli
from wattledger.collector import schema as s
from wattledger.collector.db import open_engine
from wattledger.collector.server import CollectorServer, serve_in_thread
from wattledger.migrations import runner


def test_listening_beyond_loopback_without_auth_refuses_to_start(tmp_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"

    result = CliRunner().invoke(
        cli, ["collector", "serve", "--listen", "0.0.0.0:4318", "--no-auth", "--db", db]
    )

    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in result.output
    assert "collector.allow_unauthenticated_remote = true" in result.output


def test_a_database_whose_schema_is_behind_is_refused_with_the_upgrade_command(tmp_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    runner.upgrade(open_engine(db), "0001")

    result = CliRunner().invoke(cli, ["collector", "serve", "--listen", "127.0.0.1:0", "--db", db])

    assert result.exit_code == 4
    assert f"is at schema 0001 but this wattledger needs {runner.head_revision()}" in result.output
    assert f"run: wattledger db upgrade --db '{db}'" in result.output


def test_tls_needs_both_certificate_and_key(tmp_path):
    result = CliRunner().invoke(
        cli, ["collector", "serve", "--tls-cert", "c.pem", "--db", f"sqlite:///{tmp_path / 'w.db'}"]
    )

    assert result.exit_code == 2
    assert "give both --tls-cert and --tls-key" in result.output


def test_readiness_follows_the_schema_and_the_database(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'w.db'}")
    runner.upgrade(engine)
    server = CollectorServer(("127.0.0.1", 0), engine, readiness=_readiness(engine))
    serve_in_thread(server)
    try:
        ready = get(server.url + "/readyz")
        runner.downgrade(engine, "0001")
        behind = get(server.url + "/readyz")
        health = get(server.url + "/healthz")
    finally:
        server.stop()

    assert ready == (200, "ready\n")
    assert behind[0] == 503
    assert "schema 0001 is not current" in behind[1] and "wattledger db upgrade" in behind[1]
    assert health == (200, "ok\n")


def test_readiness_says_when_the_database_is_unreachable():
    engine = open_engine("postgresql://nobody@127.0.0.1:9/none")

    assert _readiness(engine)().startswith("database unreachable: ")


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is needed to make a certificate"
)
def test_the_collector_serves_https_with_a_certificate_and_key(tmp_path, sqlite_engine):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = CollectorServer(("127.0.0.1", 0), sqlite_engine, tls=_tls_context(str(cert), str(key)))
    serve_in_thread(server)
    client = ssl.create_default_context(cafile=str(cert))
    body = energy_request("node-a", [("GPU-a", T0 + 60 * S, 100.0)]).SerializeToString()
    try:
        request = urllib.request.Request(
            server.url + "/v1/metrics",
            data=body,
            headers={"Content-Type": "application/x-protobuf"},
        )
        with urllib.request.urlopen(request, context=client, timeout=10) as response:
            status = response.status
        with pytest.raises(OSError):
            post(server.url.replace("https", "http") + "/v1/metrics", body, timeout=3)
    finally:
        server.stop()

    assert server.url.startswith("https://127.0.0.1:")
    assert status == 200
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.sum(s.deltas.c.value))).scalar() == 100.0


@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_flight_then_exits(tmp_path):
    """A large batch is being stored when SIGTERM arrives: it is committed whole, then the
    collector exits 0 and refuses new connections."""
    db = f"sqlite:///{tmp_path / 'w.db'}"
    engine = open_engine(db)
    runner.upgrade(engine)
    collector = Collector(
        db, tmp_path / "collector.log", args=("--no-auth", "--max-series-per-node", "100000")
    ).start()
    gpus = [f"GPU-{i:05d}" for i in range(20_000)]
    body = energy_request("node-a", [(g, T0 + 60 * S, 5.0) for g in gpus]).SerializeToString()

    reply: list[tuple[int, bytes]] = []
    answered: list[float] = []

    def send() -> None:
        reply.append(post(collector.url + "/v1/metrics", body, timeout=60))
        answered.append(time.monotonic())

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: "connection" in _busy(collector), 10, "the batch to arrive")
    time.sleep(0.2)
    signalled = time.monotonic()
    code = collector.terminate()
    sender.join(60)

    assert code == 0
    assert reply and reply[0][0] == 200
    assert answered[0] > signalled, "the batch was answered before SIGTERM; make it larger"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.deltas)).scalar() == len(gpus)
        assert conn.execute(select(func.sum(s.deltas.c.value))).scalar() == 5.0 * len(gpus)
    with pytest.raises(OSError):
        post(collector.url + "/v1/metrics", body, timeout=3)


def _busy(collector: Collector) -> str:
    """Whether the collector's process has an established client connection."""
    out = subprocess.run(
        ["ss", "-tn", "state", "established", f"( sport = :{collector.port} )"],
        capture_output=True,
        text=True,
    ).stdout
    return "connection" if str(collector.port) in out else ""


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is needed to make a certificate"
)
def test_an_agent_exports_over_https_trusting_a_private_ca_file(tmp_path, sqlite_engine):
    from opentelemetry.sdk.metrics.export import MetricsData

    from wattledger.agent.sinks import OtlpSink

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = CollectorServer(("127.0.0.1", 0), sqlite_engine, tls=_tls_context(str(cert), str(key)))
    serve_in_thread(server)
    trusting = OtlpSink(server.url + "/v1/metrics", certificate_file=str(cert), timeout_s=2)
    default = OtlpSink(server.url + "/v1/metrics", timeout_s=0.5)
    try:
        assert trusting(MetricsData(resource_metrics=[])) is True
        assert default(MetricsData(resource_metrics=[])) is False  # the system CAs do not know it
    finally:
        trusting.close()
        default.close()
        server.stop()


def test_a_missing_agent_ca_file_is_a_one_line_error(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\ncollector_url = "https://127.0.0.1:4318/v1/metrics"\n'
        f'ca_file = "{tmp_path / "absent.pem"}"\nstate_dir = "{tmp_path / "state"}"\n'
    )

    result = CliRunner().invoke(
        cli, ["--config", str(config), "agent", "run", "--fake-gpus", "1xH100", "--once"]
    )

    assert result.exit_code == 2
    assert f"agent.ca_file {tmp_path / 'absent.pem'} does not exist" in result.output
