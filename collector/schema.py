"""The SQL schema: one metadata object, the same on SQLite and PostgreSQL.

Only Alembic migrations create or change these tables (``wattledger db upgrade``); this module
describes them for queries and for the migrations' autogenerate check.

How the tables fit together:

* ``gpus`` and ``endpoints`` are the dimensions a report groups by (node, SKU, architecture,
  engine, role, tags). ``endpoint_gpus`` records which GPUs each endpoint runs on.
* ``series`` is one stream of points from the wire contract (one GPU's energy, one endpoint's
  output tokens for one model, ...). It also keeps the last cumulative value seen, which is what
  turns cumulative points into deltas exactly once.
* ``deltas`` holds what each counter grew by over each interval; ``gauge_samples`` holds gauge
  readings. ``rollup_hourly`` sums both into hour buckets as data arrives; reports read only the
  rollups, so they stay fast as the fleet grows, and the rollups can be rebuilt from the rows.
* ``usage_hourly`` attributes each hour's GPU time, energy and tokens to endpoints and models;
  ``dirty_hours`` marks the hours it must recompute.
* ``prices`` carries effective-from prices per GPU SKU and per site.
* ``api_tokens``, ``export_runs`` and ``apscheduler_jobs`` serve authentication, chargeback
  exports and the export scheduler.

Times are integers: nanoseconds since the epoch for points (as OTLP sends them) and seconds since
the epoch for hour buckets and price changes, so both databases compare them the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# PostgreSQL's BIGINT, SQLite's INTEGER: SQLite only makes INTEGER PRIMARY KEY an auto-increment.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


class Gpu(Base):
    """A physical GPU (or a MIG instance, which names its parent)."""

    __tablename__ = "gpus"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(96), unique=True)
    node: Mapped[str] = mapped_column(String(255), index=True)
    cluster: Mapped[str | None] = mapped_column(String(255))
    site: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    sku: Mapped[str | None] = mapped_column(String(64))
    architecture: Mapped[str | None] = mapped_column(String(32))
    parent_uuid: Mapped[str | None] = mapped_column(String(96))
    mig_profile: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[str] = mapped_column(Text, default="{}")
    first_seen_ns: Mapped[int] = mapped_column(BigInteger)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)


class Endpoint(Base):
    """One scraped serving-engine endpoint on one node."""

    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("node", "name", name="uq_endpoints_node_name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    node: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    engine: Mapped[str | None] = mapped_column(String(32))
    engine_version: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default="aggregated")
    cluster: Mapped[str | None] = mapped_column(String(255))
    site: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[str] = mapped_column(Text, default="{}")
    first_seen_ns: Mapped[int] = mapped_column(BigInteger)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)


class EndpointGpu(Base):
    """An endpoint ran on a GPU between two times."""

    __tablename__ = "endpoint_gpus"

    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    gpu_uuid: Mapped[str] = mapped_column(String(96), primary_key=True)
    first_seen_ns: Mapped[int] = mapped_column(BigInteger)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)


class Series(Base):
    """One stream of points, identified by a hash of its identifying attributes."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    metric: Mapped[str] = mapped_column(String(128), index=True)
    node: Mapped[str] = mapped_column(String(255), index=True)
    gpu_uuid: Mapped[str | None] = mapped_column(String(96), index=True)
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("endpoints.id"), index=True)
    model: Mapped[str | None] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(64))
    attrs: Mapped[str] = mapped_column(Text, default="{}")
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    start_ns: Mapped[int | None] = mapped_column(BigInteger)
    last_ns: Mapped[int | None] = mapped_column(BigInteger)
    last_value: Mapped[float | None] = mapped_column(Float)
    created_ns: Mapped[int] = mapped_column(BigInteger)


class Delta(Base):
    """What a counter series grew by between ``start_ns`` and ``end_ns``."""

    __tablename__ = "deltas"

    series_id: Mapped[int] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), primary_key=True
    )
    end_ns: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    start_ns: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)


class GaugeSample(Base):
    """One gauge reading."""

    __tablename__ = "gauge_samples"

    series_id: Mapped[int] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), primary_key=True
    )
    t_ns: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class RollupHourly(Base):
    """A series summed into one hour.

    For counters: ``value`` is the growth inside the hour (an interval that spans hours is split
    in proportion to time), ``seconds`` the time covered by intervals, ``active_seconds`` the part
    of it in intervals where the counter grew. For gauges: ``value`` is the sum of readings and
    ``samples`` their number, so the hour's mean is ``value / samples``.
    """

    __tablename__ = "rollup_hourly"
    __table_args__ = (Index("ix_rollup_hourly_hour", "hour"),)

    series_id: Mapped[int] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    active_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    samples: Mapped[int] = mapped_column(BigInteger, default=0)


