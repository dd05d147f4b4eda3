"""Initial schema: dimensions, series, deltas, gauges, hourly rollups, prices, tokens, exports.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gpus",
        sa.Column("id", Id, primary_key=True),
        sa.Column("uuid", sa.String(96), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("cluster", sa.String(255)),
        sa.Column("site", sa.String(255)),
        sa.Column("name", sa.String(255)),
        sa.Column("sku", sa.String(64)),
        sa.Column("architecture", sa.String(32)),
        sa.Column("parent_uuid", sa.String(96)),
        sa.Column("mig_profile", sa.String(64)),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("first_seen_ns", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gpus"),
        sa.UniqueConstraint("uuid", name="uq_gpus_uuid"),
    )
    op.create_index("ix_gpus_node", "gpus", ["node"])

    op.create_table(
        "endpoints",
        sa.Column("id", Id, primary_key=True),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("engine", sa.String(32)),
        sa.Column("engine_version", sa.String(64)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("cluster", sa.String(255)),
        sa.Column("site", sa.String(255)),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("first_seen_ns", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_endpoints"),
        sa.UniqueConstraint("node", "name", name="uq_endpoints_node_name"),
    )

    op.create_table(
        "endpoint_gpus",
        sa.Column("endpoint_id", Id, nullable=False),
        sa.Column("gpu_uuid", sa.String(96), nullable=False),
        sa.Column("first_seen_ns", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("endpoint_id", "gpu_uuid", name="pk_endpoint_gpus"),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name="fk_endpoint_gpus_endpoint_id_endpoints",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("nodes", sa.Text),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("revoked_ns", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )

    op.create_table(
        "series",
        sa.Column("id", Id, primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("gpu_uuid", sa.String(96)),
        sa.Column("endpoint_id", Id),
        sa.Column("model", sa.String(255)),
        sa.Column("label", sa.String(64)),
        sa.Column("attrs", sa.Text, nullable=False),
        sa.Column("token_id", Id),
        sa.Column("start_ns", sa.BigInteger),
        sa.Column("last_ns", sa.BigInteger),
        sa.Column("last_value", sa.Float),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_series"),
        sa.UniqueConstraint("key_hash", name="uq_series_key_hash"),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["endpoints.id"], name="fk_series_endpoint_id_endpoints"
        ),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name="fk_series_token_id_api_tokens"
        ),
    )
    op.create_index("ix_series_metric", "series", ["metric"])
    op.create_index("ix_series_gpu_uuid", "series", ["gpu_uuid"])
    op.create_index("ix_series_endpoint_id", "series", ["endpoint_id"])

    op.create_table(
        "deltas",
        sa.Column("series_id", Id, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "end_ns", name="pk_deltas"),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name="fk_deltas_series_id_series", ondelete="CASCADE"
        ),
    )

    op.create_table(
        "gauge_samples",
        sa.Column("series_id", Id, nullable=False),
        sa.Column("t_ns", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "t_ns", name="pk_gauge_samples"),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name="fk_gauge_samples_series_id_series",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "rollup_hourly",
        sa.Column("series_id", Id, nullable=False),
        sa.Column("hour", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("active_seconds", sa.Float, nullable=False),
        sa.Column("samples", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "hour", name="pk_rollup_hourly"),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name="fk_rollup_hourly_series_id_series",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_rollup_hourly_hour", "rollup_hourly", ["hour"])

    op.create_table(
        "dirty_hours",
        sa.Column("hour", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("hour", name="pk_dirty_hours"),
    )

    op.create_table(
        "usage_hourly",
        sa.Column("id", Id, primary_key=True),
        sa.Column("hour", sa.BigInteger, nullable=False),
        sa.Column("gpu_uuid", sa.String(96)),
        sa.Column("device_uuid", sa.String(96)),
        sa.Column("endpoint_id", Id),
        sa.Column("model", sa.String(255)),
        *[
            sa.Column(name, sa.Float, nullable=False)
            for name in (
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
        ],
        sa.PrimaryKeyConstraint("id", name="pk_usage_hourly"),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name="fk_usage_hourly_endpoint_id_endpoints",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_usage_hourly_hour", "usage_hourly", ["hour"])

    op.create_table(
        "prices",
        sa.Column("id", Id, primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("effective_from", sa.BigInteger, nullable=False),
        sa.Column("usd_per_gpu_hour", sa.Float),
        sa.Column("capex_usd", sa.Float),
        sa.Column("amortization_years", sa.Float),
        sa.Column("usd_per_kwh", sa.Float),
        sa.Column("pue", sa.Float),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prices"),
        sa.UniqueConstraint("scope", "key", "effective_from", name="uq_prices_scope_key_from"),
    )

    op.create_table(
        "export_runs",
        sa.Column("id", Id, primary_key=True),
        sa.Column("job", sa.String(255), nullable=False),
        sa.Column("period_start", sa.BigInteger, nullable=False),
        sa.Column("period_end", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("path", sa.Text),
        sa.Column("sha256", sa.String(64)),
        sa.Column("rows", sa.BigInteger),
        sa.Column("started_ns", sa.BigInteger, nullable=False),
        sa.Column("finished_ns", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_export_runs"),
        sa.UniqueConstraint("job", "period_start", "period_end", name="uq_export_runs_job_period"),
    )

    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.String(191), nullable=False),
        sa.Column("next_run_time", sa.Float(25)),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_apscheduler_jobs"),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])


def downgrade() -> None:
    op.drop_table("apscheduler_jobs")
    op.drop_table("export_runs")
    op.drop_table("prices")
    op.drop_table("usage_hourly")
    op.drop_table("dirty_hours")
    op.drop_table("rollup_hourly")
    op.drop_table("gauge_samples")
    op.drop_table("deltas")
    op.drop_table("series")
    op.drop_table("api_tokens")
    op.drop_table("endpoint_gpus")
    op.drop_table("endpoints")
    op.drop_table("gpus")
