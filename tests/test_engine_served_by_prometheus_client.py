"""Pages served the way the engines serve them: through prometheus_client's own HTTP server.

vLLM, SGLang and trtllm-serve expose metrics through ``prometheus_client``. Its OpenMetrics
output (0.26) escapes ``:`` to ``_`` in sample names but not in the family headers, so a reader
that asked for OpenMetrics, or was sent it, would find no vLLM samples at all.
"""

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from wattledger.agent.engines import fetch, read_payload


def vllm_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    labels = ["engine", "model_name"]
    prompt = Counter(
        "vllm:prompt_tokens", "Number of prefill tokens processed.", labels, registry=registry
    )
    generated = Counter(
        "vllm:generation_tokens",
        "Number of generation tokens processed.",
        labels,
        registry=registry,
    )
    prefill = Histogram(
        "vllm:request_prefill_time_seconds", "Prefill time.", labels, registry=registry
    )
    prompt.labels("0", "llama").inc(1200)
    generated.labels("0", "llama").inc(345)
    prefill.labels("0", "llama").observe(0.25)
    prefill.labels("0", "llama").observe(0.5)
    return registry


@pytest.fixture
def served():
    server, thread = start_http_server(0, addr="127.0.0.1", registry=vllm_registry())
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_scraper_gets_and_reads_a_prometheus_client_page(served):
    page = fetch(served, 5.0)

    reading = read_payload(page.text)

    model = reading.models["llama"]
    assert reading.engine == "vllm"
    assert (model.input_tokens.value, model.output_tokens.value) == (1200.0, 345.0)
    assert model.prefill_seconds.value == 0.75


def test_an_openmetrics_page_with_escaped_sample_names_is_still_read():
    text = openmetrics_latest(vllm_registry()).decode()
    assert "vllm_prompt_tokens_total{" in text  # the escaping this test is about

    reading = read_payload(text)

    model = reading.models["llama"]
    assert (model.input_tokens.value, model.output_tokens.value) == (1200.0, 345.0)
    assert model.prefill_seconds.value == 0.75
    assert any("escaped" in note for note in reading.notes)
