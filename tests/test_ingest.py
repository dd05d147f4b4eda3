"""Storing points as deltas: exactly once, never negative, rolled up by hour."""

import pytest
from sqlalchemy import func, select

from wattledger import contract as c
from wattledger.collector import schema as s
from wattledger.collector.ingest import Ingestor
from wattledger.collector.points import COUNTER, DELTA, GAUGE, Point
from wattledger.collector.rollup import rebuild

S = 1_000_000_000
T0 = 1_764_000_000 * S  # 2025-11-24T16:00:00Z, on an hour boundary
RESOURCE = {c.RES_NODE: "node-a", c.RES_SITE: "dc1", "wattledger.tag.team": "search"}
GPU = {
    c.ATTR_HW_ID: "GPU-aaaa",
    c.ATTR_HW_TYPE: "gpu",
    c.ATTR_HW_NAME: "NVIDIA H100 80GB HBM3",
    c.ATTR_SKU: "H100",
    c.ATTR_ARCHITECTURE: "hopper",
    c.ATTR_ENERGY_SOURCE: "counter",
}


def energy(t_s, joules, start_s=0):
    return Point(c.METRIC_ENERGY, COUNTER, RESOURCE, GPU, T0 + start_s * S, T0 + t_s * S, joules)


def tokens(t_s, value, token_type="output", start_s=0, model="llama"):
    attrs = {
        c.ATTR_ENDPOINT: "vllm-0",
        c.ATTR_ENGINE: "vllm",
        c.ATTR_MODEL: model,
        c.ATTR_ROLE: "aggregated",
        c.ATTR_TOKEN_TYPE: token_type,
        c.ATTR_GPU_IDS: ("GPU-aaaa",),
    }
    return Point(c.METRIC_TOKENS, COUNTER, RESOURCE, attrs, T0 + start_s * S, T0 + t_s * S, value)


def stored(engine, table, *columns):
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(*columns).order_by(*columns))]


def total(engine, column):
    with engine.connect() as conn:
        return conn.execute(select(func.sum(column))).scalar()


def test_cumulative_points_become_deltas_from_the_series_start(engine):
    Ingestor(engine).ingest([energy(600, 360_000.0), energy(1200, 720_000.0)])

    rows = stored(engine, s.deltas, s.deltas.c.start_ns, s.deltas.c.end_ns, s.deltas.c.value)
    assert rows == [(T0, T0 + 600 * S, 360_000.0), (T0 + 600 * S, T0 + 1200 * S, 360_000.0)]


def test_a_batch_sent_twice_is_stored_once(engine):
    batch = [energy(600, 360_000.0), energy(1200, 720_000.0)]
    ingestor = Ingestor(engine)

    first = ingestor.ingest(batch)
    second = ingestor.ingest(batch)

    assert (first.stored_deltas, second.stored_deltas, second.repeats) == (2, 0, 2)
    assert total(engine, s.deltas.c.value) == 720_000.0
    assert total(engine, s.rollup_hourly.c.value) == 720_000.0


def test_a_late_point_adds_nothing_because_the_later_point_carried_its_growth(engine):
    ingestor = Ingestor(engine)
    ingestor.ingest([energy(1200, 720_000.0)])

    late = ingestor.ingest([energy(600, 360_000.0)])

    assert late.repeats == 1
    assert total(engine, s.deltas.c.value) == 720_000.0


def test_points_out_of_order_inside_one_batch_are_sorted_first(engine):
    Ingestor(engine).ingest([energy(1200, 720_000.0), energy(600, 360_000.0)])

    assert stored(engine, s.deltas, s.deltas.c.value) == [(360_000.0,), (360_000.0,)]


def test_a_value_that_goes_down_is_a_reset_not_a_negative_delta(engine):
    ingestor = Ingestor(engine)
    ingestor.ingest([energy(600, 360_000.0)])

    result = ingestor.ingest([energy(1200, 50_000.0)])

    assert result.resets == 1
    assert stored(engine, s.deltas, s.deltas.c.value) == [(50_000.0,), (360_000.0,)]


def test_a_new_series_start_counts_the_whole_new_value_from_the_new_start(engine):
    ingestor = Ingestor(engine)
    ingestor.ingest([energy(600, 360_000.0)])

    # The sender restarted its count at 900 s and reports 120 kJ at 1200 s.
    ingestor.ingest([energy(1200, 120_000.0, start_s=900)])

    rows = stored(engine, s.deltas, s.deltas.c.start_ns, s.deltas.c.value)
    assert rows == [(T0, 360_000.0), (T0 + 900 * S, 120_000.0)]


def test_delta_temporality_points_are_stored_as_sent(engine):
    point = Point(c.METRIC_ENERGY, DELTA, RESOURCE, GPU, T0, T0 + 60 * S, 36_000.0)
    again = Point(c.METRIC_ENERGY, DELTA, RESOURCE, GPU, T0 + 60 * S, T0 + 120 * S, 30_000.0)

    Ingestor(engine).ingest([point, again, point])

    assert total(engine, s.deltas.c.value) == 66_000.0


