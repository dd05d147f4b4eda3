"""Engine metrics pages served over HTTP on 127.0.0.1, one port per worker, as engines do.

The agent scrapes them with its own HTTP client. The body is ``generate_latest`` of the worker's
registry: Prometheus text format 0.0.4.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

logger = logging.getLogger(__name__)

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


class PageServer(ThreadingHTTPServer):
    """Serves one registry at ``path`` on an ephemeral loopback port."""

    daemon_threads = True

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.registry = registry
        self.page_path = path
        self._thread = threading.Thread(target=self.serve_forever, name=f"page{path}", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{self.page_path}"

    def start(self) -> PageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _PageHandler(BaseHTTPRequestHandler):
    server: PageServer

    # Limitation: the page is always Prometheus text 0.0.4. Engines built on prometheus_client
    # answer an Accept header that lists OpenMetrics with OpenMetrics instead.
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.split("?")[0] != self.server.page_path:
            self._reply(HTTPStatus.NOT_FOUND, b"no such path\n", "text/plain")
            return
        self._reply(HTTPStatus.OK, generate_latest(self.server.registry), TEXT_FORMAT)

    def _reply(self, status: HTTPStatus, body: bytes, media: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("%s %s", self.address_string(), format % args)
