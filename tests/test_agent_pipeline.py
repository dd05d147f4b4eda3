"""The agent's export path: ledger totals through the OpenTelemetry SDK into the store."""

from collections.abc import Sequence

from sqlalchemy import func, select

from wattledger import contract as c
from wattledger.agent.engines.reading import EngineReading, ModelReading, Quantity
from wattledger.agent.gpu.reading import GpuReading
from wattledger.agent.ledger import CounterLedger
from wattledger.agent.runner import Agent, Intervals
from wattledger.agent.sinks import DatabaseSink, OtlpSink
from wattledger.agent.telemetry import AgentTelemetry, build_resource
from wattledger.collector import schema as s
from wattledger.collector.server import CollectorServer, serve_in_thread

S = 1_000_000_000
T0 = 1_764_000_000 * S


class ScriptedGpus:
    """A GPU source that reports a constant 600 W H100 with exact cumulative energy."""

    def __init__(self, ledger: CounterLedger) -> None:
        self.ledger = ledger

    def poll(self, t_ns: int) -> list[GpuReading]:
        raw_mj = 10_000_000 + (t_ns - T0) // S * 600_000  # the board's counter, in mJ
        observed = self.ledger.observe("gpu|GPU-h100", raw_mj / 1000.0, t_ns)
        return [
            GpuReading(
                uuid="GPU-h100",
                index=0,
                name="NVIDIA H100 80GB HBM3",
                sku="H100",
                architecture="hopper",
                energy_joules=observed.cumulative,
                energy_source="counter",
                power_watts=600.0,
                power_scope="gpu",
                utilization=0.9,
                memory_used_bytes=60 * 2**30,
                memory_total_bytes=80 * 2**30,
                energy_start_ns=observed.start_ns,
            )
        ]


class ScriptedEndpoint:
    """An engine whose counters grow by fixed amounts per scrape and restart once."""

    name = "vllm-llama"
    engine = None
    role = None

    def __init__(self, readings: list[EngineReading]) -> None:
        self.readings = list(readings)

    def scrape(self) -> EngineReading | None:
        return self.readings.pop(0) if self.readings else None

    def gpu_ids(self, gpus: Sequence[GpuReading]) -> tuple[str, ...]:
        return ("GPU-h100",)


def vllm(prompt: float, generated: float, started: float) -> EngineReading:
    model = ModelReading(
        "llama",
        input_tokens=Quantity(prompt, "counter vllm:prompt_tokens_total"),
        output_tokens=Quantity(generated, "counter vllm:generation_tokens_total"),
    )
    return EngineReading("vllm", {"llama": model}, started_at=started)


def build_agent(sink, tmp_path, readings):
    ledger = CounterLedger(tmp_path / "ledger.json")
    telemetry = AgentTelemetry(build_resource("node-a", site="dc1"), sink)
    return Agent(
        telemetry=telemetry,
        ledger=ledger,
        gpus=ScriptedGpus(ledger),
        endpoints=[ScriptedEndpoint(readings)],
        intervals=Intervals(sample_s=60, scrape_s=60, export_s=60),
    )


def sums(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            select(s.series.c.metric, s.series.c.label, func.sum(s.deltas.c.value))
            .join(s.deltas, s.deltas.c.series_id == s.series.c.id)
            .group_by(s.series.c.metric, s.series.c.label)
        )
        return {(metric, label): value for metric, label, value in rows}


READINGS = [
    vllm(5_000, 1_000, started=100.0),  # first sight: a baseline, nothing counted
    vllm(8_000, 2_000, started=100.0),  # +3,000 / +1,000
    vllm(500, 300, started=200.0),  # engine restarted: +500 / +300
    vllm(1_500, 800, started=200.0),  # +1,000 / +500
]


def test_agent_writes_exact_totals_in_process(engine, tmp_path):
    agent = build_agent(DatabaseSink(engine), tmp_path, READINGS)

    for minute in range(4):
        agent.tick(T0 + minute * 60 * S)

    assert sums(engine) == {
        (c.METRIC_ENERGY, None): 3 * 60 * 600.0,
        (c.METRIC_TOKENS, "input"): 4_500.0,
        (c.METRIC_TOKENS, "output"): 1_800.0,
    }


def test_agent_exports_through_the_sdk_otlp_exporter_to_the_collector(sqlite_engine, tmp_path):
    server = CollectorServer(("127.0.0.1", 0), sqlite_engine)
    serve_in_thread(server)
    sink = OtlpSink(server.url + "/v1/metrics")
    try:
        agent = build_agent(sink, tmp_path, READINGS)
        for minute in range(4):
            agent.tick(T0 + minute * 60 * S)
    finally:
        sink.close()
        server.stop()

    assert agent.exports_ok == 4
    assert sums(sqlite_engine) == {
        (c.METRIC_ENERGY, None): 108_000.0,
        (c.METRIC_TOKENS, "input"): 4_500.0,
        (c.METRIC_TOKENS, "output"): 1_800.0,
    }
    with sqlite_engine.connect() as conn:
        gauges = conn.execute(select(func.count()).select_from(s.gauge_samples)).scalar()
    # power, utilization, memory usage and memory limit, once a minute for four minutes
    assert gauges == 16


def test_an_agent_restart_continues_every_series_from_its_saved_baselines(engine, tmp_path):
    first = build_agent(DatabaseSink(engine), tmp_path, READINGS[:2])
    first.tick(T0)
    first.tick(T0 + 60 * S)

    # The agent is down for ten minutes; the GPU keeps drawing 600 W and the engine keeps serving.
    second = build_agent(DatabaseSink(engine), tmp_path, [vllm(20_000, 9_000, started=100.0)])
    second.tick(T0 + 660 * S)

    assert sums(engine) == {
        (c.METRIC_ENERGY, None): 660 * 600.0,
        (c.METRIC_TOKENS, "input"): 15_000.0,
        (c.METRIC_TOKENS, "output"): 8_000.0,
    }
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.series)).scalar() == 7


def test_an_endpoint_with_thousands_of_lora_adapters_keeps_every_model(engine, tmp_path):
    """3,000 series per instrument: beyond the SDK's default limit of 2,000 attribute sets."""
    names = [f"lora-{i:04d}" for i in range(1_500)]

    def page(tokens_each: float) -> EngineReading:
        models = {
            name: ModelReading(
                name,
                input_tokens=Quantity(tokens_each, "counter vllm:prompt_tokens_total"),
                output_tokens=Quantity(tokens_each / 2, "counter vllm:generation_tokens_total"),
            )
            for name in names
        }
        return EngineReading("vllm", models, started_at=100.0)

    agent = build_agent(DatabaseSink(engine), tmp_path, [page(0.0), page(1_000.0)])
    agent.tick(T0)
    agent.tick(T0 + 60 * S)

    assert sums(engine)[(c.METRIC_TOKENS, "input")] == 1_500 * 1_000.0
    assert sums(engine)[(c.METRIC_TOKENS, "output")] == 1_500 * 500.0
