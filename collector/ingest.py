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
as rejected; the rest of the batch is stored. A batch that would give a node more series than
``max_series_per_node`` is refused whole (:class:`LimitExceeded`) and nothing of it is stored.

Each collector remembers series ids, series identities and the dimension rows it wrote, so a
steady stream of batches costs one locking read and a few bulk writes per batch, whatever its
size. The series' state (last time and value) is never taken from memory: it is read under the
row lock every time, which is what keeps several collectors on one database exactly-once.

Requests that arrive while a transaction is running are written together in the next one
(:mod:`~wattledger.collector.groupcommit`): a fleet of small per-node requests then costs a
handful of round trips and one flush per group instead of per request. Checking and identifying
points happens on each request's own thread, before it joins a group.

Limitation: every stored point writes three rows (its delta or gauge sample, its hour's rollup,
its series' state), and a collector process spends some 60 microseconds of CPU per point
(decoding, checking, the writes); one process uses one core. On a small machine the collector
therefore stores a tenth of what a bare bulk insert of the same rows manages
(benchmarks/bench_ingest.py); more throughput takes more collector processes and cores.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from wattledger import contract as c
from wattledger.collector import schema as s
from wattledger.collector.batchwrite import BatchWriter, bounded_transaction
from wattledger.collector.db import READ_ONLY
from wattledger.collector.dimensions import DimensionWriter
from wattledger.collector.groupcommit import GroupCommit
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
)
from wattledger.collector.rollup import HOUR_NS, HOUR_S, NS_PER_S, split_by_hour
from wattledger.collector.sqlbulk import insert_ignore

logger = logging.getLogger(__name__)

MAX_REMEMBERED = 2_000_000
GPU_MOVE_AFTER_NS = HOUR_NS
MAX_GROUP_POINTS = 50_000


class LimitExceeded(ValueError):
    """A batch that would break a bound of the store; nothing of it is stored."""


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


@dataclass(slots=True)
class _State:
    id: int
    start_ns: int | None
    last_ns: int | None
    last_value: float | None
    dirty: bool = False


@dataclass
class _Job:
    """One request's checked points, waiting to be written (perhaps with other requests')."""

    accepted: list[tuple[Point, SeriesIdentity]]
    checked: IngestResult
    token_id: int | None
    result: IngestResult | None = None


