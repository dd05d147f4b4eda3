"""Hour buckets: splitting intervals into hours, and rebuilding rollups from stored rows."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from sqlalchemy import Engine, delete, func, select

from wattledger.collector import schema as s
from wattledger.collector.sqlbulk import upsert_add

logger = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
HOUR_S = 3600
HOUR_NS = HOUR_S * NS_PER_S


def hour_of(t_ns: int) -> int:
    """Start of the hour holding ``t_ns``, in seconds since the epoch."""
    return (t_ns // HOUR_NS) * HOUR_S


def split_by_hour(start_ns: int, end_ns: int, value: float) -> Iterator[tuple[int, float, float]]:
    """Spread ``value`` over ``(start_ns, end_ns]`` in proportion to time spent in each hour.

    Yields ``(hour, value_share, seconds)``. An empty interval puts the whole value in the hour
    of ``end_ns`` with zero seconds.
    """
    if end_ns <= start_ns:
        yield hour_of(end_ns), value, 0.0
        return

    length = end_ns - start_ns
    cursor = start_ns
    while cursor < end_ns:
        bucket_end = (cursor // HOUR_NS + 1) * HOUR_NS
        piece_end = min(bucket_end, end_ns)
        piece = piece_end - cursor
        yield (cursor // HOUR_NS) * HOUR_S, value * piece / length, piece / NS_PER_S
        cursor = piece_end


def rebuild(engine: Engine, *, since_hour: int | None = None) -> int:
    """Recompute ``rollup_hourly`` from ``deltas`` and ``gauge_samples``; returns rows written.

    Used after a restore or to repair rollups; the normal path maintains them at ingest.
    """
    rows: dict[tuple[int, int], list[float]] = {}
    since_ns = since_hour * NS_PER_S if since_hour is not None else None

    with engine.begin() as conn:
        delete_stmt = delete(s.rollup_hourly)
        if since_hour is not None:
            delete_stmt = delete_stmt.where(s.rollup_hourly.c.hour >= since_hour)
        conn.execute(delete_stmt)

        deltas = select(
            s.deltas.c.series_id, s.deltas.c.start_ns, s.deltas.c.end_ns, s.deltas.c.value
        )
        if since_ns is not None:
            deltas = deltas.where(s.deltas.c.end_ns > since_ns)
        for series_id, start_ns, end_ns, value in conn.execute(deltas):
            if since_ns is not None and start_ns < since_ns:
                # Only the part of the interval after the cut is rebuilt.
                value = value * (end_ns - since_ns) / (end_ns - start_ns)
                start_ns = since_ns
            for hour, share, seconds in split_by_hour(start_ns, end_ns, value):
                acc = rows.setdefault((series_id, hour), [0.0, 0.0, 0.0, 0])
                acc[0] += share
                acc[1] += seconds
                acc[2] += seconds if value > 0 else 0.0

        gauges = select(
            s.gauge_samples.c.series_id,
            (s.gauge_samples.c.t_ns // HOUR_NS).label("bucket"),
            func.sum(s.gauge_samples.c.value),
            func.count(),
        ).group_by(s.gauge_samples.c.series_id, "bucket")
        if since_ns is not None:
            gauges = gauges.where(s.gauge_samples.c.t_ns >= since_ns)
        for series_id, bucket, total, count in conn.execute(gauges):
            acc = rows.setdefault((series_id, int(bucket) * HOUR_S), [0.0, 0.0, 0.0, 0])
            acc[0] += total
            acc[3] += count

        payload = [
            {
                "series_id": sid,
                "hour": hour,
                "value": v,
                "seconds": sec,
                "active_seconds": act,
                "samples": n,
            }
            for (sid, hour), (v, sec, act, n) in rows.items()
        ]
        upsert_add(
            conn,
            s.rollup_hourly,
            payload,
            ("series_id", "hour"),
            ("value", "seconds", "active_seconds", "samples"),
        )
        hours = sorted({hour for _sid, hour in rows})
        upsert_add(
            conn, s.dirty_hours, [{"hour": h, "version": 1} for h in hours], ("hour",), ("version",)
        )
    logger.info("rebuilt %d hourly rollup rows", len(payload))
    return len(payload)
