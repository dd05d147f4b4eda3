"""Names for what NVML reports as numbers and free text: architecture, SKU, MIG profile.

Prices are set per SKU, so the SKU must be stable across driver versions and board variants:
``NVIDIA H100 80GB HBM3`` and ``NVIDIA H100 NVL`` are both ``H100``. Superchip names contain the
name of a discrete part (``GB200`` contains ``B200``, ``GH200`` contains ``H200``), so matching is
done on whole words, longest name first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNKNOWN = "unknown"

# nvmlDeviceGetArchitecture codes (NVML_DEVICE_ARCH_*). Codes that are not GPU architectures
# (DLA, NPU) and codes newer than this table read as "unknown".
ARCHITECTURES: dict[int, str] = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
    13: "rubin",
}

# Whole-word SKU tokens, tried in this order. Superchips come before the discrete parts whose
# names they contain; "A10G" before "A10"; "L40S" before "L40".
_SKU_TOKENS = (
    "GB300",
    "GB200",
    "GH200",
    "B300",
    "B200",
    "B100",
    "H200",
    "H100",
    "H800",
    "H20",
    "A100",
    "A800",
    "A30",
    "A40",
    "A10G",
    "A10",
    "L40S",
    "L40",
    "L20",
    "L4",
    "V100",
    "P100",
    "T4",
)
_SKU_PATTERN = re.compile(r"(?<![A-Z0-9])(" + "|".join(_SKU_TOKENS) + r")(?![A-Z0-9])")
_VENDOR_PREFIX = re.compile(r"^(NVIDIA|Tesla)\s+", re.IGNORECASE)

# Superchips whose NVML total-energy counter covers the whole module (GPU and Grace CPU) rather
# than the GPU alone.
# Limitation: from one public report (Zeus, GH200); not checked on hardware here.
COUNTER_COVERS_MODULE = frozenset({"GH200"})

# Superchips with a Grace CPU, whose module power and energy are read apart from the GPU's.
GRACE_SUPERCHIPS = frozenset({"GH200", "GB200", "GB300"})

_MIG_PROFILE = re.compile(r"\b(?:(\d+)c\.)?(\d+)g\.(\d+)gb(?:\+[a-z0-9]+)*\b", re.IGNORECASE)


def architecture_name(code: int | None) -> str:
    """Lower-case architecture name for an ``nvmlDeviceGetArchitecture`` code."""
    if code is None:
        return UNKNOWN
    return ARCHITECTURES.get(code, UNKNOWN)


def normalise_sku(name: str | None) -> str:
    """Normalised SKU (``H100``, ``GB200`` ...) for an NVML device name.

    A name with no known SKU in it gives the name without its vendor prefix, so a new board can
    still be priced; a placeholder name (``NVIDIA Graphics Device``) gives ``unknown``.
    """
    if not name or not name.strip():
        return UNKNOWN
    match = _SKU_PATTERN.search(name.upper())
    if match:
        return match.group(1)

    bare = _VENDOR_PREFIX.sub("", " ".join(name.split()))
    if not bare or bare.lower() == "graphics device":
        return UNKNOWN
    return bare


@dataclass(frozen=True)
class MigProfile:
    """A MIG profile such as ``3g.40gb`` or ``1c.3g.40gb``."""

    name: str
    gpu_slices: int  # GPU-instance slices (the "3" of 3g.40gb), out of 7 on A100/H100/B200
    compute_slices: int  # compute-instance slices; equals gpu_slices unless "Nc." is given
    memory_gb: int


def parse_mig_profile(text: str | None) -> MigProfile | None:
    """Find a MIG profile in a profile name or a MIG device name, or None if there is none.

    ``NVIDIA H100 80GB HBM3 MIG 3g.40gb`` and ``3g.40gb`` both give 3 GPU slices.
    """
    if not text:
        return None
    match = _MIG_PROFILE.search(text)
    if not match:
        return None
    compute, gpu, memory = match.groups()
    gpu_slices = int(gpu)
    compute_slices = int(compute) if compute else gpu_slices
    return MigProfile(match.group(0).lower(), gpu_slices, compute_slices, int(memory))


def mig_slices(profile: str | None) -> int | None:
    """GPU-instance slice count of a MIG profile name (``2g.20gb`` gives 2), None if unparsable."""
    parsed = parse_mig_profile(profile)
    return parsed.gpu_slices if parsed else None
