"""Where each engine keeps each quantity: one table per engine, data only.

A quantity (a :class:`ModelReading` field, ``token_split.<key>`` or ``indicators.<key>``) lists
its sources in order of preference; the first source with samples on the page is used for every
model on that page, so one page never mixes two sources for one quantity. Names are written
without the engine's prefix and with counters' ``_total`` left off: each table's ``prefixes`` and
both counter spellings (``x_total`` in Prometheus text, ``x`` in OpenMetrics headers and in
Triton) are tried. ``renames`` maps a current name to the names older versions used, tried after
the current one. Adding an engine is one :class:`EngineTable`; adding a rename is one entry.

Choices made in these tables, each on purpose:

* **vLLM input tokens**: ``prompt_tokens_by_source`` summed over ``local_compute`` and
  ``local_cache_hit`` where it exists (vLLM >= early 2026). ``external_kv_transfer`` is left out:
  those tokens arrived from a prefill worker that already counted them (vLLM #33289). Older
  builds: ``prompt_tokens_total``, which includes KV-transferred tokens; the disaggregation role
  rule then drops input on decode workers. Last resort: the ``request_prompt_tokens`` histogram.
* **vLLM cached input**: ``prompt_tokens_by_source{source=local_cache_hit}`` first, so cached stays
  a subset of input when input comes from the by-source counter; otherwise
  ``prompt_tokens_cached_total`` (local + external), a subset of ``prompt_tokens_total``.
* **Requests** are finished requests whatever the outcome: vLLM ``request_success_total`` summed
  over ``finished_reason`` (abort and error included), Dynamo frontend ``requests_total`` summed
  over ``status``. TGI is the exception: ``tgi_request_success`` only, because
  ``tgi_request_count`` counts each request twice (TGI #1901) and failures are mostly rejections
  that never reached the model.
* **Histogram sums** are used for tokens only where an engine has no counter (TGI, Triton's
  TensorRT-LLM backend, Dynamo frontend input) or as the last resort: they are observed when a
  request finishes, so requests in flight are not yet counted (vLLM #41368).
* **Phase seconds** are summed per request (vLLM, trtllm-serve), summed per batch (TGI) or per
  slot (llama.cpp); the prefill/decode *ratio* is what a report uses. SGLang has none: its
  ``realtime_tokens_total{mode}`` tokens per phase go to ``token_split`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM_SUM = "histogram_sum"
HISTOGRAM_COUNT = "histogram_count"
HISTOGRAM_MEAN = "histogram_mean"
RATIO = "ratio"

INPUT = "input_tokens"
CACHED = "input_cached_tokens"
OUTPUT = "output_tokens"
REQUESTS = "requests"
PREFILL = "prefill_seconds"
DECODE = "decode_seconds"
MAIN_QUANTITIES = (INPUT, CACHED, OUTPUT, REQUESTS, PREFILL, DECODE)

SPLIT_COMPUTE = "token_split.prefill_compute"
SPLIT_CACHE = "token_split.prefill_cache"
SPLIT_TRANSFER = "token_split.prefill_transfer"
SPLIT_DECODE = "token_split.decode"
RUNNING = "indicators.running_requests"
WAITING = "indicators.waiting_requests"
KV_USAGE = "indicators.kv_cache_usage"
PREFIX_HIT = "indicators.prefix_cache_hit_ratio"
TTFT_MEAN = "indicators.time_to_first_token_mean_s"
ITL_MEAN = "indicators.inter_token_latency_mean_s"

LABELS = {
    INPUT: "input tokens",
    CACHED: "cached input tokens",
    OUTPUT: "output tokens",
    REQUESTS: "finished requests",
    PREFILL: "prefill seconds",
    DECODE: "decode seconds",
}


@dataclass(frozen=True)
class Source:
    """One place a quantity can be read from.

    ``where`` keeps only samples whose label has one of the given values. ``combine`` is how
    gauges from several engines of one endpoint add up (``sum`` or ``max``). ``per`` names the
    denominator counter of a ``ratio``. ``sentinel`` is a gauge value that means "disabled".
    ``note`` is said in the reading whenever this source is used.
    """

    kind: str
    name: str
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    combine: str = "sum"
    per: str = ""
    sentinel: float | None = None
    note: str = ""


def counter(name: str, note: str = "", **where: tuple[str, ...] | str) -> Source:
    return Source(COUNTER, name, _where(where), note=note)


def gauge(name: str, combine: str = "sum", sentinel: float | None = None, **where) -> Source:
    return Source(GAUGE, name, _where(where), combine=combine, sentinel=sentinel)


def histogram_sum(name: str, note: str = "", **where: tuple[str, ...] | str) -> Source:
    return Source(HISTOGRAM_SUM, name, _where(where), note=note)


def histogram_count(name: str, note: str = "") -> Source:
    return Source(HISTOGRAM_COUNT, name, note=note)


def histogram_mean(name: str) -> Source:
    return Source(HISTOGRAM_MEAN, name)


def ratio(numerator: str, denominator: str) -> Source:
    return Source(RATIO, numerator, per=denominator)


def _where(where: Mapping[str, tuple[str, ...] | str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (label, (values,) if isinstance(values, str) else tuple(values))
        for label, values in sorted(where.items())
    )


@dataclass(frozen=True)
class EngineTable:
    """Everything the mapping needs to know about one engine's metric names."""

    engine: str
    prefixes: tuple[str, ...]
    model_labels: tuple[str, ...]
    quantities: Mapping[str, tuple[Source, ...]]
    renames: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Sentences said when a main quantity is absent from a page of this engine.
    absent: Mapping[str, str] = field(default_factory=dict)
    # Full family names whose presence identifies the engine when its names carry no prefix.
    signatures: tuple[str, ...] = ()
    # Gauges whose model label keeps the model's original spelling (Dynamo lower-cases others).
    model_catalog: tuple[str, ...] = ()
    # Model label values that are placeholders, not names.
    placeholder_models: tuple[str, ...] = ()
    # (full family name, hint): the first present names the version line.
    version_hints: tuple[tuple[str, str], ...] = ()
    # Sentences always true of this engine's numbers, said when its page is read.
    notes: tuple[str, ...] = ()


