"""Architecture codes, SKU names and MIG profiles."""

import pynvml
import pytest

from wattledger.agent.gpu.sku import architecture_name, mig_slices, normalise_sku, parse_mig_profile


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (pynvml.NVML_DEVICE_ARCH_VOLTA, "volta"),
        (pynvml.NVML_DEVICE_ARCH_AMPERE, "ampere"),
        (pynvml.NVML_DEVICE_ARCH_ADA, "ada"),
        (pynvml.NVML_DEVICE_ARCH_HOPPER, "hopper"),
        (pynvml.NVML_DEVICE_ARCH_BLACKWELL, "blackwell"),
        (pynvml.NVML_DEVICE_ARCH_RUBIN, "rubin"),
        (pynvml.NVML_DEVICE_ARCH_UNKNOWN, "unknown"),
        (pynvml.NVML_DEVICE_ARCH_DLA, "unknown"),
        (14, "unknown"),
        (None, "unknown"),
    ],
)
def test_architecture_names(code, name):
    assert architecture_name(code) == name


@pytest.mark.parametrize(
    ("nvml_name", "sku"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 NVL", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB200", "GB200"),
        ("NVIDIA B300 SXM6 AC", "B300"),
        ("NVIDIA GB300", "GB300"),
        ("NVIDIA H20", "H20"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A800-SXM4-80GB", "A800"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L4", "L4"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla T4", "T4"),
        ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", "H100"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX PRO 6000 Blackwell Server Edition"),
        ("NVIDIA Graphics Device", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_sku_from_nvml_name(nvml_name, sku):
    assert normalise_sku(nvml_name) == sku


def test_superchip_names_are_not_their_discrete_parts():
    assert normalise_sku("NVIDIA GB200") != "B200"
    assert normalise_sku("NVIDIA GH200 480GB") != "H200"
    assert normalise_sku("NVIDIA GB300") != "B300"
    assert normalise_sku("NVIDIA H200") != "H20"


@pytest.mark.parametrize(
    ("profile", "gpu", "compute", "memory"),
    [
        ("1g.10gb", 1, 1, 10),
        ("2g.20gb", 2, 2, 20),
        ("3g.40gb", 3, 3, 40),
        ("7g.80gb", 7, 7, 80),
        ("1g.10gb+me", 1, 1, 10),
        ("1g.23gb+gfx", 1, 1, 23),
        ("1c.3g.40gb", 3, 1, 40),
        ("NVIDIA H100 80GB HBM3 MIG 2g.20gb", 2, 2, 20),
    ],
)
def test_mig_profiles(profile, gpu, compute, memory):
    parsed = parse_mig_profile(profile)

    assert (parsed.gpu_slices, parsed.compute_slices, parsed.memory_gb) == (gpu, compute, memory)
    assert mig_slices(profile) == gpu


def test_text_without_a_mig_profile():
    assert parse_mig_profile("NVIDIA H100 80GB HBM3") is None
    assert mig_slices(None) is None
