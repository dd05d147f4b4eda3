"""What the agent reads from one engine payload.

A reading holds the engine's own cumulative counters as they appear on the page (raw values that
reset when the engine restarts). Turning them into the contract's never-decreasing counters is the
ledger's job (:mod:`wattledger.agent.ledger`). ``None`` always means *absent*: the engine did not
expose the quantity. Zero means the engine said zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Quantity:
    """One value read off a payload, with the series it came from.

    ``source`` names how the value was obtained, for example ``counter vllm:prompt_tokens_total``
    or ``histogram_sum tgi_request_input_length``, so a report can say how its number was made.
    """

    value: float
    source: str


@dataclass
class ModelReading:
    """Cumulative counters for one model served by an endpoint (a base model or a LoRA adapter)."""

    model: str
    input_tokens: Quantity | None = None
    input_cached_tokens: Quantity | None = None
    output_tokens: Quantity | None = None
    requests: Quantity | None = None
    prefill_seconds: Quantity | None = None
    decode_seconds: Quantity | None = None
    # Live tokens per phase, where the engine splits them: ``prefill_compute``, ``prefill_cache``,
    # ``prefill_transfer`` (KV received from another worker) and ``decode``. Used to apportion an
    # aggregated endpoint between phases when the engine has no phase seconds (SGLang).
    token_split: dict[str, Quantity] = field(default_factory=dict)
    # Values that are not cumulative counters: ``running_requests``, ``waiting_requests``,
    # ``kv_cache_usage`` (0..1), ``prefix_cache_hit_ratio`` (0..1, lifetime),
    # ``time_to_first_token_mean_s`` and ``inter_token_latency_mean_s`` (lifetime means).
    indicators: dict[str, Quantity] = field(default_factory=dict)


@dataclass
class EngineReading:
    """Everything one scrape of one endpoint says about tokens, requests and phase time."""

    engine: str
    models: dict[str, ModelReading] = field(default_factory=dict)
    role: str | None = None
    role_source: str | None = None
    started_at: float | None = None
    version_hint: str | None = None
    absent: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parse_errors: int = 0
