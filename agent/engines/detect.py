"""Which engine wrote a page, and which disaggregation role the endpoint plays.

The engine is told by its metric prefixes (``vllm:``, ``sglang:``, ``trtllm_``, ``nv_``,
``dynamo_frontend_``, ``dynamo_component_``, ``tgi_``, ``llamacpp:``), or by trtllm-serve's
family names where a build dropped the prefix. A Dynamo worker passes its engine's metrics
through unchanged, so its page is read with that engine's table first.

The role is told by labels, never by metric names: Dynamo's ``dynamo_component`` (``prefill``;
``backend`` is both the decode worker and the aggregated worker), SGLang's ``engine_type``
(``prefill``, ``decode``, ``unified``; some disaggregated builds say ``unified``), or the caller.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from wattledger.agent.engines.errors import UnknownEngine
from wattledger.agent.engines.exposition import ParsedPayload
from wattledger.agent.engines.tables import (
    DYNAMO_FRONTEND,
    DYNAMO_WORKER,
    PASS_THROUGH,
    TABLES,
    EngineTable,
)
from wattledger.contract import ENGINES, ROLE_AGGREGATED, ROLE_DECODE, ROLE_PREFILL, ROLES
from wattledger.errors import ConfigError

logger = logging.getLogger(__name__)

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

KV_BY_SOURCE = "vllm:prompt_tokens_by_source_total"
# A decode worker receives (nearly) every prompt token by KV transfer; an aggregated worker with
# a KV offloading connector (LMCache) receives only its cache hits that way.
DECODE_TRANSFER_SHARE = 0.95


@dataclass(frozen=True)
class Detection:
    """The engine a page belongs to and the tables to read it with, in order of preference."""

    engine: str
    tables: tuple[EngineTable, ...]
    version_hint: str | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoleFinding:
    role: str
    source: str
    notes: tuple[str, ...] = ()


def detect_engine(parsed: ParsedPayload, override: str | None = None) -> Detection:
    """Name the engine of ``parsed``; ``override`` (a contract engine name) skips the guess."""
    counts = _family_counts(parsed)
    inner = _pass_through_engine(counts)

    if override is not None:
        if override not in ENGINES:
            raise ConfigError(f"unknown engine {override!r}; choose one of {', '.join(ENGINES)}")
        if override != "dynamo":
            table = TABLES[override]
            return Detection(override, (table,), _version_hint(parsed, table))
        if counts["dynamo_worker"] > counts["dynamo_frontend"]:
            return _worker(parsed, inner)
        return Detection("dynamo", (DYNAMO_FRONTEND,), "frontend")

    if counts["dynamo_frontend"]:
        return Detection("dynamo", (DYNAMO_FRONTEND,), "frontend")
    if counts["dynamo_worker"]:
        return _worker(parsed, inner)

    best = max(TABLES, key=lambda engine: counts.get(engine, 0))
    if counts.get(best, 0) == 0:
        # Quote only names shaped like metric names, cut short: a wrong page may be anything.
        names = [n[:40] for n in sorted(parsed.families) if METRIC_NAME.fullmatch(n)]
        sample = ", ".join(names[:4]) or "no metric names"
        raise UnknownEngine(
            f"no metric family of a known engine on this page (found {sample}); "
            "check the URL points at the engine's metrics path"
        )
    table = TABLES[best]
    return Detection(best, (table,), _version_hint(parsed, table))


def detect_role(
    parsed: ParsedPayload, detection: Detection, override: str | None = None
) -> RoleFinding:
    """The endpoint's disaggregation role, and what it was read from."""
    if override is not None:
        if override not in ROLES:
            raise ConfigError(f"unknown role {override!r}; choose one of {', '.join(ROLES)}")
        return RoleFinding(override, "set by the caller")

    labels = _label_values(parsed, ("dynamo_component", "engine_type", "worker_type"))
    if detection.tables[0] is DYNAMO_FRONTEND:
        return _frontend_role(labels["worker_type"])
    if labels["dynamo_component"]:
        return _dynamo_component_role(parsed, labels["dynamo_component"])
    if any(table.engine == "sglang" for table in detection.tables) and labels["engine_type"]:
        return _sglang_role(labels["engine_type"])
    return RoleFinding(ROLE_AGGREGATED, "no role label on the page; assumed aggregated")


