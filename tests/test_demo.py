"""``wattledger demo``: the simulated fleet through the real agent, collector and store.

The hand figures below use the demo's published and stated numbers: idle and full-load watts per
board, throughput per GPU, the day curve (30 % load at 00:00 UTC, 20 % at 01:00, none at 02:00),
half of all tokens input, a fifth of input from the prefix cache, the hyperscaler price tier,
0.08 USD/kWh and PUE 1.58.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from wattledger import contract as c
from wattledger.agent.engines import apply_role, read_payload
from wattledger.cli.demo import store
from wattledger.cli.demo.figures import DEEPSEEK_R1, GPT_OSS
from wattledger.cli.demo.fleet import ENGINE_UPTIME_BEFORE_S, FLEET
from wattledger.cli.demo.pages import registry_for
from wattledger.cli.demo.session import build
from wattledger.cli.demo.simulation import SITE, Window
from wattledger.cli.demo.traffic import counted, worker_counts
from wattledger.cli.main import cli
from wattledger.collector.db import open_engine
from wattledger.migrations import runner

DAY = 1_794_182_400  # 2026-11-09T00:00:00Z, a midnight in the past
WIDE = {"COLUMNS": "200"}


@pytest.fixture(scope="module")
def three_hours(tmp_path_factory):
    """00:00 to 03:00 UTC simulated once, at the demo's default step."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    prices = store.demo_prices("hyperscaler", 0.08, 1.58, SITE, DAY)
    return build(path, Window(DAY, 3, 300, 2), prices)


# --- the store holds exactly what the simulation did ------------------------------------------

# Joules per node over 00:00-03:00: 3600 s x (watts at 30 % + at 20 % + at 0 %) per serving GPU,
# 3 x 3600 s x idle watts per spare.
NODE_JOULES = {
    # H100 69.85 W idle, 629.45 W full: 237.73 + 181.77 + 69.85 W; 6 serving, 2 spare
    "hopper-h100-1": 6 * 3600 * 489.35 + 2 * 3 * 3600 * 69.85,  # 12,078,720 J
    # H200 78 W idle, 627 W full: 242.7 + 187.8 + 78 W; 8 serving
    "hopper-h200-1": 8 * 3600 * 508.5,  # 14,644,800 J
    # B200 195.68 W idle, 900 W full: 406.976 + 336.544 + 195.68 W; 6 serving, 2 spare
    "blackwell-b200-1": 6 * 3600 * 939.2 + 2 * 3 * 3600 * 195.68,  # 24,513,408 J
    # GB200 165.93 W idle, 1080 W full: 440.151 + 348.744 + 165.93 W; 4 serving
    "blackwell-gb200-1": 4 * 3600 * 954.825,  # 13,749,480 J
}

# 30 % + 20 % of an hour each = 1,800 full-load seconds. Tokens = GPUs x tok/s/GPU x 1,800.
TOKENS = {
    # H100: 6 x 1,203 x 1,800 = 12,992,400; B200: 6 x 27,083 x 1,800 = 292,496,400
    (GPT_OSS, c.TOKEN_INPUT): 6_496_200 + 146_248_200,
    (GPT_OSS, c.TOKEN_OUTPUT): 6_496_200 + 146_248_200,
    (GPT_OSS, c.TOKEN_INPUT_CACHED): 1_299_240 + 29_249_640,
    # H200: 8 x 90 x 1,800 = 1,296,000; GB200: 4 x 4,000 x 1,800 = 28,800,000
    (DEEPSEEK_R1, c.TOKEN_INPUT): 648_000 + 14_400_000,
    (DEEPSEEK_R1, c.TOKEN_OUTPUT): 648_000 + 14_400_000,
    (DEEPSEEK_R1, c.TOKEN_INPUT_CACHED): 129_600 + 2_880_000,
}


def test_stored_gpu_energy_is_the_simulated_energy_per_node(three_hours):
    stored: dict[str, float] = {}
    for uuid, joules in three_hours.stored.joules_by_gpu.items():
        node = three_hours.run.truth.node_of_gpu[uuid]
        stored[node] = stored.get(node, 0.0) + joules

    assert stored == pytest.approx(NODE_JOULES, abs=1e-3)
    assert three_hours.stored.joules == pytest.approx(64_986_408, abs=1e-3)
    assert three_hours.energy_matches()


