"""Storing points: cumulative values in, per-interval deltas and hourly rollups out, exactly once.

Each batch is one transaction. The series rows it touches are locked first (``FOR UPDATE`` on
PostgreSQL, in id order so two collectors never deadlock; SQLite's ``BEGIN IMMEDIATE`` serialises
writers), so two collectors that receive points of the same series cannot both count them.

A counter point becomes a delta by comparison with the last point stored for its series:

* a point not after the last one stored is a **repeat or late arrival** and adds nothing; the
  counter is cumulative, so the later point already carries its growth;
* a point whose series start time changed begins a **new segment** (the sender restarted its
  count): its whole value is the growth since the new start;
* a point below the last value without a new start is a **reset**: its value is the growth;
* otherwise the delta is the difference. A delta is never negative.

Points that break the contract (no GPU id, NaN, a negative counter) are skipped and reported back
as rejected; the rest of the batch is stored.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, bindparam, select, update

from wattledger import contract as c
from wattledger.collector import schema as s
from wattledger.collector.points import (
    COUNTER,
    DELTA,
    GAUGE,
    GPU_METRICS,
    InvalidPoint,
    Point,
    SeriesIdentity,
    identify,
    node_of,
    tags_of,
)
from wattledger.collector.rollup import hour_of, split_by_hour
from wattledger.collector.sqlbulk import insert_ignore, upsert_add, upsert_replace

logger = logging.getLogger(__name__)

LOCK_CHUNK = 5_000


@dataclass
class IngestResult:
    """What happened to each point of a batch."""

    received: int = 0
    stored_deltas: int = 0
    stored_gauges: int = 0
    baselines: int = 0
    repeats: int = 0
    resets: int = 0
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < 10:
            self.rejections.append(reason)


@dataclass
class _State:
    id: int
    start_ns: int | None
    last_ns: int | None
    last_value: float | None
    dirty: bool = False


class Ingestor:
    """Writes decoded points into the store; one instance serves many batches."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ingest(
        self,
        points: Iterable[Point],
        *,
        token_id: int | None = None,
        allowed_nodes: frozenset[str] | None = None,
    ) -> IngestResult:
        result = IngestResult()
        accepted: list[tuple[Point, SeriesIdentity]] = []

        for point in points:
            result.received += 1
            try:
                _check_value(point)
                identity = identify(point)
            except InvalidPoint as exc:
                result.reject(str(exc))
                continue
            if allowed_nodes is not None and identity.node not in allowed_nodes:
                result.reject(f"this token may not write for node {identity.node!r}")
                continue
            accepted.append((point, identity))

        if not accepted:
            return result

        with self.engine.begin() as conn:
            endpoint_ids = _upsert_dimensions(conn, accepted)
            states = _lock_series(conn, accepted, endpoint_ids, token_id)
            writes = _apply(accepted, states, result)
            _write(conn, writes, states)

        logger.debug(
            "stored %d deltas and %d gauge samples from %d points",
            result.stored_deltas,
            result.stored_gauges,
            result.received,
        )
        return result


def _check_value(point: Point) -> None:
    if not math.isfinite(point.value):
        raise InvalidPoint(f"{point.metric} has a non-finite value {point.value!r}")
    if point.kind in (COUNTER, DELTA) and point.value < 0:
        raise InvalidPoint(f"{point.metric} is a counter but has a negative value {point.value!r}")
    if point.t_ns <= 0:
        raise InvalidPoint(f"{point.metric} has no timestamp")


@dataclass
class _Writes:
    deltas: list[dict[str, Any]] = field(default_factory=list)
    gauges: list[dict[str, Any]] = field(default_factory=list)
    rollups: dict[tuple[int, int], list[float]] = field(default_factory=dict)

    def add_rollup(self, series_id: int, hour: int, value: float, seconds: float, active: float, samples: int) -> None:
        acc = self.rollups.get((series_id, hour))
        if acc is None:
            self.rollups[(series_id, hour)] = [value, seconds, active, samples]
            return
        acc[0] += value
        acc[1] += seconds
        acc[2] += active
        acc[3] += samples


