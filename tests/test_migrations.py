"""Schema migrations: from every earlier revision on a populated store, and one step down."""

import pytest
from otlp_build import T0, S
from sqlalchemy import create_engine, func, inspect, select, text

from wattledger import contract as c
from wattledger.collector import schema as s
from wattledger.collector.db import open_engine
from wattledger.collector.ingest import Ingestor
from wattledger.collector.points import COUNTER, Point
from wattledger.migrations import runner

REVISIONS = runner.all_revisions()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_store(request, tmp_path):
    if request.param == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    admin_url = request.getfixturevalue("pg_url")
    admin = create_engine(
        admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"migrations_{abs(hash(request.node.name)) % 10**8}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = open_engine(admin.url.set(database=name).render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def populate(engine) -> None:
    """Rows in the tables every revision has, written as the first revision knew them."""
    resource = {c.RES_NODE: "node-a"}
    gpu = {c.ATTR_HW_ID: "GPU-a", c.ATTR_SKU: "H100"}
    points = [
        Point(c.METRIC_ENERGY, COUNTER, resource, gpu, T0, T0 + t * S, 600.0 * t) for t in (60, 120)
    ]
    with engine.begin() as conn:
        conn.execute(
            s.api_tokens.insert().values(
                name="old", token_hash="sha256:" + "ab" * 32, nodes=None, created_ns=T0
            )
        )
    # The ingest writes only columns of revision 0001.
    Ingestor(engine).ingest(points, token_id=1)


def totals(engine) -> tuple:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.sum(s.deltas.c.value))).scalar(),
            conn.execute(select(func.count()).select_from(s.series)).scalar(),
            conn.execute(select(s.api_tokens.c.name)).scalars().all(),
        )


def test_the_revisions_form_one_line_from_0001():
    assert REVISIONS[0] == "0001"
    assert REVISIONS[-1] == runner.head_revision()
    assert len(REVISIONS) == len(set(REVISIONS)) >= 2


@pytest.mark.parametrize("start", REVISIONS[:-1])
def test_upgrade_from_every_earlier_revision_keeps_the_data(empty_store, start):
    runner.upgrade(empty_store, start)
    populate(empty_store)
    before = totals(empty_store)

    runner.upgrade(empty_store)

    assert runner.current_revision(empty_store) == runner.head_revision()
    assert totals(empty_store) == before == (72_000.0, 1, ["old"])
    runner.require_current(empty_store)


@pytest.mark.parametrize("target", REVISIONS[1:])
def test_downgrade_one_step_keeps_the_data(empty_store, target):
    runner.upgrade(empty_store, target)
    previous = REVISIONS[REVISIONS.index(target) - 1]
    populate(empty_store)

    runner.downgrade(empty_store, previous)

    assert runner.current_revision(empty_store) == previous
    assert totals(empty_store) == (72_000.0, 1, ["old"])
    runner.upgrade(empty_store)
    assert runner.current_revision(empty_store) == runner.head_revision()


def test_revision_0002_adds_token_use_and_the_series_node_index(empty_store):
    runner.upgrade(empty_store, "0001")
    runner.upgrade(empty_store, "0002")

    inspector = inspect(empty_store)
    assert "last_used_ns" in {col["name"] for col in inspector.get_columns("api_tokens")}
    assert "ix_series_node" in {ix["name"] for ix in inspector.get_indexes("series")}

    runner.downgrade(empty_store, "0001")
    inspector = inspect(empty_store)
    assert "last_used_ns" not in {col["name"] for col in inspector.get_columns("api_tokens")}
    assert "ix_series_node" not in {ix["name"] for ix in inspector.get_indexes("series")}


def test_the_migrated_schema_matches_the_models(empty_store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    runner.upgrade(empty_store)
    with empty_store.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, s.metadata)

    assert differences == []