NO_PHASE_SECONDS_SGLANG = (
    "{label}: SGLang exports no per-phase seconds; realtime_tokens_total{{mode}} (token_split) "
    "is the live prefill/decode split to apportion by"
)

VLLM = EngineTable(
    engine="vllm",
    prefixes=("vllm:",),
    model_labels=("model_name",),
    quantities={
        # Limitation: on an aggregated worker with a KV offloading connector (LMCache), prompt
        # tokens loaded from the offload store are also 'external_kv_transfer' and are left out
        # of input and cached input.
        INPUT: (
            counter(
                "prompt_tokens_by_source",
                source=("local_compute", "local_cache_hit"),
                note="input = prompt tokens computed here + local prefix-cache hits; tokens "
                "received by KV transfer are left to the prefill worker that computed them",
            ),
            counter(
                "prompt_tokens",
                note="vllm:prompt_tokens_total includes prefix-cache hits and KV-transferred "
                "tokens (vLLM #33289): count it on prefill or aggregated workers only",
            ),
            # Limitation: histograms are observed when a request finishes; in-flight requests
            # and aborted ones (vLLM #41368) are missing until then.
            histogram_sum(
                "request_prompt_tokens",
                note="input tokens from the request_prompt_tokens histogram, observed when a "
                "request finishes: requests in flight are not counted yet",
            ),
        ),
        CACHED: (
            counter("prompt_tokens_by_source", source="local_cache_hit"),
            counter("prompt_tokens_cached"),
        ),
        OUTPUT: (
            counter("generation_tokens"),
            histogram_sum(
                "request_generation_tokens",
                note="output tokens from the request_generation_tokens histogram, observed when "
                "a request finishes (vLLM #41368)",
            ),
        ),
        REQUESTS: (
            counter("request_success"),
            histogram_count("e2e_request_latency_seconds"),
        ),
        PREFILL: (histogram_sum("request_prefill_time_seconds"),),
        DECODE: (histogram_sum("request_decode_time_seconds"),),
        SPLIT_COMPUTE: (counter("prompt_tokens_by_source", source="local_compute"),),
        SPLIT_CACHE: (counter("prompt_tokens_by_source", source="local_cache_hit"),),
        SPLIT_TRANSFER: (counter("prompt_tokens_by_source", source="external_kv_transfer"),),
        SPLIT_DECODE: (counter("generation_tokens"),),
        RUNNING: (gauge("num_requests_running"),),
        WAITING: (gauge("num_requests_waiting"),),
        KV_USAGE: (gauge("kv_cache_usage_perc", combine="max"),),
        PREFIX_HIT: (
            ratio("prefix_cache_hits", "prefix_cache_queries"),
            gauge("gpu_prefix_cache_hit_rate", combine="max", sentinel=-1.0),
        ),
        TTFT_MEAN: (histogram_mean("time_to_first_token_seconds"),),
        ITL_MEAN: (histogram_mean("inter_token_latency_seconds"),),
    },
    renames={
        "inter_token_latency_seconds": ("time_per_output_token_seconds",),
        "kv_cache_usage_perc": ("gpu_cache_usage_perc",),
        "prefix_cache_hits": ("gpu_prefix_cache_hits",),
        "prefix_cache_queries": ("gpu_prefix_cache_queries",),
    },
    absent={
        CACHED: "cached input tokens: this vLLM exports no cached-token counter "
        "(prompt_tokens_cached_total and prompt_tokens_by_source arrived in 2026)",
    },
    version_hints=(
        ("vllm:prompt_tokens_by_source_total", "V1, 2026 or later (prompt tokens by source)"),
        ("vllm:prompt_tokens_cached_total", "V1 with cached-token counter"),
        ("vllm:kv_cache_usage_perc", "V1"),
        ("vllm:num_requests_swapped", "V0"),
        ("vllm:gpu_cache_usage_perc", "V0 or early V1"),
    ),
)

