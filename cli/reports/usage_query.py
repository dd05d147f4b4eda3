"""One SQL aggregation over the hourly usage rows, priced as of each hour.

Every report asks the same question in a different shape: sum the attributed GPU time, energy
and tokens of a window, grouped by some dimensions, with each hour charged at the prices then in
force. The prices are few, so they travel into the query as a ``VALUES`` table of time segments
and are joined by range; the database does the rest, and the report stays one aggregation over
the rollups however large the fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Float,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.engine import Connection

from wattledger.cli.reports.prices import FOREVER, PriceBook, Segment
from wattledger.collector import schema as s
from wattledger.errors import WattledgerError

UNASSIGNED_LABEL = "(no endpoint)"
UNKNOWN_LABEL = "(unknown)"
# Inlined, not bound: GROUP BY must repeat the SELECT's expressions exactly, and two bound
# parameters with the same value are not the same expression to PostgreSQL.
UNASSIGNED = literal_column(f"'{UNASSIGNED_LABEL}'")
UNKNOWN = literal_column(f"'{UNKNOWN_LABEL}'")

u, g, ep = s.usage_hourly, s.gpus.alias("g"), s.endpoints.alias("ep")

DIMENSIONS = {
    "model": func.coalesce(u.c.model, UNASSIGNED),
    "endpoint": func.coalesce(ep.c.name, UNASSIGNED),
    "engine": func.coalesce(ep.c.engine, UNASSIGNED),
    "engine_version": func.coalesce(ep.c.engine_version, UNKNOWN),
    "role": func.coalesce(ep.c.role, UNASSIGNED),
    "sku": func.coalesce(g.c.sku, UNKNOWN),
    "architecture": func.coalesce(g.c.architecture, UNKNOWN),
    "node": func.coalesce(g.c.node, ep.c.node, UNKNOWN),
    "site": func.coalesce(g.c.site, ep.c.site, UNKNOWN),
    "cluster": func.coalesce(g.c.cluster, ep.c.cluster, UNKNOWN),
    "gpu": func.coalesce(u.c.gpu_uuid, UNKNOWN),
}

MEASURES = (
    "gpu_seconds",
    "serving_seconds",
    "energy_j",
    "serving_energy_j",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "requests",
    "prefill_seconds",
    "decode_seconds",
    "util_busy_seconds",
    "util_known_seconds",
)
PRICED = ("time_usd", "serving_time_usd", "energy_usd", "serving_energy_usd", "unpriced_seconds")


class ReportError(WattledgerError):
    exit_code = 2


def check_dimensions(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown:
        raise ReportError(
            f"cannot group by {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}"
        )
    if not names:
        raise ReportError(f"give at least one dimension to group by: {', '.join(DIMENSIONS)}")
    return list(names)


@dataclass
class Group:
    """Sums for one group: the key values, the measures and the priced amounts."""

    key: tuple[str, ...]
    sums: dict[str, float]


def aggregate(
    conn: Connection,
    prices: PriceBook,
    since: int,
    until: int,
    by: Sequence[str],
    *,
    extra_keys: dict | None = None,
) -> list[Group]:
    """Sum usage in ``[since, until)`` by ``by`` (and ``extra_keys``: label -> SQL expression)."""
    skus = [row[0] for row in conn.execute(select(s.gpus.c.sku).distinct()) if row[0]]
    sites = [row[0] for row in conn.execute(select(s.gpus.c.site).distinct())]
    rate = _segments_table("rate", prices.sku_segments(skus), "usd_per_gpu_hour")
    power = _segments_table("power", prices.site_segments(sites), "usd_per_kwh", "pue")

    key_exprs = [DIMENSIONS[name] for name in by] + list((extra_keys or {}).values())
    key_names = list(by) + list(extra_keys or {})
    keys = [expr.label(name) for expr, name in zip(key_exprs, key_names, strict=True)]

    gpu_rate = rate.c.usd_per_gpu_hour
    kwh_rate = func.coalesce(power.c.usd_per_kwh * power.c.pue, 0.0)
    sums = [func.coalesce(func.sum(u.c[m]), 0.0).label(m) for m in MEASURES]
    priced = [
        func.coalesce(func.sum(u.c.gpu_seconds * gpu_rate), 0.0).label("time_usd"),
        func.coalesce(func.sum(u.c.serving_seconds * gpu_rate), 0.0).label("serving_time_usd"),
        func.coalesce(func.sum(u.c.energy_j * kwh_rate), 0.0).label("energy_usd"),
        func.coalesce(func.sum(u.c.serving_energy_j * kwh_rate), 0.0).label("serving_energy_usd"),
        func.coalesce(
            func.sum(case((and_(gpu_rate.is_(None), u.c.gpu_uuid.is_not(None)), u.c.gpu_seconds), else_=0.0)), 0.0
        ).label("unpriced_seconds"),
    ]

    query = (
        select(*keys, *sums, *priced)
        .select_from(u)
        .outerjoin(g, g.c.uuid == u.c.gpu_uuid)
        .outerjoin(ep, ep.c.id == u.c.endpoint_id)
        .outerjoin(rate, and_(rate.c.key == g.c.sku, u.c.hour >= rate.c.start, u.c.hour < rate.c.end))
        .outerjoin(
            power,
            and_(power.c.key == func.coalesce(g.c.site, ""), u.c.hour >= power.c.start, u.c.hour < power.c.end),
        )
        .where(u.c.hour >= since, u.c.hour < until)
        .group_by(*key_exprs)
    )

    groups = []
    for row in conn.execute(query).mappings():
        key = tuple(str(row[k.name]) for k in keys)
        data = {m: float(row[m]) for m in MEASURES}
        data["time_usd"] = float(row["time_usd"]) / 3600.0
        data["serving_time_usd"] = float(row["serving_time_usd"]) / 3600.0
        data["energy_usd"] = float(row["energy_usd"]) / 3.6e6
        data["serving_energy_usd"] = float(row["serving_energy_usd"]) / 3.6e6
        data["unpriced_seconds"] = float(row["unpriced_seconds"])
        groups.append(Group(key, data))
    return groups


def unpriced_gpus(conn: Connection, prices: PriceBook, since: int, until: int) -> list[dict]:
    """GPUs that have usage in the window but no GPU-hour price for some of it, by name."""
    skus = [row[0] for row in conn.execute(select(s.gpus.c.sku).distinct()) if row[0]]
    rate = _segments_table("rate", prices.sku_segments(skus), "usd_per_gpu_hour")
    query = (
        select(g.c.uuid, g.c.name, g.c.sku, g.c.node, func.sum(u.c.gpu_seconds).label("seconds"))
        .select_from(u)
        .join(g, g.c.uuid == u.c.gpu_uuid)
        .outerjoin(rate, and_(rate.c.key == g.c.sku, u.c.hour >= rate.c.start, u.c.hour < rate.c.end))
        .where(u.c.hour >= since, u.c.hour < until, rate.c.usd_per_gpu_hour.is_(None))
        .group_by(g.c.uuid, g.c.name, g.c.sku, g.c.node)
        .order_by(g.c.node, g.c.uuid)
    )
    return [dict(row) for row in conn.execute(query).mappings() if row["seconds"] > 0]


def _segments_table(name: str, segments: list[Segment], *price_columns: str):
    """Price segments as a small inline table (a UNION ALL of typed literal rows)."""
    rows = [(seg.key, seg.start, seg.end, *(getattr(seg, col) for col in price_columns)) for seg in segments]
    if not rows:
        # A row that matches nothing keeps the join valid when no price is set.
        rows = [("", FOREVER, FOREVER, *([None] * len(price_columns)))]
    names = ("key", "start", "end", *price_columns)
    types = (String, BigInteger, BigInteger, *([Float] * len(price_columns)))
    selects = [
        select(*[cast(literal(value), type_).label(col) for value, col, type_ in zip(row, names, types, strict=True)])
        for row in rows
    ]
    return (union_all(*selects) if len(selects) > 1 else selects[0]).subquery(name)


