"""The GPU monitor as the agent runner's GPU source: what reaches the wire contract."""

from wattledger import contract as c
from wattledger.agent.gpu.boards import GB200, H100_SXM
from wattledger.agent.gpu.fake import FakeNvml, ManualClock
from wattledger.agent.gpu.monitor import GpuMonitor
from wattledger.agent.gpu.nvml import open_nvml
from wattledger.agent.ledger import CounterLedger
from wattledger.agent.runner import Agent, Intervals
from wattledger.agent.telemetry import AgentTelemetry, build_resource

S = 1_000_000_000
T0 = 1_764_000_000


def run_agent(fake, clock, tmp_path, seconds):
    ledger = CounterLedger(tmp_path / "ledger.json")
    monitor = GpuMonitor(open_nvml(fake), ledger, boot_id="boot-1")
    agent = Agent(
        telemetry=AgentTelemetry(build_resource("node-a"), lambda _batch: True),
        ledger=ledger,
        gpus=monitor,
        endpoints=[],
        intervals=Intervals(sample_s=1, scrape_s=60, export_s=60),
    )
    for t in range(T0, T0 + seconds + 1):
        clock.set(t)
        agent.tick(t * S)
    monitor.close()
    return agent.snapshot((T0 + seconds) * S)


def values(snapshot, metric):
    return {
        (v.attributes[c.ATTR_HW_ID], v.attributes.get(c.ATTR_POWER_SCOPE)): v.value
        for v in snapshot.values.get(metric, [])
    }


def test_h100_node_energy_and_mig_shares_reach_the_contract(tmp_path):
    clock = ManualClock(T0)
    fake = FakeNvml(H100_SXM, 2, clock=clock)
    fake.set_power_all(600.0)
    migs = fake.enable_mig(1, ["3g.40gb", "2g.20gb", "2g.20gb"])

    snapshot = run_agent(fake, clock, tmp_path, 120)

    energy = values(snapshot, c.METRIC_ENERGY)
    assert energy == {(fake.gpus[0].uuid, "gpu"): 72_000.0, (fake.gpus[1].uuid, "gpu"): 72_000.0}
    shares = {v.attributes[c.ATTR_HW_ID]: v.value for v in snapshot.values[c.METRIC_MIG_SHARE]}
    assert shares == {migs[0].uuid: 3 / 7, migs[1].uuid: 2 / 7, migs[2].uuid: 2 / 7}
    utilization = {v.attributes[c.ATTR_HW_ID] for v in snapshot.values[c.METRIC_UTILIZATION]}
    assert utilization == {fake.gpus[0].uuid}  # absent under MIG
    starts = {v.start_ns for v in snapshot.values[c.METRIC_ENERGY]}
    assert starts == {T0 * S}


def test_gb200_module_energy_is_its_own_series(tmp_path):
    clock = ManualClock(T0)
    fake = FakeNvml(GB200, 4, clock=clock)
    fake.set_power_all(1_000.0)

    snapshot = run_agent(fake, clock, tmp_path, 60)

    gpu_energy = values(snapshot, c.METRIC_ENERGY)
    module_energy = values(snapshot, c.METRIC_MODULE_ENERGY)
    assert set(gpu_energy.values()) == {60_000.0} and len(gpu_energy) == 4
    # One series per module, on its first GPU: (2 x 1000 W + 135.31 W) x 60 s.
    assert module_energy == {
        (fake.gpus[0].uuid, "module"): 128_118.6,
        (fake.gpus[2].uuid, "module"): 128_118.6,
    }
