"""Real captures: every corpus board is recognised, and the fake's board profiles match them."""

from pathlib import Path

import pytest
from conftest import corpus_file

from wattledger.agent.gpu.boards import (
    A800,
    A800_MIG_LAYOUT,
    B200,
    GB200,
    H100_MIG_LAYOUT,
    H100_MIG_LOAD_POWER_MW,
    H100_SXM,
    MIB,
)
from wattledger.agent.gpu.captures import (
    capture_sections,
    dcgm_gpus,
    parse_query_text,
    read_dcgm,
    read_mig_list,
    read_smi_query_text,
    read_smi_xml,
)
from wattledger.agent.gpu.fake import FakeNvml, ManualClock
from wattledger.agent.gpu.monitor import GpuMonitor
from wattledger.agent.gpu.nvml import open_nvml
from wattledger.agent.gpu.sku import mig_slices, normalise_sku
from wattledger.agent.ledger import CounterLedger

FIXTURES = Path(__file__).parent / "fixtures" / "gpu"
H100_CAPTURE = "nvidia-smi-capture_h100-80gb-hbm3_590.48.01.txt"
H100_MIG_CAPTURE = "nvidia-smi-capture_h100-mig_590.48.01.txt"
B200_XML = "nvidia-smi-q-x_b200x8_580.105.08.xml"
GB200_XML = "nvidia-smi-q-x_gb200x4_580.173.02.xml"


def _capture(name):
    return capture_sections(corpus_file("gpu", name).read_text())


def _query(name, phase):
    (board,) = read_smi_query_text(_capture(name)[f"{phase} :: query (-q)"])
    return board


def _fake_watts(profile):
    fake = FakeNvml(profile)
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    return fake.nvmlDeviceGetPowerUsage(handle) / 1000


# --------------------------------------------------------------- nvidia-smi


def test_b200_xml_boards():
    boards = read_smi_xml(corpus_file("gpu", B200_XML))

    assert len(boards) == 8
    assert {(normalise_sku(b.name), b.architecture.lower()) for b in boards} == {
        ("B200", "blackwell")
    }
    assert {b.max_power_limit_w for b in boards} == {1000.0}
    assert min(b.average_power_w for b in boards) == 194.32
    assert max(b.average_power_w for b in boards) == 206.0
    assert {b.module_average_power_w for b in boards} == {None}


def test_gb200_xml_boards_and_their_modules():
    boards = read_smi_xml(corpus_file("gpu", GB200_XML))

    assert [normalise_sku(b.name) for b in boards] == ["GB200"] * 4
    assert {b.architecture for b in boards} == {"Blackwell"}
    assert [b.serial for b in boards] == ["1650000000001"] * 2 + ["1650000000002"] * 2
    assert {b.max_power_limit_w for b in boards} == {1200.0}
    assert {b.module_max_power_limit_w for b in boards} == {2500.0}
    assert [b.module_average_power_w for b in boards] == [467.17, 460.15, 459.80, 452.43]


def test_h100_text_capture_idle_and_load():
    idle = _query(H100_CAPTURE, "idle")
    load = _query(H100_CAPTURE, "load")

    assert (normalise_sku(idle.name), idle.architecture) == ("H100", "Hopper")
    assert (idle.average_power_w, load.average_power_w) == (69.85, 629.45)
    assert (idle.max_power_limit_w, idle.min_power_limit_w) == (700.0, 200.0)
    assert not idle.mig_enabled


def test_h100_mig_text_capture():
    sections = _capture(H100_MIG_CAPTURE)
    load = _query(H100_MIG_CAPTURE, "load")
    profiles = [profile for profile, _ in read_mig_list(sections["capabilities :: list (-L)"])]
    query = parse_query_text(sections["load :: query (-q)"])
    (gpu,) = [v for k, v in query.items() if k.startswith("GPU ")]

    assert load.mig_enabled and normalise_sku(load.name) == "H100"
    assert load.average_power_w == 432.21  # the parent's power, the only one there is
    assert profiles == ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]
    assert sum(mig_slices(p) for p in profiles) == 7
    assert [d["GPU Instance ID"] for d in gpu["MIG Device"]] == ["2", "3", "9", "10"]
    assert gpu["Utilization"]["GPU"] == "N/A"


