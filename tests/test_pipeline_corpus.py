"""A real engine payload served on loopback, read by the real agent, stored by the real collector.

The page is the captured SGLang payload from ``../shared/corpus``; between two scrapes its two
token counters advance (the rest of the page stays as captured), the way a live server's do.
The agent takes the first scrape as its baseline and exports the growth; the collector must hold
exactly that growth.
"""

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import corpus_file
from sqlalchemy import func, select

from wattledger import contract as c
from wattledger.agent.endpoints import ScrapedEndpoint
from wattledger.agent.ledger import CounterLedger
from wattledger.agent.runner import Agent, Intervals
from wattledger.agent.sinks import OtlpSink
from wattledger.agent.telemetry import AgentTelemetry, build_resource
from wattledger.collector import schema as s
from wattledger.collector.server import CollectorServer, serve_in_thread
from wattledger.config import EndpointConfig

S = 1_000_000_000
T0 = 1_764_000_000 * S
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PROMPT_BEFORE, GENERATED_BEFORE = 8_128_902, 7_557_572  # read off the captured page


class Page:
    """The served text; tests change it between scrapes."""

    def __init__(self, text: str) -> None:
        self.text = text


def advanced(text: str, prompt: int, generated: int) -> str:
    text = re.sub(r"(sglang:prompt_tokens_total\{[^}]*\}) \S+", rf"\1 {prompt}", text)
    return re.sub(r"(sglang:generation_tokens_total\{[^}]*\}) \S+", rf"\1 {generated}", text)


@pytest.fixture
def engine_server():
    page = Page(corpus_file("engines", "sglang-docs-llama3.1-8b-loaded.prom").read_text())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = page.text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, page
    server.shutdown()
    server.server_close()


def test_tokens_from_a_served_corpus_page_reach_the_database(
    engine_server, sqlite_engine, tmp_path
):
    http, page = engine_server
    collector = CollectorServer(("127.0.0.1", 0), sqlite_engine)
    serve_in_thread(collector)
    sink = OtlpSink(collector.url + "/v1/metrics")
    endpoint = ScrapedEndpoint(
        EndpointConfig(
            name="sglang-8b", url=f"http://127.0.0.1:{http.server_port}/metrics", gpus=["GPU-x"]
        )
    )
    agent = Agent(
        telemetry=AgentTelemetry(build_resource("node-a"), sink),
        ledger=CounterLedger(tmp_path / "ledger.json"),
        gpus=None,
        endpoints=[endpoint],
        intervals=Intervals(sample_s=60, scrape_s=60, export_s=60),
    )
    try:
        agent.tick(T0)
        page.text = advanced(page.text, PROMPT_BEFORE + 12_345, GENERATED_BEFORE + 6_789)
        agent.tick(T0 + 60 * S)
    finally:
        sink.close()
        collector.stop()

    with sqlite_engine.connect() as conn:
        stored = dict(
            conn.execute(
                select(s.series.c.label, func.sum(s.deltas.c.value))
                .join(s.deltas, s.deltas.c.series_id == s.series.c.id)
                .where(s.series.c.metric == c.METRIC_TOKENS, s.series.c.model == MODEL)
                .group_by(s.series.c.label)
            ).all()
        )
        endpoint_row = conn.execute(select(s.endpoints)).one()
    assert stored == {"input": 12_345.0, "output": 6_789.0}
    assert (endpoint_row.name, endpoint_row.engine) == ("sglang-8b", "sglang")
    assert agent.exports_ok == 2