class Ingestor:
    """Writes decoded points into the store; one instance serves many batches and threads."""

    def __init__(self, engine: Engine, *, max_series_per_node: int | None = None) -> None:
        self.engine = engine
        self.max_series_per_node = max_series_per_node
        self._identities: dict[tuple, SeriesIdentity] = {}
        self._series_ids: dict[str, int] = {}
        self._dimensions = DimensionWriter()
        self._gpu_owners: dict[str, tuple[str, int]] = {}
        self._group = GroupCommit(
            self._write_jobs, max_size=MAX_GROUP_POINTS, shared_failure=_store_unavailable
        )

    def ingest(
        self,
        points: Iterable[Point],
        *,
        token_id: int | None = None,
        allowed_nodes: frozenset[str] | None = None,
    ) -> IngestResult:
        checked = IngestResult()
        accepted: list[tuple[Point, SeriesIdentity]] = []
        now_ns = time.time_ns()

        for point in points:
            checked.received += 1
            try:
                _check_value(point, now_ns)
                identity = self._identify(point)
            except InvalidPoint as exc:
                checked.reject(str(exc))
                continue
            if allowed_nodes is not None and identity.node not in allowed_nodes:
                checked.reject(f"this token may not write for node {identity.node!r}")
                continue
            accepted.append((point, identity))

        accepted = self._owned_gpus_only(accepted, checked, restricted=allowed_nodes is not None)
        if not accepted:
            return checked

        job = _Job(accepted, checked, token_id)
        self._group.run(job, len(accepted))
        result = job.result
        logger.debug(
            "stored %d deltas and %d gauge samples from %d points",
            result.stored_deltas,
            result.stored_gauges,
            result.received,
        )
        return result

    def _write_jobs(self, jobs: Sequence[_Job]) -> None:
        """Store ``jobs`` in one transaction (called by one thread at a time)."""
        try:
            self._store(jobs)
        except IntegrityError:
            # A remembered id may be gone (tables emptied, a series deleted): forget, try again.
            logger.info("stored rows changed under this collector; re-reading ids")
            self.forget()
            self._store(jobs)

    def forget(self) -> None:
        """Drop what this collector remembers about stored rows."""
        self._series_ids.clear()
        self._gpu_owners.clear()
        self._dimensions.forget()

    def _owned_gpus_only(
        self,
        accepted: list[tuple[Point, SeriesIdentity]],
        checked: IngestResult,
        *,
        restricted: bool,
    ) -> list[tuple[Point, SeriesIdentity]]:
        """Refuse points for a GPU that another node is still reporting.

        A GPU UUID is unique in the world, so one recorded under another node is either a
        GPU that moved or a sender that is wrong (a copied config, a simulated GPU, a hostile
        agent). Its rows say which node it is on, so letting a second node write it would move
        its whole history. A GPU moves only once its old node has been silent about it for an
        hour, and never for a token that is limited to some nodes.
        """
        owners = self._gpu_owners
        claims = {i.gpu_uuid for _p, i in accepted if i.gpu_uuid is not None}
        unknown = sorted(uuid for uuid in claims if uuid not in owners)
        for start in range(0, len(unknown), 1000):
            chunk = unknown[start : start + 1000]
            with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
                rows = conn.execute(
                    select(s.gpus.c.uuid, s.gpus.c.node, s.gpus.c.last_seen_ns).where(
                        s.gpus.c.uuid.in_(chunk)
                    )
                )
                self._gpu_owners.update({uuid: (node, seen) for uuid, node, seen in rows})

        kept = []
        for point, identity in accepted:
            owner = self._gpu_owners.get(identity.gpu_uuid) if identity.gpu_uuid else None
            if owner is not None and owner[0] != identity.node:
                node, last_seen = owner
                if restricted or point.t_ns - last_seen < GPU_MOVE_AFTER_NS:
                    checked.reject(
                        f"GPU {identity.gpu_uuid} is reported by node {node!r}; "
                        f"node {identity.node!r} may not write it too"
                    )
                    continue
            kept.append((point, identity))
        return kept

    def _remember_gpu_owners(self, accepted: Sequence[tuple[Point, SeriesIdentity]]) -> None:
        if len(self._gpu_owners) > MAX_REMEMBERED:
            self._gpu_owners.clear()
        for point, identity in accepted:
            if identity.gpu_uuid is None:
                continue
            known = self._gpu_owners.get(identity.gpu_uuid)
            if known is None or known[0] != identity.node or known[1] < point.t_ns:
                self._gpu_owners[identity.gpu_uuid] = (identity.node, point.t_ns)

    def _identify(self, point: Point) -> SeriesIdentity:
        attrs = point.attrs
        resource = point.resource
        key = (
            point.metric,
            resource.get(c.RES_NODE) or resource.get(c.RES_HOST_NAME),
            attrs.get(c.ATTR_HW_ID),
            attrs.get(c.ATTR_ENDPOINT),
            attrs.get(c.ATTR_MODEL),
            attrs.get(c.ATTR_TOKEN_TYPE),
            attrs.get(c.ATTR_PHASE),
        )
        try:
            known = self._identities.get(key)
        except TypeError:  # an unhashable attribute value (a key-value list): no caching
            return identify(point)
        if known is None:
            known = identify(point)
            if len(self._identities) >= MAX_REMEMBERED:
                self._identities.clear()
            self._identities[key] = known
        return known

    def _store(self, jobs: Sequence[_Job]) -> None:
        entries: list[tuple[Point, SeriesIdentity, _Job]] = []
        for job in jobs:
            job.result = replace(job.checked, rejections=list(job.checked.rejections))
            entries.extend((point, identity, job) for point, identity in job.accepted)
        accepted = [(point, identity) for point, identity, _job in entries]

        new_ids: dict[str, int] = {}
        try:
            with bounded_transaction(self.engine) as conn:
                writer = BatchWriter(conn)
                endpoint_ids = self._dimensions.write(conn, accepted)
                states = self._lock_series(writer, entries, endpoint_ids, new_ids)
                writes = _apply(entries, states)
                _write(writer, writes, states)
        except BaseException:
            self._dimensions.rollback()
            raise
        self._dimensions.commit()
        self._remember_gpu_owners(accepted)
        if len(self._series_ids) + len(new_ids) > MAX_REMEMBERED:
            self._series_ids.clear()
        self._series_ids.update(new_ids)

    def _lock_series(
        self,
        writer: BatchWriter,
        entries: Sequence[tuple[Point, SeriesIdentity, _Job]],
        endpoint_ids: dict[tuple[str, str], int],
        new_ids: dict[str, int],
    ) -> dict[str, _State]:
        """Find or create the batch's series rows, then lock and read their state.

        A new series records the token of the first request in the group that wrote it.
        """
        first_points: dict[str, tuple[Point, SeriesIdentity, int | None]] = {}
        for point, identity, job in entries:
            if identity.key_hash not in first_points:
                first_points[identity.key_hash] = (point, identity, job.token_id)

        ids = {k: self._series_ids[k] for k in first_points if k in self._series_ids}
        unknown = [k for k in first_points if k not in ids]
        if unknown:
            found = writer.series_ids(unknown)
            missing = [k for k in unknown if k not in found]
            if missing:
                self._check_series_limit(writer.conn, [first_points[k][1] for k in missing])
                rows = [_series_row(*first_points[k], endpoint_ids) for k in sorted(missing)]
                insert_ignore(writer.conn, s.series, rows, ("key_hash",))
                found.update(writer.series_ids(missing))
            ids.update(found)
            new_ids.update(found)

        by_id = {series_id: key for key, series_id in ids.items()}
        return {
            by_id[sid]: _State(sid, start_ns, last_ns, last_value)
            for sid, start_ns, last_ns, last_value in writer.lock_series(list(by_id))
        }

    def _check_series_limit(self, conn: Connection, new: Sequence[SeriesIdentity]) -> None:
        """Refuse the batch if it would give a node more series than allowed.

        Limitation: two collectors creating the first series of one node at the same moment
        can each pass the check, so the bound may be overshot by one batch's new series.
        """
        limit = self.max_series_per_node
        if limit is None:
            return
        adding: dict[str, int] = defaultdict(int)
        for identity in new:
            adding[identity.node] += 1
        nodes = sorted(adding)
        stored: dict[str, int] = {}
        for start in range(0, len(nodes), 500):
            chunk = nodes[start : start + 500]
            query = (
                select(s.series.c.node, func.count())
                .where(s.series.c.node.in_(chunk))
                .group_by(s.series.c.node)
            )
            stored.update({node: count for node, count in conn.execute(query)})
        for node in nodes:
            total = stored.get(node, 0) + adding[node]
            if total > limit:
                raise LimitExceeded(
                    f"node {node!r} would have {total} series; the limit is {limit} per node "
                    "(collector option --max-series-per-node)"
                )