SGLANG = EngineTable(
    engine="sglang",
    prefixes=("sglang:",),
    # SGLang v0.3 labelled the model 'name' (PR #1853).
    model_labels=("model_name", "name"),
    quantities={
        INPUT: (
            counter(
                "prompt_tokens",
                note="sglang:prompt_tokens_total grows once per finished request (full prompt, "
                "cache hits included; aborted requests not counted)",
            ),
            histogram_sum("prompt_tokens_histogram"),
        ),
        CACHED: (counter("cached_tokens"),),
        OUTPUT: (counter("generation_tokens"), histogram_sum("generation_tokens_histogram")),
        REQUESTS: (
            counter("num_requests"),
            histogram_count(
                "e2e_request_latency_seconds",
                note="finished requests from the e2e_request_latency_seconds histogram count "
                "(this build has no num_requests_total)",
            ),
        ),
        SPLIT_COMPUTE: (
            counter(
                "realtime_tokens",
                note="token_split from sglang:realtime_tokens_total{mode}: live tokens per "
                "phase (prefill computed, prefill from cache, decode), not seconds",
                mode="prefill_compute",
            ),
        ),
        SPLIT_CACHE: (counter("realtime_tokens", mode="prefill_cache"),),
        SPLIT_DECODE: (counter("realtime_tokens", mode="decode"),),
        RUNNING: (gauge("num_running_reqs"),),
        WAITING: (gauge("num_queue_reqs"),),
        KV_USAGE: (gauge("token_usage", combine="max"),),
        PREFIX_HIT: (gauge("cache_hit_rate", combine="max"),),
        TTFT_MEAN: (histogram_mean("time_to_first_token_seconds"),),
        ITL_MEAN: (histogram_mean("inter_token_latency_seconds"),),
    },
    renames={"inter_token_latency_seconds": ("time_per_output_token_seconds",)},
    absent={
        PREFILL: NO_PHASE_SECONDS_SGLANG.format(label="prefill seconds"),
        DECODE: NO_PHASE_SECONDS_SGLANG.format(label="decode seconds"),
        CACHED: "cached input tokens: this SGLang page has no sglang:cached_tokens_total",
    },
    version_hints=(
        ("sglang:realtime_tokens_total", "with realtime token split"),
        ("sglang:cached_tokens_total", "0.4 or later"),
    ),
)

NO_TOKENS_TRTLLM = (
    "{label}: trtllm-serve before 2026 (1.1 to 1.3) exports no token counters; read tokens from "
    "a Dynamo frontend or request logs"
)

