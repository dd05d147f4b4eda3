"""``wattledger agent``: run the per-node agent, and look at what it reads."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from wattledger.agent.endpoints import ScrapedEndpoint
from wattledger.agent.ledger import CounterLedger
from wattledger.agent.runner import Agent, Intervals
from wattledger.agent.telemetry import AgentTelemetry, build_resource
from wattledger.cli.app import App, pass_app
from wattledger.cli.probe import discover_command, probe_command
from wattledger.config import AgentConfig
from wattledger.errors import ConfigError, DatabaseError, WattledgerError

logger = logging.getLogger(__name__)


@click.group("agent")
def agent_group() -> None:
    """Run the per-node agent, or probe what it reads from GPUs and engines."""


agent_group.add_command(probe_command)
agent_group.add_command(discover_command)


@agent_group.command("run")
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="Write straight into this database (single node, no collector). Default: agent.db.",
)
@click.option(
    "--collector",
    "collector_url",
    metavar="URL",
    help="Export OTLP/HTTP to this collector, e.g. http://collector:4318/v1/metrics. "
    "Default: agent.collector_url.",
)
@click.option(
    "--fake-gpus",
    metavar="SPEC",
    help="Sample simulated GPUs instead of NVML, e.g. 8xH100 or 4xGB200 (for trials).",
)
@click.option("--no-gpus", is_flag=True, help="Scrape engines only; do not open NVML.")
@click.option("--once", is_flag=True, help="Sample, scrape and export once, then exit.")
@pass_app
def run_command(
    app: App,
    db_url: str | None,
    collector_url: str | None,
    fake_gpus: str | None,
    no_gpus: bool,
    once: bool,
) -> None:
    """Sample this node's GPUs and scrape its serving engines; export what they say.

    Energy comes from the NVML energy counter (or integrated power where there is none), tokens
    and phase time from each endpoint in the config's [[agent.endpoints]]. Counter baselines are
    kept in agent.state_dir, so a restart loses nothing. Stops cleanly on SIGTERM or Ctrl-C.

    \b
    Examples:
      wattledger agent run --db sqlite:///var/lib/wattledger/wattledger.db
      wattledger --config /etc/wattledger/agent.toml agent run
      wattledger agent run --fake-gpus 8xH100 --db sqlite:///tmp/trial.db --once
    """
    settings = app.config.agent
    if not app.verbose:
        logging.getLogger("wattledger").setLevel(logging.INFO)

    sink = _open_sink(app, settings, db_url, collector_url)
    ledger = CounterLedger(Path(settings.state_dir) / "ledger.json")
    monitor = None if no_gpus else _open_gpus(settings, ledger, fake_gpus)
    endpoints = [
        ScrapedEndpoint(endpoint, gpu_processes=monitor.gpu_processes if monitor else None)
        for endpoint in settings.endpoints
    ]
    if monitor is None and not endpoints:
        raise ConfigError(
            "nothing to read: no GPUs (--no-gpus) and no [[agent.endpoints]] in the config"
        )

    resource = build_resource(
        settings.node, cluster=settings.cluster, site=settings.site, tags=settings.tags
    )
    telemetry = AgentTelemetry(resource, sink)
    agent = Agent(
        telemetry=telemetry,
        ledger=ledger,
        gpus=monitor,
        endpoints=endpoints,
        intervals=Intervals(
            settings.sample_interval_s, settings.scrape_interval_s, settings.export_interval_s
        ),
    )

    try:
        if once:
            _tick_once(agent, _target(settings, db_url, collector_url))
            return
        gpus = "no GPUs" if monitor is None else "simulated GPUs" if fake_gpus else "GPUs via NVML"
        target = _target(settings, db_url, collector_url)
        _run_until_signalled(agent, settings, len(endpoints), gpus, target)
    finally:
        telemetry.shutdown()
        sink.close()
        if monitor is not None:
            monitor.close()


def _tick_once(agent: Agent, target: str) -> None:
    """One cycle; an export that did not reach its target ends the command with status 1."""
    reasons = _LastProblem()
    watched = logging.getLogger("wattledger.agent")
    watched.addHandler(reasons)
    try:
        agent.tick()
    finally:
        watched.removeHandler(reasons)
    click.echo(f"exported once: {agent.exports_ok} ok, {agent.exports_failed} failed", err=True)
    if agent.exports_failed and not agent.exports_ok:
        why = f": {reasons.message}" if reasons.message else ""
        raise WattledgerError(f"the export to {target} failed{why}")


class _LastProblem(logging.Handler):
    """Keeps the last warning or error logged, as the one-line reason of a failed export."""

    # Limitation: the reason is what wattledger's agent logged last in the cycle ("collector at
    # URL did not take the batch"); the exporter's own cause (connection refused, a TLS error) is
    # in the log lines above it, not in the one-line error.

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip()
        self.message = text.splitlines()[0] if text else self.message


def _target(settings: AgentConfig, db_url: str | None, collector_url: str | None) -> str:
    """Where the agent exports, for messages, with any database password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    collector = collector_url or settings.collector_url
    if collector:
        return collector
    database = db_url or settings.db
    if not database:
        return "the sink"
    try:
        return make_url(database).render_as_string(hide_password=True)
    except ArgumentError:
        return database


