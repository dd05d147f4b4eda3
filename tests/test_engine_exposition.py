"""The line-tolerant parsing layer: what it keeps, what it skips, and what it says."""

from __future__ import annotations

import math

import pytest

from wattledger.agent.engines.errors import EmptyPayload
from wattledger.agent.engines.exposition import parse_exposition
from wattledger.agent.engines.read import read_payload


def values(parsed, name):
    return [(dict(s.labels), s.value) for s in parsed.get(name)]


@pytest.mark.parametrize("body", ["", "\n", "   \n\t\n"])
def test_an_empty_page_is_a_failed_scrape_not_zeros(body):
    with pytest.raises(EmptyPayload, match="failed scrape, not zero traffic"):
        parse_exposition(body)


def test_good_page_parses_in_one_go_with_no_errors():
    parsed = parse_exposition(
        '# HELP a_total x\n# TYPE a_total counter\na_total{m="x"} 1.5e+06\nb 2\n'
    )

    assert values(parsed, "a_total") == [({"m": "x"}, 1500000.0)]
    assert values(parsed, "b") == [({}, 2.0)]
    assert parsed.parse_errors == 0
    assert parsed.notes == []


def test_one_bad_line_costs_that_line_only():
    text = (
        "# TYPE good_total counter\n"
        "good_total 7\n"
        "# TYPE mixed gauge\n"
        'mixed{a="1"} 1\n'
        'mixed{a="2"} notanumber\n'
        'mixed{a="3"} 3\n'
        "after 9\n"
    )

    parsed = parse_exposition(text)

    assert values(parsed, "good_total") == [({}, 7.0)]
    assert values(parsed, "mixed") == [({"a": "1"}, 1.0), ({"a": "3"}, 3.0)]
    assert values(parsed, "after") == [({}, 9.0)]
    assert parsed.parse_errors == 1
    assert "skipped 1 malformed line(s) in family mixed" in parsed.notes


def test_a_bad_type_line_is_skipped_and_its_samples_kept_untyped():
    parsed = parse_exposition("# TYPE foo bogus\nfoo 3\n")

    assert values(parsed, "foo") == [({}, 3.0)]
    assert parsed.parse_errors == 1


def test_lines_that_cannot_be_metric_lines_are_counted():
    parsed = parse_exposition("<html>\n{}\nok 1\n")

    assert values(parsed, "ok") == [({}, 1.0)]
    assert parsed.parse_errors == 2


def test_help_and_type_without_samples_is_absent_not_zero():
    parsed = parse_exposition("# HELP x_total a\n# TYPE x_total counter\ny 1\n")

    assert parsed.get("x_total") == []
    assert parsed.empty_families == ["x_total"]


def test_a_lone_help_at_the_end_says_the_page_may_be_cut():
    parsed = parse_exposition("a 1\n# HELP b Something\n")

    assert any("ends with a declaration" in note for note in parsed.notes)


def test_a_last_line_without_newline_is_dropped_as_possibly_cut():
    parsed = parse_exposition("a 1\nb 12")

    assert values(parsed, "a") == [({}, 1.0)]
    assert parsed.get("b") == []
    assert parsed.parse_errors == 1
    assert any("no newline" in note for note in parsed.notes)


def test_a_histogram_cut_before_inf_is_named():
    text = (
        "# TYPE h histogram\n"
        'h_sum{m="x"} 12.5\n'
        'h_bucket{le="1",m="x"} 3\n'
        'h_bucket{le="2",m="x"} 5\n'
    )

    parsed = parse_exposition(text)

    assert values(parsed, "h_sum") == [({"m": "x"}, 12.5)]
    assert "histogram h has no _count or +Inf bucket: the page was cut" in parsed.notes


def test_samples_without_help_or_type_are_kept():
    parsed = parse_exposition('vllm:prompt_tokens_total{model_name="m"} 10.0\n')

    assert values(parsed, "vllm:prompt_tokens_total") == [({"model_name": "m"}, 10.0)]


def test_nan_and_inf_values_survive_parsing_for_the_mapping_to_refuse():
    parsed = parse_exposition("a NaN\nb +Inf\nc -Inf\n")

    assert math.isnan(parsed.get("a")[0].value)
    assert parsed.get("b")[0].value == math.inf
    assert parsed.get("c")[0].value == -math.inf


def test_buckets_are_thinned_to_the_lowest_and_inf():
    text = (
        "# TYPE h histogram\n"
        + "".join(
            f'h_bucket{{le="{le}"}} {n}\n'
            for le, n in (("0.1", 1), ("1", 4), ("10", 6), ("+Inf", 7))
        )
        + "h_count 7\nh_sum 20\n"
    )

    parsed = parse_exposition(text)

    assert [s.labels["le"] for s in parsed.get("h_bucket")] == ["0.1", "+Inf"]
    assert values(parsed, "h_count") == [({}, 7.0)]


def test_unwanted_families_are_not_parsed():
    parsed = parse_exposition(
        "# TYPE keep gauge\nkeep 1\n# TYPE drop gauge\ndrop 2\n", wanted=lambda n: n == "keep"
    )

    assert values(parsed, "keep") == [({}, 1.0)]
    assert parsed.get("drop") == []
    assert {"keep", "drop"} <= parsed.families


def test_sum_before_buckets_and_exponent_notation():
    reading = read_payload(
        "# TYPE sglang:prompt_tokens_total counter\n"
        'sglang:prompt_tokens_total{model_name="m"} 8.128902e+06\n'
        "# TYPE sglang:time_to_first_token_seconds histogram\n"
        'sglang:time_to_first_token_seconds_sum{model_name="m"} 2.5e+01\n'
        'sglang:time_to_first_token_seconds_bucket{le="1.0",model_name="m"} 2.0\n'
        'sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 10.0\n'
        'sglang:time_to_first_token_seconds_count{model_name="m"} 10.0\n'
    )

    model = reading.models["m"]
    assert model.input_tokens.value == 8128902.0
    assert model.indicators["time_to_first_token_mean_s"].value == 2.5
