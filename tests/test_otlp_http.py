"""The collector's OTLP/HTTP endpoint: protobuf and JSON, gzip, and refusals that store nothing."""

import gzip
import json
import urllib.error
import urllib.request

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from sqlalchemy import func, select

from wattledger import contract as c
from wattledger.collector import otlp
from wattledger.collector import schema as s
from wattledger.collector.server import CollectorServer, serve_in_thread

S = 1_000_000_000
T0 = 1_764_000_000 * S


def request_with_energy(joules: float, t_s: int = 60) -> ExportMetricsServiceRequest:
    document = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "wattledger.node", "value": {"stringValue": "node-a"}}]
                },
                "scopeMetrics": [
                    {
                        "scope": {"name": "test"},
                        "metrics": [
                            {
                                "name": c.METRIC_ENERGY,
                                "unit": "J",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "attributes": [
                                                {"key": "hw.id", "value": {"stringValue": "GPU-1"}}
                                            ],
                                            "startTimeUnixNano": str(T0),
                                            "timeUnixNano": str(T0 + t_s * S),
                                            "asDouble": joules,
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            }
        ]
    }
    return json_format.ParseDict(document, ExportMetricsServiceRequest())


@pytest.fixture
def collector(sqlite_engine):
    server = CollectorServer(
        ("127.0.0.1", 0),
        sqlite_engine,
        limits=otlp.Limits(max_body_bytes=64 * 1024, max_decompressed_bytes=1024 * 1024),
    )
    serve_in_thread(server)
    yield server
    server.stop()


def post(server, body: bytes, content_type: str, encoding: str | None = None):
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(
        server.url + "/v1/metrics", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type")


def stored_joules(engine):
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.sum(s.deltas.c.value), 0.0))).scalar()


def test_protobuf_gzip_and_json_bodies_are_stored(collector, sqlite_engine):
    first = gzip.compress(request_with_energy(600.0, 60).SerializeToString())
    second = json_format.MessageToJson(request_with_energy(1500.0, 120)).encode()

    status1, body1, type1 = post(collector, first, "application/x-protobuf", "gzip")
    status2, body2, type2 = post(collector, second, "application/json")

    assert (status1, type1) == (200, "application/x-protobuf")
    assert ExportMetricsServiceResponse.FromString(body1).partial_success.rejected_data_points == 0
    assert (status2, type2) == (200, "application/json")
    assert stored_joules(sqlite_engine) == 1500.0


def test_rejected_points_come_back_as_partial_success(collector, sqlite_engine):
    request = request_with_energy(600.0)
    request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].attributes.pop()

    status, body, _ = post(collector, request.SerializeToString(), "application/x-protobuf")

    partial = ExportMetricsServiceResponse.FromString(body).partial_success
    assert status == 200
    assert partial.rejected_data_points == 1
    assert partial.error_message == "hw.energy point has no hw.id attribute"
    assert stored_joules(sqlite_engine) == 0.0


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status", "message"),
    [
        (
            b"\xff\xff\xff",
            "application/x-protobuf",
            None,
            400,
            "body is not an OTLP protobuf metrics request",
        ),
        (b"{not json", "application/json", None, 400, "body is not an OTLP JSON metrics request"),
        (b"plain", "text/plain", None, 415, "Content-Type 'text/plain' is not supported"),
        (b"\x1f\x8bnot gzip", "application/x-protobuf", "gzip", 400, "body is not valid gzip"),
        (b"x" * (64 * 1024 + 1), "application/x-protobuf", None, 413, "exceeds 65536 bytes"),
        (
            gzip.compress(b"\0" * (2 * 1024 * 1024)),
            "application/x-protobuf",
            "gzip",
            413,
            "expands beyond",
        ),
        (b"x", "application/x-protobuf", "br", 415, "Content-Encoding 'br' is not supported"),
    ],
)
def test_bad_bodies_get_a_one_line_reason_and_change_nothing(
    collector, sqlite_engine, body, content_type, encoding, status, message
):
    got_status, got_body, got_type = post(collector, body, content_type, encoding)

    assert got_status == status
    assert got_type.startswith("text/plain")
    text = got_body.decode()
    assert message in text
    assert text.count("\n") == 1
    assert stored_joules(sqlite_engine) == 0.0


def test_health_and_unknown_paths(collector):
    with urllib.request.urlopen(collector.url + "/healthz", timeout=5) as response:
        assert response.read() == b"ok\n"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(collector.url + "/v1/traces", timeout=5)
    assert info.value.code == 404


def test_metrics_the_contract_does_not_know_are_skipped_not_refused():
    request = request_with_energy(5.0)
    extra = request.resource_metrics[0].scope_metrics[0].metrics.add()
    extra.name = "http.server.duration"
    extra.gauge.data_points.add().as_double = 1.0

    decoded = otlp.points_from_request(request)

    assert [p.metric for p in decoded.points] == [c.METRIC_ENERGY]
    assert decoded.skipped_metrics == {"http.server.duration": 1}
    assert json.loads(json.dumps(decoded.skipped_metrics)) == {"http.server.duration": 1}


def test_a_value_the_database_refuses_is_a_400_and_a_bug_is_a_500_never_a_dropped_connection(
    collector, monkeypatch
):
    from sqlalchemy.exc import DataError

    body = request_with_energy(1.0).SerializeToString()

    def refuse(*_args, **_kwargs):
        raise DataError("INSERT ...", {}, Exception("value out of range for type bigint"))

    monkeypatch.setattr(collector.ingestor, "ingest", refuse)
    status, text, _ = post(collector, body, "application/x-protobuf")
    assert status == 400
    assert text.decode() == "the store cannot take this batch: value out of range for type bigint\n"

    def crash(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(collector.ingestor, "ingest", crash)
    status, text, _ = post(collector, body, "application/x-protobuf")
    assert status == 500
    assert text.decode() == "the collector failed on this batch; see its log\n"
