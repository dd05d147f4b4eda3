"""``wattledger collector serve``: receive OTLP from agents and store it."""

from __future__ import annotations

import logging
import signal
import threading

import click

from wattledger.cli.app import App, db_option, pass_app
from wattledger.collector import otlp
from wattledger.collector.db import describe
from wattledger.collector.server import CollectorServer
from wattledger.errors import ConfigError

logger = logging.getLogger(__name__)


@click.group("collector")
def collector_group() -> None:
    """Run the collector that agents export to."""


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen {listen!r} must be HOST:PORT, e.g. 127.0.0.1:4318")
    return host.strip("[]") or "0.0.0.0", int(port)


@collector_group.command("serve")
@click.option("--listen", help="HOST:PORT to listen on. Default: collector.listen in the config, else 127.0.0.1:4318.")
@db_option
@pass_app
def serve_command(app: App, listen: str | None, db_url: str | None) -> None:
    """Accept OTLP/HTTP metrics on /v1/metrics (protobuf or JSON, gzip) and store them.

    Answers /healthz and /readyz. Stops cleanly on SIGTERM or Ctrl-C: requests in flight are
    finished, nothing is half-written.

    \b
    Example:
      wattledger collector serve --listen 127.0.0.1:4318 --db postgresql://wattledger@db/wattledger
    """
    settings = app.config.collector
    engine = app.engine(db_url or settings.db)
    address = parse_listen(listen or settings.listen)
    limits = otlp.Limits(max_body_bytes=int(settings.max_body_mb * 1024 * 1024), max_points=settings.max_points)

    server = CollectorServer(address, engine, limits=limits, readiness=_readiness(engine))
    stop = threading.Event()

    def _on_signal(signum, _frame):
        logger.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    thread = threading.Thread(target=server.serve_forever, name="collector", daemon=True)
    thread.start()
    click.echo(f"wattledger collector listening on {server.url}/v1/metrics, storing in {describe(engine)}", err=True)
    _notify("READY=1")
    while not stop.wait(5):
        _notify("WATCHDOG=1")
    _notify("STOPPING=1")
    server.stop()
    click.echo("collector stopped", err=True)


def _readiness(engine):
    def check() -> str | None:
        from sqlalchemy.exc import SQLAlchemyError

        from wattledger.migrations.runner import current_revision, head_revision

        try:
            current = current_revision(engine)
        except SQLAlchemyError as exc:
            return f"database unreachable: {str(exc.orig or exc).splitlines()[0]}"
        if current != head_revision():
            return f"schema {current} is not current ({head_revision()}); run wattledger db upgrade"
        return None

    return check


def _notify(state: str) -> None:
    """Tell systemd (Type=notify) how the service is doing; a no-op outside systemd."""
    try:
        import sdnotify
    except ImportError:  # pragma: no cover - sdnotify is a dependency
        return
    sdnotify.SystemdNotifier().notify(state)
