"""Engine metrics pages, written by ``prometheus_client`` itself from the simulated counters.

Each worker gets a collector in a registry of its own; ``generate_latest`` turns it into the same
Prometheus text the real engine serves: the engines' metric names and label sets, ``_created``
series where the engine's client library writes them, histograms for phase and latency times,
and gauges for requests in flight. The shapes follow the engines as the agent's readers know
them:

* **vLLM V1**: ``vllm:`` names, an ``engine`` label per data-parallel engine, prompt tokens by
  source, ``request_prefill_time_seconds`` / ``request_decode_time_seconds`` histograms;
* **SGLang**: ``sglang:`` names without ``_created`` (it runs the client in multiprocess mode),
  tokenizer counters per model, ``realtime_tokens_total{mode}`` repeated on every tensor rank;
* **trtllm-serve** (current main): ``trtllm_`` names with token counters and phase histograms;
* **Dynamo workers**: ``dynamo_component_*`` series labelled ``dynamo_component`` (``prefill``,
  or ``backend`` for the decode worker) with vLLM's metrics passed through; the decode worker
  receives every prompt token by KV transfer.

Every observation of a histogram is the stated mean time, so a histogram's sum is exact.
"""
# Limitation: histograms put every request in one bucket (the mean's), and gauges are derived
# from the hour's load; only counters and histogram sums are meant to be realistic.

from __future__ import annotations

import functools
import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from wattledger.cli.demo.fleet import Deployment, Node, Worker, load_pct
from wattledger.cli.demo.traffic import DECODE_S, PREFILL_S, Counts, running_requests, worker_counts
from wattledger.contract import ROLE_DECODE, ROLE_PREFILL

logger = logging.getLogger(__name__)

# Bucket bounds the engines use (vLLM's request-latency and time-to-first-token buckets).
LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
# Time a decode worker spends on a request before its first token: loading the transferred KV.
KV_LOAD_S = 0.02
# Time a prefill worker spends sampling the one token it generates.
ONE_TOKEN_S = 0.02
LENGTH_SHARE = 10  # one finished request in ten stops at max_tokens


@functools.cache
def _le(bound: float) -> str:
    return floatToGoString(bound)


@dataclass(frozen=True)
class Row:
    """One labelled series of a family: its label values and value(s)."""

    labels: tuple[str, ...]
    value: float
    seconds: float = 0.0  # histograms: the sum (value is the count)


class Families:
    """Builds metric families with one set of label names and one ``_created`` time."""

    def __init__(self, created: float | None) -> None:
        self.created = created

    def counter(self, name: str, doc: str, labels: Sequence[str], rows: Iterable[Row]) -> Metric:
        family = CounterMetricFamily(name, doc, labels=labels)
        for row in rows:
            family.add_metric(row.labels, row.value, created=self.created)
        return family

    def gauge(self, name: str, doc: str, labels: Sequence[str], rows: Iterable[Row]) -> Metric:
        family = GaugeMetricFamily(name, doc, labels=labels)
        for row in rows:
            family.add_metric(row.labels, row.value)
        return family

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        rows: Iterable[Row],
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Metric:
        family = HistogramMetricFamily(name, doc, labels=labels)
        for row in rows:
            count = row.value
            mean = row.seconds / count if count else 0.0
            cumulative = [(_le(le), count if mean <= le else 0.0) for le in buckets]
            family.add_metric(row.labels, [*cumulative, ("+Inf", count)], row.seconds)
            if self.created is not None:
                named = dict(zip(labels, row.labels, strict=True))
                family.samples.append(Sample(f"{name}_created", named, self.created))
        return family


