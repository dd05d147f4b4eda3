"""Bounds on what one request may carry: over any of them is a 4xx and nothing is stored."""

import pytest
from otlp_build import T0, S, energy_request, kv, post
from sqlalchemy import func, select

from wattledger.collector import otlp
from wattledger.collector import schema as s
from wattledger.collector.server import CollectorServer, serve_in_thread

LIMITS = otlp.Limits(
    max_body_bytes=4096,
    max_decompressed_bytes=8192,
    max_points=10,
    max_attribute_bytes=64,
    max_attributes=8,
)


@pytest.fixture
def bounded(engine):
    server = CollectorServer(("127.0.0.1", 0), engine, limits=LIMITS, max_series_per_node=5)
    serve_in_thread(server)
    yield server.url + "/v1/metrics", engine
    server.stop()


def stored_series(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(s.series)).scalar()


def readings(n: int):
    return [(f"GPU-{i}", T0 + 60 * S, 1.0) for i in range(n)]


def test_a_body_over_the_size_bound_is_413(bounded):
    url, engine = bounded

    status, reply = post(url, b"\0" * 5000)

    assert status == 413
    assert reply == b"body of 5000 bytes exceeds 4096 bytes\n"
    assert stored_series(engine) == 0


def test_a_gzip_body_that_expands_past_the_bound_is_413(bounded):
    url, engine = bounded

    status, reply = post(url, b"\0" * 100_000, gzipped=True)

    assert status == 413
    assert b"expands beyond 8192 bytes" in reply
    assert stored_series(engine) == 0


def test_more_points_than_allowed_is_413_and_none_is_stored(bounded):
    url, engine = bounded
    # Two nodes so that the series bound is not what refuses it.
    request = energy_request("node-a", readings(5))
    request.MergeFrom(energy_request("node-b", readings(6)))

    status, reply = post(url, request.SerializeToString())

    assert status == 413
    assert b"more than 10 points" in reply
    assert stored_series(engine) == 0


def test_an_attribute_over_the_size_bound_is_413(bounded):
    url, engine = bounded
    request = energy_request("node-a", readings(1))
    request.resource_metrics[0].resource.attributes.append(kv("wattledger.tag.team", "x" * 100))

    status, reply = post(url, request.SerializeToString())

    assert status == 413
    assert b"attribute 'wattledger.tag.team' is 119 bytes; the limit is 64" in reply
    assert stored_series(engine) == 0


def test_too_many_attributes_is_413(bounded):
    url, engine = bounded
    request = energy_request("node-a", readings(1))
    request.resource_metrics[0].resource.attributes.extend(
        kv(f"wattledger.tag.t{i}", "v") for i in range(8)
    )

    status, reply = post(url, request.SerializeToString())

    assert status == 413
    assert b"has 10 attributes; the limit is 8" in reply


def test_a_batch_that_would_give_a_node_too_many_series_is_400_and_nothing_is_stored(bounded):
    url, engine = bounded
    first, _ = post(url, energy_request("node-a", readings(3)).SerializeToString())

    status, reply = post(url, energy_request("node-a", readings(6)).SerializeToString())

    assert first == 200
    assert status == 400
    assert reply == (
        b"node 'node-a' would have 6 series; the limit is 5 per node "
        b"(collector option --max-series-per-node)\n"
    )
    assert stored_series(engine) == 3
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.deltas)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(s.gpus)).scalar() == 3