def test_stored_tokens_are_the_simulated_tokens_per_model(three_hours):
    assert dict(three_hours.stored.tokens) == TOKENS
    assert dict(three_hours.run.truth.tokens) == TOKENS
    assert three_hours.tokens_match()


def test_every_export_reached_the_collector_and_nothing_was_rejected(three_hours):
    # 4 agents x (19 exports, every 10 minutes from 00:00 to 03:00, + the closing one) = 80
    assert (three_hours.run.exports_ok, three_hours.run.exports_failed) == (80, 0)
    assert three_hours.run.collector_stats["rejected"] == 0
    assert three_hours.run.collector_stats["errors"] == 0


# --- the report -------------------------------------------------------------------------------


def rows_by_key(outcome) -> dict[tuple[str, str], dict]:
    return {(row["architecture"], row["model"]): row for row in outcome.report.rows}


def test_report_has_both_architectures_both_models_and_the_spares(three_hours):
    rows = rows_by_key(three_hours)

    assert set(rows) == {
        ("hopper", GPT_OSS),
        ("hopper", DEEPSEEK_R1),
        ("hopper", "(no endpoint)"),
        ("blackwell", GPT_OSS),
        ("blackwell", DEEPSEEK_R1),
        ("blackwell", "(no endpoint)"),
    }
    assert rows[("hopper", GPT_OSS)]["input_tokens"] == 6_496_200
    assert rows[("blackwell", GPT_OSS)]["output_tokens"] == 146_248_200
    assert rows[("blackwell", DEEPSEEK_R1)]["input_tokens"] == 14_400_000
    assert rows[("hopper", "(no endpoint)")]["gpu_hours"] == pytest.approx(6.0)
    assert rows[("blackwell", "(no endpoint)")]["gpu_hours"] == pytest.approx(6.0)


def test_report_dollars_by_hand(three_hours):
    rows = rows_by_key(three_hours)
    usd_per_joule = 0.08 * 1.58 / 3.6e6

    # H200, DeepSeek-R1: serves 00:00-02:00 on 8 GPUs, idle 02:00-03:00.
    h200 = rows[("hopper", DEEPSEEK_R1)]
    assert h200["cost_usd"] == pytest.approx(16 * 1.41 + 8 * 3600 * (242.7 + 187.8) * usd_per_joule)
    assert h200["cost_usd"] == pytest.approx(22.995322, abs=1e-6)
    assert h200["idle_usd"] == pytest.approx(11.358874, abs=1e-6)
    assert h200["usd_per_mtok"] == pytest.approx(22.995322 / 1.296, abs=1e-5)

    # GB200, DeepSeek-R1 (prefill and decode workers together): 8 GPU-hours serving, drawing
    # 4 x 3600 x (440.151 + 348.744) = 11,360,088 J; idle 4 GPU-hours at 165.93 W.
    gb200 = rows[("blackwell", DEEPSEEK_R1)]
    assert gb200["cost_usd"] == pytest.approx(8 * 2.21 + 11_360_088 * usd_per_joule)
    assert gb200["cost_usd"] == pytest.approx(18.078865, abs=1e-6)
    assert gb200["idle_usd"] == pytest.approx(8.923894, abs=1e-6)


# --- the pages are read by the agent's engine readers ------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "engine", "role"),
    [
        ("h100-vllm-gpt-oss", "vllm", c.ROLE_AGGREGATED),
        ("h200-sglang-r1", "sglang", c.ROLE_AGGREGATED),
        ("b200-trtllm-gpt-oss", "trtllm", c.ROLE_AGGREGATED),
        ("gb200-dynamo-r1-prefill", "dynamo", c.ROLE_PREFILL),
        ("gb200-dynamo-r1-decode", "dynamo", c.ROLE_DECODE),
    ],
)
def test_each_page_is_read_as_its_engine_with_the_simulated_counts(endpoint, engine, role):
    node, deployment, worker = next(
        (n, d, w) for n in FLEET for d in n.deployments for w in d.workers if w.endpoint == endpoint
    )
    started = DAY - ENGINE_UPTIME_BEFORE_S
    registry = registry_for(node, deployment, worker, started_s=started, clock=lambda: DAY + 3600)

    reading = apply_role(read_payload(generate_latest(registry).decode()))

    assert (reading.engine, reading.role) == (engine, role)
    expected = counted(role, worker_counts(node, deployment, worker, started, DAY + 3600)[0][1])
    engines = len(worker_counts(node, deployment, worker, started, DAY + 3600))
    model = reading.models[deployment.model]
    values = {
        name: getattr(model, name).value if getattr(model, name) else 0
        for name in ("input_tokens", "input_cached_tokens", "output_tokens", "requests")
    }
    assert values == {
        "input_tokens": expected.input * engines,
        "input_cached_tokens": expected.cached * engines,
        "output_tokens": expected.output * engines,
        "requests": expected.requests * engines,
    }