def _apply(
    accepted: Sequence[tuple[Point, SeriesIdentity]],
    states: dict[str, _State],
    result: IngestResult,
) -> _Writes:
    """Compare each point with its series' last stored point; collect the rows to write."""
    writes = _Writes()
    by_series: dict[str, list[Point]] = defaultdict(list)
    for point, identity in accepted:
        by_series[identity.key_hash].append(point)

    for key_hash, points in by_series.items():
        state = states[key_hash]
        points.sort(key=lambda p: p.t_ns)
        for point in points:
            if state.last_ns is not None and point.t_ns <= state.last_ns:
                result.repeats += 1
                continue
            if point.kind == GAUGE:
                _gauge(point, state, writes, result)
            elif point.kind == DELTA:
                _delta_point(point, state, writes, result)
            else:
                _cumulative_point(point, state, writes, result)
            state.dirty = True
    return writes


def _gauge(point: Point, state: _State, writes: _Writes, result: IngestResult) -> None:
    writes.gauges.append({"series_id": state.id, "t_ns": point.t_ns, "value": point.value})
    writes.add_rollup(state.id, hour_of(point.t_ns), point.value, 0.0, 0.0, 1)
    state.last_ns = point.t_ns
    state.last_value = point.value
    result.stored_gauges += 1


def _delta_point(point: Point, state: _State, writes: _Writes, result: IngestResult) -> None:
    start = point.start_ns or state.last_ns or point.t_ns
    _record_delta(state, start, point.t_ns, point.value, writes, result)
    state.start_ns = point.start_ns
    state.last_ns = point.t_ns
    state.last_value = point.value


def _cumulative_point(point: Point, state: _State, writes: _Writes, result: IngestResult) -> None:
    if state.last_ns is None:
        if point.start_ns is not None and point.start_ns < point.t_ns:
            _record_delta(state, point.start_ns, point.t_ns, point.value, writes, result)
        else:
            result.baselines += 1
    elif point.start_ns is not None and point.start_ns != state.start_ns:
        begin = max(point.start_ns, state.last_ns)
        _record_delta(state, begin, point.t_ns, point.value, writes, result)
        result.resets += 1
    elif state.last_value is not None and point.value < state.last_value:
        _record_delta(state, state.last_ns, point.t_ns, point.value, writes, result)
        result.resets += 1
    else:
        growth = point.value - (state.last_value or 0.0)
        _record_delta(state, state.last_ns, point.t_ns, growth, writes, result)

    state.start_ns = point.start_ns
    state.last_ns = point.t_ns
    state.last_value = point.value


def _record_delta(
    state: _State, start_ns: int, end_ns: int, value: float, writes: _Writes, result: IngestResult
) -> None:
    writes.deltas.append(
        {"series_id": state.id, "end_ns": end_ns, "start_ns": start_ns, "value": value}
    )
    for hour, share, seconds in split_by_hour(start_ns, end_ns, value):
        writes.add_rollup(state.id, hour, share, seconds, seconds if value > 0 else 0.0, 0)
    result.stored_deltas += 1


def _write(conn, writes: _Writes, states: dict[str, _State]) -> None:
    insert_ignore(conn, s.deltas, writes.deltas, ("series_id", "end_ns"))
    insert_ignore(conn, s.gauge_samples, writes.gauges, ("series_id", "t_ns"))
    rollups = [
        {"series_id": sid, "hour": hour, "value": v, "seconds": sec, "active_seconds": act, "samples": n}
        for (sid, hour), (v, sec, act, n) in writes.rollups.items()
    ]
    upsert_add(conn, s.rollup_hourly, rollups, ("series_id", "hour"), ("value", "seconds", "active_seconds", "samples"))
    hours = sorted({hour for _sid, hour in writes.rollups})
    upsert_add(conn, s.dirty_hours, [{"hour": hour, "version": 1} for hour in hours], ("hour",), ("version",))

    changed = [
        {"b_id": st.id, "b_start": st.start_ns, "b_last": st.last_ns, "b_value": st.last_value}
        for st in states.values()
        if st.dirty
    ]
    if changed:
        stmt = (
            update(s.series)
            .where(s.series.c.id == bindparam("b_id"))
            .values(start_ns=bindparam("b_start"), last_ns=bindparam("b_last"), last_value=bindparam("b_value"))
        )
        conn.execute(stmt, changed)


