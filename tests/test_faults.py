"""Outages and crashes lose nothing: real processes on loopback, totals checked to the mJ.

Each test runs ``wattledger collector serve`` and ``wattledger agent run --fake-gpus`` as child
processes with a fake vLLM endpoint, breaks something for several export intervals, and then
checks that the store holds exactly the energy the simulated GPUs used and the tokens the engine
counted (see ``faults.py``).
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from faults import (
    HoldingProxy,
    Node,
    PrivateCluster,
    Scene,
    assert_nothing_lost,
    private_cluster_unavailable,
)
from procs import free_port, wait_for

from wattledger.collector.db import open_engine
from wattledger.migrations import runner

pytestmark = pytest.mark.slow


@pytest.fixture
def sqlite_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_engine(url)
    runner.upgrade(engine)
    yield url, engine
    engine.dispose()


def test_collector_killed_for_several_export_intervals(tmp_path, sqlite_store):
    url, engine = sqlite_store
    scene = Scene(tmp_path, url, engine)
    try:
        scene.start_agent()
        scene.work(1.5)

        scene.collector.kill()
        scene.work(4.0)  # four export intervals with nowhere to go
        spooled = scene.node.spool_counters()
        scene.collector.start()
        wait_for(lambda: scene.node.spool_counters().get("pending") == 0, 30, "the replay")
        scene.work(1.0)
        scene.finish()

        evidence = assert_nothing_lost(scene)
    finally:
        scene.close()

    assert spooled["spooled"] >= 3
    counters = evidence["spool"]
    assert counters["replayed"] == counters["spooled"] >= 3
    assert counters.get("dropped_for_size", 0) == counters.get("dropped_disk_full", 0) == 0
    # The replayed batches kept their own intervals: about one delta per export, outage included.
    assert min(evidence["energy_deltas"].values()) >= 7


def test_agent_killed_by_sigkill_while_its_export_is_in_flight(tmp_path, sqlite_store):
    url, engine = sqlite_store
    scene = Scene(tmp_path, url, engine)
    proxy = HoldingProxy(scene.collector.url + "/v1/metrics")
    scene.node = Node(tmp_path, proxy.url, scene.fake_engine.url, scene.node.token)
    try:
        scene.start_agent()
        scene.work(1.5)

        # The collector stores the batch; the agent dies before it hears so.
        proxy.armed.set()
        wait_for(proxy.held.is_set, 10, "an export in flight")
        scene.node.kill()
        scene.work(1.5)  # the engine keeps counting while the agent is down

        scene.node.start()
        scene.work(2.0)
        scene.finish()

        evidence = assert_nothing_lost(scene)
    finally:
        scene.close()
        proxy.close()

    assert proxy.held_status == 200
    # The restarted agent resent what the killed one had sent; it was counted once (above).
    assert evidence["spool"].get("dropped_disk_full", 0) == 0


def test_postgresql_restarted_under_load(tmp_path, sqlite_store):
    reason = private_cluster_unavailable()
    if reason:
        pytest.skip(f"cannot run a private PostgreSQL cluster: {reason}")
    root = Path(tempfile.mkdtemp(prefix="wattledger-pg-"))
    cluster = PrivateCluster(root, free_port()).init()
    cluster.start()
    engine = open_engine(cluster.url)
    runner.upgrade(engine)
    scene = Scene(tmp_path, cluster.url, engine)
    load = LoadNode(scene.collector.url + "/v1/metrics", engine)
    try:
        scene.start_agent()
        load.start()
        scene.work(1.5)

        cluster.stop("immediate")  # a crash, not a polite shutdown
        scene.work(3.0)
        cluster.start()
        wait_for(lambda: scene.node.spool_counters().get("pending") == 0, 30, "the replay")
        scene.work(1.0)
        scene.finish()
        load.stop()

        evidence = assert_nothing_lost(scene)
        assert load.stored() == load.sent_total
    finally:
        load.stop()
        scene.close()
        engine.dispose()
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)

    assert evidence["spool"]["spooled"] >= 2
    assert load.refused >= 1  # the load saw the outage too


def test_the_spool_disk_fills_up_during_an_outage(tmp_path, sqlite_store):
    """The agent's state directory is a 1 MiB tmpfs, filled by another file while the collector
    is away: the spool drops batches (counted), and totals still come out exact."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root; test_spool covers SQLITE_FULL in-process")
    url, engine = sqlite_store
    scene = Scene(tmp_path, url, engine, spool_max_mb=64)
    state = scene.node.state_dir
    state.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(state)], capture_output=True
    )
    if mounted.returncode != 0:
        scene.close()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        scene.start_agent()
        scene.work(1.5)

        scene.collector.kill()
        filler = state / "filler"
        _fill(filler)
        scene.work(4.0)
        filler.unlink()
        scene.collector.start()
        wait_for(lambda: scene.node.spool_counters().get("pending") == 0, 30, "the replay")
        scene.work(1.0)
        scene.finish()

        evidence = assert_nothing_lost(scene)
    finally:
        scene.close()
        subprocess.run(["umount", "-l", str(state)], capture_output=True)

    assert evidence["spool"]["dropped_disk_full"] >= 1, evidence["spool"]
    assert "this batch is dropped" in (tmp_path / "agent.log").read_text()


def _fill(path: Path) -> None:
    """Write until the file system says it is full."""
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


class LoadNode:
    """Another node's exports, sent without pause: each batch is retried until it is taken."""

    def __init__(self, url: str, engine) -> None:
        from wattledger.collector.auth import create_token

        self.url = url
        self.engine = engine
        self.token = create_token(engine, "load", ["load-node"])
        self.sent_total = 0.0
        self.refused = 0
        self._stop = False
        self._thread = None

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from otlp_build import T0, S, energy_request, post

        t, total = 0, 0.0
        while not self._stop:
            t, total = t + 1, total + 250.0
            body = energy_request(
                "load-node", [(f"GPU-load-{i}", T0 + t * S, total) for i in range(50)]
            ).SerializeToString()
            while not self._stop:
                try:
                    status, _ = post(self.url, body, token=self.token, timeout=10)
                except OSError:
                    status = 0
                if status == 200:
                    self.sent_total = total * 50
                    break
                self.refused += 1
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(30)

    def stored(self) -> float:
        from sqlalchemy import func, select

        from wattledger.collector import schema as s

        with self.engine.connect() as conn:
            return conn.execute(
                select(func.sum(s.deltas.c.value))
                .join(s.series, s.series.c.id == s.deltas.c.series_id)
                .where(s.series.c.node == "load-node")
            ).scalar()
