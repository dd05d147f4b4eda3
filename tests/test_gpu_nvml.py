"""The NVML translation layer: error outcomes, no-library message, and the fake behind it."""

import re
from pathlib import Path

import pynvml
import pytest

from wattledger.agent.gpu import nvml as nvml_module
from wattledger.agent.gpu.boards import GB200, H100_SXM, PROFILES
from wattledger.agent.gpu.fake import FakeNvml, ManualClock, fake_from_spec
from wattledger.agent.gpu.nvml import (
    NO_LIBRARY_MESSAGE,
    DriverNotLoaded,
    GpuLost,
    NotSupported,
    Nvml,
    Transient,
    open_nvml,
)
from wattledger.agent.gpu.sku import architecture_name, normalise_sku
from wattledger.errors import ConfigError, NvmlUnavailable


@pytest.fixture
def h100():
    fake = FakeNvml(H100_SXM, 2)
    nvml = open_nvml(fake, call_timeout_s=None)
    yield fake, nvml, nvml.handle_by_index(0)
    nvml.close()


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (pynvml.NVML_ERROR_NOT_SUPPORTED, NotSupported),
        (pynvml.NVML_ERROR_NO_PERMISSION, NotSupported),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, NotSupported),
        (pynvml.NVML_ERROR_GPU_IS_LOST, GpuLost),
        (pynvml.NVML_ERROR_RESET_REQUIRED, GpuLost),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, GpuLost),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, DriverNotLoaded),
        (pynvml.NVML_ERROR_UNINITIALIZED, Transient),
        (pynvml.NVML_ERROR_TIMEOUT, Transient),
        (pynvml.NVML_ERROR_NO_DATA, Transient),
        (pynvml.NVML_ERROR_NOT_READY, Transient),
        (pynvml.NVML_ERROR_UNKNOWN, Transient),
        (4242, Transient),
    ],
)
def test_nvml_errors_map_to_a_few_outcomes(h100, code, outcome):
    fake, nvml, handle = h100
    fake.fail(code, "nvmlDeviceGetPowerUsage")

    with pytest.raises(outcome) as caught:
        nvml.power_mw(handle)

    assert caught.value.code == code
    assert isinstance(caught.value.__cause__, pynvml.NVMLError)


def test_the_fake_raises_pynvmls_own_classes(h100):
    fake, _, _ = h100
    lost, healthy = fake.nvmlDeviceGetHandleByIndex(0), fake.nvmlDeviceGetHandleByIndex(1)
    fake.lose_gpu(0, at_s=0)

    with pytest.raises(pynvml.NVMLError_GpuIsLost) as caught:
        fake.nvmlDeviceGetPowerUsage(lost)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetHandleByUUID(fake.gpus[0].uuid)

    assert caught.value.value == 15
    assert fake.nvmlDeviceGetPowerUsage(healthy) == 69_850


def test_binding_newer_than_the_driver_is_not_supported(h100, monkeypatch):
    fake, nvml, handle = h100

    def mismatch(_handle):
        raise pynvml.NVMLLibraryMismatchError("Unversioned function called")

    monkeypatch.setattr(fake, "nvmlDeviceGetComputeRunningProcesses", mismatch, raising=False)

    with pytest.raises(NotSupported):
        nvml.compute_processes(handle)


def test_no_library_is_one_clear_line():
    fake = FakeNvml(H100_SXM)
    fake.library_missing = True

    with pytest.raises(NvmlUnavailable) as caught:
        open_nvml(fake)

    assert str(caught.value) == NO_LIBRARY_MESSAGE
    assert "\n" not in str(caught.value)
    assert "libnvidia-ml.so.1" in str(caught.value) and "--fake-gpus" in str(caught.value)
    assert caught.value.exit_code == 3


def test_real_pynvml_on_a_machine_without_the_driver():
    try:
        nvml = open_nvml()
    except NvmlUnavailable as exc:
        assert str(exc) == NO_LIBRARY_MESSAGE
        return
    nvml.close()
    pytest.skip("this machine has an NVIDIA driver")