def _open_sink(app: App, settings: AgentConfig, db_url: str | None, collector_url: str | None):
    db_url = db_url or settings.db
    collector_url = collector_url or settings.collector_url
    if db_url and collector_url:
        raise ConfigError(
            "give --db or --collector, not both (check agent.db and agent.collector_url)"
        )
    if collector_url:
        from wattledger.agent.sinks import OtlpSink
        from wattledger.agent.spool import Spool

        spool = None
        if settings.spool_max_mb > 0:
            spool_path = Path(settings.state_dir) / "spool.sqlite"
            spool = Spool(spool_path, max_bytes=int(settings.spool_max_mb * 1024 * 1024))
        # The SDK exporter retries within its timeout; half an export interval leaves the loop
        # time to sample and to spool the batch for the next try.
        timeout_s = min(10.0, settings.export_interval_s / 2)
        if settings.ca_file and not Path(settings.ca_file).is_file():
            raise ConfigError(
                f"agent.ca_file {settings.ca_file} does not exist; give the CA bundle's path"
            )
        return OtlpSink(
            collector_url,
            token=_read_token(settings.token_file),
            spool=spool,
            timeout_s=timeout_s,
            certificate_file=settings.ca_file,
        )
    if db_url:
        from wattledger.agent.sinks import DatabaseSink

        return DatabaseSink(_single_node_store(app, db_url))
    raise ConfigError(
        "nowhere to send data: give --collector URL (or agent.collector_url) for a fleet, "
        "or --db URL (or agent.db) for a single node"
    )


def _single_node_store(app: App, db_url: str):
    """The agent's own database; an empty SQLite file is given the schema on first use."""
    from wattledger.collector.db import has_tables
    from wattledger.migrations import runner

    engine = app.engine(db_url, require_schema=False, create=True)
    if engine.dialect.name == "sqlite" and not has_tables(engine):
        logger.info("creating the wattledger schema in %s", db_url)
        runner.upgrade(engine)
    return app.engine(db_url)


def _read_token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the agent token file {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(
            f"the agent token file {path} is empty; create a token with 'wattledger token create'"
        )
    return token


def _open_gpus(settings: AgentConfig, ledger: CounterLedger, fake_spec: str | None):
    from wattledger.agent.gpu.fake import fake_from_spec
    from wattledger.agent.gpu.monitor import GpuMonitor
    from wattledger.agent.gpu.nvml import open_nvml

    if not fake_spec:
        return GpuMonitor(open_nvml(None, call_timeout_s=settings.nvml_timeout_s), ledger)

    clock = _CycleClock()
    lib = fake_from_spec(fake_spec, clock=clock, node=settings.node)
    monitor = GpuMonitor(open_nvml(lib, call_timeout_s=settings.nvml_timeout_s), ledger)
    return _FakeTimedMonitor(monitor, clock)


class _CycleClock:
    """The simulated GPUs' clock: Unix seconds of the sampling cycle being read.

    It reads 0 until the first cycle, so the simulated energy counters count from the Unix epoch:
    every agent process on the node sees the same counter values at the same time, as it would
    on real GPUs, and a test can compute the joules of any interval by hand.
    """

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _FakeTimedMonitor:
    """A GPU monitor over simulated GPUs whose clock is set to each cycle's time."""

    def __init__(self, monitor, clock: _CycleClock) -> None:
        self._monitor = monitor
        self._clock = clock

    def poll(self, t_ns: int):
        self._clock.t = t_ns / 1e9
        return self._monitor.poll(t_ns)

    def __getattr__(self, name: str):
        return getattr(self._monitor, name)


def _run_until_signalled(
    agent: Agent, settings: AgentConfig, n_endpoints: int, gpus: str, target: str
) -> None:
    stop = threading.Event()

    def _on_signal(signum, _frame):
        logger.info("signal %d: exporting once more, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    notifier = _notifier()
    logger.info(
        "agent on node %s: %s, %d endpoint(s), exporting every %gs to %s",
        settings.node,
        gpus,
        n_endpoints,
        settings.export_interval_s,
        target,
    )
    notifier("READY=1")
    try:
        agent.run(stop, on_tick=lambda: notifier("WATCHDOG=1"))
    except DatabaseError:
        raise
    finally:
        notifier("STOPPING=1")


def _notifier():
    import sdnotify

    systemd = sdnotify.SystemdNotifier()
    return systemd.notify