@dataclass(frozen=True)
class VllmEngine:
    """One vLLM engine's series, as a worker of a given role shows them."""

    label: str
    counts: Counts
    role: str | None
    running: int

    def by_source(self) -> dict[str, int]:
        if self.role == ROLE_DECODE:
            return {
                "local_compute": 0,
                "local_cache_hit": 0,
                "external_kv_transfer": self.counts.input,
            }
        return {
            "local_compute": self.counts.input - self.counts.cached,
            "local_cache_hit": self.counts.cached,
            "external_kv_transfer": 0,
        }

    def cached(self) -> int:
        """vLLM's cached-prompt counter: local cache hits plus tokens received by KV transfer."""
        return self.counts.input if self.role == ROLE_DECODE else self.counts.cached

    def generated(self) -> int:
        """A prefill worker samples one token per request before handing it over."""
        return self.counts.requests if self.role == ROLE_PREFILL else self.counts.output

    def finished(self) -> dict[str, int]:
        requests = self.counts.requests
        if self.role == ROLE_PREFILL:
            return {"stop": 0, "length": requests, "abort": 0, "error": 0, "repetition": 0}
        length = requests // LENGTH_SHARE
        return {
            "stop": requests - length,
            "length": length,
            "abort": 0,
            "error": 0,
            "repetition": 0,
        }

    def phase_seconds(self) -> tuple[float, float]:
        requests = self.counts.requests
        if self.role == ROLE_PREFILL:
            return requests * PREFILL_S, requests * ONE_TOKEN_S
        if self.role == ROLE_DECODE:
            return requests * KV_LOAD_S, requests * DECODE_S
        return requests * PREFILL_S, requests * DECODE_S


def vllm_families(model: str, engines: Sequence[VllmEngine], created: float) -> list[Metric]:
    """vLLM V1's families for a set of data-parallel engines (one for a Dynamo worker)."""
    f = Families(created)
    labels = ("engine", "model_name")

    def each(
        value: Callable[[VllmEngine], float], seconds: Callable[[VllmEngine], float] | None = None
    ) -> list[Row]:
        return [Row((e.label, model), value(e), seconds(e) if seconds else 0.0) for e in engines]

    by_source = [
        Row((e.label, model, source), n) for e in engines for source, n in e.by_source().items()
    ]
    finished = [
        Row((e.label, reason, model), n) for e in engines for reason, n in e.finished().items()
    ]
    requests = lambda e: e.counts.requests  # noqa: E731
    return [
        f.gauge(
            "vllm:num_requests_running", "Requests being run.", labels, each(lambda e: e.running)
        ),
        f.gauge("vllm:num_requests_waiting", "Requests queued.", labels, each(lambda e: 0)),
        f.gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache use, 0 to 1.",
            labels,
            each(lambda e: round(min(e.running / 64, 1.0), 4)),
        ),
        f.counter(
            "vllm:prefix_cache_queries",
            "Prompt tokens looked up in the prefix cache.",
            labels,
            each(lambda e: e.counts.input),
        ),
        f.counter(
            "vllm:prefix_cache_hits",
            "Prompt tokens found in the prefix cache.",
            labels,
            each(VllmEngine.cached),
        ),
        f.counter("vllm:prompt_tokens", "Prompt tokens.", labels, each(lambda e: e.counts.input)),
        f.counter(
            "vllm:prompt_tokens_by_source",
            "Prompt tokens by where they came from.",
            ("engine", "model_name", "source"),
            by_source,
        ),
        f.counter(
            "vllm:prompt_tokens_cached",
            "Prompt tokens not computed here.",
            labels,
            each(VllmEngine.cached),
        ),
        f.counter(
            "vllm:generation_tokens", "Generated tokens.", labels, each(VllmEngine.generated)
        ),
        f.counter(
            "vllm:request_success",
            "Finished requests.",
            ("engine", "finished_reason", "model_name"),
            finished,
        ),
        f.histogram(
            "vllm:e2e_request_latency_seconds",
            "Request time, end to end.",
            labels,
            each(requests, lambda e: sum(e.phase_seconds())),
        ),
        f.histogram(
            "vllm:request_prefill_time_seconds",
            "Request time in prefill.",
            labels,
            each(requests, lambda e: e.phase_seconds()[0]),
        ),
        f.histogram(
            "vllm:request_decode_time_seconds",
            "Request time in decode.",
            labels,
            each(requests, lambda e: e.phase_seconds()[1]),
        ),
        f.histogram(
            "vllm:time_to_first_token_seconds",
            "Time to the first token.",
            labels,
            each(requests, lambda e: e.phase_seconds()[0]),
            TTFT_BUCKETS,
        ),
    ]