def test_an_interval_across_an_hour_is_split_in_proportion_to_time(engine):
    Ingestor(engine).ingest(
        [energy(3000, 0.0, start_s=3000), energy(4200, 1_200_000.0, start_s=3000)]
    )

    rows = stored(
        engine,
        s.rollup_hourly,
        s.rollup_hourly.c.hour,
        s.rollup_hourly.c.value,
        s.rollup_hourly.c.seconds,
    )
    hour0 = T0 // S
    assert rows == [(hour0, 600_000.0, 600.0), (hour0 + 3600, 600_000.0, 600.0)]


def test_active_seconds_count_only_intervals_in_which_the_counter_grew(engine):
    Ingestor(engine).ingest([tokens(60, 100.0), tokens(120, 100.0), tokens(180, 250.0)])

    rows = stored(
        engine, s.rollup_hourly, s.rollup_hourly.c.seconds, s.rollup_hourly.c.active_seconds
    )
    assert rows == [(180.0, 120.0)]


def test_gauges_are_samples_and_their_hour_holds_sum_and_count(engine):
    power = [
        Point(c.METRIC_POWER, GAUGE, RESOURCE, GPU, None, T0 + t * S, w)
        for t, w in ((10, 600.0), (20, 300.0))
    ]

    Ingestor(engine).ingest(power + power)

    assert stored(engine, s.gauge_samples, s.gauge_samples.c.value) == [(300.0,), (600.0,)]
    assert stored(engine, s.rollup_hourly, s.rollup_hourly.c.value, s.rollup_hourly.c.samples) == [
        (900.0, 2)
    ]


def test_dimensions_are_recorded_from_the_points(engine):
    Ingestor(engine).ingest([energy(60, 1.0), tokens(60, 5.0)])

    with engine.connect() as conn:
        gpu = conn.execute(select(s.gpus)).one()
        endpoint = conn.execute(select(s.endpoints)).one()
        link = conn.execute(select(s.endpoint_gpus)).one()
    assert (gpu.uuid, gpu.node, gpu.sku, gpu.architecture, gpu.site) == (
        "GPU-aaaa",
        "node-a",
        "H100",
        "hopper",
        "dc1",
    )
    assert gpu.tags == '{"team": "search"}'
    assert (endpoint.name, endpoint.engine, endpoint.role) == ("vllm-0", "vllm", "aggregated")
    assert (link.endpoint_id, link.gpu_uuid) == (endpoint.id, "GPU-aaaa")


def test_changing_the_gpu_list_of_an_endpoint_does_not_start_a_new_series(engine):
    ingestor = Ingestor(engine)
    ingestor.ingest([tokens(60, 100.0)])
    moved = tokens(120, 150.0)
    moved = Point(
        moved.metric,
        moved.kind,
        moved.resource,
        {**moved.attrs, c.ATTR_GPU_IDS: ("GPU-bbbb",)},
        moved.start_ns,
        moved.t_ns,
        moved.value,
    )

    ingestor.ingest([moved])

    assert total(engine, s.deltas.c.value) == 150.0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.series)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(s.endpoint_gpus)).scalar() == 2


def test_invalid_points_are_rejected_and_the_rest_is_stored(engine):
    no_id = Point(c.METRIC_ENERGY, COUNTER, RESOURCE, {c.ATTR_HW_TYPE: "gpu"}, T0, T0 + S, 5.0)
    nan = Point(c.METRIC_POWER, GAUGE, RESOURCE, GPU, None, T0 + S, float("nan"))
    negative = Point(c.METRIC_ENERGY, COUNTER, RESOURCE, GPU, T0, T0 + 2 * S, -1.0)
    bad_type = tokens(60, 1.0, token_type="reasoning")

    result = Ingestor(engine).ingest([no_id, nan, negative, bad_type, energy(60, 42.0)])

    assert result.rejected == 4
    assert result.rejections == [
        "hw.energy point has no hw.id attribute",
        "hw.power has a non-finite value nan",
        "hw.energy is a counter but has a negative value -1.0",
        "wattledger.engine.tokens has gen_ai.token.type='reasoning'; "
        "expected input, input_cached, output",
    ]
    assert total(engine, s.deltas.c.value) == 42.0


def test_a_token_limited_to_some_nodes_cannot_write_for_others(engine):
    result = Ingestor(engine).ingest([energy(60, 42.0)], allowed_nodes=frozenset({"node-b"}))

    assert result.rejections == ["this token may not write for node 'node-a'"]
    assert total(engine, s.deltas.c.value) is None


