"""One SQL aggregation over the hourly usage rows, priced as of each hour.

Every report asks the same question in a different shape: sum the attributed GPU time, energy
and tokens of a window, grouped by some dimensions, with each hour charged at the prices then in
force. The query runs in two stages inside one statement:

1. sum ``usage_hourly`` per GPU, endpoint, model and *price period* (see ``price_periods``),
   with no join at all, which is as cheap as a bare aggregation of the rollups;
2. join those few sums with the GPU and endpoint dimensions and the period's prices (a small
   inline table), and group them by what the report asked for.

Prices are constant within a period, so pricing the sums of stage 1 gives exactly what pricing
every hour would, while the per-row work stays that of a plain ``GROUP BY``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import Column
from sqlalchemy.sql import ColumnElement, visitors

from wattledger.cli.reports.price_periods import PricePeriods, price_periods
from wattledger.cli.reports.prices import PriceBook
from wattledger.collector import schema as s
from wattledger.contract import ROLE_DECODE, ROLE_PREFILL
from wattledger.errors import WattledgerError
from wattledger.timeutil import DAY_S, month_bounds

logger = logging.getLogger(__name__)

UNASSIGNED_LABEL = "(no endpoint)"
UNKNOWN_LABEL = "(unknown)"
# Constants are inlined, not bound: GROUP BY must repeat the SELECT's expressions exactly, and
# two bound parameters with the same value are not the same expression to PostgreSQL.
UNASSIGNED = literal_column(f"'{UNASSIGNED_LABEL}'")
UNKNOWN = literal_column(f"'{UNKNOWN_LABEL}'")

DIMENSIONS = (
    "model",
    "endpoint",
    "engine",
    "engine_version",
    "role",
    "sku",
    "architecture",
    "node",
    "site",
    "cluster",
    "gpu",
    "device",
)
BUCKETS = ("hour", "day", "week", "month")
WEEK_S = 7 * DAY_S
MONDAY_OFFSET_S = 4 * DAY_S  # 1970-01-01 was a Thursday; the first Monday came four days later

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
    "unmapped_input_tokens",
    "unmapped_output_tokens",
)
# Tokens on usage rows without a device: an endpoint whose GPUs the agent could not name. They
# carry no GPU time or energy, so a cost or energy per token that counted them would be too low.
UNMAPPED_MEASURES = ("unmapped_input_tokens", "unmapped_output_tokens")
# What pricing needs whatever else a report asks for, and the unmapped tokens that say whether a
# cost per token can be given at all.
PRICING_MEASURES = ("gpu_seconds", "serving_seconds", "energy_j", "serving_energy_j")
ALWAYS_MEASURES = (*PRICING_MEASURES, *UNMAPPED_MEASURES)
PRICED = ("time_usd", "serving_time_usd", "energy_usd", "serving_energy_usd", "unpriced_seconds")
SPLIT_MEASURES = (
    "prefill_serving_seconds",
    "prefill_serving_energy_j",
    "prefill_serving_usd",
    "disaggregated_serving_seconds",
    "measured_serving_seconds",
)

# Dimensions that need the endpoint row (node, site and cluster fall back to it for rows
# without a known GPU).
ENDPOINT_DIMENSIONS = frozenset(
    {"endpoint", "engine", "engine_version", "role", "node", "site", "cluster"}
)
# PostgreSQL guesses far more groups than the first stage makes (one per GPU, endpoint, model
# and price period) and, with the default 4 MB, sorts them on disk instead of hashing them.
POSTGRES_WORK_MEM = "64MB"

# The tables an ``extra_keys`` expression may refer to: usage rows, and the GPU and endpoint
# rows they are joined with.
u = s.usage_hourly
g = s.gpus.alias("g")
ep = s.endpoints.alias("ep")
ROLES_DISAGGREGATED = literal_column(f"'{ROLE_PREFILL}'"), literal_column(f"'{ROLE_DECODE}'")


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
    twice = sorted({n for n in names if list(names).count(n) > 1})
    if twice:
        raise ReportError(f"cannot group by {', '.join(twice)} twice; name each dimension once")
    return list(names)


def where_values(where: Mapping[str, str | Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """``where`` with every dimension's wanted values as a tuple (one value or several)."""
    wanted = {}
    for name, values in (where or {}).items():
        wanted[name] = (values,) if isinstance(values, str) else tuple(values)
    return wanted


