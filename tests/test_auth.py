"""Bearer tokens: hashed at rest, checked in constant time, limited to nodes, revocable."""

import hmac

import pytest
from click.testing import CliRunner
from otlp_build import T0, S, energy_request, post
from sqlalchemy import func, select

from wattledger.cli.main import cli
from wattledger.collector import schema as s
from wattledger.collector.auth import (
    TokenAuthenticator,
    TokenError,
    Unauthorized,
    create_token,
    hash_secret,
    list_tokens,
    revoke_token,
)
from wattledger.collector.server import CollectorServer, serve_in_thread


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_only_the_hash_of_a_token_is_stored(engine):
    token = create_token(engine, "node-a", ["node-a"])

    prefix, token_id, secret = token.split("_", 2)
    with engine.connect() as conn:
        row = conn.execute(select(s.api_tokens)).one()
    assert (prefix, int(token_id)) == ("wlt", row.id)
    assert row.token_hash == hash_secret(secret) != secret
    assert secret not in row.token_hash
    assert row.nodes == '["node-a"]'


def test_a_valid_token_names_its_caller_and_nodes(engine):
    token = create_token(engine, "node-a", ["node-a", "node-b"])
    authenticate = TokenAuthenticator(engine)

    caller = authenticate(f"Bearer {token}")

    assert caller.token_id == list_tokens(engine)[0].id
    assert caller.allowed_nodes == frozenset({"node-a", "node-b"})


@pytest.mark.parametrize(
    "header, reason",
    [
        (None, "a bearer token is required"),
        ("Basic dXNlcjpwYXNz", "is not 'Bearer wlt_<id>_<secret>'"),
        ("Bearer nonsense", "is not 'Bearer wlt_<id>_<secret>'"),
        ("Bearer wlt_999_" + "A" * 43, "unknown or revoked"),
    ],
)
def test_requests_without_a_valid_token_are_unauthorized(engine, header, reason):
    create_token(engine, "node-a")

    with pytest.raises(Unauthorized, match=reason):
        TokenAuthenticator(engine)(header)


def test_a_wrong_secret_for_a_real_id_is_refused_by_a_constant_time_comparison(engine, monkeypatch):
    token = create_token(engine, "node-a")
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")

    with pytest.raises(Unauthorized):
        TokenAuthenticator(engine)(f"Bearer {forged}")

    assert len(compared) == 1


def test_a_revoked_token_is_refused_after_the_next_refresh(engine):
    token = create_token(engine, "node-a")
    clock = Clock()
    authenticate = TokenAuthenticator(engine, refresh_s=10.0, clock=clock)
    authenticate(f"Bearer {token}")

    revoke_token(engine, "node-a")
    clock.t += 10.0

    with pytest.raises(Unauthorized):
        authenticate(f"Bearer {token}")


def test_a_token_created_after_the_collector_started_works_at_once(engine):
    clock = Clock()
    authenticate = TokenAuthenticator(engine, refresh_s=10.0, clock=clock)
    authenticate._lookup(1)  # loads the (empty) token table
    clock.t += 1.0

    token = create_token(engine, "late")

    assert authenticate(f"Bearer {token}").token_id is not None


def test_names_are_unique_and_revoking_an_unknown_name_says_so(engine):
    create_token(engine, "node-a")

    with pytest.raises(TokenError, match="exists already"):
        create_token(engine, "node-a")
    with pytest.raises(TokenError, match="no active token named 'ghost'"):
        revoke_token(engine, "ghost")
    with pytest.raises(TokenError, match="is not valid"):
        create_token(engine, "bad name; drop table")


def test_the_name_of_a_revoked_token_is_not_reused_and_says_so(engine):
    create_token(engine, "node-a")
    revoke_token(engine, "node-a")

    with pytest.raises(TokenError) as info:
        create_token(engine, "node-a")

    assert str(info.value) == (
        "a revoked token was named 'node-a'; names are not reused, choose another name"
    )


def test_the_cli_says_a_revoked_name_is_not_reused(tmp_path):
    db = ["--db", str(tmp_path / "w.db")]
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade", *db]).exit_code == 0
    assert runner.invoke(cli, ["token", "create", "node-a", *db]).exit_code == 0
    assert runner.invoke(cli, ["token", "revoke", "node-a", *db]).exit_code == 0

    result = runner.invoke(cli, ["token", "create", "node-a", *db])

    assert result.exit_code == 1
    assert result.stderr == (
        "error: a revoked token was named 'node-a'; names are not reused, choose another name\n"
    )


@pytest.fixture
def secured(engine):
    server = CollectorServer(("127.0.0.1", 0), engine, authenticate=TokenAuthenticator(engine))
    serve_in_thread(server)
    yield server, engine
    server.stop()


def count(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_the_collector_refuses_a_batch_without_a_token_and_stores_nothing(secured):
    server, engine = secured
    body = energy_request("node-a", [("GPU-a", T0 + 60 * S, 100.0)]).SerializeToString()

    status, reply = post(server.url + "/v1/metrics", body)

    assert status == 401
    assert b"bearer token is required" in reply
    assert count(engine, s.series) == 0


def test_each_series_records_the_token_that_wrote_it(secured):
    server, engine = secured
    token = create_token(engine, "node-a", ["node-a"])
    body = energy_request("node-a", [("GPU-a", T0 + 60 * S, 100.0)]).SerializeToString()

    status, _ = post(server.url + "/v1/metrics", body, token=token)

    assert status == 200
    with engine.connect() as conn:
        token_ids = conn.execute(select(s.series.c.token_id)).scalars().all()
        last_used = conn.execute(select(s.api_tokens.c.last_used_ns)).scalar()
    assert token_ids == [list_tokens(engine)[0].id]
    assert last_used is not None


def test_a_token_cannot_write_for_a_node_it_is_not_limited_to(secured):
    server, engine = secured
    token = create_token(engine, "node-b", ["node-b"])
    body = energy_request("node-a", [("GPU-a", T0 + 60 * S, 100.0)]).SerializeToString()

    status, reply = post(server.url + "/v1/metrics", body, token=token)

    assert status == 200  # OTLP partial success: the points are rejected, the request is not
    assert b"may not write for node 'node-a'" in reply
    assert count(engine, s.series) == 0


def test_token_commands_create_list_and_revoke(tmp_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade", "--db", db]).exit_code == 0

    created = runner.invoke(
        cli, ["token", "create", "gpu-node-7", "--node", "gpu-node-7", "--db", db]
    )
    listed = runner.invoke(cli, ["token", "list", "--format", "csv", "--db", db])
    revoked = runner.invoke(cli, ["token", "revoke", "gpu-node-7", "--db", db])
    again = runner.invoke(cli, ["token", "revoke", "gpu-node-7", "--db", db])

    assert created.exit_code == 0, created.output
    assert created.stdout.strip().startswith("wlt_1_")
    assert "id,name,nodes,created,last_used,revoked" in listed.stdout
    assert ",gpu-node-7,gpu-node-7," in listed.stdout
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert again.exit_code == 1
    assert "error: no active token named 'gpu-node-7'" in again.output
