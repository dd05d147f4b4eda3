"""A node, a collector and a store as real processes, and the zero-loss check the fault tests share.

The agent samples two simulated H100s whose energy counters run on the wall clock from the Unix
epoch (see ``wattledger agent run --fake-gpus``), and scrapes one fake vLLM endpoint whose
counters the test moves. What the store must hold at the end is computed independently:

* energy per GPU = the simulated counter at the agent's last reading minus the counter at its
  first reading, both from the fake NVML's physics at those instants (mJ, integers);
* tokens = the engine's counters at the end minus their values when the agent first read them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from procs import Collector, FakeEngine, wait_for, wattledger
from sqlalchemy import Engine, func, select

from wattledger import contract as c
from wattledger.agent.gpu.fake import ManualClock, fake_from_spec
from wattledger.collector import schema as s
from wattledger.collector.auth import create_token

FAKE_GPUS = "2xH100"
NODE = "node-1"
ENDPOINT = "llama-ep"


@dataclass
class Node:
    """One agent process and everything it needs."""

    root: Path
    collector_url: str
    engine_url: str
    token: str
    spool_max_mb: float = 4.0
    state_dir: Path = field(init=False)
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.state_dir = self.root / "agent-state"
        (self.root / "agent.token").write_text(self.token + "\n")
        (self.root / "agent.toml").write_text(
            "[agent]\n"
            f'node = "{NODE}"\n'
            f'state_dir = "{self.state_dir}"\n'
            "sample_interval_s = 0.2\nscrape_interval_s = 0.5\nexport_interval_s = 1.0\n"
            f'collector_url = "{self.collector_url}"\n'
            f'token_file = "{self.root / "agent.token"}"\n'
            f"spool_max_mb = {self.spool_max_mb}\n"
            "[[agent.endpoints]]\n"
            f'name = "{ENDPOINT}"\nurl = "{self.engine_url}"\nengine = "vllm"\n'
            'gpus = ["0", "1"]\n'
        )

    def start(self) -> Node:
        self.proc = wattledger(
            ["--config", str(self.root / "agent.toml"), "agent", "run", "--fake-gpus", FAKE_GPUS],
            self.root / "agent.log",
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def spool_counters(self) -> dict[str, int]:
        path = self.state_dir / "spool.sqlite"
        if not path.exists():
            return {}
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            counters["pending"] = conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        return counters


class Scene:
    """Collector, fake engine and agent around one store."""

    def __init__(self, root: Path, db_url: str, engine: Engine, *, spool_max_mb: float = 4.0):
        self.root = root
        self.db = engine
        self.fake_engine = FakeEngine()
        self.base = (self.fake_engine.prompt, self.fake_engine.generation)
        self.collector = Collector(db_url, root / "collector.log").start()
        token = create_token(engine, NODE, [NODE])
        self.node = Node(
            root, self.collector.url + "/v1/metrics", self.fake_engine.url, token, spool_max_mb
        )

    def start_agent(self) -> None:
        self.node.start()
        # Tokens move only once the agent has read the engine's starting values.
        wait_for(lambda: self.stored_tokens() is not None, 60, "the agent's first batch")

    def work(self, seconds: float, step: float = 0.25) -> None:
        """The engine serves requests: counters grow by fixed amounts every ``step``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.fake_engine.add(prompt=1200.0, generation=300.0, requests=2.0)
            time.sleep(step)

    def finish(self) -> None:
        """Stop the engine's growth, let the agent read the final values, stop it cleanly."""
        final = (self.fake_engine.prompt, self.fake_engine.generation)
        seen = len(self.fake_engine.served)
        wait_for(lambda: len(self.fake_engine.served) > seen + 1, 30, "a scrape of final values")
        assert self.fake_engine.served[-1] == final
        assert self.node.stop() == 0

    def stored_tokens(self) -> dict[str, float] | None:
        query = (
            select(s.series.c.label, func.sum(s.deltas.c.value))
            .join(s.deltas, s.deltas.c.series_id == s.series.c.id, isouter=True)
            .where(s.series.c.metric == c.METRIC_TOKENS)
            .group_by(s.series.c.label)
        )
        with self.db.connect() as conn:
            rows = {label: total or 0.0 for label, total in conn.execute(query)}
        return rows or None

    def close(self) -> None:
        for proc in (self.node.proc, self.collector.proc):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.fake_engine.close()


