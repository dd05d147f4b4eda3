"""Real wattledger processes on loopback for tests: a collector, an agent, a fake engine.

Each process is started with the installed package (``python -c ...main()``), on 127.0.0.1 and
an ephemeral port, with its output in a log file next to the test's other files.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAIN = "from wattledger.cli.main import main; main()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wattledger(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, **(env or {})}
    handle = open(log, "ab")  # noqa: SIM115 - closed when the process is reaped
    return subprocess.Popen(
        [sys.executable, "-c", MAIN, *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=environment,
    )


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Collector:
    """``wattledger collector serve`` as a child process."""

    def __init__(
        self, db_url: str, log: Path, *, port: int | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.db_url = db_url
        self.log = log
        self.port = port or free_port()
        self.args = args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready: bool = True) -> Collector:
        self.proc = wattledger(
            [
                "collector",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--db",
                self.db_url,
                *self.args,
            ],
            self.log,
        )
        if ready:
            wait_for(lambda: get(self.url + "/healthz")[0] == 200, 30, "the collector to listen")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


class FakeEngine:
    """A vLLM-style /metrics page whose counters the test sets, served on loopback."""

    def __init__(self, model: str = "llama") -> None:
        self.model = model
        self.prompt = 1000.0
        self.generation = 500.0
        self.requests = 10.0
        self.served: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = engine.page().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def add(self, prompt: float, generation: float, requests: float = 0.0) -> None:
        with self._lock:
            self.prompt += prompt
            self.generation += generation
            self.requests += requests

    def page(self) -> str:
        with self._lock:
            self.served.append((self.prompt, self.generation))
            labels = f'engine="0",model_name="{self.model}"'
            return "\n".join(
                [
                    "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
                    "# TYPE vllm:prompt_tokens_total counter",
                    f"vllm:prompt_tokens_total{{{labels}}} {self.prompt}",
                    "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
                    "# TYPE vllm:generation_tokens_total counter",
                    f"vllm:generation_tokens_total{{{labels}}} {self.generation}",
                    "# HELP vllm:request_success_total Count of successfully processed requests.",
                    "# TYPE vllm:request_success_total counter",
                    f'vllm:request_success_total{{{labels},finished_reason="stop"}} '
                    f"{self.requests}",
                    "",
                ]
            )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