# --- the command ------------------------------------------------------------------------------


def run_demo(*args: str):
    return CliRunner(env=WIDE).invoke(cli, ["demo", "--quiet", *args])


def test_command_says_simulated_lists_sources_and_reports(tmp_path):
    path = tmp_path / "demo.db"

    result = run_demo("--db", str(path), "--hours", "1", "--step-s", "600")

    assert result.exit_code == 0, result.output
    out = result.output
    assert "This fleet is SIMULATED" in out
    assert "Figures and sources" in out
    for source in (
        "utkuozdemir/nvidia_gpu_exporter",
        "NVIDIA/k8s-test-infra",
        "InferenceX",
        "NVIDIA blog, DeepSeek-R1 on HGX H200",
        "ASSUMED: 90% of the 1000 W",
        "Uptime Institute",
    ):
        assert source in out
    assert "Cost per million tokens (USD) by architecture and model (simulated fleet)" in out
    assert "Check: the database holds exactly what the simulation did" in out
    assert "What to try next" in out
    assert f"wattledger report cost --db sqlite:///{path}" in out
    assert store.is_demo_database(path)
    assert not store.partial_path(path).exists()


def test_an_earlier_demo_is_replaced_only_with_force(tmp_path):
    path = tmp_path / "demo.db"
    assert run_demo("--db", str(path), "--hours", "1", "--step-s", "600").exit_code == 0

    again = run_demo("--db", str(path), "--hours", "1", "--step-s", "600")
    assert again.exit_code == 2
    assert "holds an earlier demo run; add --force" in again.output

    forced = run_demo("--db", str(path), "--hours", "1", "--step-s", "600", "--force")
    assert forced.exit_code == 0, forced.output
    assert store.is_demo_database(path)


def test_a_database_that_is_not_a_demo_is_never_overwritten(tmp_path):
    path = tmp_path / "wattledger.db"
    engine = open_engine(f"sqlite:///{path}")
    runner.upgrade(engine)
    engine.dispose()
    before = path.read_bytes()

    for extra in ((), ("--force",)):
        result = run_demo("--db", f"sqlite:///{path}", "--hours", "1", *extra)
        assert result.exit_code == 2
        assert "is not a wattledger demo database" in result.output
        assert "Traceback" not in result.output
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_never_overwritten(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n")

    result = run_demo("--db", str(path), "--force")

    assert result.exit_code == 2
    assert path.read_text() == "my notes\n"


def test_bad_options_are_one_line_errors(tmp_path):
    step = run_demo("--db", str(tmp_path / "a.db"), "--step-s", "700")
    assert step.exit_code == 2
    assert step.output.strip() == (
        "error: --step-s 700: give a step that divides an hour evenly (e.g. 60, 120, 300)"
    )
    assert not (tmp_path / "a.db").exists()

    url = run_demo("--db", "postgresql://u@127.0.0.1/db")
    assert url.exit_code == 2
    assert "the demo writes its own SQLite file" in url.output


# --- a whole day ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("WATTLEDGER_SLOW"),
    reason="a simulated day takes about 25 s here; set WATTLEDGER_SLOW=1",
)
def test_a_whole_day_is_stored_exactly(tmp_path: Path):
    prices = store.demo_prices("hyperscaler", 0.08, 1.58, SITE, DAY)

    outcome = build(tmp_path / "day.db", Window(DAY, 24, 300, 2), prices)

    assert outcome.energy_matches() and outcome.tokens_match()
    # The day curve sums to 1,330 percent-hours: 47,880 full-load seconds; half the tokens input.
    assert outcome.stored.tokens[(DEEPSEEK_R1, c.TOKEN_INPUT)] == (8 * 90 + 4 * 4_000) * 47_880 // 2
    assert len(outcome.report.rows) == 6
