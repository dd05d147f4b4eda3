"""CPU cost of one GPU sampling cycle on an 8-GPU node, with the fake NVML.

Reports CPU time per cycle (``time.process_time``, all threads of the process) for:

* the monitor as shipped: one worker-thread hand-off per cycle, every call under the timeout;
* the same monitor with calls made inline (no timeout protection), to price the hand-off;
* one hand-off per NVML call, the design not taken, for comparison;
* the fake NVML calls alone, so the agent's own share can be separated from what the (fake)
  library costs. A real NVML call costs more than a fake one (a driver ioctl), which this
  benchmark cannot measure without a GPU.

Usage: python benchmarks/bench_gpu_sample.py [--cycles N] [--gpus N]
"""

from __future__ import annotations

import argparse
import time

from wattledger.agent.gpu.boards import H100_SXM
from wattledger.agent.gpu.fake import FakeNvml, ManualClock
from wattledger.agent.gpu.monitor import GpuMonitor
from wattledger.agent.gpu.nvml import open_nvml
from wattledger.agent.gpu.worker import CallWorker
from wattledger.agent.ledger import CounterLedger

S = 1_000_000_000
GOAL_MS = 1.0


def _node(gpus: int, timeout_s: float | None) -> tuple[ManualClock, FakeNvml, GpuMonitor]:
    clock = ManualClock()
    fake = FakeNvml(H100_SXM, gpus, clock=clock)
    fake.set_power_all(600.0)
    monitor = GpuMonitor(open_nvml(fake, call_timeout_s=timeout_s), CounterLedger(), boot_id="b")
    return clock, fake, monitor


def bench_monitor(gpus: int, cycles: int, timeout_s: float | None) -> tuple[float, float]:
    """CPU and wall seconds per poll."""
    clock, _, monitor = _node(gpus, timeout_s)
    for t in range(50):  # warm up: probing, first baselines
        clock.set(t)
        monitor.poll(t * S)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    for t in range(50, 50 + cycles):
        clock.set(t)
        readings = monitor.poll(t * S)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0

    assert len(readings) == gpus and readings[0].energy_joules == 600.0 * (49 + cycles)
    monitor.close()
    return cpu / cycles, wall / cycles


def bench_fake_calls(gpus: int, cycles: int) -> float:
    """CPU seconds per cycle spent inside the fake NVML for the same reads."""
    clock, fake, monitor = _node(gpus, None)
    monitor.close()
    fake.nvmlInit()
    handles = [fake.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]

    cpu0 = time.process_time()
    for t in range(cycles):
        clock.set(t)
        for handle in handles:
            fake.nvmlDeviceGetTotalEnergyConsumption(handle)
            fake.nvmlDeviceGetPowerUsage(handle)
            fake.nvmlDeviceGetUtilizationRates(handle)
            fake.nvmlDeviceGetMemoryInfo(handle)
    return (time.process_time() - cpu0) / cycles


def bench_handoff_per_call(gpus: int, cycles: int) -> float:
    """CPU seconds per cycle when every one of the cycle's calls gets its own hand-off."""
    clock, fake, monitor = _node(gpus, None)
    monitor.close()
    fake.nvmlInit()
    handles = [fake.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]
    worker = CallWorker(2.0)
    calls = (
        fake.nvmlDeviceGetTotalEnergyConsumption,
        fake.nvmlDeviceGetPowerUsage,
        fake.nvmlDeviceGetUtilizationRates,
        fake.nvmlDeviceGetMemoryInfo,
    )

    cpu0 = time.process_time()
    for t in range(cycles):
        clock.set(t)
        for handle in handles:
            for call in calls:
                worker.call(call, handle)
    cpu = time.process_time() - cpu0
    worker.close()
    return cpu / cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()

    shipped_cpu, shipped_wall = bench_monitor(args.gpus, args.cycles, timeout_s=2.0)
    inline_cpu, _ = bench_monitor(args.gpus, args.cycles, timeout_s=None)
    per_call_cpu = bench_handoff_per_call(args.gpus, args.cycles)
    fake_cpu = bench_fake_calls(args.gpus, args.cycles)
    agent_cpu = shipped_cpu - fake_cpu

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:7.3f} ms"

    print(f"GPU sampling cycle, {args.gpus} fake GPUs, {args.cycles} cycles")
    shipped = f"{ms(shipped_cpu)} CPU, {ms(shipped_wall)} wall"
    print(f"  monitor, one hand-off per cycle (shipped) {shipped}")
    print(f"  monitor, calls inline (no timeout)        {ms(inline_cpu)} CPU")
    print(f"  hand-off cost per cycle                   {ms(shipped_cpu - inline_cpu)} CPU")
    print(
        f"  reads with one hand-off per call          {ms(per_call_cpu)} CPU "
        f"({per_call_cpu / max(fake_cpu, 1e-12):.1f}x the calls alone)"
    )
    print(f"  fake NVML calls alone                     {ms(fake_cpu)} CPU")
    print(f"  agent's own share of a shipped cycle      {ms(agent_cpu)} CPU")
    print(
        f"  at 1 Hz: {shipped_cpu * 100:.3f} % of one core "
        f"({agent_cpu * 100:.3f} % without the fake library)"
    )
    verdict = "meets" if shipped_cpu * 1000 < GOAL_MS else "misses"
    print(
        f"  goal < {GOAL_MS:.0f} ms per cycle: {verdict} it "
        f"({shipped_cpu * 1000 / GOAL_MS:.2f} of the budget)"
    )


if __name__ == "__main__":
    main()
