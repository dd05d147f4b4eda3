"""OTLP/HTTP metrics requests in, :class:`Point` objects out.

Bodies arrive as protobuf (``application/x-protobuf``) or JSON (``application/json``), plain or
gzip-compressed, as the OpenTelemetry SDK exporter and the OpenTelemetry Collector send them. The
``opentelemetry-proto`` classes do the decoding; this module checks sizes and picks out the
metrics of the wire contract. Metrics the contract does not know are counted and skipped, so an
OpenTelemetry Collector that forwards more than wattledger needs is not refused.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from wattledger.collector.points import COUNTER, DELTA, GAUGE, KNOWN_METRICS, Point

logger = logging.getLogger(__name__)

CONTENT_PROTOBUF = "application/x-protobuf"
CONTENT_JSON = "application/json"

DELTA_TEMPORALITY = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


@dataclass(frozen=True)
class Limits:
    """Bounds on one request; anything beyond them is refused before it is stored."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_decompressed_bytes: int = 64 * 1024 * 1024
    max_points: int = 200_000
    max_attribute_bytes: int = 4096
    max_attributes: int = 64


class RequestError(ValueError):
    """A request that cannot be taken at all; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class DecodedRequest:
    points: list[Point] = field(default_factory=list)
    skipped_metrics: dict[str, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)


def decompress(body: bytes, encoding: str | None, limits: Limits) -> bytes:
    """Undo ``Content-Encoding`` without letting a small body expand beyond the limit."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise RequestError(415, f"Content-Encoding {encoding!r} is not supported; use gzip or none")

    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limits.max_decompressed_bytes + 1)
    except zlib.error as exc:
        raise RequestError(400, f"body is not valid {encoding}: {exc}") from None
    if len(out) > limits.max_decompressed_bytes or inflater.unconsumed_tail:
        raise RequestError(
            413, f"body expands beyond {limits.max_decompressed_bytes} bytes; send smaller batches"
        )
    return out


def parse_request(body: bytes, content_type: str | None) -> ExportMetricsServiceRequest:
    media = (content_type or CONTENT_PROTOBUF).split(";")[0].strip().lower()
    request = ExportMetricsServiceRequest()
    if media == CONTENT_PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise RequestError(
                400, f"body is not an OTLP protobuf metrics request: {exc}"
            ) from None
        return request
    if media == CONTENT_JSON:
        try:
            json_format.Parse(body.decode("utf-8"), request, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            reason = str(exc).splitlines()[0]
            raise RequestError(400, f"body is not an OTLP JSON metrics request: {reason}") from None
        return request
    raise RequestError(
        415, f"Content-Type {media!r} is not supported; use {CONTENT_PROTOBUF} or {CONTENT_JSON}"
    )


def decode(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None = None,
    limits: Limits = Limits(),
) -> DecodedRequest:
    """Check, decompress and parse one request body into points."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"body of {len(body)} bytes exceeds {limits.max_body_bytes} bytes")
    raw = decompress(body, content_encoding, limits)
    return points_from_request(parse_request(raw, content_type), limits)


def points_from_request(
    request: ExportMetricsServiceRequest, limits: Limits = Limits()
) -> DecodedRequest:
    decoded = DecodedRequest()
    total = 0
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes, limits)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name not in KNOWN_METRICS:
                    decoded.skipped_metrics[metric.name] = (
                        decoded.skipped_metrics.get(metric.name, 0) + 1
                    )
                    continue
                kind, data_points = _kind(metric)
                if kind is None:
                    decoded.rejected.append(f"{metric.name} is not a sum or gauge")
                    continue
                total += len(data_points)
                if total > limits.max_points:
                    raise RequestError(
                        413,
                        f"request has more than {limits.max_points} points; send smaller batches",
                    )
                for dp in data_points:
                    decoded.points.append(
                        Point(
                            metric=metric.name,
                            kind=kind,
                            resource=resource,
                            attrs=_attributes(dp.attributes, limits),
                            start_ns=dp.start_time_unix_nano or None,
                            t_ns=dp.time_unix_nano,
                            value=_number(dp),
                        )
                    )
    return decoded


def response_body(rejected: int, message: str, content_type: str | None) -> tuple[bytes, str]:
    """An ExportMetricsServiceResponse, with partial success when points were rejected."""
    response = ExportMetricsServiceResponse()
    if rejected:
        response.partial_success.rejected_data_points = rejected
        response.partial_success.error_message = message
    media = (content_type or CONTENT_PROTOBUF).split(";")[0].strip().lower()
    if media == CONTENT_JSON:
        return json_format.MessageToJson(response).encode(), CONTENT_JSON
    return response.SerializeToString(), CONTENT_PROTOBUF


def _kind(metric: metrics_pb2.Metric) -> tuple[str | None, Any]:
    which = metric.WhichOneof("data")
    if which == "sum":
        if not metric.sum.is_monotonic:
            return GAUGE, metric.sum.data_points
        if metric.sum.aggregation_temporality == DELTA_TEMPORALITY:
            return DELTA, metric.sum.data_points
        return COUNTER, metric.sum.data_points
    if which == "gauge":
        return GAUGE, metric.gauge.data_points
    return None, ()


def _number(dp: metrics_pb2.NumberDataPoint) -> float:
    return float(dp.as_int) if dp.WhichOneof("value") == "as_int" else dp.as_double


def _attributes(key_values, limits: Limits) -> dict[str, Any]:
    if len(key_values) > limits.max_attributes:
        raise RequestError(
            413,
            f"a point or resource has {len(key_values)} attributes; "
            f"the limit is {limits.max_attributes}",
        )
    out: dict[str, Any] = {}
    for kv in key_values:
        value = _any_value(kv.value)
        size = len(kv.key) + (len(value) if isinstance(value, str) else len(str(value)))
        if size > limits.max_attribute_bytes:
            raise RequestError(
                413,
                f"attribute {kv.key[:64]!r} is {size} bytes; "
                f"the limit is {limits.max_attribute_bytes}",
            )
        out[kv.key] = value
    return out


def _any_value(value) -> Any:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return tuple(_any_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return None
