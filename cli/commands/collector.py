"""``wattledger collector serve``: receive OTLP from agents and store it."""

from __future__ import annotations

import ipaddress
import logging
import signal
import ssl
import threading

import click

from wattledger.cli.app import App, db_option, pass_app
from wattledger.collector import otlp
from wattledger.collector.auth import TokenAuthenticator, list_tokens
from wattledger.collector.db import describe
from wattledger.collector.server import CollectorServer, open_access
from wattledger.config import CollectorConfig, parse_listen
from wattledger.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_MAX_SERIES_PER_NODE = 10_000


@click.group("collector")
def collector_group() -> None:
    """Run the collector that agents export to."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@collector_group.command("serve")
@click.option(
    "--listen",
    help="HOST:PORT to listen on. Default: collector.listen in the config, else 127.0.0.1:4318.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Accept batches without a bearer token (loopback only, unless "
    "collector.allow_unauthenticated_remote is set).",
)
@click.option(
    "--tls-cert",
    metavar="FILE",
    help="Serve HTTPS with this certificate (PEM). Default: collector.tls_cert.",
)
@click.option(
    "--tls-key", metavar="FILE", help="Private key of --tls-cert (PEM). Default: collector.tls_key."
)
@click.option(
    "--max-series-per-node",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_SERIES_PER_NODE,
    show_default=True,
    help="Refuse batches that would give one node more series than this.",
)
@db_option
@pass_app
def serve_command(
    app: App,
    listen: str | None,
    no_auth: bool,
    tls_cert: str | None,
    tls_key: str | None,
    max_series_per_node: int,
    db_url: str | None,
) -> None:
    """Accept OTLP/HTTP metrics on /v1/metrics (protobuf or JSON, gzip) and store them.

    Every request needs a bearer token made with 'wattledger token create'. Answers /healthz
    (the process is up) and /readyz (database reachable, schema current). Refuses to start on a
    database whose schema is behind. Stops cleanly on SIGTERM or Ctrl-C: requests in flight are
    finished, nothing is half-written.

    \b
    Example:
      wattledger collector serve --listen 0.0.0.0:4318 \\
          --db postgresql://wattledger@db/wattledger --tls-cert cert.pem --tls-key key.pem
    """
    settings = app.config.collector
    address = parse_listen(listen, "--listen") if listen else parse_listen(settings.listen)
    _refuse_open_remote(address[0], no_auth, settings)
    tls = _tls_context(tls_cert or settings.tls_cert, tls_key or settings.tls_key)
    engine = app.engine(db_url or settings.db)
    limits = otlp.Limits(
        max_body_bytes=int(settings.max_body_mb * 1024 * 1024), max_points=settings.max_points
    )

    authenticate = open_access if no_auth else TokenAuthenticator(engine)
    if not no_auth and not any(t.revoked_ns is None for t in list_tokens(engine)):
        logger.warning(
            "no active tokens: every batch is refused until one is made with "
            "'wattledger token create NAME'"
        )
    try:
        server = CollectorServer(
            address,
            engine,
            limits=limits,
            authenticate=authenticate,
            readiness=_readiness(engine),
            tls=tls,
            max_series_per_node=max_series_per_node,
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror}") from None
    stop = threading.Event()

    def _on_signal(signum, _frame):
        logger.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    thread = threading.Thread(target=server.serve_forever, name="collector", daemon=True)
    thread.start()
    access = "without authentication" if no_auth else "with bearer tokens"
    click.echo(
        f"wattledger collector listening on {server.url}/v1/metrics {access}, "
        f"storing in {describe(engine)}",
        err=True,
    )
    _notify("READY=1")
    while not stop.wait(5):
        _notify("WATCHDOG=1")
    _notify("STOPPING=1")
    server.stop()
    click.echo("collector stopped", err=True)


def _refuse_open_remote(host: str, no_auth: bool, settings: CollectorConfig) -> None:
    if no_auth and not is_loopback(host) and not settings.allow_unauthenticated_remote:
        raise ConfigError(
            f"refusing to listen on {host} without authentication: anyone who can reach it could "
            "write costs; drop --no-auth and give agents tokens, listen on 127.0.0.1, or set "
            "collector.allow_unauthenticated_remote = true"
        )


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not cert or not key:
        raise ConfigError(
            "give both --tls-cert and --tls-key (collector.tls_cert, collector.tls_key)"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(f"cannot load TLS certificate {cert} with key {key}: {reason}") from None
    return context


def _readiness(engine):
    def check() -> str | None:
        from sqlalchemy.exc import SQLAlchemyError

        from wattledger.migrations.runner import current_revision, head_revision

        try:
            current = current_revision(engine)
        except SQLAlchemyError as exc:
            return f"database unreachable: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}"
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