def _upsert_dimensions(conn, accepted: Sequence[tuple[Point, SeriesIdentity]]) -> dict[tuple[str, str], int]:
    """Record GPUs, endpoints and endpoint-to-GPU links seen in the batch; return endpoint ids."""
    gpus: dict[str, dict[str, Any]] = {}
    endpoints: dict[tuple[str, str], dict[str, Any]] = {}
    links: dict[tuple[tuple[str, str], str], dict[str, Any]] = {}

    for point, identity in accepted:
        resource = point.resource
        if identity.gpu_uuid is not None:
            row = gpus.get(identity.gpu_uuid)
            if row is None:
                row = _gpu_row(identity, point)
                gpus[identity.gpu_uuid] = row
            else:
                _merge_gpu(row, point)
            continue

        key = (identity.node, identity.endpoint)
        row = endpoints.get(key)
        if row is None:
            endpoints[key] = row = _endpoint_row(identity, point)
        else:
            row["first_seen_ns"] = min(row["first_seen_ns"], point.t_ns)
            row["last_seen_ns"] = max(row["last_seen_ns"], point.t_ns)
        for gpu_uuid in _gpu_ids(point.attrs.get(c.ATTR_GPU_IDS)):
            link = links.get((key, gpu_uuid))
            if link is None:
                links[(key, gpu_uuid)] = {"first_seen_ns": point.t_ns, "last_seen_ns": point.t_ns}
            else:
                link["first_seen_ns"] = min(link["first_seen_ns"], point.t_ns)
                link["last_seen_ns"] = max(link["last_seen_ns"], point.t_ns)

    upsert_replace(
        conn,
        s.gpus,
        [gpus[key] for key in sorted(gpus)],
        ("uuid",),
        ("node", "cluster", "site", "name", "sku", "architecture", "parent_uuid", "mig_profile", "tags", "last_seen_ns"),
        keep_min=("first_seen_ns",),
    )
    upsert_replace(
        conn,
        s.endpoints,
        [endpoints[key] for key in sorted(endpoints)],
        ("node", "name"),
        ("engine", "engine_version", "role", "cluster", "site", "tags", "last_seen_ns"),
        keep_min=("first_seen_ns",),
    )

    endpoint_ids: dict[tuple[str, str], int] = {}
    if endpoints:
        nodes = {node for node, _ in endpoints}
        rows = conn.execute(
            select(s.endpoints.c.id, s.endpoints.c.node, s.endpoints.c.name).where(s.endpoints.c.node.in_(nodes))
        )
        endpoint_ids = {(node, name): eid for eid, node, name in rows if (node, name) in endpoints}

    link_rows = sorted(
        (
            {"endpoint_id": endpoint_ids[key], "gpu_uuid": gpu_uuid, **times}
            for (key, gpu_uuid), times in links.items()
        ),
        key=lambda row: (row["endpoint_id"], row["gpu_uuid"]),
    )
    upsert_replace(
        conn, s.endpoint_gpus, link_rows, ("endpoint_id", "gpu_uuid"), ("last_seen_ns",), keep_min=("first_seen_ns",)
    )
    return endpoint_ids


def _gpu_row(identity: SeriesIdentity, point: Point) -> dict[str, Any]:
    attrs, resource = point.attrs, point.resource
    return {
        "uuid": identity.gpu_uuid,
        "node": identity.node,
        "cluster": _opt(resource.get(c.RES_CLUSTER)),
        "site": _opt(resource.get(c.RES_SITE)),
        "name": _opt(attrs.get(c.ATTR_HW_NAME)),
        "sku": _opt(attrs.get(c.ATTR_SKU)),
        "architecture": _opt(attrs.get(c.ATTR_ARCHITECTURE)),
        "parent_uuid": _opt(attrs.get(c.ATTR_HW_PARENT)),
        "mig_profile": _opt(attrs.get(c.ATTR_MIG_PROFILE)),
        "tags": json.dumps(tags_of(resource), sort_keys=True),
        "first_seen_ns": point.t_ns,
        "last_seen_ns": point.t_ns,
    }