@dataclass
class Group:
    """Sums for one group: the key values, the measures and the priced amounts.

    ``key`` holds the ``by`` values in order, then the bucket start (seconds) when bucketed.
    Amounts are in USD; seconds and joules as stored.
    """

    key: tuple
    sums: dict[str, float]


def aggregate(
    conn: Connection,
    prices: PriceBook,
    since: int,
    until: int,
    by: Sequence[str],
    *,
    bucket: str | None = None,
    where: Mapping[str, str | Sequence[str]] | None = None,
    split_weight: float | None = None,
    measures: Sequence[str] = MEASURES,
    extra_keys: Mapping[str, ColumnElement] | None = None,
) -> list[Group]:
    """Sum usage in ``[since, until)`` by the dimensions ``by``.

    ``bucket`` (hour, day, week or month, UTC) adds the start of each time bucket to the key.
    ``where`` keeps only rows whose dimension has the given value, or one of the given values
    (several dimensions must all match). ``split_weight`` (the cost of
    an output token in input tokens, for endpoints without phase time) adds the prefill share of
    serving time, energy and cost (``SPLIT_MEASURES``). ``measures`` names the sums wanted
    besides those pricing needs (fewer sums, a faster query). ``extra_keys`` (label -> SQL
    expression over ``u``, ``g`` and ``ep`` of this module) are added to the key after the
    bucket, as strings; inline their constants (``literal_column``), as GROUP BY repeats them.
    """
    check_dimensions(by)
    if bucket is not None and bucket not in BUCKETS:
        raise ReportError(f"cannot bucket by {bucket!r}; choose from {', '.join(BUCKETS)}")
    where = where_values(where)
    unknown = [name for name in where if name not in DIMENSIONS]
    if unknown:
        raise ReportError(
            f"cannot filter on {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}"
        )

    measures = [m for m in MEASURES if m in set(measures) | set(ALWAYS_MEASURES)]
    periods = _periods(conn, prices, since, until)
    wanted = set(by) | set(where)
    extra = _ExtraKeys(dict(extra_keys or {}))
    keys = _stage_one_keys(wanted, split=split_weight is not None, extra=extra)
    x = _stage_one(
        periods,
        since,
        until,
        keys,
        measures,
        bucket=bucket,
        split_weight=split_weight,
        computed=extra.on_usage,
    )
    rate, power = _rate_tables(periods)
    dims = {name: _dimension(name, x, g, ep) for name in wanted}

    key_exprs = [dims[name] for name in by] + ([x.c.bucket] if bucket else [])
    key_exprs += [extra.over(name, x) for name in extra.names]
    key_names = (
        list(by) + (["bucket"] if bucket else []) + [f"extra_{name}" for name in extra.names]
    )

    gpu_rate = func.coalesce(rate.c.usd_per_gpu_hour, 0.0)
    kwh_rate = func.coalesce(power.c.usd_per_gpu_kwh, 0.0)
    columns = [func.coalesce(func.sum(x.c[m]), 0.0).label(m) for m in measures]
    columns += _priced_columns(x, rate, gpu_rate, kwh_rate)
    if split_weight is not None:
        columns += _split_columns(x, ep, gpu_rate, kwh_rate)

    joined = x.outerjoin(g, g.c.uuid == x.c.gpu_uuid)
    if "endpoint_id" in x.c:
        joined = joined.outerjoin(ep, ep.c.id == x.c.endpoint_id)
    joined = joined.outerjoin(rate, and_(rate.c.key == g.c.sku, rate.c.period == x.c.period))
    joined = joined.outerjoin(
        power, and_(power.c.key == func.coalesce(g.c.site, ""), power.c.period == x.c.period)
    )
    query = (
        select(
            *[expr.label(name) for expr, name in zip(key_exprs, key_names, strict=True)], *columns
        )
        .select_from(joined)
        .where(*[dims[name].in_(values) for name, values in where.items()])
        .group_by(*key_exprs)
    )

    if conn.dialect.name == "postgresql":
        # set_config(..., true) is SET LOCAL: it ends with this read's transaction.
        conn.execute(select(func.set_config("work_mem", POSTGRES_WORK_MEM, True)))
    groups = []
    for row in conn.execute(query).mappings():
        key = tuple(str(row[name]) for name in by) + ((int(row["bucket"]),) if bucket else ())
        key += tuple(str(row[f"extra_{name}"]) for name in extra.names)
        sums = {m: float(row[m]) for m in measures}
        sums["time_usd"] = float(row["time_usd"]) / 3600.0
        sums["serving_time_usd"] = float(row["serving_time_usd"]) / 3600.0
        sums["energy_usd"] = float(row["energy_usd"]) / 3.6e6
        sums["serving_energy_usd"] = float(row["serving_energy_usd"]) / 3.6e6
        sums["unpriced_seconds"] = float(row["unpriced_seconds"])
        if split_weight is not None:
            sums.update({m: float(row[m]) for m in SPLIT_MEASURES})
        groups.append(Group(key, sums))
    return groups


