"""The simulated fleet: four nodes, what each serves, and the day's traffic.

Two Hopper nodes and two Blackwell nodes, each serving one of two models through a different
engine, so one run exercises every engine reader the agent has: vLLM V1 (data-parallel engines),
SGLang (tensor-parallel ranks), trtllm-serve (current names, token counters) and an NVIDIA Dynamo
disaggregated pair (a prefill worker and a decode worker passing vLLM's metrics through). Two GPUs
on each 8-GPU node that serves one small model are spares with nothing on them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wattledger.cli.demo.figures import DEEPSEEK_R1, GPT_OSS, THROUGHPUT
from wattledger.contract import ROLE_AGGREGATED, ROLE_DECODE, ROLE_PREFILL

logger = logging.getLogger(__name__)

# Share of full load per UTC hour, in percent (multiples of 5, so hourly token counts are whole).
# Traffic drains to nothing between 02:00 and 05:00 and peaks in the afternoon.
DAY_CURVE_PCT: tuple[int, ...] = (
    30,
    20,
    0,
    0,
    0,
    10,
    25,
    40,
    60,
    75,
    85,
    90,
    90,
    95,
    100,
    100,
    95,
    85,
    75,
    65,
    55,
    50,
    45,
    40,
)
DAY_CURVE_SOURCE = "ASSUMED: a one-region day; no traffic 02:00-05:00 UTC, peak 14:00-16:00 UTC"

# The engines were started this long before the simulated window, so their counters are not at
# zero when the agents first read them (as on any real fleet).
ENGINE_UPTIME_BEFORE_S = 6 * 3600


@dataclass(frozen=True)
class Worker:
    """One engine process with its own metrics page, and the node's GPUs it runs on."""

    endpoint: str
    gpus: tuple[int, ...]
    role: str = ROLE_AGGREGATED
    path: str = "/metrics"


@dataclass(frozen=True)
class Deployment:
    """One model served by one engine on one node, by one worker or a prefill/decode pair."""

    engine: str  # vllm | sglang | trtllm | dynamo
    model: str
    workers: tuple[Worker, ...]
    description: str

    @property
    def gpu_count(self) -> int:
        return sum(len(worker.gpus) for worker in self.workers)


@dataclass(frozen=True)
class Node:
    name: str
    sku: str
    gpu_count: int
    deployments: tuple[Deployment, ...]

    @property
    def spec(self) -> str:
        """The fake NVML's spec for this node, e.g. ``8xH100``."""
        return f"{self.gpu_count}x{self.sku}"

    def assigned(self) -> set[int]:
        return {index for d in self.deployments for w in d.workers for index in w.gpus}

    def spares(self) -> list[int]:
        return [index for index in range(self.gpu_count) if index not in self.assigned()]

    def tokens_per_gpu_s(self, deployment: Deployment) -> int:
        return int(THROUGHPUT[(self.sku, deployment.model)].value)


FLEET: tuple[Node, ...] = (
    Node(
        "hopper-h100-1",
        "H100",
        8,
        (
            Deployment(
                "vllm",
                GPT_OSS,
                (Worker("h100-vllm-gpt-oss", (0, 1, 2, 3, 4, 5)),),
                "vLLM V1, 6 DP engines",
            ),
        ),
    ),
    Node(
        "hopper-h200-1",
        "H200",
        8,
        (
            Deployment(
                "sglang", DEEPSEEK_R1, (Worker("h200-sglang-r1", tuple(range(8))),), "SGLang, TP 8"
            ),
        ),
    ),
    Node(
        "blackwell-b200-1",
        "B200",
        8,
        (
            Deployment(
                "trtllm",
                GPT_OSS,
                (Worker("b200-trtllm-gpt-oss", (0, 1, 2, 3, 4, 5), path="/prometheus/metrics"),),
                "trtllm-serve",
            ),
        ),
    ),
    Node(
        "blackwell-gb200-1",
        "GB200",
        4,
        (
            Deployment(
                "dynamo",
                DEEPSEEK_R1,
                (
                    Worker("gb200-dynamo-r1-prefill", (0, 1), role=ROLE_PREFILL),
                    Worker("gb200-dynamo-r1-decode", (2, 3), role=ROLE_DECODE),
                ),
                "Dynamo + vLLM, P/D",
            ),
        ),
    ),
)


def load_pct(t_s: int) -> int:
    """Percent of full load at ``t_s`` (Unix seconds)."""
    return DAY_CURVE_PCT[(t_s // 3600) % 24]


def load_seconds(start_s: int, end_s: int) -> int:
    """Load integrated over ``[start_s, end_s)``, in percent-seconds (an exact integer)."""
    total = 0
    t = start_s
    while t < end_s:
        segment_end = min(t - t % 3600 + 3600, end_s)
        total += load_pct(t) * (segment_end - t)
        t = segment_end
    return total