TRTLLM = EngineTable(
    engine="trtllm",
    # Some 2026 builds export the names with no prefix at all (aibrix #2004).
    prefixes=("trtllm_", ""),
    model_labels=("model_name",),
    quantities={
        INPUT: (counter("prompt_tokens"),),
        CACHED: (counter("prompt_cached_tokens"),),
        OUTPUT: (counter("generation_tokens"),),
        REQUESTS: (counter("request_success"), histogram_count("e2e_request_latency_seconds")),
        PREFILL: (histogram_sum("request_prefill_time_seconds"),),
        DECODE: (histogram_sum("request_decode_time_seconds"),),
        RUNNING: (gauge("num_requests_running"),),
        WAITING: (gauge("num_requests_waiting"),),
        KV_USAGE: (gauge("kv_cache_utilization", combine="max"),),
        PREFIX_HIT: (gauge("kv_cache_hit_rate", combine="max"),),
        TTFT_MEAN: (histogram_mean("time_to_first_token_seconds"),),
        ITL_MEAN: (histogram_mean("time_per_output_token_seconds"),),
    },
    absent={
        INPUT: NO_TOKENS_TRTLLM.format(label="input tokens"),
        CACHED: NO_TOKENS_TRTLLM.format(label="cached input tokens"),
        OUTPUT: NO_TOKENS_TRTLLM.format(label="output tokens"),
        PREFILL: "prefill seconds: this trtllm-serve exports no request_prefill_time_seconds "
        "(current main does, with return_perf_metrics enabled)",
        DECODE: "decode seconds: this trtllm-serve exports no request_decode_time_seconds "
        "(current main does, with return_perf_metrics enabled)",
    },
    signatures=(
        "e2e_request_latency_seconds",
        "time_to_first_token_seconds",
        "time_per_output_token_seconds",
        "request_queue_time_seconds",
        "request_success_total",
    ),
    placeholder_models=("undefined",),
    version_hints=(
        ("trtllm_prompt_tokens_total", "2026 or later, with token counters"),
        ("prompt_tokens_total", "2026 or later, unprefixed names, with token counters"),
        ("trtllm_request_success_total", "1.1 to 1.3, no token counters"),
        ("e2e_request_latency_seconds", "unprefixed names (early 2026 build)"),
    ),
)

NO_TOKENS_TRITON = (
    "{label}: Triton counts requests, not tokens; only the TensorRT-LLM backend's "
    "nv_llm_input_token_len / nv_llm_output_token_len histograms carry token totals, and this "
    "page has none (nv_trt_llm_* token gauges are per iteration, not cumulative)"
)

TRITON = EngineTable(
    engine="triton",
    prefixes=("nv_",),
    model_labels=("model",),
    quantities={
        INPUT: (histogram_sum("llm_input_token_len"),),
        OUTPUT: (histogram_sum("llm_output_token_len"),),
        # Limitation: every model of an ensemble counts each request; all are reported, per model.
        REQUESTS: (
            counter(
                "inference_request_success",
                note="Triton counts a request once in every model it passes through (an "
                "ensemble and each of its steps): read the row of the model that generates",
            ),
        ),
        RUNNING: (gauge("trt_llm_request_metrics", request_type="active"),),
        WAITING: (gauge("trt_llm_request_metrics", request_type="waiting"),),
    },
    absent={
        INPUT: NO_TOKENS_TRITON.format(label="input tokens"),
        OUTPUT: NO_TOKENS_TRITON.format(label="output tokens"),
        CACHED: "cached input tokens: Triton exports no cached-token count",
        PREFILL: "prefill seconds: Triton times model execution, not prefill and decode apart",
        DECODE: "decode seconds: Triton times model execution, not prefill and decode apart",
    },
    version_hints=(
        ("nv_llm_input_token_len", "TensorRT-LLM backend with token histograms"),
        ("nv_trt_llm_v1_metrics", "TensorRT-LLM backend, V1 batcher"),
        ("nv_trt_llm_inflight_batcher_metrics", "TensorRT-LLM backend, inflight batcher"),
        ("nv_inference_request_success", "Triton core"),
        ("nv_gpu_utilization", "GPU metrics only (the agent reads GPUs through NVML)"),
    ),
)