def unpriced_gpus(conn: Connection, prices: PriceBook, since: int, until: int) -> list[dict]:
    """GPUs that have usage in the window but no GPU-hour price for some of it, by name.

    Each row: ``uuid``, ``name``, ``sku``, ``node`` and ``seconds`` (GPU time without a price).
    """
    periods = _periods(conn, prices, since, until)
    x = _stage_one(periods, since, until, [u.c.gpu_uuid], ["gpu_seconds"])
    rate, _power = _rate_tables(periods)
    missing = x.c.gpu_seconds * (1.0 - func.coalesce(rate.c.priced_fraction, 0.0))
    query = (
        select(g.c.uuid, g.c.name, g.c.sku, g.c.node, func.sum(missing).label("seconds"))
        .select_from(x)
        .join(g, g.c.uuid == x.c.gpu_uuid)
        .outerjoin(rate, and_(rate.c.key == g.c.sku, rate.c.period == x.c.period))
        .group_by(g.c.uuid, g.c.name, g.c.sku, g.c.node)
        .order_by(g.c.node, g.c.uuid)
    )
    return [dict(row) for row in conn.execute(query).mappings() if row["seconds"] > 1e-9]


def _stage_one_keys(wanted: set[str], *, split: bool, extra: _ExtraKeys) -> list:
    """The columns the first stage must keep apart for the dimensions ``wanted``."""
    names = ["gpu_uuid"]  # pricing needs the GPU's SKU and site
    if wanted & ENDPOINT_DIMENSIONS or split or extra.needs_endpoint:
        names.append("endpoint_id")
    if "model" in wanted:
        names.append("model")
    if "device" in wanted:
        names.append("device_uuid")
    names += [name for name in extra.carried if name not in names]
    return [u.c[name] for name in names]