def _store_unavailable(exc: Exception) -> bool:
    """An error of the database itself (down, locked, too slow), not of any one request."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


# Bounds on what a point may say. A value or time beyond them is a broken or hostile sender:
# one such point would otherwise poison its series (a time years ahead makes every later point
# look like a repeat) or flood the rollups (a start decades back spreads over every hour since).
MAX_VALUE = 1e15  # tokens since a series start, or joules (a 1 kW GPU runs 31.7 years to 1e12 J)
FUTURE_TOLERANCE_NS = 3600 * NS_PER_S  # clocks may run ahead; not by more than an hour
MAX_SPAN_NS = 400 * 86_400 * NS_PER_S  # the longest interval one point may cover
MAX_TIME_NS = 2**63 - 1


def _check_value(point: Point, now_ns: int) -> None:
    if not math.isfinite(point.value):
        raise InvalidPoint(f"{point.metric} has a non-finite value {point.value!r}")
    if point.kind in (COUNTER, DELTA) and point.value < 0:
        raise InvalidPoint(f"{point.metric} is a counter but has a negative value {point.value!r}")
    if abs(point.value) > MAX_VALUE:
        raise InvalidPoint(f"{point.metric} has an implausible value {point.value:g}")
    if point.t_ns <= 0:
        raise InvalidPoint(f"{point.metric} has no timestamp")
    if point.t_ns > min(now_ns + FUTURE_TOLERANCE_NS, MAX_TIME_NS):
        ahead_h = (point.t_ns - now_ns) / HOUR_NS
        raise InvalidPoint(
            f"{point.metric} has a time {ahead_h:,.1f} h ahead of the collector's clock; "
            "check the sender's clock"
        )
    start = point.start_ns
    if start is not None and (start > point.t_ns or point.t_ns - start > MAX_SPAN_NS):
        where = "after" if start > point.t_ns else "over 400 days before"
        raise InvalidPoint(f"{point.metric} has a start time {where} its time")


@dataclass
class _Writes:
    deltas: list[tuple[int, int, int, float]] = field(default_factory=list)
    gauges: list[tuple[int, int, float]] = field(default_factory=list)
    rollups: dict[tuple[int, int], list[float]] = field(default_factory=dict)

    def add_rollup(
        self, series_id: int, hour: int, value: float, seconds: float, active: float, samples: int
    ) -> None:
        acc = self.rollups.get((series_id, hour))
        if acc is None:
            self.rollups[(series_id, hour)] = [value, seconds, active, samples]
            return
        acc[0] += value
        acc[1] += seconds
        acc[2] += active
        acc[3] += samples


def _apply(
    entries: Sequence[tuple[Point, SeriesIdentity, _Job]], states: dict[str, _State]
) -> _Writes:
    """Compare each point with its series' last stored point; collect the rows to write.

    What happens to each point is counted in the result of the request it came with.
    """
    writes = _Writes()
    by_series: dict[str, list[tuple[Point, _Job]]] = defaultdict(list)
    for point, identity, job in entries:
        by_series[identity.key_hash].append((point, job))

    for key_hash, points in by_series.items():
        state = states[key_hash]
        if len(points) > 1:
            points.sort(key=lambda entry: entry[0].t_ns)
        for point, job in points:
            result = job.result
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
    writes.gauges.append((state.id, point.t_ns, point.value))
    writes.add_rollup(state.id, (point.t_ns // HOUR_NS) * HOUR_S, point.value, 0.0, 0.0, 1)
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
    writes.deltas.append((state.id, end_ns, start_ns, value))
    result.stored_deltas += 1
    if start_ns < end_ns and start_ns // HOUR_NS == (end_ns - 1) // HOUR_NS:
        # The common case, an interval inside one hour, computed as the general split does.
        length = end_ns - start_ns
        seconds = length / NS_PER_S
        hour = (start_ns // HOUR_NS) * HOUR_S
        writes.add_rollup(
            state.id, hour, value * length / length, seconds, seconds if value > 0 else 0.0, 0
        )
        return
    for hour, share, seconds in split_by_hour(start_ns, end_ns, value):
        writes.add_rollup(state.id, hour, share, seconds, seconds if value > 0 else 0.0, 0)


def _write(writer: BatchWriter, writes: _Writes, states: dict[str, _State]) -> None:
    writer.batch(
        writes.deltas,
        writes.gauges,
        [(sid, hour, v, sec, act, n) for (sid, hour), (v, sec, act, n) in writes.rollups.items()],
        sorted({hour for _sid, hour in writes.rollups}),
        [(st.id, st.start_ns, st.last_ns, st.last_value) for st in states.values() if st.dirty],
    )


def _series_row(
    point: Point,
    identity: SeriesIdentity,
    token_id: int | None,
    endpoint_ids: dict[tuple[str, str], int],
) -> dict[str, Any]:
    endpoint_id = None
    if identity.endpoint is not None:
        endpoint_id = endpoint_ids[(identity.node, identity.endpoint)]
    return {
        "key_hash": identity.key_hash,
        "metric": identity.metric,
        "node": identity.node,
        "gpu_uuid": identity.gpu_uuid,
        "endpoint_id": endpoint_id,
        "model": identity.model,
        "label": identity.label,
        "attrs": json.dumps(_descriptive(point), sort_keys=True, default=str),
        "token_id": token_id,
        "created_ns": time.time_ns(),
    }


def _descriptive(point: Point) -> dict[str, Any]:
    keep = {
        c.ATTR_ENERGY_SOURCE,
        c.ATTR_POWER_SCOPE,
        c.ATTR_SHARE_METHOD,
        c.ATTR_ENGINE,
        c.ATTR_ROLE,
    }
    return {k: v for k, v in point.attrs.items() if k in keep}


__all__ = ["Ingestor", "IngestResult", "LimitExceeded", "GPU_METRICS", "node_of"]
