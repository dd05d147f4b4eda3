"""The collector's HTTP server: OTLP/HTTP on ``/v1/metrics``, plus health and readiness.

Built on the standard library's threading HTTP server: one thread per connection. Requests that
arrive together are stored in one database transaction (see the ingest). On shutdown the server
stops accepting, then waits for requests in flight to finish, so a batch is either committed or
refused, never half-written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, SQLAlchemyError

from wattledger.collector import otlp
from wattledger.collector.auth import Caller, Unauthorized
from wattledger.collector.ingest import Ingestor, LimitExceeded
from wattledger.errors import WattledgerError

logger = logging.getLogger(__name__)

METRICS_PATH = "/v1/metrics"


Authenticator = Callable[[str | None], Caller]


def open_access(_header: str | None) -> Caller:
    return Caller(None, None)


class CollectorServer(ThreadingHTTPServer):
    """An HTTP server bound to one store."""

    daemon_threads = False
    block_on_close = True
    # A fleet's agents export on the same schedule, so hundreds connect within a moment. The
    # standard library listens with a backlog of 5; past it, connections are dropped or reset.
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        engine: Engine,
        *,
        limits: otlp.Limits | None = None,
        authenticate: Authenticator = open_access,
        readiness: Callable[[], str | None] | None = None,
        tls: ssl.SSLContext | None = None,
        max_series_per_node: int | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        if tls is not None:
            # The handshake runs on the request's own thread (first read), not in accept().
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if tls is not None else "http"
        self.ingestor = Ingestor(engine, max_series_per_node=max_series_per_node)
        self.limits = limits or otlp.Limits()
        self.authenticate = authenticate
        self.readiness = readiness
        self.stats = {"requests": 0, "points": 0, "rejected": 0, "errors": 0}
        self._stats_lock = threading.Lock()
        self._connections: dict[_Handler, bool] = {}
        self._connections_lock = threading.Lock()
        self.closing = False

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish, close idle connections, then return.

        Safe to call more than once.
        """
        if self.closing:
            return
        self.closing = True
        self.shutdown()
        with self._connections_lock:
            idle = [handler for handler, busy in self._connections.items() if not busy]
        for handler in idle:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RD)
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside a request (a TLS handshake, a reset): one line."""
        logger.info(
            "connection from %s failed: %s", client_address[0], _one_line(sys.exc_info()[1])
        )

    def track(self, handler: _Handler, *, busy: bool | None) -> None:
        with self._connections_lock:
            if busy is None:
                self._connections.pop(handler, None)
            else:
                self._connections[handler] = busy

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def count(self, **increments: int) -> None:
        with self._stats_lock:
            for key, value in increments.items():
                self.stats[key] += value


class _Handler(BaseHTTPRequestHandler):
    server: CollectorServer
    protocol_version = "HTTP/1.1"
    server_version = "wattledger-collector"
    # An idle keep-alive connection is dropped after this long.
    timeout = 60

    def setup(self) -> None:
        super().setup()
        self.server.track(self, busy=False)

    def finish(self) -> None:
        self.server.track(self, busy=None)
        super().finish()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            if self.server.closing:
                self.close_connection = True
            self.server.track(self, busy=False)

    def parse_request(self) -> bool:
        # A request line has arrived: this connection is busy until it is answered.
        self.server.track(self, busy=True)
        return super().parse_request()

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.split("?")[0] != METRICS_PATH:
            self._reply_text(
                HTTPStatus.NOT_FOUND, f"no such path; OTLP metrics go to {METRICS_PATH}"
            )
            return
        try:
            caller = self.server.authenticate(self.headers.get("Authorization"))
        except Unauthorized as exc:
            self._drain()
            self._reply_text(
                HTTPStatus.UNAUTHORIZED, str(exc), extra={"WWW-Authenticate": "Bearer"}
            )
            return

        try:
            body = self._read_body()
            decoded = otlp.decode(
                body,
                self.headers.get("Content-Type"),
                self.headers.get("Content-Encoding"),
                self.server.limits,
            )
            result = self.server.ingestor.ingest(
                decoded.points, token_id=caller.token_id, allowed_nodes=caller.allowed_nodes
            )
        except otlp.RequestError as exc:
            self.server.count(requests=1, errors=1)
            self._reply_text(HTTPStatus(exc.status), str(exc))
            return
        except LimitExceeded as exc:
            self.server.count(requests=1, errors=1)
            self._reply_text(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except DataError as exc:
            # A value the checks let through but the database refuses: sending it again
            # cannot help, so the sender is told to drop the batch rather than retry it.
            logger.warning("batch refused by the database: %s", _one_line(exc))
            self.server.count(requests=1, errors=1)
            self._reply_text(
                HTTPStatus.BAD_REQUEST, f"the store cannot take this batch: {_one_line(exc)}"
            )
            return
        except (SQLAlchemyError, WattledgerError) as exc:
            logger.warning("batch not stored: %s", _one_line(exc))
            self.server.count(requests=1, errors=1)
            self._reply_text(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "database unavailable; retry later",
                extra={"Retry-After": "5"},
            )
            return
        except Exception:
            logger.exception("batch not stored: unexpected error")
            self.server.count(requests=1, errors=1)
            self._reply_text(
                HTTPStatus.INTERNAL_SERVER_ERROR, "the collector failed on this batch; see its log"
            )
            return

        rejected = result.rejected + len(decoded.rejected)
        reasons = (decoded.rejected + result.rejections)[:3]
        self.server.count(requests=1, points=result.received, rejected=rejected)
        if rejected:
            logger.info(
                "rejected %d of %d points: %s", rejected, result.received, "; ".join(reasons)
            )
        payload, media = otlp.response_body(
            rejected, "; ".join(reasons), self.headers.get("Content-Type")
        )
        self._reply(HTTPStatus.OK, payload, media)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?")[0]
        if path == "/healthz":
            self._reply_text(HTTPStatus.OK, "ok")
        elif path == "/readyz":
            problem = self.server.readiness() if self.server.readiness else None
            if problem:
                self._reply_text(HTTPStatus.SERVICE_UNAVAILABLE, problem)
            else:
                self._reply_text(HTTPStatus.OK, "ready")
        elif path == "/stats":
            with self.server._stats_lock:
                body = json.dumps(self.server.stats).encode()
            self._reply(HTTPStatus.OK, body, "application/json")
        else:
            self._reply_text(HTTPStatus.NOT_FOUND, "no such path")

    def _read_body(self) -> bytes:
        length = self._content_length()
        if length > self.server.limits.max_body_bytes:
            self.close_connection = True
            raise otlp.RequestError(
                413, f"body of {length} bytes exceeds {self.server.limits.max_body_bytes} bytes"
            )
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise self._unframed(
                408, f"timed out after {self.timeout:g} s waiting for a body of {length} bytes"
            ) from None
        if len(body) < length:
            raise self._unframed(
                400, f"body ended after {len(body)} of {length} bytes (Content-Length)"
            )
        return body

    def _content_length(self) -> int:
        """The body's declared length; any doubt about where the body ends closes the connection.

        Differing duplicates are refused (RFC 9112, section 6.3): a proxy in front may have taken
        the other one, and then the next request on this connection would be misread.
        """
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            raise otlp.RequestError(411, "Content-Length is required")
        if len(values) > 1:
            raise self._unframed(400, "conflicting Content-Length headers")
        try:
            length = int(values.pop())
        except ValueError:
            raise self._unframed(400, "Content-Length is not a number") from None
        if length < 0:
            raise self._unframed(400, "Content-Length is negative")
        return length

    def _unframed(self, status: int, reason: str) -> otlp.RequestError:
        """A body whose end is unknown: log one line, close the connection, answer ``status``."""
        logger.info("request from %s refused: %s", self.address_string(), reason)
        self.close_connection = True
        return otlp.RequestError(status, reason)

    def _drain(self) -> None:
        try:
            length = self._content_length()
        except otlp.RequestError:
            length = 0
        if 0 < length <= self.server.limits.max_body_bytes:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _reply_text(
        self, status: HTTPStatus, message: str, extra: dict[str, str] | None = None
    ) -> None:
        self._reply(status, (message + "\n").encode(), "text/plain; charset=utf-8", extra)

    def _reply(
        self, status: HTTPStatus, body: bytes, media: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("%s %s", self.address_string(), format % args)


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def serve_in_thread(server: CollectorServer) -> threading.Thread:
    """Run ``server`` on a background thread (tests, the demo, in-process use)."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="collector", daemon=True
    )
    thread.start()
    return thread
