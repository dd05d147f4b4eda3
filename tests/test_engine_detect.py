"""Engine detection from prefixes, overrides, and the disaggregation role from labels."""

from __future__ import annotations

import pytest

from wattledger.agent.engines.errors import UnknownEngine
from wattledger.agent.engines.read import read_payload
from wattledger.errors import ConfigError


@pytest.mark.parametrize(
    ("page", "engine"),
    [
        ('vllm:prompt_tokens_total{model_name="m"} 1\n', "vllm"),
        ('sglang:prompt_tokens_total{model_name="m"} 1\n', "sglang"),
        ('trtllm_request_success_total{model_name="m"} 1\n', "trtllm"),
        ('e2e_request_latency_seconds_count{engine_type="x",model_name="m"} 1\n', "trtllm"),
        ('nv_inference_request_success{model="m",version="1"} 1\n', "triton"),
        ('dynamo_frontend_requests_total{model="m"} 1\n', "dynamo"),
        ('dynamo_component_requests_total{model="m"} 1\n', "dynamo"),
        ("tgi_request_success 1\n", "tgi"),
        ("llamacpp:prompt_tokens_total 1\n", "llamacpp"),
    ],
)
def test_engine_is_told_by_its_metric_names(page, engine):
    assert read_payload(page).engine == engine


def test_a_page_of_no_known_engine_is_one_clear_error():
    with pytest.raises(UnknownEngine, match="no metric family of a known engine.*found http_x"):
        read_payload("http_x 1\npython_gc_objects_collected_total 3\n")


def test_the_caller_can_name_the_engine():
    page = 'vllm:prompt_tokens_total{model_name="m"} 5\n'

    assert read_payload(page, engine="sglang").models == {}
    assert read_payload(page, engine="vllm").models["m"].input_tokens.value == 5.0


def test_an_unknown_engine_override_is_refused():
    with pytest.raises(ConfigError, match="unknown engine 'ollama'"):
        read_payload("vllm:prompt_tokens_total 1\n", engine="ollama")


def test_a_dynamo_worker_is_read_through_its_engine_first():
    page = (
        'dynamo_component_requests_total{dynamo_component="backend",model="m"} 9\n'
        'vllm:request_success_total{finished_reason="stop",model_name="m"} 7\n'
    )

    reading = read_payload(page)

    assert reading.engine == "dynamo"
    assert reading.models["m"].requests.source == "counter vllm:request_success_total"
    assert reading.version_hint.startswith("worker passing vllm metrics through")


def test_a_dynamo_worker_without_engine_metrics_uses_its_own_counters():
    reading = read_payload(
        'dynamo_component_requests_total{dynamo_component="backend",model="m"} 9\n'
    )

    assert reading.models["m"].requests.value == 9.0
    assert "input tokens: this Dynamo worker passes no engine metrics through" in reading.absent


def test_frontend_with_prefill_workers_says_the_deployment_is_disaggregated():
    page = (
        'dynamo_frontend_output_tokens_total{model="m"} 10\n'
        'dynamo_frontend_worker_active_requests{worker_id="1",worker_type="prefill"} 0\n'
        'dynamo_frontend_worker_active_requests{worker_id="2",worker_type="decode"} 1\n'
    )

    reading = read_payload(page)

    assert reading.role == "aggregated"
    assert any("disaggregated (worker_type=prefill seen)" in note for note in reading.notes)


def test_role_override_wins_and_is_said():
    page = 'sglang:num_running_reqs{engine_type="prefill",model_name="m"} 1\n'

    reading = read_payload(page, role="decode")

    assert (reading.role, reading.role_source) == ("decode", "set by the caller")


def test_trtllm_engine_type_is_not_a_role():
    page = 'trtllm_request_success_total{engine_type="trtllm",model_name="m"} 1\n'

    assert read_payload(page).role == "aggregated"


def test_kv_offload_hits_on_an_aggregated_worker_do_not_make_it_a_decode_worker():
    # LMCache-style offload: 30% of prompt tokens come back through the KV connector.
    page = (
        'dynamo_component_requests_total{dynamo_component="backend",model="m"} 9\n'
        'vllm:prompt_tokens_by_source_total{model_name="m",source="local_compute"} 600\n'
        'vllm:prompt_tokens_by_source_total{model_name="m",source="local_cache_hit"} 100\n'
        'vllm:prompt_tokens_by_source_total{model_name="m",source="external_kv_transfer"} 300\n'
    )

    reading = read_payload(page)

    assert (reading.role, reading.role_source) == ("aggregated", "dynamo_component=backend")
    assert reading.models["m"].input_tokens.value == 700.0


def test_created_families_are_never_data():
    reading = read_payload('vllm:prompt_tokens_created{model_name="m"} 1.7e9\n')

    assert reading.models == {}


def test_process_start_time_is_the_restart_marker_when_no_created_family_is_read():
    page = 'vllm:prompt_tokens_total{model_name="m"} 5\nprocess_start_time_seconds 1.75e+09\n'

    assert read_payload(page).started_at == 1.75e09


def test_a_created_family_of_a_counter_read_beats_the_process_start():
    page = (
        'vllm:prompt_tokens_total{model_name="m"} 5\n'
        'vllm:prompt_tokens_created{model_name="m"} 1.76e+09\n'
        "process_start_time_seconds 1.75e+09\n"
    )

    assert read_payload(page).started_at == 1.76e09


def test_a_placeholder_model_label_is_said_and_can_be_named():
    page = 'trtllm_request_success_total{engine_type="undefined",model_name="undefined"} 4\n'

    unnamed = read_payload(page)
    named = read_payload(page, model="llama-3.1-8b")

    assert list(unnamed.models) == ["undefined"]
    assert any("model_name='undefined'" in note for note in unnamed.notes)
    assert named.models["llama-3.1-8b"].requests.value == 4.0