def _family_counts(parsed: ParsedPayload) -> dict[str, int]:
    counts = dict.fromkeys((*TABLES, "dynamo_frontend", "dynamo_worker"), 0)
    del counts["dynamo"]
    for family in parsed.families:
        for engine, table in TABLES.items():
            if engine == "dynamo":
                continue
            if family in table.signatures or any(
                prefix and family.startswith(prefix) for prefix in table.prefixes
            ):
                counts[engine] += 1
        if family.startswith(DYNAMO_FRONTEND.prefixes):
            counts["dynamo_frontend"] += 1
        elif family.startswith(DYNAMO_WORKER.prefixes):
            counts["dynamo_worker"] += 1
    return counts


def _pass_through_engine(counts: dict[str, int]) -> str | None:
    present = [engine for engine in PASS_THROUGH if counts[engine]]
    return max(present, key=lambda engine: counts[engine]) if present else None


def _worker(parsed: ParsedPayload, inner: str | None) -> Detection:
    if inner is None:
        return Detection("dynamo", (DYNAMO_WORKER,), "worker without engine metrics")
    table = TABLES[inner]
    hint = _version_hint(parsed, table)
    described = f"worker passing {inner} metrics through" + (f" ({hint})" if hint else "")
    return Detection("dynamo", (table, DYNAMO_WORKER), described)


def _version_hint(parsed: ParsedPayload, table: EngineTable) -> str | None:
    for family, hint in table.version_hints:
        # OpenMetrics names a counter family without its '_total'.
        if family in parsed.families or family.removesuffix("_total") in parsed.families:
            return hint
    return None


def _label_values(parsed: ParsedPayload, labels: tuple[str, ...]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {label: set() for label in labels}
    for samples in parsed.samples.values():
        for sample in samples:
            for label in labels:
                value = sample.labels.get(label)
                if value:
                    found[label].add(value)
    return found


def _frontend_role(worker_types: set[str]) -> RoleFinding:
    notes = ()
    if ROLE_PREFILL in worker_types:
        notes = (
            "the workers behind this frontend are disaggregated (worker_type=prefill seen); "
            "the frontend itself counts each request once",
        )
    return RoleFinding(ROLE_AGGREGATED, "Dynamo frontend (sees whole requests)", notes)


def _dynamo_component_role(parsed: ParsedPayload, components: set[str]) -> RoleFinding:
    if ROLE_PREFILL in components:
        return RoleFinding(ROLE_PREFILL, "dynamo_component=prefill")
    if ROLE_DECODE in components:
        return RoleFinding(ROLE_DECODE, "dynamo_component=decode")

    named = ",".join(sorted(components))
    transferred, local = _prompt_tokens_by_origin(parsed)
    if transferred > 0 and transferred >= DECODE_TRANSFER_SHARE * (transferred + local):
        share = transferred / (transferred + local)
        return RoleFinding(
            ROLE_DECODE,
            f"dynamo_component={named}; {share:.0%} of its {transferred + local:g} prompt tokens "
            "arrived by KV transfer",
        )
    # Limitation: a decode worker of a vLLM without prompt_tokens_by_source (before 2026), or of
    # SGLang or TensorRT-LLM under Dynamo, is read as aggregated unless its role is configured.
    return RoleFinding(
        ROLE_AGGREGATED,
        f"dynamo_component={named}",
        (
            f"dynamo_component={named} names both an aggregated worker and a disaggregated "
            "decode worker; its prompt tokens did not arrive by KV transfer, so aggregated: set "
            "the role to decode for a decode worker",
        ),
    )


def _prompt_tokens_by_origin(parsed: ParsedPayload) -> tuple[float, float]:
    """Prompt tokens received by KV transfer, and those computed or cached locally."""
    transferred = local = 0.0
    for sample in parsed.get(KV_BY_SOURCE):
        if not math.isfinite(sample.value):
            continue
        if sample.labels.get("source") == "external_kv_transfer":
            transferred += sample.value
        else:
            local += sample.value
    return transferred, local


def _sglang_role(engine_types: set[str]) -> RoleFinding:
    for role in (ROLE_PREFILL, ROLE_DECODE):
        if role in engine_types:
            return RoleFinding(role, f"engine_type={role}")
    return RoleFinding(
        ROLE_AGGREGATED,
        "engine_type=unified",
        (
            "engine_type=unified is also reported by some disaggregated SGLang builds (0.4.9 "
            "dev): set the role if this server is a prefill or decode worker",
        ),
    )