def test_rollups_rebuilt_from_rows_equal_the_ones_kept_at_ingest(engine):
    Ingestor(engine).ingest(
        [
            energy(3000, 0.0, start_s=3000),
            energy(4200, 1_200_000.0, start_s=3000),
            tokens(60, 10.0),
            tokens(120, 30.0),
        ]
        + [Point(c.METRIC_POWER, GAUGE, RESOURCE, GPU, None, T0 + 10 * S, 600.0)]
    )
    columns = (
        s.rollup_hourly.c.series_id,
        s.rollup_hourly.c.hour,
        s.rollup_hourly.c.value,
        s.rollup_hourly.c.seconds,
        s.rollup_hourly.c.active_seconds,
        s.rollup_hourly.c.samples,
    )
    kept = stored(engine, s.rollup_hourly, *columns)

    rebuild(engine)

    assert stored(engine, s.rollup_hourly, *columns) == kept


# --- points that would poison the store are refused, one by one -------------------------------


def test_a_point_from_the_future_is_refused_and_does_not_block_its_series(engine):
    import time as _time

    now = _time.time_ns()
    ahead = Point(
        c.METRIC_ENERGY, COUNTER, RESOURCE, GPU, now - 60 * S, now + 10 * 365 * 86_400 * S, 9e9
    )
    normal = Point(c.METRIC_ENERGY, COUNTER, RESOURCE, GPU, now - 60 * S, now - 30 * S, 1_000.0)

    first = Ingestor(engine).ingest([ahead])
    second = Ingestor(engine).ingest([normal])

    assert first.rejected == 1
    assert "ahead of the collector's clock" in first.rejections[0]
    assert (second.rejected, second.stored_deltas) == (0, 1)
    assert total(engine, s.deltas.c.value) == 1_000.0


def test_a_start_decades_before_the_point_is_refused_instead_of_spread_over_every_hour(engine):
    ancient = Point(c.METRIC_TOKENS, COUNTER, RESOURCE, tokens(60, 1.0).attrs, 1, T0 + 60 * S, 1e6)

    result = Ingestor(engine).ingest([ancient])

    assert result.rejections == [
        "wattledger.engine.tokens has a start time over 400 days before its time"
    ]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.rollup_hourly)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(s.dirty_hours)).scalar() == 0


def test_implausibly_large_values_are_refused(engine):
    huge = Point(c.METRIC_TOKENS, COUNTER, RESOURCE, tokens(60, 1.0).attrs, T0, T0 + 60 * S, 1e300)

    result = Ingestor(engine).ingest([huge])

    assert result.rejections == ["wattledger.engine.tokens has an implausible value 1e+300"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("bad\x00model", "gen_ai.request.model 'bad\\x00model' contains control characters"),
        ("m" * 300, "gen_ai.request.model is 300 characters long; the limit is 255"),
    ],
)
def test_identity_values_the_store_cannot_keep_are_refused_not_altered(engine, model, message):
    bad = tokens(60, 5.0, model=model)

    result = Ingestor(engine).ingest([bad, tokens(60, 7.0)])

    assert result.rejections == [message]
    assert total(engine, s.deltas.c.value) == 7.0


def test_descriptive_values_are_cleaned_and_cut_to_what_the_store_keeps(engine):
    noisy = {**GPU, c.ATTR_HW_NAME: "NVIDIA\x00 H100" + "x" * 400, c.ATTR_SKU: "H" * 100}

    Ingestor(engine).ingest(
        [Point(c.METRIC_ENERGY, COUNTER, RESOURCE, noisy, T0, T0 + 60 * S, 1.0)]
    )

    with engine.connect() as conn:
        name, sku = conn.execute(select(s.gpus.c.name, s.gpus.c.sku)).one()
    assert name == ("NVIDIA H100" + "x" * 400)[:255]
    assert sku == "H" * 64


def _gpu_point(node, t_s, joules):
    return Point(c.METRIC_ENERGY, COUNTER, {c.RES_NODE: node}, GPU, T0, T0 + t_s * S, joules)


def test_a_gpu_another_node_still_reports_cannot_be_taken_over(engine):
    ingestor = Ingestor(engine)
    ingestor.ingest([_gpu_point("node-b", 60, 600.0), _gpu_point("node-b", 3600, 36_000.0)])

    limited = Ingestor(engine).ingest(
        [_gpu_point("node-a", 3660, 99.0)], allowed_nodes=frozenset({"node-a"})
    )
    open_token = ingestor.ingest([_gpu_point("node-a", 3700, 99.0)])

    expected = "GPU GPU-aaaa is reported by node 'node-b'; node 'node-a' may not write it too"
    assert limited.rejections == [expected]
    assert open_token.rejections == [expected]
    with engine.connect() as conn:
        assert conn.execute(select(s.gpus.c.node)).scalar() == "node-b"


def test_a_gpu_moves_after_its_old_node_fell_silent_for_an_hour(engine):
    ingestor = Ingestor(engine)
    ingestor.ingest([_gpu_point("node-b", 60, 600.0)])

    moved = ingestor.ingest(
        [
            Point(
                c.METRIC_ENERGY,
                COUNTER,
                {c.RES_NODE: "node-a"},
                GPU,
                T0 + 7200 * S,
                T0 + 7260 * S,
                50.0,
            )
        ]
    )

    assert moved.rejected == 0
    with engine.connect() as conn:
        assert conn.execute(select(s.gpus.c.node)).scalar() == "node-a"