class EnginePage(Collector):
    """A worker's page at the simulated moment ``clock()`` (Unix seconds)."""

    def __init__(
        self,
        node: Node,
        deployment: Deployment,
        worker: Worker,
        *,
        started_s: int,
        clock: Callable[[], float],
    ) -> None:
        self.node = node
        self.deployment = deployment
        self.worker = worker
        self.started_s = started_s
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; the page is built on each scrape

    def collect(self) -> Iterator[Metric]:
        t_s = int(self.clock())
        engines = worker_counts(self.node, self.deployment, self.worker, self.started_s, t_s)
        yield from self.families(t_s, engines)

    @abstractmethod
    def families(self, t_s: int, engines: list[tuple[str, Counts]]) -> list[Metric]:
        """The engine's metric families at ``t_s``, in its own names and labels."""

    def in_flight(self, t_s: int, gpus: int) -> int:
        return running_requests(self.node.tokens_per_gpu_s(self.deployment) * gpus, t_s)


class VllmPage(EnginePage):
    def families(self, t_s: int, engines: list[tuple[str, Counts]]) -> list[Metric]:
        running = self.in_flight(t_s, 1)
        states = [VllmEngine(label, counts, None, running) for label, counts in engines]
        return vllm_families(self.deployment.model, states, float(self.started_s))


class SglangPage(EnginePage):
    """Tokenizer-side counters per model; scheduler-side series repeated on every TP rank."""

    def families(self, t_s: int, engines: list[tuple[str, Counts]]) -> list[Metric]:
        f = Families(None)
        model = self.deployment.model
        ((_, counts),) = engines
        ranks = [str(rank) for rank in range(len(self.worker.gpus))]
        rank_labels = ("dp_rank", "engine_type", "model_name", "moe_ep_rank", "pp_rank", "tp_rank")

        def per_rank(value: float, *lead: str) -> list[Row]:
            return [Row((*lead, "0", "unified", model, "0", "0", rank), value) for rank in ranks]

        modes = {
            "prefill_compute": counts.input - counts.cached,
            "prefill_cache": counts.cached,
            "decode": counts.output,
        }
        realtime = [row for mode, n in modes.items() for row in per_rank(n, mode)]
        one = ("model_name",)
        requests = counts.requests
        running = self.in_flight(t_s, len(self.worker.gpus))
        hit_rate = round(counts.cached / counts.input, 4) if counts.input else 0.0
        return [
            f.counter("sglang:prompt_tokens", "Prompt tokens.", one, [Row((model,), counts.input)]),
            f.counter(
                "sglang:generation_tokens", "Generated tokens.", one, [Row((model,), counts.output)]
            ),
            f.counter(
                "sglang:cached_tokens",
                "Prompt tokens from the prefix cache.",
                one,
                [Row((model,), counts.cached)],
            ),
            f.counter("sglang:num_requests", "Finished requests.", one, [Row((model,), requests)]),
            f.counter(
                "sglang:realtime_tokens",
                "Tokens per phase, counted as they are run.",
                ("mode", *rank_labels),
                realtime,
            ),
            f.gauge(
                "sglang:num_running_reqs", "Requests being run.", rank_labels, per_rank(running)
            ),
            f.gauge("sglang:num_queue_reqs", "Requests queued.", rank_labels, per_rank(0)),
            f.gauge(
                "sglang:token_usage",
                "KV-cache use, 0 to 1.",
                rank_labels,
                per_rank(round(load_pct(t_s) / 100 * 0.8, 4)),
            ),
            f.gauge(
                "sglang:cache_hit_rate", "Prefix-cache hit rate.", rank_labels, per_rank(hit_rate)
            ),
            f.histogram(
                "sglang:time_to_first_token_seconds",
                "Time to the first token.",
                one,
                [Row((model,), requests, requests * PREFILL_S)],
                TTFT_BUCKETS,
            ),
            f.histogram(
                "sglang:e2e_request_latency_seconds",
                "Request time, end to end.",
                one,
                [Row((model,), requests, requests * (PREFILL_S + DECODE_S))],
            ),
        ]


