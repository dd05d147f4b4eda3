"""Every number the simulated fleet runs on, each with where it comes from.

Power and idle draw come from real ``nvidia-smi`` captures (the fake NVML's board profiles) and the
load figures quoted in the project's NVML notes; prices from the SemiAnalysis TCO tiers that
InferenceX publishes; throughput from NVIDIA's published claims. Where no published figure exists
the value is an assumption and its source string says so, starting with ``ASSUMED`` (or
``DERIVED`` where it is arithmetic on published figures). The demo prints this table whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wattledger.agent.gpu.boards import B200, GB200, H100_SXM, H200, BoardProfile
from wattledger.cli.reports.price_files import example_tiers

logger = logging.getLogger(__name__)

NVML_NOTES = "wattledger NVML reference notes, section 4"

GPT_OSS = "openai/gpt-oss-120b"
DEEPSEEK_R1 = "deepseek-ai/DeepSeek-R1"

EXAMPLE_TIERS = example_tiers()
TIERS = ("hyperscaler", "neocloud", "rental")
TIER_NAMES = {
    "hyperscaler": "Hyperscaler, owned, 4-year life",
    "neocloud": "Neocloud giant, owned, 4-year life",
    "rental": "3-year rental, 25% upfront",
}

# Share of the board power limit drawn under gpu-burn on Hopper (629 of 700 W on H100, 627 of
# 700 W on H200), rounded and applied to Blackwell boards for which no loaded capture exists.
LOADED_SHARE_OF_LIMIT = 0.9


@dataclass(frozen=True)
class Figure:
    """One number and its provenance."""

    what: str
    value: float
    unit: str
    source: str

    @property
    def assumed(self) -> bool:
        return self.source.startswith(("ASSUMED", "DERIVED"))


@dataclass(frozen=True)
class BoardFigures:
    """What one GPU SKU draws and costs."""

    sku: str
    board: BoardProfile
    idle_w: Figure
    loaded_w: Figure
    usd_per_gpu_hour: dict[str, Figure]

    def watts(self, load_pct: int) -> float:
        """Draw at ``load_pct`` percent of full load: linear between idle and loaded."""
        return self.idle_w.value + load_pct / 100 * (self.loaded_w.value - self.idle_w.value)


def _idle(board: BoardProfile, observed: str) -> Figure:
    return Figure(f"{board.key} idle draw", board.idle_power_mw / 1000, "W", observed)


def _prices(sku: str) -> dict[str, Figure]:
    """The SKU's price in each tier of the shipped example catalogue (the published tiers)."""
    return {
        tier: Figure(
            f"{sku} price, {TIER_NAMES[tier]}",
            float(EXAMPLE_TIERS[tier][sku]),
            "USD/GPU-h",
            "SemiAnalysis AI Cloud TCO model as published by InferenceX (InferenceX-app "
            "GPU_SPECS); the same tiers as 'wattledger price examples'",
        )
        for tier in TIERS
    }


def _assumed_loaded(board: BoardProfile) -> Figure:
    limit_w = board.power_limit_mw / 1000
    return Figure(
        f"{board.key} draw at full load",
        round(LOADED_SHARE_OF_LIMIT * limit_w, 3),
        "W",
        f"ASSUMED: {LOADED_SHARE_OF_LIMIT:.0%} of the {limit_w:.0f} W board limit, the share "
        "gpu-burn draws on H100 and H200; no Blackwell capture under load",
    )


BOARDS: dict[str, BoardFigures] = {
    "H100": BoardFigures(
        "H100",
        H100_SXM,
        _idle(
            H100_SXM,
            "nvidia-smi capture of an idle H100 SXM, driver 590.48.01 "
            "(utkuozdemir/nvidia_gpu_exporter captures)",
        ),
        Figure(
            "H100 draw at full load",
            629.45,
            "W",
            "the same H100 SXM capture under gpu-burn (average power.draw)",
        ),
        _prices("H100"),
    ),
    "H200": BoardFigures(
        "H200",
        H200,
        _idle(H200, f"nvidia-smi readings of an idle H200, about 78 W ({NVML_NOTES})"),
        Figure("H200 draw at full load", 627.0, "W", f"H200 under gpu-burn ({NVML_NOTES})"),
        _prices("H200"),
    ),
    "B200": BoardFigures(
        "B200",
        B200,
        _idle(
            B200,
            "nvidia-smi -q -x of an idle 8x B200 node (195-206 W), driver 580.105.08 "
            "(NVIDIA/k8s-test-infra test data)",
        ),
        _assumed_loaded(B200),
        _prices("B200"),
    ),
    "GB200": BoardFigures(
        "GB200",
        GB200,
        _idle(
            GB200,
            "nvidia-smi -q -x of an idle 4x GB200 tray (156-172 W per GPU), driver "
            "580.173.02 (NVIDIA/k8s-test-infra test data)",
        ),
        _assumed_loaded(GB200),
        _prices("GB200"),
    ),
}

POWER_CURVE = Figure(
    "Draw between idle and full load",
    0,
    "",
    "ASSUMED: linear in load (idle + load x (full - idle)); gpu-burn is a stress load, so real "
    "inference at full batch may draw somewhat less",
)

# Throughput: published figures read as total tokens (input + output) per GPU at full load.
B200_GPT_OSS_USD_PER_MTOK = 0.02
BLACKWELL_VS_HOPPER_GPT_OSS = 15
GB300_R1_TOKENS_PER_GPU_S = 6_000
GB200_SHARE_OF_GB300 = 2 / 3