def expected_energy_mj(state_dir: Path, db: Engine) -> dict[str, int]:
    """Per GPU: the simulated counter at the agent's last reading minus at its first reading."""
    ledger = json.loads((state_dir / "ledger.json").read_text())["series"]
    physics = fake_from_spec(FAKE_GPUS, clock=ManualClock(0.0), node=NODE)
    with db.connect() as conn:
        starts = dict(
            conn.execute(
                select(s.series.c.gpu_uuid, s.series.c.start_ns).where(
                    s.series.c.metric == c.METRIC_ENERGY, s.series.c.node == NODE
                )
            ).all()
        )
    expected = {}
    for gpu in physics.gpus:
        last_ns = ledger[f"gpu/{gpu.uuid}/energy_mj"]["last_ns"]
        first_ns = starts[gpu.uuid]
        expected[gpu.uuid] = physics.energy_mj(gpu, last_ns / 1e9) - physics.energy_mj(
            gpu, first_ns / 1e9
        )
    return expected


def assert_nothing_lost(scene: Scene) -> dict[str, object]:
    """Stored energy and tokens equal what the fake GPUs and engine produced; returns evidence."""
    expected = expected_energy_mj(scene.node.state_dir, scene.db)
    query = (
        select(
            s.series.c.gpu_uuid,
            s.series.c.last_value,
            func.sum(s.deltas.c.value),
            func.count(s.deltas.c.value),
        )
        .join(s.deltas, s.deltas.c.series_id == s.series.c.id)
        .where(s.series.c.metric == c.METRIC_ENERGY, s.series.c.node == NODE)
        .group_by(s.series.c.gpu_uuid, s.series.c.last_value)
    )
    with scene.db.connect() as conn:
        stored = {uuid: (last, total, n) for uuid, last, total, n in conn.execute(query)}
        rollup_total = conn.execute(
            select(func.sum(s.rollup_hourly.c.value))
            .join(s.series, s.series.c.id == s.rollup_hourly.c.series_id)
            .where(s.series.c.metric == c.METRIC_ENERGY, s.series.c.node == NODE)
        ).scalar()

    assert set(stored) == set(expected)
    for uuid, expected_mj in expected.items():
        last, total, _n = stored[uuid]
        assert expected_mj > 0
        # The last cumulative value is the counter's growth to the millijoule, exactly.
        assert last == expected_mj / 1000
        # Deltas are differences of those values: equal up to float rounding (far below 1 mJ).
        assert abs(total - expected_mj / 1000) < 1e-6
    assert abs(rollup_total - sum(expected.values()) / 1000) < 1e-6

    prompt, generation = scene.fake_engine.prompt, scene.fake_engine.generation
    tokens = scene.stored_tokens()
    assert tokens[c.TOKEN_INPUT] == prompt - scene.base[0]
    assert tokens[c.TOKEN_OUTPUT] == generation - scene.base[1]
    assert tokens[c.TOKEN_INPUT] > 0 and tokens[c.TOKEN_OUTPUT] > 0
    return {
        "energy_j": {u: v / 1000 for u, v in expected.items()},
        "energy_deltas": {u: stored[u][2] for u in stored},
        "tokens": tokens,
        "spool": scene.node.spool_counters(),
    }


class HoldingProxy:
    """Forwards POSTs to the collector; when armed, holds the collector's answer of one POST and
    never delivers it, so the agent can be killed while its export is in flight."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.armed = threading.Event()
        self.held = threading.Event()
        self.held_status: int | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                request = urllib.request.Request(proxy.target, data=body, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, reply = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, reply = exc.code, exc.read()
                if proxy.armed.is_set() and status == 200:
                    proxy.armed.clear()
                    proxy.held_status = status
                    proxy.held.set()
                    time.sleep(30)  # the agent is killed meanwhile
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PrivateCluster:
    """A throwaway PostgreSQL cluster in a temp dir, run as the ``postgres`` user if root."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.port = port
        self.bin = _pg_bin()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> PrivateCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


def _pg_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def private_cluster_unavailable() -> str | None:
    """Why a private PostgreSQL cluster cannot be made here, or None."""
    if _pg_bin() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to drop to the postgres user"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the cluster as"
    return None