class TrtllmPage(EnginePage):
    """trtllm-serve's current names: token counters and per-request phase histograms."""

    def families(self, t_s: int, engines: list[tuple[str, Counts]]) -> list[Metric]:
        f = Families(float(self.started_s))
        model = self.deployment.model
        ((_, counts),) = engines
        labels = ("engine_type", "model_name")
        ours = ("trtllm", model)
        requests = counts.requests
        length = requests // LENGTH_SHARE
        finished = [
            Row(("trtllm", "stop", model), requests - length),
            Row(("trtllm", "length", model), length),
        ]
        running = self.in_flight(t_s, len(self.worker.gpus))
        return [
            f.counter("trtllm_prompt_tokens", "Prompt tokens.", labels, [Row(ours, counts.input)]),
            f.counter(
                "trtllm_generation_tokens", "Generated tokens.", labels, [Row(ours, counts.output)]
            ),
            f.counter(
                "trtllm_prompt_cached_tokens",
                "Prompt tokens reused from the KV cache.",
                labels,
                [Row(ours, counts.cached)],
            ),
            f.counter(
                "trtllm_request_success",
                "Finished requests.",
                ("engine_type", "finished_reason", "model_name"),
                finished,
            ),
            f.histogram(
                "trtllm_request_prefill_time_seconds",
                "Request time in prefill.",
                labels,
                [Row(ours, requests, requests * PREFILL_S)],
            ),
            f.histogram(
                "trtllm_request_decode_time_seconds",
                "Request time in decode.",
                labels,
                [Row(ours, requests, requests * DECODE_S)],
            ),
            f.histogram(
                "trtllm_e2e_request_latency_seconds",
                "Request time, end to end.",
                labels,
                [Row(ours, requests, requests * (PREFILL_S + DECODE_S))],
            ),
            f.gauge(
                "trtllm_num_requests_running", "Requests being run.", labels, [Row(ours, running)]
            ),
            f.gauge("trtllm_num_requests_waiting", "Requests queued.", labels, [Row(ours, 0)]),
            f.gauge(
                "trtllm_kv_cache_utilization",
                "KV-cache use, 0 to 1.",
                labels,
                [Row(ours, round(load_pct(t_s) / 100 * 0.8, 4))],
            ),
        ]


class DynamoWorkerPage(EnginePage):
    """A Dynamo vLLM worker: its own ``dynamo_component_*`` series and vLLM's, passed through."""

    COMPONENT = {ROLE_PREFILL: "prefill", ROLE_DECODE: "backend"}

    def families(self, t_s: int, engines: list[tuple[str, Counts]]) -> list[Metric]:
        f = Families(None)
        model = self.deployment.model
        ((label, counts),) = engines
        labels = ("dynamo_component", "dynamo_endpoint", "dynamo_namespace", "model")
        ours = (self.COMPONENT[self.worker.role], "generate", "demo", model)
        running = self.in_flight(t_s, len(self.worker.gpus))
        engine = VllmEngine(label, counts, self.worker.role, running)
        return [
            f.gauge(
                "dynamo_component_inflight_requests",
                "Requests in the work handler.",
                labels,
                [Row(ours, running)],
            ),
            f.counter(
                "dynamo_component_requests",
                "Requests the work handler took.",
                labels,
                [Row(ours, counts.requests)],
            ),
            f.gauge(
                "dynamo_component_uptime_seconds",
                "Seconds since the runtime started.",
                (),
                [Row((), float(t_s - self.started_s))],
            ),
            *vllm_families(model, [engine], float(self.started_s)),
        ]


PAGES: dict[str, type[EnginePage]] = {
    "vllm": VllmPage,
    "sglang": SglangPage,
    "trtllm": TrtllmPage,
    "dynamo": DynamoWorkerPage,
}


def registry_for(
    node: Node,
    deployment: Deployment,
    worker: Worker,
    *,
    started_s: int,
    clock: Callable[[], float],
) -> CollectorRegistry:
    """A registry holding one worker's page, ready for ``generate_latest`` or an HTTP server."""
    registry = CollectorRegistry(auto_describe=False)
    page = PAGES[deployment.engine](node, deployment, worker, started_s=started_s, clock=clock)
    registry.register(page)
    return registry
