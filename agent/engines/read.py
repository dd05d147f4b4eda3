"""One call from a metrics page to an :class:`EngineReading`: parse, detect, map, find the role."""

from __future__ import annotations

import logging

from wattledger.agent.engines.detect import detect_engine, detect_role
from wattledger.agent.engines.exposition import ParsedPayload, parse_exposition
from wattledger.agent.engines.mapping import PageMapper
from wattledger.agent.engines.reading import EngineReading
from wattledger.agent.engines.resolve import wanted

logger = logging.getLogger(__name__)


def read_payload(
    text: str,
    *,
    engine: str | None = None,
    role: str | None = None,
    model: str | None = None,
) -> EngineReading:
    """Read one metrics page (Prometheus text or OpenMetrics).

    ``engine`` and ``role`` override what the page says; ``model`` names the model of an engine
    that labels none (llama.cpp, TGI) or labels it with a placeholder. The values are the
    engine's raw counters; :func:`~wattledger.agent.engines.roles.apply_role` applies the
    disaggregation rule and the ledger turns resets into never-decreasing totals. Raises
    :class:`~wattledger.agent.engines.errors.EmptyPayload` for an empty page and
    :class:`~wattledger.agent.engines.errors.UnknownEngine` for a page of no known engine.
    """
    return read_parsed(parse_exposition(text, wanted), engine=engine, role=role, model=model)


def read_parsed(
    parsed: ParsedPayload,
    *,
    engine: str | None = None,
    role: str | None = None,
    model: str | None = None,
) -> EngineReading:
    detection = detect_engine(parsed, engine)
    reading = EngineReading(
        engine=detection.engine,
        version_hint=detection.version_hint,
        parse_errors=parsed.parse_errors,
    )
    reading.notes.extend(parsed.notes)
    reading.notes.extend(detection.notes)

    PageMapper(parsed, detection.tables, model).fill(reading)

    unexplained = [
        family
        for family in parsed.empty_families
        if not any(family in sentence for sentence in reading.absent)
    ]
    if unexplained:
        reading.notes.append(
            f"declared with no samples (absent, not zero): {', '.join(unexplained)}"
        )

    finding = detect_role(parsed, detection, role)
    reading.role, reading.role_source = finding.role, finding.source
    reading.notes.extend(finding.notes)
    logger.debug(
        "read %s page: %d models, %d parse errors",
        reading.engine,
        len(reading.models),
        reading.parse_errors,
    )
    return reading
