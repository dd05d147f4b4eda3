"""Fuzzing the two parsers that read untrusted bytes: the OTLP decoder and the Prometheus reader.

Every input must end in a result or in the parser's own error (a 4xx for the collector, a
ScrapeError for the agent), never in another exception. Inputs that once crashed are kept below
as plain tests.
"""

import contextlib
import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from wattledger import contract as c
from wattledger.agent.engines.errors import ScrapeError
from wattledger.agent.engines.read import read_payload
from wattledger.collector import otlp
from wattledger.collector.ingest import Ingestor

# WATTLEDGER_FUZZ_EXAMPLES=5000 for a longer hunt than CI's.
FUZZ = settings(
    max_examples=int(os.environ.get("WATTLEDGER_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
LIMITS = otlp.Limits(
    max_body_bytes=64 * 1024,
    max_decompressed_bytes=256 * 1024,
    max_points=500,
    max_attribute_bytes=256,
    max_attributes=16,
)


def decode_or_refuse(body: bytes, content_type: str, encoding: str | None = None):
    try:
        return otlp.decode(body, content_type, encoding, LIMITS)
    except otlp.RequestError as exc:
        assert 400 <= exc.status < 500
        assert str(exc)
        return None


@FUZZ
@given(
    st.binary(max_size=2048),
    st.sampled_from(["application/x-protobuf", "application/json", "text/plain", None]),
    st.sampled_from([None, "gzip", "deflate", "br", "identity"]),
)
def test_arbitrary_bytes_are_decoded_or_refused_with_a_4xx(body, content_type, encoding):
    decode_or_refuse(body, content_type, encoding)


def _array(values):
    value = AnyValue()
    value.array_value.values.extend(values)
    return value


any_values = st.recursive(
    st.one_of(
        st.text(max_size=40).map(lambda v: AnyValue(string_value=v)),
        st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda v: AnyValue(double_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.binary(max_size=20).map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
    ),
    lambda children: st.lists(children, max_size=3).map(_array),
    max_leaves=6,
)


keys = st.one_of(
    st.sampled_from(
        [
            c.RES_NODE,
            c.RES_HOST_NAME,
            c.ATTR_HW_ID,
            c.ATTR_ENDPOINT,
            c.ATTR_MODEL,
            c.ATTR_TOKEN_TYPE,
            c.ATTR_PHASE,
            c.ATTR_GPU_IDS,
            c.ATTR_ROLE,
            c.ATTR_SKU,
            "wattledger.tag.team",
        ]
    ),
    st.text(max_size=20),
)
attributes = st.lists(st.tuples(keys, any_values), max_size=6)
metric_names = st.sampled_from(sorted(otlp.KNOWN_METRICS) + ["other.metric", ""])


@st.composite
def requests(draw) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rm = request.resource_metrics.add()
        rm.resource.attributes.extend(KeyValue(key=k, value=v) for k, v in draw(attributes))
        metric = rm.scope_metrics.add().metrics.add()
        metric.name = draw(metric_names)
        kind = draw(st.sampled_from(["sum", "gauge", "histogram", "none"]))
        if kind == "sum":
            metric.sum.is_monotonic = draw(st.booleans())
            metric.sum.aggregation_temporality = draw(st.integers(0, 2))
            points = metric.sum.data_points
        elif kind == "gauge":
            points = metric.gauge.data_points
        else:
            if kind == "histogram":
                metric.histogram.data_points.add().count = 3
            continue
        for _ in range(draw(st.integers(0, 4))):
            dp = points.add()
            dp.attributes.extend(KeyValue(key=k, value=v) for k, v in draw(attributes))
            dp.start_time_unix_nano = draw(st.integers(0, 2**64 - 1))
            dp.time_unix_nano = draw(st.integers(0, 2**64 - 1))
            if draw(st.booleans()):
                dp.as_int = draw(st.integers(-(2**63), 2**63 - 1))
            else:
                dp.as_double = draw(st.floats(allow_nan=True, allow_infinity=True))
    return request


@FUZZ
@given(requests())
def test_well_formed_requests_of_any_content_are_stored_or_rejected_point_by_point(
    sqlite_engine, request
):
    decoded = decode_or_refuse(request.SerializeToString(), "application/x-protobuf")
    if decoded is None:
        return

    result = Ingestor(sqlite_engine).ingest(decoded.points)

    assert result.received == len(decoded.points)
    assert (
        result.rejected
        + result.stored_deltas
        + result.stored_gauges
        + result.baselines
        + result.repeats
        <= result.received
    )


@FUZZ
@given(st.text(max_size=3000))
def test_arbitrary_text_is_a_reading_or_a_scrape_error(text):
    try:
        reading = read_payload(text)
    except ScrapeError:
        return
    for counters in reading.models.values():
        for name in ("input_tokens", "output_tokens", "requests"):
            quantity = getattr(counters, name)
            if quantity is not None:
                assert not math.isnan(quantity.value)


prom_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "# TYPE vllm:prompt_tokens_total counter",
                "# TYPE vllm:generation_tokens_total counter",
                "# HELP vllm:prompt_tokens_total x",
                "# EOF",
            ]
        ),
        st.builds(
            lambda name, label, value: f'{name}{{model_name="{label}"}} {value}',
            st.sampled_from(
                [
                    "vllm:prompt_tokens_total",
                    "vllm:generation_tokens_total",
                    "vllm:request_success_total",
                    "sglang:prompt_tokens_total",
                    "tgi_request_count",
                    "llamacpp:prompt_tokens_total",
                ]
            ),
            st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12),
            st.one_of(
                st.floats(allow_nan=True).map(repr),
                st.text(max_size=6),
                st.sampled_from(["NaN", "+Inf", "-Inf", "1e400", "-0"]),
            ),
        ),
    ),
    max_size=12,
)


@FUZZ
@given(prom_lines)
def test_engine_like_pages_are_a_reading_or_a_scrape_error(lines):
    with contextlib.suppress(ScrapeError):
        read_payload("\n".join(lines) + "\n")


# Inputs that once crashed, kept as plain tests.


def test_a_key_value_list_attribute_does_not_break_the_identity_cache(sqlite_engine):
    """An unhashable attribute value (a kvlist decodes to a dict) crashed the cache lookup."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key=c.RES_NODE).value.string_value = "n"
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = c.METRIC_POWER
    dp = metric.gauge.data_points.add()
    dp.time_unix_nano = 1
    dp.as_double = 1.0
    hw_id = dp.attributes.add(key=c.ATTR_HW_ID)
    hw_id.value.kvlist_value.values.add(key="a").value.string_value = "b"

    decoded = otlp.decode(request.SerializeToString(), "application/x-protobuf", None, LIMITS)
    result = Ingestor(sqlite_engine).ingest(decoded.points)

    assert result.received == 1