def test_legacy_power_field_names_are_read():
    fixture = FIXTURES / "smi-q-x-legacy-power-fields-constructed.xml"

    (board,) = read_smi_xml(fixture)

    assert (board.average_power_w, board.max_power_limit_w) == (61.5, 300.0)
    assert normalise_sku(board.name) == "V100"


# ------------------------------------------------------------------- DCGM


def test_dcgm_h100_page():
    gpus = dcgm_gpus(read_dcgm(corpus_file("gpu", "dcgm-h100x8-eks-idle-sampled.prom").read_text()))

    assert len(gpus) == 8
    assert {normalise_sku(g.model) for g in gpus.values()} == {"H100"}
    assert gpus["GPU-00000000-0000-0000-0000-000000000000"].power_w == 113.611


def test_dcgm_gb200_page():
    gpus = dcgm_gpus(
        read_dcgm(corpus_file("gpu", "dcgm-gb200x4-eks-idle-sampled.prom").read_text())
    )

    assert {normalise_sku(g.model) for g in gpus.values()} == {"GB200"}
    assert sorted(g.power_w for g in gpus.values()) == [156.479, 165.926, 168.57, 174.197]


def test_dcgm_a800_mig_power_and_energy_count_once_per_uuid():
    samples = read_dcgm(corpus_file("gpu", "dcgm-a800x8-mig-full.prom").read_text())
    gpus = dcgm_gpus(samples)
    parent = gpus["GPU-00000000-0000-0000-0000-000000000000"]

    power_series = [s for s in samples if s.name == "DCGM_FI_DEV_POWER_USAGE"]
    energy_series = [s for s in samples if s.name == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]
    assert (len(power_series), len(energy_series), len(gpus)) == (10, 10, 8)
    assert parent.gpu_instances == ("3", "5", "6")
    assert (parent.power_w, parent.energy_mj) == (78.174, 257_858_316.0)
    assert {normalise_sku(g.model) for g in gpus.values()} == {"A800"}

    energy_once = sum(g.energy_mj for g in gpus.values())
    energy_naive = sum(s.value for s in energy_series)
    assert energy_once == 1_569_744_720.0
    assert energy_naive - energy_once == 2 * 257_858_316.0
    assert sum(g.power_w for g in gpus.values()) == pytest.approx(470.238, abs=1e-9)


def test_dcgm_error_values_are_absent_not_zero():
    samples = read_dcgm(corpus_file("gpu", "dcgm-a800x8-mig-full.prom").read_text())

    vgpu = [s for s in samples if s.name == "DCGM_FI_DEV_VGPU_PER_PROCESS_UTILIZATION"]

    assert len(vgpu) == 10 and {s.value for s in vgpu} == {None}


# ------------------------------------------------- fake profiles vs captures


def test_h100_profile_matches_its_capture():
    idle = _query(H100_CAPTURE, "idle")

    assert H100_SXM.name == idle.name
    assert H100_SXM.power_limit_mw == idle.max_power_limit_w * 1000 == 700_000
    assert H100_SXM.min_power_limit_mw == idle.min_power_limit_w * 1000
    assert H100_SXM.memory_total_bytes == idle.memory_total_mib * MIB
    assert _fake_watts(H100_SXM) == idle.average_power_w == 69.85


def test_b200_profile_matches_its_capture():
    first = read_smi_xml(corpus_file("gpu", B200_XML))[0]

    assert B200.name == first.name
    assert B200.power_limit_mw == first.max_power_limit_w * 1000 == 1_000_000
    assert B200.min_power_limit_mw == first.min_power_limit_w * 1000
    assert B200.memory_total_bytes == first.memory_total_mib * MIB
    assert _fake_watts(B200) == first.average_power_w == 195.68