class _ExtraKeys:
    """Caller-given key expressions, placed where the two stages can compute them.

    One over usage columns only is computed in the first stage. One that also needs a GPU or
    endpoint column is computed in the second, the usage columns it reads carried through the
    first stage as keys (which keeps more rows apart there, so it costs some speed).
    """

    def __init__(self, exprs: dict[str, ColumnElement]) -> None:
        self.names = list(exprs)
        self.on_usage: dict[str, ColumnElement] = {}
        self.mixed: dict[str, ColumnElement] = {}
        self.carried: list[str] = []
        self.needs_endpoint = False
        for name, expr in exprs.items():
            columns = [el for el in visitors.iterate(expr) if isinstance(el, Column)]
            usage = [col.name for col in columns if col.table is u]
            self.needs_endpoint |= any(col.table is ep for col in columns)
            if usage and len(usage) == len(columns):
                self.on_usage[f"extra_{name}"] = expr
            else:
                self.mixed[name] = expr
                self.carried += [col for col in usage if col not in self.carried]

    def over(self, name: str, x) -> ColumnElement:
        """The expression ``name`` in the second stage, reading the first stage ``x``."""
        if name not in self.mixed:
            return x.c[f"extra_{name}"]

        def swap(element):
            if isinstance(element, Column) and element.table is u:
                return x.c[element.name]
            return None

        return visitors.replacement_traverse(self.mixed[name], {}, swap)


def _priced_columns(x, rate, gpu_rate, kwh_rate) -> list:
    """Stage-2 sums in USD x 3600 (time) and USD x 3.6e6 (energy), and unpriced GPU-seconds."""
    unpriced = x.c.gpu_seconds * (1.0 - func.coalesce(rate.c.priced_fraction, 0.0))
    return [
        func.coalesce(func.sum(x.c.gpu_seconds * gpu_rate), 0.0).label("time_usd"),
        func.coalesce(func.sum(x.c.serving_seconds * gpu_rate), 0.0).label("serving_time_usd"),
        func.coalesce(func.sum(x.c.energy_j * kwh_rate), 0.0).label("energy_usd"),
        func.coalesce(func.sum(x.c.serving_energy_j * kwh_rate), 0.0).label("serving_energy_usd"),
        func.coalesce(func.sum(case((x.c.gpu_uuid.is_not(None), unpriced), else_=0.0)), 0.0).label(
            "unpriced_seconds"
        ),
    ]


def _periods(conn: Connection, prices: PriceBook, since: int, until: int) -> PricePeriods:
    skus = [row[0] for row in conn.execute(select(s.gpus.c.sku).distinct()) if row[0]]
    sites = [row[0] for row in conn.execute(select(s.gpus.c.site).distinct())]
    return price_periods(prices, skus, sites, since, until)


def _stage_one(
    periods: PricePeriods,
    since: int,
    until: int,
    keys: Sequence,
    measures: Sequence[str],
    *,
    bucket: str | None = None,
    split_weight: float | None = None,
    computed: Mapping[str, ColumnElement] | None = None,
):
    """Usage summed per price period and ``keys`` (GPU; endpoint, model, device as needed).

    ``computed`` (label -> expression over usage columns) adds keys computed per usage row.
    """
    # Computed keys are grouped by their output name: repeating an expression with bound values
    # in GROUP BY is not the same expression to every database. A constant is left out of it.
    period = _period_expr(periods.inner_bounds)
    extra_keys = [period.label("period")]
    group = [*keys, column("period")] if periods.inner_bounds else list(keys)
    for label, expr in (computed or {}).items():
        extra_keys.append(expr.label(label))
        group.append(column(label))
    if bucket is not None:
        start, constant = _bucket_expr(bucket, since, until)
        extra_keys.append(start.label("bucket"))
        if not constant:
            group.append(column("bucket"))

    sums = [func.sum(_measure(m)).label(m) for m in measures]
    if split_weight is not None:
        sums += _split_sums(split_weight)
    return (
        select(*keys, *extra_keys, *sums)
        .where(u.c.hour >= since, u.c.hour < until)
        .group_by(*group)
        .subquery("x")
    )


def _measure(name: str) -> ColumnElement:
    """The usage expression summed as measure ``name``."""
    if name in UNMAPPED_MEASURES:
        tokens = u.c[name.removeprefix("unmapped_")]
        return case((u.c.device_uuid.is_(None), tokens), else_=0.0)
    return u.c[name]


