"""The alias tables: every absence explained, every rename tried after the current name."""

from __future__ import annotations

import pytest

from wattledger.agent.engines.resolve import sample_names, wanted
from wattledger.agent.engines.tables import (
    ALL_TABLES,
    ITL_MEAN,
    KV_USAGE,
    MAIN_QUANTITIES,
    PREFIX_HIT,
    SGLANG,
    TABLES,
    TRITON,
    TRTLLM,
    VLLM,
)
from wattledger.contract import ENGINES


def test_every_contract_engine_has_a_table():
    assert set(TABLES) == set(ENGINES)


@pytest.mark.parametrize("table", list(TABLES.values()), ids=list(TABLES))
def test_a_quantity_an_engine_never_exports_has_a_sentence(table):
    for key in MAIN_QUANTITIES:
        if not table.quantities.get(key):
            assert key in table.absent, f"{table.engine} says nothing about {key}"


def test_vllm_renames_are_tried_after_the_current_name():
    assert sample_names(VLLM, VLLM.quantities[ITL_MEAN][0]) == (
        "vllm:inter_token_latency_seconds_sum",
        "vllm:time_per_output_token_seconds_sum",
    )
    assert sample_names(VLLM, VLLM.quantities[KV_USAGE][0]) == (
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
    )
    assert sample_names(VLLM, VLLM.quantities[PREFIX_HIT][0])[:4] == (
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_hits",
        "vllm:gpu_prefix_cache_hits_total",
        "vllm:gpu_prefix_cache_hits",
    )


def test_counters_are_looked_up_with_and_without_total():
    assert sample_names(TRITON, TRITON.quantities["requests"][0]) == (
        "nv_inference_request_success_total",
        "nv_inference_request_success",
    )


def test_trtllm_names_with_and_without_prefix():
    assert sample_names(TRTLLM, TRTLLM.quantities["input_tokens"][0]) == (
        "trtllm_prompt_tokens_total",
        "trtllm_prompt_tokens",
        "prompt_tokens_total",
        "prompt_tokens",
    )


def test_sglang_reads_the_old_name_label():
    assert SGLANG.model_labels == ("model_name", "name")


def test_old_names_and_created_families_are_parsed_unrelated_ones_are_not():
    assert wanted("vllm:gpu_cache_usage_perc")
    assert wanted("vllm:time_per_output_token_seconds")
    assert wanted("vllm:prompt_tokens_created")
    assert wanted("dynamo_frontend_worker_active_requests")
    assert not wanted("vllm:iteration_tokens_total")
    assert not wanted("python_gc_objects_collected_total")


def test_every_table_source_kind_resolves():
    for table in ALL_TABLES:
        for sources in table.quantities.values():
            for source in sources:
                assert sample_names(table, source)
