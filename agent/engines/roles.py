"""The contract's counting rule for disaggregated serving (DESIGN.md section 4).

A request in prefill/decode disaggregation passes through two workers, and both count it:
vLLM's decode worker even counts the prompt it received by KV transfer (vLLM #33289). So each
quantity is kept where its work was done and dropped on the other worker:

* **prefill** workers keep input and cached input tokens; they drop output tokens (the one
  token a prefill worker samples is generated again by the decode worker) and finished
  requests (a request is counted where it finishes, on the decode worker);
* **decode** workers keep output tokens and finished requests; they drop input and cached input
  tokens, so prompt tokens count once, on the prefill worker;
* **aggregated** workers keep everything.

Phase seconds are kept as read: a disaggregated endpoint's cost goes wholly to its phase.
"""

from __future__ import annotations

import copy
import logging

from wattledger.agent.engines.reading import EngineReading
from wattledger.agent.engines.tables import CACHED, INPUT, LABELS, OUTPUT, REQUESTS
from wattledger.contract import ROLE_AGGREGATED, ROLE_DECODE, ROLE_PREFILL, ROLES
from wattledger.errors import ConfigError

logger = logging.getLogger(__name__)

# Limitation: requests are counted on decode workers only, so a prefill endpoint's cost per
# request has no denominator of its own; its cost per input token does.
DROPPED: dict[str, tuple[str, ...]] = {
    ROLE_PREFILL: (OUTPUT, REQUESTS, "token_split.decode"),
    ROLE_DECODE: (
        INPUT,
        CACHED,
        "token_split.prefill_compute",
        "token_split.prefill_cache",
        "token_split.prefill_transfer",
    ),
    ROLE_AGGREGATED: (),
}
REASONS = {
    ROLE_PREFILL: "output tokens and requests count on the decode worker",
    ROLE_DECODE: "prompt tokens count once, on the prefill worker",
}


def apply_role(reading: EngineReading, role: str | None = None) -> EngineReading:
    """A copy of ``reading`` holding only what an endpoint of ``role`` counts.

    ``role`` defaults to the reading's own (detected or set) role, then to aggregated.
    """
    role = role or reading.role or ROLE_AGGREGATED
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")

    result = copy.deepcopy(reading)
    result.role = role
    dropped: dict[str, float] = {}
    for model in result.models.values():
        for key in DROPPED[role]:
            value = _take(model, key)
            if value is not None and key in LABELS:
                dropped[key] = dropped.get(key, 0.0) + value

    if dropped:
        listed = ", ".join(f"{LABELS[key]} ({value:g})" for key, value in dropped.items())
        result.notes.append(f"role {role}: dropped {listed}; {REASONS[role]}")
    return result


def _take(model, key: str) -> float | None:
    """Remove quantity ``key`` from ``model`` and return the value it held."""
    if key.startswith("token_split."):
        quantity = model.token_split.pop(key.split(".", 1)[1], None)
    else:
        quantity = getattr(model, key)
        setattr(model, key, None)
    return None if quantity is None else quantity.value
