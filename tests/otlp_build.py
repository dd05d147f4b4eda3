"""Small OTLP requests for tests, built from the protobuf classes, and a way to post them."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from wattledger import contract as c

S = 1_000_000_000
T0 = 1_764_000_000 * S  # on an hour boundary


def kv(key: str, value) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def energy_request(
    node: str, readings: list[tuple[str, int, float]], start_ns: int = T0
) -> ExportMetricsServiceRequest:
    """One node's hw.energy points: (GPU uuid, time, cumulative joules) each."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend([kv(c.RES_NODE, node), kv(c.RES_SERVICE_NAME, c.SERVICE_NAME)])
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = c.METRIC_ENERGY
    metric.unit = "J"
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    for uuid, t_ns, joules in readings:
        dp = metric.sum.data_points.add()
        dp.attributes.extend([kv(c.ATTR_HW_ID, uuid), kv(c.ATTR_SKU, "H100")])
        dp.start_time_unix_nano = start_ns
        dp.time_unix_nano = t_ns
        dp.as_double = joules
    return request


def post(
    url: str, body: bytes, *, token: str | None = None, gzipped: bool = False, timeout: float = 10.0
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/x-protobuf"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
