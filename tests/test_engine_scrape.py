"""Scraping real HTTP servers on 127.0.0.1: good pages, empty bodies, slow answers, errors."""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import corpus_file

from wattledger.agent.engines.errors import EmptyPayload, ScrapeError, Unreachable
from wattledger.agent.engines.scrape import EndpointScraper, EndpointSpec, fetch
from wattledger.cli.probe import discover_command, probe_command
from wattledger.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "engines"
VLLM_PAGE = "vllm-v0-aibrix-runtime-qwen2.5-coder-truncated-histogram-excerpt.prom"


class PageServer:
    """A loopback HTTP server whose answers the test sets per path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, dict[str, str], float]] = {}
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(dict(self.headers))
                status, body, headers, delay = server.routes.get(
                    self.path, (404, b"not found\n", {}, 0.0)
                )
                if delay < 0:  # trickle: send the body in small pieces, -delay apart
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for start in range(0, len(body), 200):
                        self.wfile.write(body[start : start + 200])
                        self.wfile.flush()
                        time.sleep(-delay)
                    return
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A client that gave up on a slow answer closes the socket; that is the test's point.
        self.httpd.handle_error = lambda request, address: None
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path, body, status=200, headers=None, delay=0.0) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = (status, data, headers or {"Content-Type": "text/plain"}, delay)
        return self.url(path)


@pytest.fixture
def server():
    pages = PageServer()
    pages.thread.start()
    yield pages
    pages.httpd.shutdown()
    pages.httpd.server_close()


def test_fetch_reads_a_corpus_page_and_asks_for_the_classic_text_format(server):
    body = corpus_file("engines", VLLM_PAGE).read_text()
    url = server.serve("/metrics", body)

    page = fetch(url, 2.0)

    assert page.text == body
    accept = server.requests[-1]["Accept"]
    assert "text/plain;version=0.0.4" in accept
    # prometheus_client answers OpenMetrics whenever it is listed, with escaped sample names.
    assert "openmetrics" not in accept


def test_fetch_decompresses_gzip(server):
    body = corpus_file("engines", "llamacpp-b10380-after-one-request.prom").read_text()
    url = server.serve("/gz", gzip.compress(body.encode()), headers={"Content-Encoding": "gzip"})

    assert fetch(url, 2.0).text == body


def test_empty_body_is_a_failed_scrape(server):
    url = server.serve("/metrics", "")

    with pytest.raises(EmptyPayload, match="empty page: a failed scrape, not zero traffic"):
        fetch(url, 2.0)


def test_slow_answer_beyond_the_timeout_fails_in_time(server):
    url = server.serve("/metrics", "vllm:x 1\n", delay=2.0)

    started = time.monotonic()
    with pytest.raises(ScrapeError, match=r"did not answer within 0.3 s"):
        fetch(url, 0.3)
    assert time.monotonic() - started < 1.5


def test_a_trickling_answer_past_the_deadline_fails(server):
    url = server.serve("/metrics", "llamacpp:prompt_tokens_total 1\n" * 40, delay=-0.15)

    with pytest.raises(ScrapeError, match="did not answer within 0.4 s"):
        fetch(url, 0.4)


def test_http_500_is_one_clear_error(server):
    url = server.serve("/metrics", "boom", status=500)

    with pytest.raises(ScrapeError, match="answered HTTP 500"):
        fetch(url, 2.0)


def test_nothing_listening_is_unreachable():
    with pytest.raises(Unreachable, match="unreachable"):
        fetch("http://127.0.0.1:9/metrics", 1.0)


def test_only_http_urls_are_fetched():
    with pytest.raises(ScrapeError, match="not an http"):
        fetch("file:///etc/passwd", 1.0)


def test_scraper_keeps_the_last_good_reading_through_gaps(server):
    url = server.serve("/metrics", corpus_file("engines", VLLM_PAGE).read_text())
    clock = iter([100.0, 110.0, 120.0, 130.0])
    scraper = EndpointScraper(EndpointSpec("vllm-a", url, timeout_s=2.0), clock=lambda: next(clock))

    first = scraper.scrape()
    server.serve("/metrics", "")
    gap = scraper.scrape()
    server.serve("/metrics", "nope", status=500)
    second_gap = scraper.scrape()

    assert first.models["Qwen/Qwen2.5-Coder-1.5B-Instruct"].input_tokens.value == 148.0
    assert gap is None and second_gap is None
    assert scraper.last_good is first
    health = scraper.health
    assert (health.successes, health.failures, health.consecutive_failures) == (1, 2, 2)
    assert health.last_success_at == 100.0
    assert health.last_attempt_at == 120.0
    assert "answered HTTP 500" in health.last_error

    server.serve("/metrics", corpus_file("engines", VLLM_PAGE).read_text())
    recovered = scraper.scrape()

    assert recovered is not None and scraper.last_good is recovered
    assert (scraper.health.consecutive_failures, scraper.health.last_success_at) == (0, 130.0)


def test_scraper_applies_the_spec_overrides(server):
    url = server.serve(
        "/metrics", (FIXTURES / "tgi-constructed-method-label-double-count.prom").read_text()
    )
    spec = EndpointSpec(
        "tgi", url, engine="tgi", role="decode", model="mistral-7b", gpus=("GPU-1",)
    )

    reading = EndpointScraper(spec).scrape()

    assert (reading.engine, reading.role) == ("tgi", "decode")
    assert list(reading.models) == ["mistral-7b"]


def test_scraper_counts_a_page_of_no_engine_as_a_gap(server):
    url = server.serve("/metrics", "# HELP go_goroutines x\ngo_goroutines 12\n")
    scraper = EndpointScraper(EndpointSpec("x", url))

    assert scraper.scrape() is None
    assert "no metric family of a known engine" in scraper.health.last_error


def test_probe_over_http_prints_json(server):
    url = server.serve(
        "/metrics",
        (FIXTURES / "vllm-constructed-openmetrics-eof.txt").read_text(),
        headers={"Content-Type": "application/openmetrics-text; version=1.0.0"},
    )

    result = CliRunner().invoke(probe_command, ["--url", url, "--format", "json"])

    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["rows"][0]
    assert row == {
        "engine": "vllm",
        "role": "aggregated",
        "model": "Qwen/Qwen3-8B",
        "input_tokens": 18432.0,
        "input_cached_tokens": 4096.0,
        "output_tokens": 6120.0,
        "requests": 48.0,
        "prefill_seconds": 6.75,
        "decode_seconds": 142.5,
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/empty", "", 200, "empty page: a failed scrape, not zero traffic"),
        ("/error", "x", 500, "answered HTTP 500"),
        ("/html", "<html>hello</html>\n", 200, "no metric family of a known engine"),
    ],
)
def test_probe_errors_are_one_line(server, path, body, status, message):
    url = server.serve(path, body, status=status)

    result = CliRunner().invoke(probe_command, ["--url", url])

    assert result.exit_code == 1
    assert message in result.output
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_probe_of_an_unreachable_url_is_one_line():
    result = CliRunner().invoke(probe_command, ["--url", "http://127.0.0.1:9/metrics"])

    assert result.exit_code == 1
    assert "unreachable" in result.output and "Traceback" not in result.output


def test_discover_names_each_given_url(server):
    sglang = server.serve(
        "/sglang", corpus_file("engines", "sglang-docs-llama3.1-8b-loaded.prom").read_text()
    )
    dynamo = server.serve(
        "/dynamo", corpus_file("engines", "dynamo-frontend-qwen3-0.6b.prom").read_text()
    )
    empty = server.serve("/empty", "")

    result = CliRunner().invoke(
        discover_command, ["--url", sglang, "--url", dynamo, "--url", empty, "--format", "json"]
    )

    assert result.exit_code == 0, result.output
    rows = {row["url"]: row for row in json.loads(result.output)["rows"]}
    assert (rows[sglang]["engine"], rows[sglang]["models"]) == (
        "sglang",
        "meta-llama/Llama-3.1-8B-Instruct",
    )
    assert (rows[dynamo]["engine"], rows[dynamo]["models"]) == ("dynamo", "Qwen/Qwen3-0.6B")
    assert rows[empty]["engine"] is None
    assert "empty page" in rows[empty]["status"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "127.0.0.1:8000/metrics"}, "is not an http(s) URL"),
        ({"engine": "ollama"}, "engine 'ollama' is not one of"),
        ({"role": "both"}, "role 'both' is not one of"),
        ({"timeout_s": 0}, "timeout_s must be above 0"),
    ],
)
def test_an_endpoint_spec_refuses_bad_settings(fields, message):
    settings = {"name": "e", "url": "http://127.0.0.1:8000/metrics", **fields}

    with pytest.raises(ConfigError, match=re.escape(message)):
        EndpointSpec(**settings)
