"""Every real captured page through the parser and the probe, with the values read off each file.

Each expected number below was read off the corpus file by hand: per model, input tokens, cached
input tokens, output tokens, finished requests, prefill seconds, decode seconds (``None`` where
the page does not say).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner
from conftest import corpus_file

from wattledger.agent.engines.read import read_payload
from wattledger.cli.probe import probe_command

FIELDS = (
    "input_tokens",
    "input_cached_tokens",
    "output_tokens",
    "requests",
    "prefill_seconds",
    "decode_seconds",
)


# SGLang v0.3 labelled the model with its path, under the label 'name'.
SGLANG_V03_MODEL = (
    "/shared/public/models/meta-llama/Llama-3.2-3B/5cc0ffe09ee49f7be6ca7c794ee6bd7245e84e60/"
)


@dataclass(frozen=True)
class Expect:
    engine: str
    role: str
    # model -> (input, cached input, output, requests, prefill s, decode s)
    models: dict[str, tuple]
    parse_errors: int = 0
    started_at: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    indicators: dict[str, float] = field(default_factory=dict)
    absent_contains: tuple[str, ...] = ()
    notes_contain: tuple[str, ...] = ()


EXPECTED = {
    "dynamo-frontend-qwen3-0.6b.prom": Expect(
        engine="dynamo",
        role="aggregated",
        # Token series say 'qwen/qwen3-0.6b'; the model gauges keep the original spelling.
        models={"Qwen/Qwen3-0.6B": (33.0, None, 300.0, 1.0, None, None)},
        sources={
            "input_tokens": "histogram_sum dynamo_frontend_input_sequence_tokens",
            "output_tokens": "counter dynamo_frontend_output_tokens_total",
            "requests": "counter dynamo_frontend_requests_total",
        },
        indicators={
            "time_to_first_token_mean_s": 1.5625701570000001,
            "inter_token_latency_mean_s": 0.6126917290000005 / 299,
            "running_requests": 0.0,
        },
        absent_contains=("cached input tokens", "a Dynamo frontend sees requests"),
        notes_contain=("lower-cased", "counts the tokens of every worker"),
    ),
    "dynamo-worker-trtllm-1.1-created-gauges.prom": Expect(
        engine="dynamo",
        role="aggregated",
        models={"Qwen/Qwen3-0.6B": (None, None, None, 2.0, None, None)},
        started_at=1.7682648369328544e09,  # trtllm_request_success_created, the earliest
        sources={"requests": "counter trtllm_request_success_total"},
        indicators={
            "time_to_first_token_mean_s": 0.06795299984514713 / 2,
            "inter_token_latency_mean_s": 0.005558789299682629 / 2,
        },
        absent_contains=("trtllm-serve before 2026 (1.1 to 1.3) exports no token counters",),
        notes_contain=("dynamo_component=tensorrt_llm names both",),
    ),
    "llamacpp-b10380-after-one-request.prom": Expect(
        engine="llamacpp",
        role="aggregated",
        models={"unknown": (25.0, None, 200.0, None, 3.68, 39.8)},
        sources={
            "prefill_seconds": "counter llamacpp:prompt_seconds_total",
            "decode_seconds": "counter llamacpp:tokens_predicted_seconds_total",
        },
        absent_contains=("llama.cpp exports no request counter",),
        notes_contain=("tokens reused from its prompt cache",),
    ),
    "sglang-0.4-pd-deepseek-r1-cached-aborted-excerpt.prom": Expect(
        engine="sglang",
        role="aggregated",
        models={
            "/home/user/models/deepseek-ai__DeepSeek-R1": (None, 2688.0, None, 217.0, None, None)
        },
        sources={"input_cached_tokens": "counter sglang:cached_tokens_total"},
        absent_contains=("SGLang exports no per-phase seconds",),
        notes_contain=("engine_type=unified is also reported", "ends with a declaration"),
    ),
    "sglang-docs-llama3.1-8b-loaded.prom": Expect(
        engine="sglang",
        role="aggregated",
        # 8.128902e+06 and 7.557572e+06 on the page; no num_requests_total, so requests come
        # from the e2e latency histogram's count.
        models={
            "meta-llama/Llama-3.1-8B-Instruct": (8128902.0, None, 7557572.0, 11228.0, None, None)
        },
        sources={"requests": "histogram_count sglang:e2e_request_latency_seconds"},
        indicators={
            "running_requests": 162.0,
            "waiting_requests": 2826.0,
            "kv_cache_usage": 0.28,
            "prefix_cache_hit_ratio": 0.007507552643049313,
            "time_to_first_token_mean_s": 2.3518979474117756e06 / 11008,
            "inter_token_latency_mean_s": 866964.5791549598 / 7.400757e06,
        },
    ),
    "sglang-v0.3-pr1853-name-label-excerpt.prom": Expect(
        engine="sglang",
        role="aggregated",
        models={SGLANG_V03_MODEL: (230794.0, None, None, None, None, None)},
    ),
    "triton-base-nv_inference-23.11-zeros.prom": Expect(
        engine="triton",
        role="aggregated",
        models={"tensorrt_llm": (None, None, None, 0.0, None, None)},
        sources={"requests": "counter nv_inference_request_success"},
        absent_contains=("Triton counts requests, not tokens",),
    ),
    "triton-gpu-power-grep-missing-help-type.prom": Expect(
        engine="triton",
        role="aggregated",
        models={},
        absent_contains=("Triton counts requests, not tokens", "finished requests"),
    ),
    "triton-tensorrtllm-backend-ifb-nv_trt_llm.prom": Expect(
        engine="triton",
        role="aggregated",
        models={"tensorrt_llm": (None, None, None, None, None, None)},
        indicators={"running_requests": 0.0, "waiting_requests": 1.0},
        absent_contains=("per iteration, not cumulative",),
    ),
    "triton-tensorrtllm-backend-v1-nv_trt_llm_v1.prom": Expect(
        engine="triton",
        role="aggregated",
        models={},
        absent_contains=("Triton counts requests, not tokens",),
    ),
    "trtllm-serve-1.x-unprefixed-undefined-labels-excerpt.prom": Expect(
        engine="trtllm",
        role="aggregated",
        models={},
        absent_contains=("exports no token counters",),
        notes_contain=("histogram e2e_request_latency_seconds has no _count",),
    ),
    "vllm-0.18.0-idle-token-counters-by-source-excerpt.prom": Expect(
        engine="vllm",
        role="aggregated",
        # Idle: every counter present and 0.0, which is zero, not absent.
        models={"facebook/opt-125m": (0.0, 0.0, 0.0, 0.0, None, None)},
        started_at=1.7879528223045776e09,  # prompt_tokens_by_source_created{local_compute}
        sources={
            "input_tokens": "counter vllm:prompt_tokens_by_source_total"
            "{source=local_compute|local_cache_hit}",
            "input_cached_tokens": "counter vllm:prompt_tokens_by_source_total"
            "{source=local_cache_hit}",
        },
    ),
    "vllm-v0-aibrix-runtime-qwen2.5-coder-truncated-histogram-excerpt.prom": Expect(
        engine="vllm",
        role="aggregated",
        models={"Qwen/Qwen2.5-Coder-1.5B-Instruct": (148.0, None, 955.0, 4.0, None, None)},
        indicators={"kv_cache_usage": 0.0, "running_requests": 0.0},
        absent_contains=("no cached-token counter",),
        notes_contain=(
            "histogram vllm:iteration_tokens_total has no _count",
            "vllm:gpu_prefix_cache_hit_rate is -1",
        ),
    ),
    "vllm-v0-lora-two-model-names-excerpt.prom": Expect(
        engine="vllm",
        role="aggregated",
        models={
            "sql-lora": (5.0, None, None, None, None, None),
            "meta-llama/Llama-2-7b-hf": (10.0, None, None, None, None, None),
        },
        sources={"input_tokens": "histogram_sum vllm:request_prompt_tokens"},
        notes_contain=("histogram vllm:request_prompt_tokens has no _count",),
    ),
    "vllm-v0.10-glm45-deprecated-gpu-prefix-excerpt.prom": Expect(
        engine="vllm",
        role="aggregated",
        models={"zai-org/GLM-4.5": (None, None, None, None, None, None)},
        started_at=1.7537953269353123e09,  # gpu_prefix_cache_hits_created
        indicators={"kv_cache_usage": 9.75010481363281e-06, "prefix_cache_hit_ratio": 0.0},
    ),
    "vllm-v0.5-help-type-only-no-samples.prom": Expect(
        engine="vllm",
        role="aggregated",
        models={},
        notes_contain=("declared with no samples (absent, not zero): vllm:num_requests_running",),
    ),
    "vllm-v0.5.1-ttft-histogram-all-buckets-equal.prom": Expect(
        engine="vllm",
        role="aggregated",
        models={},
        notes_contain=("histogram vllm:time_to_first_token_seconds has no _count",),
    ),
    "vllm-v0.6-llama3.1-8b-idle-minus1-hitrate.prom": Expect(
        engine="vllm",
        role="aggregated",
        models={"meta-llama/Llama-3.1-8B-Instruct": (0.0, None, 0.0, None, None, None)},
        indicators={"kv_cache_usage": 0.0},
        notes_contain=("vllm:gpu_prefix_cache_hit_rate is -1",),
    ),
    "vllm-v1-kserve-idle-created-truncated-head40.prom": Expect(
        engine="vllm",
        role="aggregated",
        models={"llama-vllm-single": (0.0, None, 0.0, None, None, None)},
        started_at=1.7769301736864316e09,  # prefix_cache_queries_created
        absent_contains=("vllm:request_success_total is declared with no samples",),
        notes_contain=("ends with a declaration",),
    ),
}


def test_every_corpus_page_has_its_own_expected_values(corpus_dir):
    pages = {path.name for path in (corpus_dir / "engines").glob("*.prom")}

    assert pages == set(EXPECTED)
    assert len(pages) == 19


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_page_reads_as_expected(name):
    expect = EXPECTED[name]
    page = corpus_file("engines", name).read_text()

    reading = read_payload(page)

    assert reading.engine == expect.engine
    assert reading.role == expect.role
    assert reading.parse_errors == expect.parse_errors
    assert reading.started_at == expect.started_at
    assert list(reading.models) == list(expect.models)
    for model, values in expect.models.items():
        got = tuple(
            None if (q := getattr(reading.models[model], key)) is None else q.value
            for key in FIELDS
        )
        assert got == values, model
    first = next(iter(reading.models.values()), None)
    for key, source in expect.sources.items():
        assert getattr(first, key).source == source
    for key, value in expect.indicators.items():
        assert first.indicators[key].value == pytest.approx(value, rel=1e-12)
    for phrase in expect.absent_contains:
        assert any(phrase in sentence for sentence in reading.absent), phrase
    for phrase in expect.notes_contain:
        assert any(phrase in note for note in reading.notes), phrase


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_page_through_the_probe(name):
    expect = EXPECTED[name]
    path = corpus_file("engines", name)

    result = CliRunner().invoke(probe_command, ["--file", str(path), "--format", "json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    rows = {row["model"]: row for row in document["rows"]}
    expected_rows = expect.models or {None: (None,) * len(FIELDS)}
    assert set(rows) == set(expected_rows)
    for model, values in expected_rows.items():
        assert tuple(rows[model][key] for key in FIELDS) == values
        assert rows[model]["engine"] == expect.engine
        assert rows[model]["role"] == expect.role
    absent_lines = [line for line in document.get("notes", []) if line.startswith("absent: ")]
    read_again = read_payload(path.read_text())
    assert absent_lines == [f"absent: {sentence}" for sentence in read_again.absent]