def unmapped_endpoints(
    conn: Connection,
    prices: PriceBook,
    since: int,
    until: int,
    where: Mapping[str, str | Sequence[str]] | None = None,
) -> list[dict]:
    """Endpoints with tokens on no known GPU in the window: ``node``, ``endpoint``, ``tokens``."""
    groups = aggregate(
        conn, prices, since, until, ["node", "endpoint"], where=where, measures=UNMAPPED_MEASURES
    )
    found = []
    for group in sorted(groups, key=lambda grp: grp.key):
        tokens = group.sums["unmapped_input_tokens"] + group.sums["unmapped_output_tokens"]
        if tokens > 0:
            found.append({"node": group.key[0], "endpoint": group.key[1], "tokens": tokens})
    return found


def _period_expr(inner_bounds: Sequence[int]):
    """The index of the price period holding each usage hour."""
    # Limitation: one WHEN per price change in the window; prices that change every hour (spot
    # prices) would make this CASE long and the first stage slower.
    if not inner_bounds:
        return literal(0, Integer)
    whens = [
        (u.c.hour < literal(bound, BigInteger), literal(i, Integer))
        for i, bound in enumerate(inner_bounds)
    ]
    return case(*whens, else_=literal(len(inner_bounds), Integer))


def _bucket_expr(bucket: str, since: int, until: int):
    """Start (seconds, UTC) of the time bucket of each usage hour, and whether it is constant."""
    if bucket == "hour":
        return u.c.hour, False
    if bucket == "day":
        return u.c.hour - u.c.hour % literal(DAY_S, BigInteger), False
    if bucket == "week":
        offset = literal(MONDAY_OFFSET_S, BigInteger)
        return u.c.hour - (u.c.hour - offset) % literal(WEEK_S, BigInteger), False
    starts = _month_starts(since, until)
    if len(starts) == 1:
        return literal(starts[0], BigInteger), True
    whens = [
        (u.c.hour < literal(nxt, BigInteger), literal(cur, BigInteger))
        for cur, nxt in zip(starts, starts[1:], strict=False)
    ]
    return case(*whens, else_=literal(starts[-1], BigInteger)), False


def _month_starts(since: int, until: int) -> list[int]:
    first = datetime.fromtimestamp(since, tz=UTC)
    start, _ = month_bounds(f"{first.year:04d}-{first.month:02d}")
    starts = [start]
    while True:
        nxt = month_bounds(_month_text(starts[-1]))[1]
        if nxt >= until:
            return starts
        starts.append(nxt)


