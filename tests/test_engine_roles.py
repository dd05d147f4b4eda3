"""The contract's counting rule per disaggregation role."""

from __future__ import annotations

import pytest

from wattledger.agent.engines.reading import EngineReading, ModelReading, Quantity
from wattledger.agent.engines.roles import apply_role
from wattledger.errors import ConfigError


def reading(role: str | None) -> EngineReading:
    q = lambda value: Quantity(value, "counter test")  # noqa: E731
    model = ModelReading(
        "m",
        input_tokens=q(1000.0),
        input_cached_tokens=q(400.0),
        output_tokens=q(250.0),
        requests=q(10.0),
        prefill_seconds=q(2.0),
        decode_seconds=q(30.0),
        token_split={"prefill_compute": q(600.0), "prefill_cache": q(400.0), "decode": q(250.0)},
    )
    return EngineReading("vllm", models={"m": model}, role=role)


def kept(result: EngineReading) -> dict[str, float | None]:
    model = result.models["m"]
    keys = ("input_tokens", "input_cached_tokens", "output_tokens", "requests")
    return {key: None if getattr(model, key) is None else getattr(model, key).value for key in keys}


def test_aggregated_keeps_everything():
    result = apply_role(reading("aggregated"))

    assert kept(result) == {
        "input_tokens": 1000.0,
        "input_cached_tokens": 400.0,
        "output_tokens": 250.0,
        "requests": 10.0,
    }
    assert result.notes == []


def test_prefill_drops_output_and_requests():
    result = apply_role(reading("prefill"))

    assert kept(result) == {
        "input_tokens": 1000.0,
        "input_cached_tokens": 400.0,
        "output_tokens": None,
        "requests": None,
    }
    assert set(result.models["m"].token_split) == {"prefill_compute", "prefill_cache"}
    assert result.notes == [
        "role prefill: dropped output tokens (250), finished requests (10); "
        "output tokens and requests count on the decode worker"
    ]


def test_decode_drops_input_and_cached_input():
    result = apply_role(reading("decode"))

    assert kept(result) == {
        "input_tokens": None,
        "input_cached_tokens": None,
        "output_tokens": 250.0,
        "requests": 10.0,
    }
    assert set(result.models["m"].token_split) == {"decode"}
    assert result.models["m"].prefill_seconds.value == 2.0  # phase time is kept as read


def test_the_given_role_overrides_the_readings_and_the_original_is_untouched():
    original = reading("aggregated")

    result = apply_role(original, "decode")

    assert result.role == "decode"
    assert original.models["m"].input_tokens.value == 1000.0


def test_no_role_at_all_means_aggregated():
    assert apply_role(reading(None)).role == "aggregated"


def test_an_unknown_role_is_refused():
    with pytest.raises(ConfigError, match="unknown role 'both'"):
        apply_role(reading(None), "both")