def _merge_gpu(row: dict[str, Any], point: Point) -> None:
    """Fill descriptive fields a later point of the same GPU carries (gauges may carry fewer)."""
    for column, attr in (
        ("name", c.ATTR_HW_NAME),
        ("sku", c.ATTR_SKU),
        ("architecture", c.ATTR_ARCHITECTURE),
        ("parent_uuid", c.ATTR_HW_PARENT),
        ("mig_profile", c.ATTR_MIG_PROFILE),
    ):
        if row[column] is None and point.attrs.get(attr):
            row[column] = str(point.attrs[attr])
    row["first_seen_ns"] = min(row["first_seen_ns"], point.t_ns)
    row["last_seen_ns"] = max(row["last_seen_ns"], point.t_ns)


def _endpoint_row(identity: SeriesIdentity, point: Point) -> dict[str, Any]:
    attrs, resource = point.attrs, point.resource
    role = str(attrs.get(c.ATTR_ROLE) or c.ROLE_AGGREGATED)
    if role not in c.ROLES:
        role = c.ROLE_AGGREGATED
    return {
        "node": identity.node,
        "name": identity.endpoint,
        "engine": _opt(attrs.get(c.ATTR_ENGINE)),
        "engine_version": _opt(attrs.get(c.ATTR_ENGINE_VERSION)),
        "role": role,
        "cluster": _opt(resource.get(c.RES_CLUSTER)),
        "site": _opt(resource.get(c.RES_SITE)),
        "tags": json.dumps(tags_of(resource), sort_keys=True),
        "first_seen_ns": point.t_ns,
        "last_seen_ns": point.t_ns,
    }


def _lock_series(
    conn,
    accepted: Sequence[tuple[Point, SeriesIdentity]],
    endpoint_ids: dict[tuple[str, str], int],
    token_id: int | None,
) -> dict[str, _State]:
    """Create missing series rows, then lock and read the state of every series in the batch."""
    new_rows: dict[str, dict[str, Any]] = {}
    now = time.time_ns()
    for point, identity in accepted:
        if identity.key_hash in new_rows:
            continue
        endpoint_id = None
        if identity.endpoint is not None:
            endpoint_id = endpoint_ids[(identity.node, identity.endpoint)]
        new_rows[identity.key_hash] = {
            "key_hash": identity.key_hash,
            "metric": identity.metric,
            "node": identity.node,
            "gpu_uuid": identity.gpu_uuid,
            "endpoint_id": endpoint_id,
            "model": identity.model,
            "label": identity.label,
            "attrs": json.dumps(_descriptive(point), sort_keys=True, default=str),
            "token_id": token_id,
            "created_ns": now,
        }
    insert_ignore(conn, s.series, [new_rows[k] for k in sorted(new_rows)], ("key_hash",))

    # Lock in id order so that two collectors writing overlapping batches never deadlock.
    ids: dict[int, str] = {}
    keys = list(new_rows)
    table = s.series
    for start in range(0, len(keys), LOCK_CHUNK):
        chunk = keys[start : start + LOCK_CHUNK]
        rows = conn.execute(select(table.c.id, table.c.key_hash).where(table.c.key_hash.in_(chunk)))
        ids.update({sid: key_hash for sid, key_hash in rows})

    ordered = sorted(ids)
    states: dict[str, _State] = {}
    for start in range(0, len(ordered), LOCK_CHUNK):
        chunk = ordered[start : start + LOCK_CHUNK]
        stmt = (
            select(table.c.id, table.c.start_ns, table.c.last_ns, table.c.last_value)
            .where(table.c.id.in_(chunk))
            .order_by(table.c.id)
        )
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        for sid, start_ns, last_ns, last_value in conn.execute(stmt):
            states[ids[sid]] = _State(sid, start_ns, last_ns, last_value)
    return states


def _descriptive(point: Point) -> dict[str, Any]:
    keep = {c.ATTR_ENERGY_SOURCE, c.ATTR_POWER_SCOPE, c.ATTR_SHARE_METHOD, c.ATTR_ENGINE, c.ATTR_ROLE}
    return {k: v for k, v in point.attrs.items() if k in keep}


def _gpu_ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in value.split(",") if part]
    return [str(v) for v in value if v]


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


__all__ = ["Ingestor", "IngestResult", "GPU_METRICS", "node_of"]