DYNAMO_FRONTEND = EngineTable(
    engine="dynamo",
    prefixes=("dynamo_frontend_",),
    model_labels=("model",),
    quantities={
        INPUT: (
            histogram_sum(
                "input_sequence_tokens",
                note="a Dynamo frontend has no input-token counter: input comes from the "
                "input_sequence_tokens histogram, observed per request",
            ),
        ),
        CACHED: (histogram_sum("cached_tokens"),),
        OUTPUT: (counter("output_tokens"), histogram_sum("output_sequence_tokens")),
        REQUESTS: (counter("requests"),),
        RUNNING: (gauge("active_requests"),),
        WAITING: (gauge("queued_requests"),),
        TTFT_MEAN: (histogram_mean("time_to_first_token_seconds"),),
        ITL_MEAN: (histogram_mean("inter_token_latency_seconds"),),
    },
    renames={"active_requests": ("inflight_requests",)},
    absent={
        PREFILL: "prefill seconds: a Dynamo frontend sees requests, not engine phases; read "
        "phase time on the workers",
        DECODE: "decode seconds: a Dynamo frontend sees requests, not engine phases; read "
        "phase time on the workers",
    },
    model_catalog=(
        "dynamo_frontend_model_context_length",
        "dynamo_frontend_model_total_kv_blocks",
        "dynamo_frontend_model_max_num_seqs",
        "dynamo_frontend_model_kv_cache_block_size",
    ),
    notes=(
        "a Dynamo frontend counts the tokens of every worker behind it: take token totals from "
        "the frontend or from its workers, never both",
    ),
)

# A Dynamo worker's own metrics; the engine's metrics it passes through are read with the
# engine's table first, and these fill what the engine left absent.
DYNAMO_WORKER = EngineTable(
    engine="dynamo",
    prefixes=("dynamo_component_",),
    model_labels=("model",),
    quantities={
        REQUESTS: (counter("requests"),),
        RUNNING: (gauge("inflight_requests"),),
    },
    absent={
        INPUT: "input tokens: this Dynamo worker passes no engine metrics through",
        OUTPUT: "output tokens: this Dynamo worker passes no engine metrics through",
    },
)

TGI = EngineTable(
    engine="tgi",
    prefixes=("tgi_",),
    model_labels=(),
    quantities={
        INPUT: (
            histogram_sum(
                "request_input_length",
                note="TGI observes input length at validation: requests that failed later "
                "are included",
            ),
        ),
        OUTPUT: (histogram_sum("request_generated_tokens"),),
        REQUESTS: (
            counter(
                "request_success",
                note="requests = tgi_request_success; tgi_request_count counts each request "
                "twice (TGI #1901) and is not used",
            ),
        ),
        PREFILL: (
            histogram_sum(
                "batch_inference_duration",
                note="TGI phase seconds are batch time (tgi_batch_inference_duration), not "
                "per-request time: use them as a prefill/decode ratio",
                method="prefill",
            ),
        ),
        DECODE: (histogram_sum("batch_inference_duration", method="decode"),),
        RUNNING: (gauge("batch_current_size"),),
        WAITING: (gauge("queue_size"),),
    },
    absent={CACHED: "cached input tokens: TGI exports no prefix-cache metric"},
)

LLAMACPP = EngineTable(
    engine="llamacpp",
    prefixes=("llamacpp:",),
    # llama.cpp labels nothing; proxies that merge several servers add 'model'.
    # Limitation: llama-server's router mode serves one page per model (/metrics?model=...);
    # each needs its own endpoint.
    model_labels=("model",),
    quantities={
        INPUT: (
            counter(
                "prompt_tokens",
                note="llama.cpp counts only the prompt tokens it computed: tokens reused from "
                "its prompt cache are in neither input nor cached input",
            ),
        ),
        OUTPUT: (counter("tokens_predicted"),),
        PREFILL: (counter("prompt_seconds"),),
        DECODE: (counter("tokens_predicted_seconds"),),
        RUNNING: (gauge("requests_processing"),),
        WAITING: (gauge("requests_deferred"),),
    },
    absent={
        CACHED: "cached input tokens: llama.cpp exports no prompt-cache counter",
        REQUESTS: "finished requests: llama.cpp exports no request counter",
    },
)

TABLES: dict[str, EngineTable] = {
    table.engine: table for table in (VLLM, SGLANG, TRTLLM, TRITON, TGI, LLAMACPP)
}
TABLES["dynamo"] = DYNAMO_FRONTEND
# Engines whose metrics a Dynamo worker passes through unchanged.
PASS_THROUGH = ("vllm", "sglang", "trtllm")
ALL_TABLES = (*TABLES.values(), DYNAMO_WORKER)
