"""GpuMonitor against the fake NVML: exact joules, and every scripted fault handled."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from wattledger.agent.gpu.boards import A800, GB200, GB300, GH200, H100_SXM
from wattledger.agent.gpu.fake import FakeNvml, ManualClock
from wattledger.agent.gpu.monitor import GpuMonitor
from wattledger.agent.gpu.nvml import open_nvml
from wattledger.agent.gpu.power_curve import PowerCurve
from wattledger.agent.ledger import CounterLedger

S = 1_000_000_000
ENERGY_FN = "nvmlDeviceGetTotalEnergyConsumption"


class Node:
    """A fake node, its clock and a monitor over it."""

    def __init__(self, boards, count=1, *, ledger=None, timeout_s=2.0, **monitor_options):
        self.clock = ManualClock()
        self.fake = FakeNvml(boards, count, clock=self.clock)
        self.ledger = ledger if ledger is not None else CounterLedger()
        self.timeout_s = timeout_s
        self.options = monitor_options
        self.monitor: GpuMonitor | None = None

    def start(self):
        nvml = open_nvml(self.fake, call_timeout_s=self.timeout_s)
        self.monitor = GpuMonitor(nvml, self.ledger, boot_id="boot-1", **self.options)
        return self

    def poll(self, t):
        self.clock.set(t)
        return self.monitor.poll(round(t * S))

    def poll_by_uuid(self, t):
        return {reading.uuid: reading for reading in self.poll(t)}

    def run(self, times):
        readings = None
        for t in times:
            readings = self.poll_by_uuid(t)
        return readings

    def uuid(self, index):
        return self.fake.gpus[index].uuid


@pytest.fixture
def nodes():
    made = []

    def make(*args, **kwargs):
        node = Node(*args, **kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        node.fake.release_hangs()
        if node.monitor is not None:
            node.monitor.close()


# --------------------------------------------------------------------- energy


def test_counter_energy_is_exact_for_600_w_over_an_hour(nodes):
    node = nodes(H100_SXM, 8).start()
    node.fake.set_power_all(600.0)

    readings = node.run(range(0, 3601, 10))

    assert [r.energy_joules for r in readings.values()] == [2_160_000.0] * 8
    assert {r.energy_source for r in readings.values()} == {"counter"}
    assert {r.power_watts for r in readings.values()} == {600.0}
    assert {r.energy_start_ns for r in readings.values()} == {0}
    assert node.monitor.stats() == {}


def test_each_gpu_keeps_its_own_series(nodes):
    node = nodes(H100_SXM, 3).start()
    for index, watts in enumerate((100.0, 250.0, 700.0)):
        node.fake.set_power(index, watts)

    readings = node.run(range(0, 61))

    assert [readings[node.uuid(i)].energy_joules for i in range(3)] == [6_000.0, 15_000.0, 42_000.0]


def test_trapezoid_integral_is_exact_for_a_linear_ramp(nodes):
    # A800 is GA100: its power reading is instantaneous, so the samples lie on the ramp.
    node = nodes(A800).start()
    node.fake.not_supported(ENERGY_FN)
    node.fake.set_power(0, PowerCurve.ramp(0, 100.0, 100, 400.0))

    readings = node.run(range(0, 101, 10))

    reading = readings[node.uuid(0)]
    assert reading.energy_source == "power_integral"
    assert reading.energy_joules == 25_000.0  # 100 s x (100 W + 400 W) / 2


def test_trapezoid_integral_cuts_a_corner_between_samples(nodes):
    node = nodes(A800).start()
    node.fake.not_supported(ENERGY_FN)
    node.fake.set_power(0, PowerCurve([(0, 100.0), (50, 400.0)]))

    readings = node.run(range(0, 101, 20))

    # Samples 100, 220, 340, 400, 400, 400 W: 3200 + 5600 + 7400 + 8000 + 8000 J. The true energy
    # is 12 500 + 20 000 = 32 500 J; the straight line across the kink at 50 s misses 300 J.
    assert readings[node.uuid(0)].energy_joules == 32_200.0


def test_averaged_power_integral_lags_half_a_second(nodes):
    # Hopper reports a 1 s average: the sample at t is the mean power over [t-1, t].
    node = nodes(H100_SXM).start()
    node.fake.not_supported(ENERGY_FN)
    node.fake.set_power(0, PowerCurve.ramp(0, 100.0, 100, 400.0))

    readings = node.run(range(0, 101))

    # Samples 100 W at 0, then 98.5 + 3t W: 100.75 J for [0, 1], 24 750 J for [1, 100].
    assert readings[node.uuid(0)].energy_joules == 24_850.75


def test_short_windows_hold_energy_until_the_counter_ticks(nodes):
    node = nodes(H100_SXM).start()
    node.fake.set_power(0, 600.0)  # the counter ticks every 100 ms

    seen = [(t, node.poll_by_uuid(t)[node.uuid(0)]) for t in (0.0, 0.05, 0.1, 0.12, 0.15, 1.0)]

    energy = [(t, r.energy_joules) for t, r in seen]
    assert energy == [
        (0.0, 0.0),
        (0.05, 0.0),
        (0.1, 60.0),
        (0.12, 60.0),
        (0.15, 60.0),
        (1.0, 600.0),
    ]
    assert all(r.power_watts == 600.0 for _, r in seen)


def test_counter_and_integral_disagreeing_is_flagged_per_window(nodes, caplog):
    node = nodes(H100_SXM).start()
    node.fake.set_power(0, 600.0)
    node.fake.script_power(0, 300_000, start_s=0)  # plausible, but half the truth

    with caplog.at_level(logging.WARNING, logger="wattledger.agent.gpu"):
        readings = node.run(range(0, 131, 10))

    assert readings[node.uuid(0)].energy_joules == 78_000.0  # the counter is what is exported
    assert node.monitor.stats()["energy_disagreement"] == 2  # windows closing at 60 s and 120 s
    warnings = [r.getMessage() for r in caplog.records if "integrated power says" in r.getMessage()]
    assert len(warnings) == 2
    assert "36000 J" in warnings[0] and "18000 J" in warnings[0]


# ------------------------------------------------------------ not supported


def test_unsupported_counter_is_probed_once_and_logged_once(nodes, caplog):
    node = nodes(H100_SXM, 2)
    node.fake.set_power_all(600.0)
    node.fake.not_supported(ENERGY_FN, gpu=1)

    with caplog.at_level(logging.INFO, logger="wattledger.agent.gpu"):
        node.start()
        readings = node.run(range(0, 10))

    assert node.fake.calls[(ENERGY_FN, node.uuid(1))] == 1
    assert node.fake.calls[(ENERGY_FN, node.uuid(0))] == 11  # probe + 10 reads
    messages = [r.getMessage() for r in caplog.records if "not supported" in r.getMessage()]
    assert messages == [
        f"GPU 1 NVIDIA H100 80GB HBM3 ({node.uuid(1)}): energy counter not supported; "
        "energy is integrated from power readings instead"
    ]
    assert readings[node.uuid(1)].energy_source == "power_integral"
    assert readings[node.uuid(1)].energy_joules == 5_400.0  # 9 s at 600 W
    assert readings[node.uuid(0)].energy_joules == 5_400.0


def test_metric_that_stops_being_supported_is_switched_off_and_logged_once(nodes, caplog):
    node = nodes(H100_SXM).start()
    node.poll(0)
    node.fake.not_supported("nvmlDeviceGetUtilizationRates")

    with caplog.at_level(logging.INFO, logger="wattledger.agent.gpu"):
        readings = node.run(range(1, 6))

    assert readings[node.uuid(0)].utilization is None
    assert node.fake.calls[("nvmlDeviceGetUtilizationRates", node.uuid(0))] == 3  # probe, 0, 1
    assert sum("utilization not supported" in r.getMessage() for r in caplog.records) == 1


def test_transient_failure_is_a_gap_that_the_next_read_catches_up(nodes):
    node = nodes(H100_SXM).start()
    node.fake.set_power(0, 600.0)
    node.fake.fail(10, ENERGY_FN, 0, start_s=5, times=1)  # NVML_ERROR_TIMEOUT once at 5 s

    energy = [node.poll_by_uuid(t)[node.uuid(0)].energy_joules for t in range(0, 7)]

    assert energy == [0.0, 600.0, 1_200.0, 1_800.0, 2_400.0, 2_400.0, 3_600.0]
    assert node.monitor.stats()["gap"] == 1


# ------------------------------------------------------------ power sanity


def test_power_beyond_1_2_x_the_limit_or_negative_is_rejected_and_counted(nodes, caplog):
    node = nodes(H100_SXM).start()
    node.fake.set_power(0, 600.0)
    node.fake.script_power(0, 840_000, start_s=5, end_s=6)  # exactly 1.2 x 700 W: kept
    node.fake.script_power(0, 840_001, start_s=10, end_s=12)
    node.fake.script_power(0, -5_000, start_s=20, end_s=21)

    with caplog.at_level(logging.DEBUG, logger="wattledger.agent.gpu"):
        power = {t: node.poll_by_uuid(t)[node.uuid(0)].power_watts for t in range(0, 31)}

    assert power[5] == 840.0
    assert (power[10], power[11], power[20]) == (None, None, None)
    assert power[12] == power[21] == 600.0
    assert node.monitor.stats()["power_rejected"] == 3
    rejected = [r for r in caplog.records if "rejected a power reading" in r.getMessage()]
    assert [r.levelno for r in rejected] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "840.0 W (limit 700 W)" in rejected[0].getMessage()


def test_rejected_power_is_bridged_by_the_integral(nodes):
    node = nodes(A800).start()
    node.fake.not_supported(ENERGY_FN)
    node.fake.set_power(0, 300.0)
    node.fake.script_power(0, 10_000_000, start_s=3, end_s=5)

    readings = node.run(range(0, 11))

    assert readings[node.uuid(0)].energy_joules == 3_000.0
    assert node.monitor.stats()["power_rejected"] == 2


# -------------------------------------------------------------- lost GPUs


def test_lost_gpu_is_isolated_and_reopened_with_backoff_while_7_stay_exact(nodes):
    node = nodes(H100_SXM, 8).start()
    node.fake.set_power_all(600.0)
    lost = node.uuid(3)
    node.fake.lose_gpu(3, at_s=100, back_at_s=150)

    history = {t: node.poll_by_uuid(t) for t in range(0, 201, 10)}

    final = history[200]
    assert [final[node.uuid(i)].energy_joules for i in range(8) if i != 3] == [120_000.0] * 7
    # Read last at 90 s (54 000 J); back in service from 160 s, whose read is a new baseline.
    assert final[lost].energy_joules == 54_000.0 + 600.0 * 40
    assert [t for t in range(100, 160, 10) if history[t][lost].healthy] == []
    assert {history[t][lost].energy_joules for t in range(100, 161, 10)} == {54_000.0}
    assert history[100][lost].problem.startswith("NVML error 15")
    assert history[160][lost].healthy and history[160][lost].power_watts == 600.0
    # Retries 1, 2, 4, 8, 16 s after each failure: at 110, 120, 130, 140, then 160 s.
    assert node.fake.calls[("nvmlDeviceGetHandleByUUID", lost)] == 5
    assert node.monitor.stats() == {"gpu_lost": 1, "reopened": 1}


def test_lost_gpu_is_reported_once_not_at_every_retry(nodes, caplog):
    node = nodes(H100_SXM, 2).start()
    node.fake.lose_gpu(0, at_s=5, back_at_s=60)

    with caplog.at_level(logging.INFO, logger="wattledger.agent.gpu"):
        node.run(range(0, 100))

    messages = [r.getMessage() for r in caplog.records]
    assert sum("isolating it" in m for m in messages) == 1
    assert sum("is back" in m for m in messages) == 1


def test_lost_gpu_stays_in_the_output_in_index_order(nodes):
    node = nodes(H100_SXM, 4).start()
    node.fake.lose_gpu(1, at_s=1)
    node.poll(0)

    readings = node.poll(1)

    assert [(r.index, r.healthy) for r in readings] == [(0, True), (1, False), (2, True), (3, True)]


def test_gpu_lost_before_it_was_ever_opened_is_opened_later_by_index(nodes, caplog):
    node = nodes(H100_SXM, 4)
    node.fake.set_power_all(600.0)
    node.fake.lose_gpu(2, at_s=0, back_at_s=5)

    with caplog.at_level(logging.WARNING, logger="wattledger.agent.gpu"):
        node.start()
        counts = [len(node.poll(t)) for t in range(0, 8)]
    readings = node.run([8, 20])

    # Retries at 1, 3 (1 + 2) and 7 (3 + 4) s; it opens at 7 s and is read from 8 s on.
    assert counts == [3, 3, 3, 3, 3, 3, 3, 4]
    assert readings[node.uuid(2)].energy_joules == 600.0 * 12
    assert readings[node.uuid(0)].energy_joules == 600.0 * 20
    assert "GPU 2 could not be opened" in caplog.text


# ---------------------------------------------------------------- driver


def test_driver_not_loaded_is_retried_with_backoff_and_the_monitor_stays_up(nodes, caplog):
    node = nodes(H100_SXM, 8)
    node.fake.set_power_all(600.0)
    node.fake.driver_missing_inits = 3

    with caplog.at_level(logging.WARNING, logger="wattledger.agent.gpu"):
        node.start()  # init 1 fails
        before = [node.poll(t) for t in (0, 1, 2)]  # init 2 at 0 s, 3 at 1 s, none at 2 s
        first = node.poll_by_uuid(3)  # init 4 at 3 s works
    later = node.poll_by_uuid(13)

    assert before == [[], [], []]
    assert node.fake.init_calls == 4
    assert [r.energy_joules for r in first.values()] == [0.0] * 8
    assert [r.energy_joules for r in later.values()] == [6_000.0] * 8
    assert node.monitor.stats()["init_retry"] == 2
    assert any("driver not loaded" in r.getMessage().lower() for r in caplog.records)


def test_driver_going_away_mid_run_is_survived_and_a_reload_is_a_reset(nodes):
    node = nodes(H100_SXM, 2).start()
    node.fake.set_power_all(600.0)
    node.fake.fail(9, start_s=50, end_s=70)  # NVML_ERROR_DRIVER_NOT_LOADED on every call
    node.fake.reload_driver(60)

    history = {t: node.poll_by_uuid(t) for t in range(0, 101, 10)}

    assert {r.healthy for r in history[50].values()} == {False}
    assert {r.energy_joules for r in history[60].values()} == {24_000.0}
    # 24 000 J to 40 s; the reloaded counter says 6 000 J at 70 s; then 30 s more.
    assert {r.energy_joules for r in history[100].values()} == {48_000.0}
    assert node.monitor.stats()["counter_reset"] == 2


def test_counter_wrapping_past_2_64_keeps_counting(nodes):
    node = nodes(H100_SXM)
    node.fake.gpus[0].initial_energy_mj = 2**64 - 3_000_000  # 3 000 J below the top
    node.fake.set_power(0, 600.0)
    node.start()

    raw = [node.fake.energy_mj(node.fake.gpus[0], t) for t in (0, 10)]
    energy = node.run(range(0, 11))[node.uuid(0)].energy_joules

    assert raw[1] < raw[0]  # the register went round
    assert energy == 6_000.0
    assert node.monitor.stats() == {"counter_wrap": 1}


def test_driver_reload_never_gives_a_negative_delta(nodes):
    node = nodes(H100_SXM).start()
    node.fake.set_power(0, 600.0)
    node.fake.reload_driver(10.5)

    energy = [node.poll_by_uuid(t)[node.uuid(0)].energy_joules for t in range(0, 21)]

    assert energy[10] == 6_000.0
    assert energy[11] == 6_300.0  # 0.5 s since the reload; 10 -> 10.5 s is lost
    assert energy[20] == 6_300.0 + 5_400.0
    assert all(b >= a for a, b in zip(energy, energy[1:], strict=False))
    assert node.monitor.stats()["counter_reset"] == 1


# -------------------------------------------------------------- hung calls


def _wait_for_retired_workers(timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread.name == "wattledger-nvml-0":
            thread.join(max(deadline - time.monotonic(), 0))


def test_hung_call_is_cut_off_without_stalling_the_poll(nodes):
    node = nodes(H100_SXM, 8, timeout_s=0.2).start()
    node.fake.set_power_all(600.0)
    node.poll(0)
    hung = node.uuid(2)
    node.fake.hang("nvmlDeviceGetPowerUsage", gpu=2)

    started = time.monotonic()
    at_10 = node.poll_by_uuid(10)
    first_wall = time.monotonic() - started
    started = time.monotonic()
    at_20 = node.poll_by_uuid(20)
    second_wall = time.monotonic() - started

    assert 0.2 <= first_wall < 0.6
    assert second_wall < 0.1  # the stuck GPU is not asked again while its call is out
    assert not at_10[hung].healthy and at_10[hung].problem == "an NVML call timed out"
    assert [at_10[node.uuid(i)].energy_joules for i in (0, 1)] == [6_000.0, 6_000.0]
    assert {at_10[node.uuid(i)].power_watts for i in range(3, 8)} == {None}  # skipped this cycle
    assert [at_20[node.uuid(i)].energy_joules for i in range(8) if i != 2] == [12_000.0] * 7
    assert node.monitor.stats()["timeout"] == 1

    node.fake.release_hangs()
    _wait_for_retired_workers()
    readings = node.run([30, 40])
    assert readings[hung].healthy
    assert readings[hung].energy_joules == 6_000.0  # 0 -> 10 s unknown; 30 -> 40 s counted
    assert [readings[node.uuid(i)].energy_joules for i in range(8) if i != 2] == [24_000.0] * 7


# ------------------------------------------------------------------ restart


def test_restart_from_the_persisted_ledger_loses_no_energy(nodes, tmp_path):
    state = tmp_path / "agent-state.json"
    first = nodes(H100_SXM, 4, ledger=CounterLedger(state)).start()
    watts = [100.0, 200.0, 300.0, 400.0]
    for index, power in enumerate(watts):
        first.fake.set_power(index, power)
    uuids = [first.uuid(i) for i in range(4)]
    first.run(range(0, 101, 10))
    first.ledger.save()
    first.monitor.close()

    # The agent is down from 100 s to 160 s, the GPUs keep working, and after the restart
    # NVML enumerates them in another order.
    first.fake.reorder(list(reversed(uuids)))
    first.ledger = CounterLedger(state)
    readings = first.start().poll_by_uuid(160)

    assert [readings[u].energy_joules for u in uuids] == [w * 160 for w in watts]
    assert [readings[u].index for u in uuids] == [3, 2, 1, 0]
    assert {readings[u].energy_start_ns for u in uuids} == {0}


def test_reboot_while_the_agent_was_down_counts_from_the_new_boot(nodes, tmp_path):
    state = tmp_path / "agent-state.json"
    node = nodes(H100_SXM, ledger=CounterLedger(state)).start()
    node.fake.set_power(0, 500.0)
    node.run(range(0, 11))
    node.ledger.save()
    node.monitor.close()

    # Reboot at 20 s: the counter restarts at 0 and has passed its old value by 2 030 s. The boot
    # id tells the ledger that this is a new counter, not growth.
    node.fake.reload_driver(20)
    node.fake.gpus[0].initial_energy_mj = 0
    nvml = open_nvml(node.fake)
    node.monitor = GpuMonitor(nvml, CounterLedger(state), boot_id="boot-2")
    energy = node.poll_by_uuid(2_030)[node.uuid(0)].energy_joules

    assert energy == 5_000.0 + 500.0 * 2_010


# ---------------------------------------------------------------- Grace, MIG


@pytest.mark.parametrize(
    ("board", "module_joules", "module_watts"),
    [
        # Two 700 W GPUs plus the rest of the module (Grace, memory), for 100 s.
        (GB200, 153_531.0, 1_535.31),  # rest 135.31 W
        (GB300, 153_200.0, 1_532.0),  # rest 132 W
    ],
)
def test_grace_module_energy_is_reported_apart_once_per_module(
    nodes, board, module_joules, module_watts
):
    node = nodes(board, 4).start()
    node.fake.set_power_all(700.0)

    readings = node.run(range(0, 101, 10))

    gpus = [readings[node.uuid(i)] for i in range(4)]
    assert [g.energy_joules for g in gpus] == [70_000.0] * 4
    assert [g.module_id for g in gpus] == ["1650000000001"] * 2 + ["1650000000002"] * 2
    assert [g.module_energy_joules for g in gpus] == [module_joules, None, module_joules, None]
    assert [g.module_power_watts for g in gpus] == [module_watts, None, module_watts, None]
    assert {g.power_scope for g in gpus} == {"gpu"}
    assert {g.power_watts for g in gpus} == {700.0}


def test_gh200_counter_covers_the_module_and_says_so(nodes, caplog):
    node = nodes(GH200)
    node.fake.set_power(0, 500.0)
    with caplog.at_level(logging.INFO, logger="wattledger.agent.gpu"):
        node.start()
        readings = node.run(range(0, 101, 10))

    reading = readings[node.uuid(0)]
    assert reading.power_scope == "module"
    assert reading.energy_joules == 56_000.0  # (500 W GPU + 60 W Grace) x 100 s
    assert reading.power_watts == 560.0
    assert reading.module_energy_joules is None
    assert sum("power not supported" in r.getMessage() for r in caplog.records) == 1


def test_mig_shares_by_slices_then_by_measured_activity(nodes):
    node = nodes(H100_SXM)
    node.fake.set_power(0, 432.21)
    a, b, c = node.fake.enable_mig(0, ["3g.40gb", "2g.20gb", "2g.20gb"])
    node.start()

    first = node.run(range(0, 11, 10))[node.uuid(0)]
    node.fake.set_mig_activity(a.uuid, 0.5)
    node.fake.set_mig_activity(b.uuid, 1.0)
    later = node.run(range(20, 41, 10))[node.uuid(0)]

    assert [(m.profile, m.share, m.share_method) for m in first.mig_instances] == [
        ("3g.40gb", 3 / 7, "slices"),
        ("2g.20gb", 2 / 7, "slices"),
        ("2g.20gb", 2 / 7, "slices"),
    ]
    # Weights 3 x 50 %, 2 x 100 %, 2 x 0 %.
    assert [(m.share, m.share_method) for m in later.mig_instances] == [
        (150 / 350, "activity"),
        (200 / 350, "activity"),
        (0.0, "activity"),
    ]
    assert {m.parent_uuid for m in later.mig_instances} == {node.uuid(0)}
    assert later.utilization is None and later.power_watts == 432.21
    assert later.energy_joules == pytest.approx(432.21 * 40, abs=1e-9)
    assert node.fake.calls[("nvmlDeviceGetUtilizationRates", node.uuid(0))] == 0


def test_mig_without_gpm_shares_by_slices(nodes):
    node = nodes(A800)
    node.fake.enable_mig(0, ["2g.20gb"] * 3, gpu_instance_ids=[3, 5, 6])
    node.start()

    reading = node.run(range(0, 31, 10))[node.uuid(0)]

    assert [(m.share, m.share_method) for m in reading.mig_instances] == [(1 / 3, "slices")] * 3


def test_gpu_processes_by_gpu_and_by_mig_device(nodes):
    node = nodes(H100_SXM, 2)
    migs = node.fake.enable_mig(1, ["3g.40gb", "4g.40gb"])
    node.fake.set_processes(0, [1234, 5678])
    node.fake.set_processes(1, [(4321, 1, 0), (8765, 2, 0)])
    node.start()
    node.poll(0)

    processes = node.monitor.gpu_processes()

    assert processes == {
        node.uuid(0): {1234, 5678},
        migs[0].uuid: {4321},
        migs[1].uuid: {8765},
    }