class DirtyHour(Base):
    """An hour whose rollups changed since its usage rows were last computed.

    ``version`` grows with every write to the hour, so a refresh that read version ``v`` clears
    the mark only if no write came in meanwhile.
    """

    __tablename__ = "dirty_hours"

    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=1)


class UsageHourly(Base):
    """GPU time, energy and tokens of one hour, attributed to endpoint and model.

    One row per (hour, device, endpoint, model): a device is a whole GPU or one MIG instance of
    it (``gpu_uuid`` is always the physical GPU, for its SKU, architecture and node). Rows with
    no endpoint are GPU time nobody was mapped to; rows with no device are tokens of an endpoint
    whose GPUs are unknown. ``serving_*`` is the part of the time and energy in which the
    endpoint produced tokens; the rest is idle. Token columns are already divided among the
    endpoint's devices, so sums over rows count each token once. Prices are applied at report
    time, so a price set later changes no stored row.
    """

    __tablename__ = "usage_hourly"
    __table_args__ = (Index("ix_usage_hourly_hour", "hour"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger)
    gpu_uuid: Mapped[str | None] = mapped_column(String(96))
    device_uuid: Mapped[str | None] = mapped_column(String(96))
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    model: Mapped[str | None] = mapped_column(String(255))
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    serving_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    energy_j: Mapped[float] = mapped_column(Float, default=0.0)
    serving_energy_j: Mapped[float] = mapped_column(Float, default=0.0)
    input_tokens: Mapped[float] = mapped_column(Float, default=0.0)
    output_tokens: Mapped[float] = mapped_column(Float, default=0.0)
    cached_tokens: Mapped[float] = mapped_column(Float, default=0.0)
    requests: Mapped[float] = mapped_column(Float, default=0.0)
    prefill_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    decode_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    util_busy_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    util_known_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Price(Base):
    """A price in force from ``effective_from`` until the next entry for the same scope and key.

    ``scope`` is ``sku`` (a GPU model: ``usd_per_gpu_hour`` directly, or ``capex_usd`` over
    ``amortization_years``) or ``site`` (``usd_per_kwh`` and ``pue``).
    """

    __tablename__ = "prices"
    __table_args__ = (
        UniqueConstraint("scope", "key", "effective_from", name="uq_prices_scope_key_from"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255))
    effective_from: Mapped[int] = mapped_column(BigInteger)
    usd_per_gpu_hour: Mapped[float | None] = mapped_column(Float)
    capex_usd: Mapped[float | None] = mapped_column(Float)
    amortization_years: Mapped[float | None] = mapped_column(Float)
    usd_per_kwh: Mapped[float | None] = mapped_column(Float)
    pue: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    note: Mapped[str | None] = mapped_column(Text)
    created_ns: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    """A bearer token an agent presents to the collector; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    nodes: Mapped[str | None] = mapped_column(Text)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    revoked_ns: Mapped[int | None] = mapped_column(BigInteger)
    last_used_ns: Mapped[int | None] = mapped_column(BigInteger)


class ExportRun(Base):
    """One chargeback export of one period; the unique key is the lock two schedulers share."""

    __tablename__ = "export_runs"
    __table_args__ = (
        UniqueConstraint("job", "period_start", "period_end", name="uq_export_runs_job_period"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    job: Mapped[str] = mapped_column(String(255))
    period_start: Mapped[int] = mapped_column(BigInteger)
    period_end: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(255))
    path: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(BigInteger)
    started_ns: Mapped[int] = mapped_column(BigInteger)
    finished_ns: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)


class SchedulerJob(Base):
    """APScheduler 3's job store table, created here so that only migrations make tables."""

    __tablename__ = "apscheduler_jobs"

    id: Mapped[str] = mapped_column(String(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


gpus = Gpu.__table__
endpoints = Endpoint.__table__
endpoint_gpus = EndpointGpu.__table__
series = Series.__table__
deltas = Delta.__table__
gauge_samples = GaugeSample.__table__
rollup_hourly = RollupHourly.__table__
prices = Price.__table__
dirty_hours = DirtyHour.__table__
usage_hourly = UsageHourly.__table__
api_tokens = ApiToken.__table__
export_runs = ExportRun.__table__
scheduler_jobs = SchedulerJob.__table__