def test_gb200_profile_matches_its_capture_module_included():
    first = read_smi_xml(corpus_file("gpu", GB200_XML))[0]
    fake = FakeNvml(GB200, 2)
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    (module_power,) = fake.nvmlDeviceGetFieldValues(handle, [(185, 1)])

    assert GB200.name == first.name
    assert GB200.power_limit_mw == first.max_power_limit_w * 1000 == 1_200_000
    assert GB200.module_power_limit_mw == first.module_max_power_limit_w * 1000 == 2_500_000
    assert GB200.module_min_power_limit_mw == first.module_min_power_limit_w * 1000
    assert GB200.memory_total_bytes == first.memory_total_mib * MIB
    assert _fake_watts(GB200) == first.average_power_w == 165.93
    assert module_power.value.uiVal / 1000 == first.module_average_power_w == 467.17
    assert fake.nvmlDeviceGetSerial(handle) == fake.nvmlDeviceGetSerial(
        fake.nvmlDeviceGetHandleByIndex(1)
    )


def test_a800_profile_matches_its_dcgm_page():
    gpus = dcgm_gpus(read_dcgm(corpus_file("gpu", "dcgm-a800x8-mig-full.prom").read_text()))

    assert {g.model for g in gpus.values()} == {A800.name}
    assert _fake_watts(A800) == gpus["GPU-00000001-0000-0000-0000-000000000001"].power_w


def test_h100_mig_layout_and_parent_power_match_the_capture():
    sections = _capture(H100_MIG_CAPTURE)
    load = _query(H100_MIG_CAPTURE, "load")
    listed = [profile for profile, _ in read_mig_list(sections["capabilities :: list (-L)"])]
    (gpu,) = [
        v for k, v in parse_query_text(sections["load :: query (-q)"]).items() if k[:4] == "GPU "
    ]

    assert [profile for profile, _ in H100_MIG_LAYOUT] == listed
    assert [str(gi) for _, gi in H100_MIG_LAYOUT] == [
        d["GPU Instance ID"] for d in gpu["MIG Device"]
    ]
    assert load.average_power_w * 1000 == H100_MIG_LOAD_POWER_MW


def test_a800_mig_layout_matches_the_dcgm_page():
    gpus = dcgm_gpus(read_dcgm(corpus_file("gpu", "dcgm-a800x8-mig-full.prom").read_text()))
    samples = read_dcgm(corpus_file("gpu", "dcgm-a800x8-mig-full.prom").read_text())
    profiles = {
        s.label("GPU_I_ID"): s.label("GPU_I_PROFILE") for s in samples if s.label("GPU_I_ID")
    }

    parent = gpus["GPU-00000000-0000-0000-0000-000000000000"]
    assert [str(gi) for _, gi in A800_MIG_LAYOUT] == list(parent.gpu_instances)
    assert [p for p, _ in A800_MIG_LAYOUT] == [profiles[gi] for gi in parent.gpu_instances]


def test_the_mig_capture_replayed_through_the_monitor():
    clock = ManualClock()
    fake = FakeNvml(H100_SXM, clock=clock)
    fake.set_power(0, H100_MIG_LOAD_POWER_MW / 1000)
    fake.enable_mig(0, *zip(*H100_MIG_LAYOUT, strict=True))
    monitor = GpuMonitor(open_nvml(fake), CounterLedger(), boot_id="b")
    for t in (0, 60):
        clock.set(t)
        (reading,) = monitor.poll(t * 1_000_000_000)
    monitor.close()

    assert reading.power_watts == 432.21 and reading.utilization is None
    assert reading.energy_joules == pytest.approx(432.21 * 60, abs=1e-6)
    assert [m.share for m in reading.mig_instances] == [3 / 7, 2 / 7, 1 / 7, 1 / 7]
    assert {m.share_method for m in reading.mig_instances} == {"slices"}
