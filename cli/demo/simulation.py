"""Run the simulated fleet through the real path, on one simulated clock.

Per node: a fake NVML whose GPUs draw what :mod:`.power` says, the node's engine pages served
over HTTP on 127.0.0.1, and the real :class:`~wattledger.agent.runner.Agent` with its own
:class:`~wattledger.agent.gpu.monitor.GpuMonitor`, counter ledger and OTLP sink. All four agents
export to one real :class:`~wattledger.collector.server.CollectorServer` writing the demo's SQLite
file. One clock drives everything: the fake's energy counters, the pages' counters and the
agents' ticks, so a simulated day runs in seconds and every timestamp stored is a simulated one.

The run also keeps the simulation's own ground truth (the energy each GPU's power curve holds over
the window, the tokens each engine counted), so the store can be checked against it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from wattledger import contract as c
from wattledger.agent.endpoints import ScrapedEndpoint
from wattledger.agent.gpu.fake import FakeNvml, fake_from_spec
from wattledger.agent.gpu.monitor import GpuMonitor
from wattledger.agent.gpu.nvml import open_nvml
from wattledger.agent.ledger import CounterLedger
from wattledger.agent.runner import Agent, Intervals
from wattledger.agent.sinks import OtlpSink
from wattledger.agent.telemetry import AgentTelemetry, build_resource
from wattledger.cli.demo.figures import BOARDS
from wattledger.cli.demo.fleet import ENGINE_UPTIME_BEFORE_S, FLEET, Node
from wattledger.cli.demo.pages import registry_for
from wattledger.cli.demo.power import power_the_node, unique_uuids
from wattledger.cli.demo.serving import PageServer
from wattledger.cli.demo.traffic import Counts, counted, worker_counts
from wattledger.collector.server import METRICS_PATH, CollectorServer, serve_in_thread
from wattledger.config import EndpointConfig
from wattledger.errors import ConfigError

logger = logging.getLogger(__name__)

NS = 1_000_000_000
HOUR_S = 3600
CLUSTER = "wattledger-demo"
SITE = "simulated-dc"
TAGS = {"fleet": "simulated"}
BOOT_ID = "simulated"


class SimClock:
    """Simulated Unix time, moved only by the run loop."""

    def __init__(self, t_s: int) -> None:
        self.t_s = t_s

    def seconds(self) -> float:
        return float(self.t_s)

    def ns(self) -> int:
        return self.t_s * NS


@dataclass(frozen=True)
class Window:
    """The simulated span: whole hours from ``since_s``, sampled every ``step_s``."""

    since_s: int
    hours: int
    step_s: int
    export_every: int = 1

    def __post_init__(self) -> None:
        if self.since_s % HOUR_S:
            raise ConfigError(f"the simulated window must start on the hour, not at {self.since_s}")
        if self.step_s <= 0 or HOUR_S % self.step_s:
            raise ConfigError(
                f"--step-s {self.step_s}: give a step that divides an hour evenly "
                "(e.g. 60, 120, 300)"
            )
        if self.export_every < 1:
            raise ConfigError(f"export every {self.export_every} steps: give 1 or more")

    @property
    def until_s(self) -> int:
        return self.since_s + self.hours * HOUR_S

    @property
    def steps(self) -> int:
        return self.hours * HOUR_S // self.step_s


@dataclass
class GroundTruth:
    """What the simulation did, to hold the store against."""

    joules_by_gpu: dict[str, float] = field(default_factory=dict)
    node_of_gpu: dict[str, str] = field(default_factory=dict)
    tokens: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    by_endpoint: dict[str, Counts] = field(default_factory=dict)

    @property
    def joules(self) -> float:
        return sum(self.joules_by_gpu.values())


@dataclass
class RunResult:
    window: Window
    truth: GroundTruth
    wall_s: float
    exports_ok: int
    exports_failed: int
    collector_stats: dict[str, int]


@dataclass
class _NodeRun:
    node: Node
    fake: FakeNvml
    monitor: GpuMonitor
    agent: Agent
    telemetry: AgentTelemetry
    sink: OtlpSink
    servers: list[PageServer]


def run(
    engine: Engine,
    window: Window,
    *,
    progress: Callable[[int, int], None] | None = None,
    fleet: tuple[Node, ...] = FLEET,
) -> RunResult:
    """Simulate ``window`` for ``fleet`` into ``engine`` (a migrated database)."""
    clock = SimClock(window.since_s)
    started_s = window.since_s - ENGINE_UPTIME_BEFORE_S
    collector = CollectorServer(("127.0.0.1", 0), engine)
    serve_in_thread(collector)
    runs: list[_NodeRun] = []
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="wattledger-demo-") as state_dir:
            for number, node in enumerate(fleet, start=1):
                runs.append(
                    _start_node(
                        node, number, clock, started_s, window, collector.url, Path(state_dir)
                    )
                )
            _loop(runs, clock, window, progress)
            for node_run in runs:
                node_run.agent.export(clock.ns())
    finally:
        for node_run in runs:
            _stop_node(node_run)
        collector.stop()

    truth = _ground_truth(runs, window, started_s)
    return RunResult(
        window=window,
        truth=truth,
        wall_s=time.monotonic() - began,
        exports_ok=sum(r.agent.exports_ok for r in runs),
        exports_failed=sum(r.agent.exports_failed for r in runs),
        collector_stats=dict(collector.stats),
    )


def _start_node(
    node: Node,
    number: int,
    clock: SimClock,
    started_s: int,
    window: Window,
    collector_url: str,
    state_dir: Path,
) -> _NodeRun:
    fake = fake_from_spec(node.spec, clock=clock.seconds)
    unique_uuids(fake, number)
    power_the_node(fake, node, BOARDS[node.sku])
    uuids = [gpu.uuid for gpu in fake.gpus]

    servers: list[PageServer] = []
    endpoints: list[ScrapedEndpoint] = []
    for deployment in node.deployments:
        for worker in deployment.workers:
            registry = registry_for(
                node, deployment, worker, started_s=started_s, clock=clock.seconds
            )
            server = PageServer(registry, worker.path).start()
            servers.append(server)
            config = EndpointConfig(
                name=worker.endpoint, url=server.url, gpus=[uuids[index] for index in worker.gpus]
            )
            endpoints.append(ScrapedEndpoint(config))

    ledger = CounterLedger(state_dir / node.name / "ledger.json")
    monitor = GpuMonitor(open_nvml(fake), ledger, boot_id=BOOT_ID)
    sink = OtlpSink(collector_url + METRICS_PATH)
    resource = build_resource(node.name, cluster=CLUSTER, site=SITE, tags=TAGS)
    telemetry = AgentTelemetry(resource, sink)
    step = float(window.step_s)
    agent = Agent(
        telemetry=telemetry,
        ledger=ledger,
        gpus=monitor,
        endpoints=endpoints,
        intervals=Intervals(sample_s=step, scrape_s=step, export_s=step * window.export_every),
        clock=clock.ns,
    )
    return _NodeRun(node, fake, monitor, agent, telemetry, sink, servers)


def _loop(
    runs: list[_NodeRun],
    clock: SimClock,
    window: Window,
    progress: Callable[[int, int], None] | None,
) -> None:
    for step in range(window.steps + 1):
        clock.t_s = window.since_s + step * window.step_s
        for node_run in runs:
            node_run.agent.tick(clock.ns())
        if progress is not None:
            progress(step, window.steps)


def _stop_node(node_run: _NodeRun) -> None:
    node_run.telemetry.shutdown()
    node_run.sink.close()
    node_run.monitor.close()
    for server in node_run.servers:
        server.stop()


# Limitation: a Grace module's CPU and memory draw (exported apart as module energy) is in no
# cost: reports price GPU energy only, so the GB200 node's Grace power is left out.
def _ground_truth(runs: list[_NodeRun], window: Window, started_s: int) -> GroundTruth:
    truth = GroundTruth()
    for node_run in runs:
        node = node_run.node
        for gpu in node_run.fake.gpus:
            truth.joules_by_gpu[gpu.uuid] = gpu.power.joules(window.since_s, window.until_s)
            truth.node_of_gpu[gpu.uuid] = node.name
        for deployment in node.deployments:
            for worker in deployment.workers:
                first = worker_counts(node, deployment, worker, started_s, window.since_s)
                last = worker_counts(node, deployment, worker, started_s, window.until_s)
                grown = [end - begin for (_, begin), (_, end) in zip(first, last, strict=True)]
                total = counted(worker.role, _sum(grown))
                truth.by_endpoint[worker.endpoint] = total
                truth.tokens[(deployment.model, c.TOKEN_INPUT)] += total.input
                truth.tokens[(deployment.model, c.TOKEN_INPUT_CACHED)] += total.cached
                truth.tokens[(deployment.model, c.TOKEN_OUTPUT)] += total.output
    return truth


def _sum(counts: list[Counts]) -> Counts:
    fields = ("input", "cached", "output", "requests")
    return Counts(*(sum(getattr(n, name) for n in counts) for name in fields))