def _tokens_per_s(usd_per_gpu_hour: float, usd_per_mtok: float) -> int:
    """Throughput implied by a price per GPU-hour and a cost per million tokens."""
    return int(usd_per_gpu_hour / (usd_per_mtok * 3600 / 1e6))


def _throughput() -> dict[tuple[str, str], Figure]:
    b200_rate = BOARDS["B200"].usd_per_gpu_hour["hyperscaler"].value
    h100_rate = BOARDS["H100"].usd_per_gpu_hour["hyperscaler"].value
    hopper_usd_per_mtok = B200_GPT_OSS_USD_PER_MTOK * BLACKWELL_VS_HOPPER_GPT_OSS
    return {
        ("H100", GPT_OSS): Figure(
            "gpt-oss-120b on H100",
            _tokens_per_s(h100_rate, hopper_usd_per_mtok),
            "tok/s/GPU",
            f"DERIVED: NVIDIA's '15x lower cost per million tokens than Hopper' for gpt-oss-120b "
            f"puts Hopper at {hopper_usd_per_mtok:.2f} USD/Mtok; at the H100 hyperscaler price "
            f"{h100_rate:.2f} USD/GPU-h that is {h100_rate} / "
            f"({hopper_usd_per_mtok:.2f} x 3600 / 1e6) "
            f"({NVML_NOTES})",
        ),
        ("B200", GPT_OSS): Figure(
            "gpt-oss-120b on B200",
            _tokens_per_s(b200_rate, B200_GPT_OSS_USD_PER_MTOK),
            "tok/s/GPU",
            f"DERIVED: NVIDIA's 'two cents per million tokens' on B200 (TensorRT-LLM, FP4) at the "
            f"B200 hyperscaler price: {b200_rate} / (0.02 x 3600 / 1e6) ({NVML_NOTES})",
        ),
        ("H200", DEEPSEEK_R1): Figure(
            "DeepSeek-R1 on H200",
            90,
            "tok/s/GPU",
            f"NVIDIA blog, DeepSeek-R1 on HGX H200: 90 tok/s/GPU at 1.41 USD/GPU-h ({NVML_NOTES})",
        ),
        ("GB200", DEEPSEEK_R1): Figure(
            "DeepSeek-R1 on GB200",
            round(GB300_R1_TOKENS_PER_GPU_S * GB200_SHARE_OF_GB300),
            "tok/s/GPU",
            "ASSUMED: two-thirds of NVIDIA's GB300 NVL72 figure (6,000 tok/s/GPU, FP4 + MTP, same "
            f"blog); no published GB200 figure in the references ({NVML_NOTES})",
        ),
    }


THROUGHPUT: dict[tuple[str, str], Figure] = _throughput()

# How tokens and requests are shaped; all assumptions.
INPUT_SHARE = Figure(
    "Input share of the tokens",
    0.5,
    "",
    "ASSUMED: the published tok/s/GPU are read as input + output tokens at 1k in / 1k out "
    "(InferenceX's 1k/1k runs), so half are input",
)
OUTPUT_TOKENS_PER_REQUEST = Figure(
    "Output tokens per request",
    1_000,
    "tok",
    "ASSUMED: 1k/1k requests, as above",
)
CACHED_SHARE_OF_INPUT = Figure(
    "Prompt tokens from the prefix cache",
    0.2,
    "of input",
    "ASSUMED: one prompt token in five",
)
PREFILL_S_PER_REQUEST = Figure(
    "Prefill time per request",
    0.25,
    "s",
    "ASSUMED: a 1k-token prompt",
)
DECODE_TOKENS_PER_USER_S = Figure(
    "Decode speed per request",
    55,
    "tok/s/user",
    f"NVIDIA's gpt-oss-120b on B200 runs at about 55 tok/s/user ({NVML_NOTES}); ASSUMED for "
    "every deployment",
)
USD_PER_KWH = Figure(
    "Electricity price",
    0.08,
    "USD/kWh",
    "ASSUMED: about the US industrial average (EIA Electric Power Monthly, table 5.6)",
)
PUE = Figure(
    "PUE",
    1.58,
    "",
    "Uptime Institute industry average PUE for 2023 (Global Data Center Survey)",
)
# Limitation: the TCO tiers include power, and the demo adds metered energy on top by default.
TCO_NOTE = (
    "The SemiAnalysis TCO tiers already include power, so metered energy at the electricity price "
    "counts power twice; rerun with --usd-per-kwh 0 to leave it out."
)


def figures_table(tier: str, usd_per_kwh: float, pue: float) -> list[Figure]:
    """Every figure the run uses, in the order the demo prints them."""
    rows: list[Figure] = []
    for board in BOARDS.values():
        rows += [board.idle_w, board.loaded_w, board.usd_per_gpu_hour[tier]]
    rows.append(POWER_CURVE)
    rows += list(THROUGHPUT.values())
    rows += [
        INPUT_SHARE,
        OUTPUT_TOKENS_PER_REQUEST,
        CACHED_SHARE_OF_INPUT,
        PREFILL_S_PER_REQUEST,
        DECODE_TOKENS_PER_USER_S,
    ]
    rows.append(_given(USD_PER_KWH, usd_per_kwh))
    rows.append(_given(PUE, pue))
    return rows


def _given(figure: Figure, value: float) -> Figure:
    """The figure, or the value given on the command line in its place."""
    if value == figure.value:
        return figure
    return Figure(figure.what, value, figure.unit, "given on the command line")
