"""What real boards report through NVML, for the fake NVML and the demo.

Values come from real ``nvidia-smi`` and dcgm-exporter captures where one exists (the test suite
checks them against the corpus); the rest are nominal figures and say so in ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024

ARCH_AMPERE = 7
ARCH_HOPPER = 9
ARCH_BLACKWELL = 10


@dataclass(frozen=True)
class BoardProfile:
    """One board model as NVML describes it."""

    key: str
    name: str  # nvmlDeviceGetName
    architecture: int  # nvmlDeviceGetArchitecture
    power_limit_mw: int  # default = max power limit
    min_power_limit_mw: int
    idle_power_mw: int
    memory_total_bytes: int
    source: str
    averaged_power: bool = True  # GetPowerUsage is a 1 s average (Ampere except GA100, and newer)
    energy_counter: bool = True  # nvmlDeviceGetTotalEnergyConsumption exists (Volta and newer)
    gpu_scope_power: bool = True  # GetPowerUsage works (it fails on GH200)
    gpm: bool = False  # GPU performance monitoring (Hopper and newer)
    mig_slices: int = 0  # 7 on MIG-capable data-centre parts, 0 where MIG does not exist
    gpus_per_module: int = 1
    module_power_limit_mw: int | None = None  # Grace superchips: GPU(s) + CPU + memory
    module_min_power_limit_mw: int | None = None
    module_rest_idle_mw: int | None = None  # module power beyond its GPUs at idle (Grace, LPDDR)
    counter_covers_module: bool = False  # the total-energy counter includes the Grace CPU


H100_SXM = BoardProfile(
    key="H100",
    name="NVIDIA H100 80GB HBM3",
    architecture=ARCH_HOPPER,
    power_limit_mw=700_000,
    min_power_limit_mw=200_000,
    idle_power_mw=69_850,
    memory_total_bytes=81_559 * MIB,
    source="nvidia-smi -q, driver 590.48.01 (corpus/gpu/nvidia-smi-capture_h100-80gb-hbm3)",
    gpm=True,
    mig_slices=7,
)

H200 = BoardProfile(
    key="H200",
    name="NVIDIA H200",
    architecture=ARCH_HOPPER,
    power_limit_mw=700_000,
    min_power_limit_mw=200_000,
    idle_power_mw=78_000,
    memory_total_bytes=143_771 * MIB,
    # Limitation: no H200 capture in the corpus; the 700 W limit and ~78 W idle are the figures
    # quoted in reference/nvml.md section 4, the minimum limit and memory size are nominal.
    source="nominal: reference/nvml.md section 4 (700 W TGP, about 78 W idle)",
    gpm=True,
    mig_slices=7,
)

B200 = BoardProfile(
    key="B200",
    name="NVIDIA B200",
    architecture=ARCH_BLACKWELL,
    power_limit_mw=1_000_000,
    min_power_limit_mw=200_000,
    idle_power_mw=195_680,
    memory_total_bytes=183_359 * MIB,
    source="nvidia-smi -q -x, driver 580.105.08 (corpus/gpu/nvidia-smi-q-x_b200x8)",
    gpm=True,
    mig_slices=7,
)

# A GB200 superchip carries one Grace CPU and two B200-class GPUs; both GPUs report the same serial
# and each reports the module's power. Module idle 467.17 W = 165.93 W + 165.93 W + 135.31 W.
GB200 = BoardProfile(
    key="GB200",
    name="NVIDIA GB200",
    architecture=ARCH_BLACKWELL,
    power_limit_mw=1_200_000,
    min_power_limit_mw=200_000,
    idle_power_mw=165_930,
    memory_total_bytes=189_471 * MIB,
    source="nvidia-smi -q -x, driver 580.173.02 (corpus/gpu/nvidia-smi-q-x_gb200x4)",
    gpm=True,
    mig_slices=7,
    gpus_per_module=2,
    module_power_limit_mw=2_500_000,
    module_min_power_limit_mw=500_000,
    module_rest_idle_mw=135_310,
)

GB300 = BoardProfile(
    key="GB300",
    name="NVIDIA GB300",
    architecture=ARCH_BLACKWELL,
    power_limit_mw=1_400_000,
    min_power_limit_mw=200_000,
    idle_power_mw=178_000,
    # Limitation: no GB300 capture in the corpus; limits and idle power are the figures quoted in
    # reference/nvml.md section 4, memory is the nominal 288 GB.
    memory_total_bytes=288 * 1000**3,
    source="nominal: reference/nvml.md section 4 (1400 W GPU, 2900 W module, ~488 W module idle)",
    gpm=True,
    mig_slices=7,
    gpus_per_module=2,
    module_power_limit_mw=2_900_000,
    module_min_power_limit_mw=500_000,
    module_rest_idle_mw=132_000,
)

GH200 = BoardProfile(
    key="GH200",
    name="NVIDIA GH200 480GB",
    architecture=ARCH_HOPPER,
    power_limit_mw=900_000,
    min_power_limit_mw=450_000,
    idle_power_mw=90_000,
    # Limitation: no GH200 capture in the corpus; every figure here is nominal. What is modelled
    # is the reported behaviour: module-wide energy counter, no GPU-scope power (Zeus PR #172).
    memory_total_bytes=97_871 * MIB,
    source="nominal; behaviour from reference/nvml.md (Zeus PR #172)",
    gpu_scope_power=False,
    gpm=True,
    mig_slices=7,
    module_power_limit_mw=1_000_000,
    module_min_power_limit_mw=450_000,
    module_rest_idle_mw=60_000,
    counter_covers_module=True,
)

A800 = BoardProfile(
    key="A800",
    name="NVIDIA A800-SXM4-80GB",
    architecture=ARCH_AMPERE,
    # Limitation: the A800 payload carries no power limit; 400 W is the SXM4 board's nominal TDP.
    power_limit_mw=400_000,
    min_power_limit_mw=100_000,
    idle_power_mw=55_942,
    memory_total_bytes=81_920 * MIB,
    source="dcgm-exporter, driver 535.129.03 (corpus/gpu/dcgm-a800x8-mig-full); limit nominal",
    averaged_power=False,  # GA100: instantaneous power
    mig_slices=7,
)

# The H100 MIG capture (corpus/gpu/nvidia-smi-capture_h100-mig): profile and GPU instance id of
# each MIG device, and the parent's average power under gpu-burn, the only power NVML gives.
H100_MIG_LAYOUT: tuple[tuple[str, int], ...] = (
    ("3g.40gb", 2),
    ("2g.20gb", 3),
    ("1g.10gb", 9),
    ("1g.10gb", 10),
)
H100_MIG_LOAD_POWER_MW = 432_210

# The A800 dcgm-exporter page (corpus/gpu/dcgm-a800x8-mig-full): GPU 0 split three ways.
A800_MIG_LAYOUT: tuple[tuple[str, int], ...] = (("2g.20gb", 3), ("2g.20gb", 5), ("2g.20gb", 6))

PROFILES: dict[str, BoardProfile] = {
    profile.key: profile for profile in (H100_SXM, H200, B200, GB200, GB300, GH200, A800)
}