def test_missing_binding_package_is_one_clear_line(monkeypatch):
    def no_module(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(nvml_module.importlib, "import_module", no_module)

    with pytest.raises(NvmlUnavailable, match="nvidia-ml-py package is not installed"):
        open_nvml()


def test_driver_not_loaded_at_open_is_not_fatal():
    fake = FakeNvml(H100_SXM)
    fake.driver_missing_inits = 1

    nvml = open_nvml(fake)

    assert not nvml.initialised
    nvml.close()


def test_identity_limits_and_memory(h100):
    _, nvml, handle = h100

    assert nvml.name(handle) == "NVIDIA H100 80GB HBM3"
    assert nvml.uuid(handle) == "GPU-00000000-0000-0000-0000-000000000000"
    assert nvml.architecture(handle) == pynvml.NVML_DEVICE_ARCH_HOPPER
    assert nvml.power_limits_mw(handle) == (200_000, 700_000)
    assert nvml.memory_bytes(handle) == (0, 81_559 * 1024 * 1024)
    assert nvml.index(handle) == 0


def test_module_fields_come_back_per_field():
    fake = FakeNvml(GB200, 2)
    nvml = open_nvml(fake, call_timeout_s=None)
    handle = nvml.handle_by_index(0)

    energy, power, gpu_scope_junk = nvml.field_values(handle, [(191, 1), (185, 1), (999, 0)])

    assert energy == fake.module_energy_mj(fake.gpus[0])
    assert power == 467_170
    assert isinstance(gpu_scope_junk, NotSupported)


def test_mig_devices_skip_empty_slots_and_carry_their_slices():
    fake = FakeNvml(H100_SXM)
    fake.enable_mig(0, ["3g.40gb", "1c.3g.40gb"], gpu_instance_ids=[2, 1])
    nvml = open_nvml(fake, call_timeout_s=None)

    devices = nvml.mig_devices(nvml.handle_by_index(0))

    assert [(d.profile, d.gpu_instance_id, d.gpu_slices, d.compute_slices) for d in devices] == [
        ("3g.40gb", 2, 3, 3),
        ("1c.3g.40gb", 1, 3, 1),
    ]
    assert fake.calls[("nvmlDeviceGetMigDeviceHandleByIndex", fake.gpus[0].uuid)] == 7


def test_every_nvml_function_the_layer_calls_exists_in_pynvml_and_the_fake():
    source = Path(nvml_module.__file__).read_text()
    used = set(re.findall(r"\.lib\.(nvml\w+)", source))

    assert len(used) >= 25
    assert sorted(n for n in used if not callable(getattr(pynvml, n, None))) == []
    assert sorted(n for n in used if n not in FakeNvml.__dict__) == []


def test_fake_energy_counter_is_the_integral_of_its_power():
    clock = ManualClock()
    fake = FakeNvml(H100_SXM, clock=clock)
    gpu = fake.gpus[0]
    fake.set_power(0, 600.0)

    at_zero = fake.energy_mj(gpu)
    clock.set(3600)

    assert fake.energy_mj(gpu) - at_zero == 2_160_000_000
    assert fake.energy_mj(gpu, 3600.05) == fake.energy_mj(gpu, 3600.0)  # ticks every 100 ms


def test_fake_from_spec():
    fake = fake_from_spec("4xGB200, 2xB200,h100")

    assert [g.profile.key for g in fake.gpus] == ["GB200"] * 4 + ["B200"] * 2 + ["H100"]


def test_fake_spec_errors_name_the_flag_and_the_fix():
    with pytest.raises(ConfigError) as caught:
        fake_from_spec("8xQ900")

    message = str(caught.value)
    assert message.startswith("--fake-gpus '8xQ900'") and "e.g. 8xH100" in message
    assert "\n" not in message


def test_nvml_needs_a_pynvml_like_module():
    with pytest.raises(AttributeError):
        Nvml(object())


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_fake_board_names_its_own_sku_and_architecture(profile):
    fake = FakeNvml(profile)
    nvml = open_nvml(fake, call_timeout_s=None)
    handle = nvml.handle_by_index(0)

    assert normalise_sku(nvml.name(handle)) == profile.key
    assert architecture_name(nvml.architecture(handle)) in ("ampere", "hopper", "blackwell")
    assert nvml.power_limits_mw(handle)[1] == profile.power_limit_mw
    nvml.close()
