"""How long reading one engine metrics page takes: parse and map, per page and per KB.

Builds a vLLM V1 page of about 35 KB dominated by 30-bucket histograms (several models, each
with time-to-first-token, inter-token, prefill, decode, end-to-end and queue histograms, plus
the counters and gauges), then times ``read_payload`` over many iterations. For scale it also
times ``prometheus_client``'s parser alone on the whole page, which is the floor a reader that
parses every line cannot go below.

Run: python benchmarks/bench_engine_parse.py [--iterations N] [--target-kb KB]
"""

from __future__ import annotations

import argparse
import statistics
import time

from prometheus_client.parser import text_string_to_metric_families

from wattledger.agent.engines.read import read_payload

HISTOGRAMS = (
    "time_to_first_token_seconds",
    "request_prefill_time_seconds",
    "request_decode_time_seconds",
)
BUCKETS = tuple(round(0.001 * 1.5**i, 6) for i in range(30))


def model_block(index: int) -> list[str]:
    labels = f'engine="0",model_name="org/model-{index:02d}"'
    lines = []
    for name, value in (("prompt_tokens", 1.2e6 + index), ("generation_tokens", 3.4e5 + index)):
        lines += [
            f"# HELP vllm:{name}_total Number of tokens processed.",
            f"# TYPE vllm:{name}_total counter",
            f"vllm:{name}_total{{{labels}}} {value}",
            f"# HELP vllm:{name}_created Number of tokens processed.",
            f"# TYPE vllm:{name}_created gauge",
            f"vllm:{name}_created{{{labels}}} 1.7520001005e+09",
        ]
    lines += [
        "# HELP vllm:request_success_total Count of successfully processed requests.",
        "# TYPE vllm:request_success_total counter",
    ]
    for reason, count in (("stop", 900), ("length", 80), ("abort", 3), ("error", 0)):
        lines.append(f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {count}.0')
    lines += [
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{labels}}} 12.0",
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{{{labels}}} 0.41",
    ]
    for histogram in HISTOGRAMS:
        lines += [
            f"# HELP vllm:{histogram} Histogram of {histogram}.",
            f"# TYPE vllm:{histogram} histogram",
        ]
        for position, bound in enumerate(BUCKETS):
            count = min(983, 3 * position * position)
            lines.append(f'vllm:{histogram}_bucket{{{labels},le="{bound}"}} {count}.0')
        lines += [
            f'vllm:{histogram}_bucket{{{labels},le="+Inf"}} 983.0',
            f"vllm:{histogram}_count{{{labels}}} 983.0",
            f"vllm:{histogram}_sum{{{labels}}} 1234.5678",
        ]
    return lines


def build_page(target_kb: float) -> tuple[str, int]:
    """Add model blocks while the page stays within ``target_kb`` (at least one model)."""
    lines = model_block(0)
    models = 1
    while len("\n".join(lines + model_block(models))) <= target_kb * 1024:
        lines += model_block(models)
        models += 1
    return "\n".join(lines) + "\n", models


def time_per_call(function, page: str, iterations: int) -> float:
    """Median seconds per call over ``iterations`` calls, in five batches."""
    function(page)  # warm up
    batches = []
    per_batch = max(1, iterations // 5)
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(per_batch):
            function(page)
        batches.append((time.perf_counter() - started) / per_batch)
    return statistics.median(batches)


def library_only(page: str) -> None:
    for _family in text_string_to_metric_families(page):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--target-kb", type=float, default=35.0)
    args = parser.parse_args()

    page, models = build_page(args.target_kb)
    size_kb = len(page.encode()) / 1024
    reading = read_payload(page)
    assert len(reading.models) == models, "every model of the page must be read"

    ours = time_per_call(read_payload, page, args.iterations)
    floor = time_per_call(library_only, page, max(50, args.iterations // 5))

    print(
        f"page: {size_kb:.1f} KB, {page.count(chr(10))} lines, {models} models, "
        f"{len(HISTOGRAMS)} x {len(BUCKETS)}-bucket histograms per model"
    )
    print(f"read_payload (parse + map): {ours * 1e3:.2f} ms/page, {size_kb / ours:,.0f} KB/s")
    print(
        f"prometheus_client parser alone, every line: {floor * 1e3:.2f} ms/page, "
        f"{size_kb / floor:,.0f} KB/s"
    )
    print(f"ratio read_payload / full library parse: {ours / floor:.2f}")


if __name__ == "__main__":
    main()
