"""From a table's short names to the sample names a page may really carry."""

from __future__ import annotations

from functools import cache

from wattledger.agent.engines.tables import (
    ALL_TABLES,
    COUNTER,
    GAUGE,
    HISTOGRAM_COUNT,
    HISTOGRAM_MEAN,
    HISTOGRAM_SUM,
    RATIO,
    EngineTable,
    Source,
)

# Families read for the restart marker and the role, whatever the engine.
PROCESS_START = "process_start_time_seconds"
ROLE_SIGNAL_PREFIXES = (
    "dynamo_component_",
    "dynamo_frontend_worker_",
    "dynamo_frontend_router_queue_pending_requests",
)


def family_names(table: EngineTable, name: str) -> tuple[str, ...]:
    """Full family names for ``name``: current name first, then older ones, per prefix."""
    names = (name, *table.renames.get(name, ()))
    return tuple(prefix + each for each in names for prefix in table.prefixes)


def sample_names(table: EngineTable, source: Source) -> tuple[str, ...]:
    """Sample names to look for, in order of preference, for the value of ``source``."""
    families = family_names(table, source.name)
    if source.kind in (COUNTER, RATIO):
        return tuple(name for family in families for name in (family + "_total", family))
    if source.kind == GAUGE:
        return families
    if source.kind in (HISTOGRAM_SUM, HISTOGRAM_MEAN):
        return tuple(family + "_sum" for family in families)
    if source.kind == HISTOGRAM_COUNT:
        return tuple(family + "_count" for family in families)
    raise ValueError(f"unknown source kind {source.kind!r} for {source.name}")


def denominator_names(table: EngineTable, source: Source) -> tuple[str, ...]:
    """Sample names of the divisor of a mean (``_count``) or a ratio (``per`` counter)."""
    if source.kind == HISTOGRAM_MEAN:
        return tuple(family + "_count" for family in family_names(table, source.name))
    if source.kind == RATIO:
        return tuple(
            name
            for family in family_names(table, source.per)
            for name in (family + "_total", family)
        )
    return ()


def family_of_sample(name: str) -> str:
    for suffix in ("_total", "_sum", "_count", "_bucket"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@cache
def _wanted_names() -> frozenset[str]:
    names: set[str] = {PROCESS_START}
    for table in ALL_TABLES:
        names.update(table.model_catalog)
        for sources in table.quantities.values():
            for source in sources:
                for short in filter(None, (source.name, source.per)):
                    for family in family_names(table, short):
                        names.update(
                            family + suffix
                            for suffix in ("", "_total", "_created", "_sum", "_count", "_bucket")
                        )
    return frozenset(names)


def wanted(name: str) -> bool:
    """Whether any table reads the family (or sample) called ``name``."""
    return name in _wanted_names() or name.startswith(ROLE_SIGNAL_PREFIXES)
