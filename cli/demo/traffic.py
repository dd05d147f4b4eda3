"""What an engine has counted by a given moment, from its throughput and the day's load.

Counts are pure functions of time, in whole numbers: tokens = throughput x load integrated since
the engine started, split into input, cached input and output by the stated shares, floored to
whole tokens. Two reads at the same moment always agree, and the count between two hour
boundaries is exact, so a test can check the store against hand arithmetic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

from wattledger.cli.demo.figures import (
    CACHED_SHARE_OF_INPUT,
    DECODE_TOKENS_PER_USER_S,
    INPUT_SHARE,
    OUTPUT_TOKENS_PER_REQUEST,
    PREFILL_S_PER_REQUEST,
)
from wattledger.cli.demo.fleet import Deployment, Node, Worker, load_pct, load_seconds
from wattledger.contract import ROLE_DECODE, ROLE_PREFILL

logger = logging.getLogger(__name__)

INPUT = Fraction(str(INPUT_SHARE.value))
OUTPUT = 1 - INPUT
CACHED = INPUT * Fraction(str(CACHED_SHARE_OF_INPUT.value))
TOKENS_PER_REQUEST = int(OUTPUT_TOKENS_PER_REQUEST.value)
PREFILL_S = PREFILL_S_PER_REQUEST.value
DECODE_S = OUTPUT_TOKENS_PER_REQUEST.value / DECODE_TOKENS_PER_USER_S.value


@dataclass(frozen=True)
class Counts:
    """An engine's cumulative counters: prompt tokens, those from the prefix cache, generated
    tokens, and finished requests."""

    input: int
    cached: int
    output: int
    requests: int

    @property
    def prefill_s(self) -> float:
        return self.requests * PREFILL_S

    @property
    def decode_s(self) -> float:
        return self.requests * DECODE_S

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.input - other.input,
            self.cached - other.cached,
            self.output - other.output,
            self.requests - other.requests,
        )


def _share(work: int, share: Fraction) -> int:
    """Whole tokens in ``share`` of ``work`` percent-token units."""
    return work * share.numerator // (100 * share.denominator)


def counts(tokens_per_s: int, started_s: int, t_s: int) -> Counts:
    """What an engine doing ``tokens_per_s`` at full load has counted from ``started_s`` to
    ``t_s``."""
    work = tokens_per_s * load_seconds(started_s, t_s)
    output = _share(work, OUTPUT)
    return Counts(_share(work, INPUT), _share(work, CACHED), output, output // TOKENS_PER_REQUEST)


def running_requests(tokens_per_s: int, t_s: int) -> int:
    """Requests in flight (Little's law: arrival rate x time each request takes)."""
    requests_per_s = tokens_per_s * load_pct(t_s) / 100 * float(OUTPUT) / TOKENS_PER_REQUEST
    return round(requests_per_s * (PREFILL_S + DECODE_S))


def worker_counts(
    node: Node, deployment: Deployment, worker: Worker, started_s: int, t_s: int
) -> list[tuple[str, Counts]]:
    """A worker's counters per engine, as its page shows them (before any role rule).

    A vLLM worker runs one data-parallel engine per GPU, each with its own series; other engines
    count for the worker as a whole. Both workers of a disaggregated pair see every request of
    the deployment: the prefill worker computes its prompts, the decode worker its output.
    """
    rate = node.tokens_per_gpu_s(deployment)
    if deployment.engine == "vllm":
        return [(str(engine), counts(rate, started_s, t_s)) for engine in range(len(worker.gpus))]
    if deployment.engine == "dynamo":
        return [("0", counts(rate * deployment.gpu_count, started_s, t_s))]
    return [("0", counts(rate * len(worker.gpus), started_s, t_s))]


def counted(role: str, raw: Counts) -> Counts:
    """What the contract's role rule keeps of a worker's counts (see agent.engines.roles)."""
    if role == ROLE_PREFILL:
        return Counts(raw.input, raw.cached, 0, 0)
    if role == ROLE_DECODE:
        return Counts(0, 0, raw.output, raw.requests)
    return raw