def _month_text(t: int) -> str:
    moment = datetime.fromtimestamp(t, tz=UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def _split_sums(weight: float) -> list:
    """Stage-1 sums for the prefill/decode split of aggregated endpoints, hour by hour.

    An hour with phase time splits by it; an hour without splits by tokens, an output token
    weighing ``weight`` input tokens. Disaggregated endpoints are settled in stage 2 by role.
    """
    # Limitation: energy is split like time; a prefill second may draw more power than a
    # decode second, which no per-phase power reading tells apart.
    phase = u.c.prefill_seconds + u.c.decode_seconds
    measured = phase > 0
    by_phase = u.c.prefill_seconds / phase
    token_weight = u.c.input_tokens + literal(weight, Float) * u.c.output_tokens
    by_tokens = case((token_weight > 0, u.c.input_tokens / token_weight), else_=0.0)
    share = case((measured, by_phase), else_=by_tokens)
    return [
        func.sum(case((measured, u.c.serving_seconds), else_=0.0)).label(
            "measured_serving_seconds"
        ),
        func.sum(u.c.serving_seconds * share).label("aggregated_prefill_seconds"),
        func.sum(u.c.serving_energy_j * share).label("aggregated_prefill_energy_j"),
    ]


def _split_columns(x, ep, gpu_rate, kwh_rate) -> list:
    """Stage-2 sums: a prefill endpoint's serving is all prefill, a decode endpoint's none."""
    disaggregated = ep.c.role.in_(ROLES_DISAGGREGATED)
    prefill_pool = ep.c.role == ROLES_DISAGGREGATED[0]

    def prefill(whole, aggregated):
        return case((prefill_pool, whole), (disaggregated, 0.0), else_=aggregated)

    seconds = prefill(x.c.serving_seconds, x.c.aggregated_prefill_seconds)
    joules = prefill(x.c.serving_energy_j, x.c.aggregated_prefill_energy_j)
    return [
        func.coalesce(func.sum(seconds), 0.0).label("prefill_serving_seconds"),
        func.coalesce(func.sum(joules), 0.0).label("prefill_serving_energy_j"),
        func.coalesce(func.sum(seconds * gpu_rate / 3600.0 + joules * kwh_rate / 3.6e6), 0.0).label(
            "prefill_serving_usd"
        ),
        func.coalesce(func.sum(case((disaggregated, x.c.serving_seconds), else_=0.0)), 0.0).label(
            "disaggregated_serving_seconds"
        ),
        func.coalesce(
            func.sum(case((disaggregated, 0.0), else_=x.c.measured_serving_seconds)), 0.0
        ).label("measured_serving_seconds"),
    ]


def _dimension(name: str, x, g, ep):
    """The SQL expression of dimension ``name`` over the first stage ``x`` and its joins."""
    if name == "model":
        return func.coalesce(x.c.model, UNASSIGNED)
    if name == "gpu":
        return func.coalesce(x.c.gpu_uuid, UNKNOWN)
    if name == "device":
        return func.coalesce(x.c.device_uuid, UNKNOWN)
    return {
        "endpoint": lambda: func.coalesce(ep.c.name, UNASSIGNED),
        "engine": lambda: func.coalesce(ep.c.engine, UNASSIGNED),
        # Limitation: engine and version are the endpoint's latest, so an endpoint upgraded in
        # place counts all its hours under the new version; a new endpoint keeps them apart.
        "engine_version": lambda: func.coalesce(ep.c.engine_version, UNKNOWN),
        "role": lambda: func.coalesce(ep.c.role, UNASSIGNED),
        "sku": lambda: func.coalesce(g.c.sku, UNKNOWN),
        "architecture": lambda: func.coalesce(g.c.architecture, UNKNOWN),
        "node": lambda: func.coalesce(g.c.node, ep.c.node, UNKNOWN),
        "site": lambda: func.coalesce(g.c.site, ep.c.site, UNKNOWN),
        "cluster": lambda: func.coalesce(g.c.cluster, ep.c.cluster, UNKNOWN),
    }[name]()


def _rate_tables(periods: PricePeriods):
    """The period prices as two small inline tables (a UNION ALL of typed literal rows)."""
    rate = _inline_table(
        "rate",
        ("key", "period", "usd_per_gpu_hour", "priced_fraction"),
        (String, Integer, Float, Float),
        [(r.sku, r.period, r.usd_per_gpu_hour, r.priced_fraction) for r in periods.gpu_rates],
    )
    power = _inline_table(
        "power",
        ("key", "period", "usd_per_gpu_kwh"),
        (String, Integer, Float),
        [(r.site, r.period, r.usd_per_gpu_kwh) for r in periods.power_rates],
    )
    return rate, power


def _inline_table(name: str, names: Sequence[str], types: Sequence, rows: list[tuple]):
    if not rows:
        # A row that matches nothing keeps the join valid when no price is set.
        rows = [("", -1, *([None] * (len(names) - 2)))]
    selects = [
        select(
            *[
                cast(literal(value), type_).label(col)
                for value, col, type_ in zip(row, names, types, strict=True)
            ]
        )
        for row in rows
    ]
    return (union_all(*selects) if len(selects) > 1 else selects[0]).subquery(name)
