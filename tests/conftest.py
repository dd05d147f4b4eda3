"""Shared fixtures: the real-payload corpus and the databases the store is tested against."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _corpus_root() -> Path:
    override = os.environ.get("WATTLEDGER_CORPUS")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "corpus"


CORPUS = _corpus_root()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The captured payloads in ``../shared/corpus``; tests needing them skip when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"real-payload corpus not found at {CORPUS} (set WATTLEDGER_CORPUS)")
    return CORPUS


def corpus_file(*parts: str) -> Path:
    """Path of one corpus file, skipping the calling test when the corpus is not present."""
    path = CORPUS.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"corpus file {path} not present")
    return path


# --- databases -----------------------------------------------------------------------------

PG_ADMIN_URL = os.environ.get("WATTLEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("WATTLEDGER_REQUIRE_PG") == "1" or os.environ.get("CI") == "true"


def _pg_admin_engine():
    from sqlalchemy import create_engine

    from wattledger.collector.db import normalise_url

    return create_engine(normalise_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    admin = _pg_admin_engine()
    name = f"wattledger_test_{os.getpid()}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required but unreachable: {exc.orig}")
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} unreachable")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(engine) -> None:
    from sqlalchemy import text

    from wattledger.collector.schema import metadata

    names = [t.name for t in reversed(metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(names) + " RESTART IDENTITY CASCADE"))
        else:
            for name in names:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture(scope="session")
def _pg_engine(pg_url):
    from wattledger.collector.db import open_engine
    from wattledger.migrations import runner

    engine = open_engine(pg_url)
    runner.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    """A migrated, empty store on each database wattledger supports."""
    from wattledger.collector.db import open_engine
    from wattledger.migrations import runner

    if request.param == "sqlite":
        eng = open_engine(f"sqlite:///{tmp_path / 'wattledger.db'}")
        runner.upgrade(eng)
        yield eng
        eng.dispose()
        return
    eng = request.getfixturevalue("_pg_engine")
    _truncate_all(eng)
    yield eng


@pytest.fixture
def sqlite_engine(tmp_path):
    from wattledger.collector.db import open_engine
    from wattledger.migrations import runner

    eng = open_engine(f"sqlite:///{tmp_path / 'wattledger.db'}")
    runner.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory, monkeypatch):
    """Keep the user's own config, data directory and WATTLEDGER_* settings out of tests."""
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith("WATTLEDGER_") and name not in (
            "WATTLEDGER_TEST_PG",
            "WATTLEDGER_REQUIRE_PG",
            "WATTLEDGER_CORPUS",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
