"""One physical GPU: what is learnt about it when it is opened, and what one read returns.

``probe_gpu`` and ``read_gpu`` run on the NVML worker thread (see :mod:`.worker`); they only call
NVML and fill plain objects, and never touch the monitor's accounting, so a call that hangs and
returns much later cannot corrupt anything.

Capabilities are probed once, when a GPU is first seen: a metric that answers ``NotSupported`` is
switched off for good and named in ``Probe.unsupported`` so the monitor can log it once. A metric
that fails transiently while probing is assumed present and tried again each cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wattledger.agent.gpu.nvml import (
    FI_ENERGY,
    FI_POWER_AVERAGE,
    FI_POWER_MAX_LIMIT,
    SCOPE_MODULE,
    MigDevice,
    NotSupported,
    Nvml,
    NvmlFailure,
    Transient,
)
from wattledger.agent.gpu.sku import (
    COUNTER_COVERS_MODULE,
    GRACE_SUPERCHIPS,
    architecture_name,
    normalise_sku,
)

METRIC_ENERGY_COUNTER = "energy counter"
METRIC_POWER = "power"
METRIC_UTILIZATION = "utilization"
METRIC_MEMORY = "memory"
METRIC_MODULE_ENERGY = "module energy"
METRIC_MODULE_POWER = "module power"
METRIC_GPM = "GPM activity"
METRIC_MIG = "MIG layout"


@dataclass
class Capabilities:
    """Which optional readings this GPU gives; ``utilization`` is None until probed outside MIG."""

    energy_counter: bool = True
    power: bool = True
    utilization: bool | None = None
    memory: bool = True
    module_energy: bool = False
    module_power: bool = False
    gpm: bool = False


@dataclass
class GpuDevice:
    """What the agent knows about one GPU between sampling cycles."""

    uuid: str
    index: int
    handle: Any
    name: str
    sku: str
    architecture: str
    serial: str | None
    caps: Capabilities
    power_limit_mw: int | None
    module_power_limit_mw: int | None
    power_scope: str  # "gpu", or "module" where the energy counter covers the Grace module
    mig: list[MigDevice] = field(default_factory=list)
    module_id: str | None = None  # shared by the GPUs of one Grace superchip
    module_leader: bool = False  # the one GPU of its module that reads the module
    gpm_last: dict[int, Any] = field(default_factory=dict)  # last GPM sample per GPU instance


@dataclass
class Probe:
    device: GpuDevice
    unsupported: list[str]


@dataclass
class RawSample:
    """The raw numbers of one read, in NVML's units; None where absent this cycle."""

    energy_mj: int | None = None
    power_mw: int | None = None
    module_energy_mj: int | None = None
    module_power_mw: int | None = None
    utilization_pct: int | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    mig_activity_pct: dict[int, float] | None = None
    mig: list[MigDevice] | None = None  # set when the MIG layout was read again
    unsupported: list[str] = field(default_factory=list)  # metrics that just said NotSupported
    gaps: list[str] = field(default_factory=list)  # metrics skipped by a transient failure


def probe_gpu(nvml: Nvml, handle: Any, index: int, caps: Capabilities | None = None) -> Probe:
    """Identify a GPU and, unless ``caps`` is given from an earlier probe, find its capabilities.

    Raises GpuLost or DriverNotLoaded; everything else is folded into the result.
    """
    name = nvml.name(handle)
    sku = normalise_sku(name)
    serial = nvml.serial(handle)
    mig = _mig_layout(nvml, handle)
    unsupported: list[str] = []

    power_limit = _try(nvml.power_limits_mw, handle)
    power_limit_mw = power_limit[1] if power_limit else _try(nvml.enforced_limit_mw, handle)
    module_limit_mw = None
    if sku in GRACE_SUPERCHIPS:
        (limit,) = _try(nvml.field_values, handle, [(FI_POWER_MAX_LIMIT, SCOPE_MODULE)]) or [None]
        module_limit_mw = int(limit) if isinstance(limit, int | float) else None

    if caps is None:
        caps = _probe_capabilities(nvml, handle, sku, bool(mig), unsupported)
    uuid = nvml.uuid(handle)
    device = GpuDevice(
        uuid=uuid,
        index=index,
        handle=handle,
        name=name,
        sku=sku,
        architecture=architecture_name(nvml.architecture(handle)),
        serial=serial,
        caps=caps,
        power_limit_mw=power_limit_mw,
        module_power_limit_mw=module_limit_mw,
        power_scope="module" if sku in COUNTER_COVERS_MODULE else "gpu",
        mig=mig,
        module_id=_module_id(sku, serial, uuid),
    )
    return Probe(device, unsupported)


def _module_id(sku: str, serial: str | None, uuid: str) -> str | None:
    """The Grace module a GPU sits on: the two GPUs of a GB200/GB300 module share a serial.

    Limitation: without a serial each GPU counts as its own module, so a two-GPU module's energy
    would be reported twice.
    """
    if sku not in GRACE_SUPERCHIPS or sku in COUNTER_COVERS_MODULE:
        return None
    return serial or uuid


def _probe_capabilities(
    nvml: Nvml, handle: Any, sku: str, mig_enabled: bool, unsupported: list[str]
) -> Capabilities:
    def works(metric: str, function: Any, *args: Any) -> bool:
        try:
            function(*args)
        except NotSupported:
            unsupported.append(metric)
            return False
        except Transient:
            return True
        return True

    caps = Capabilities(
        energy_counter=works(METRIC_ENERGY_COUNTER, nvml.energy_mj, handle),
        power=works(METRIC_POWER, nvml.power_mw, handle),
        memory=works(METRIC_MEMORY, nvml.memory_bytes, handle),
        gpm=nvml.gpm_supported(handle),
    )
    if not mig_enabled:
        caps.utilization = works(METRIC_UTILIZATION, nvml.utilization_pct, handle)

    if sku in GRACE_SUPERCHIPS:
        fields = _try(nvml.field_values, handle, _module_fields(True, True)) or [None, None]
        caps.module_energy = isinstance(fields[0], int | float)
        caps.module_power = isinstance(fields[1], int | float)
        if not caps.module_energy:
            unsupported.append(METRIC_MODULE_ENERGY)
        if not caps.module_power:
            unsupported.append(METRIC_MODULE_POWER)
    return caps


def read_gpu(nvml: Nvml, device: GpuDevice, *, refresh_mig: bool = False) -> RawSample:
    """Read everything this GPU supports once. Raises GpuLost or DriverNotLoaded."""
    raw = RawSample()
    handle = device.handle
    caps = device.caps

    if caps.energy_counter:
        raw.energy_mj = _metric(raw, METRIC_ENERGY_COUNTER, nvml.energy_mj, handle)
    if caps.power:
        raw.power_mw = _metric(raw, METRIC_POWER, nvml.power_mw, handle)
    if device.module_leader or device.power_scope == "module":
        _read_module(nvml, device, raw)

    if refresh_mig:
        raw.mig = _metric(raw, METRIC_MIG, _mig_layout, nvml, handle)
    mig = raw.mig if raw.mig is not None else device.mig
    if not mig and caps.utilization is not False:
        raw.utilization_pct = _metric(raw, METRIC_UTILIZATION, nvml.utilization_pct, handle)
    if caps.memory:
        memory = _metric(raw, METRIC_MEMORY, nvml.memory_bytes, handle)
        if memory is not None:
            raw.memory_used_bytes, raw.memory_total_bytes = memory
    if mig and caps.gpm:
        raw.mig_activity_pct = _metric(raw, METRIC_GPM, _mig_activity, nvml, device, mig)
    return raw


def _read_module(nvml: Nvml, device: GpuDevice, raw: RawSample) -> None:
    """Module energy (leader only; where the counter is the module it is read already) and power."""
    caps = device.caps
    want_energy = caps.module_energy and device.module_leader
    want_power = caps.module_power
    fields = _module_fields(want_energy, want_power)
    if not fields:
        return
    values = _metric(raw, METRIC_MODULE_POWER, nvml.field_values, device.handle, fields)
    if values is None:
        return
    metrics = ([METRIC_MODULE_ENERGY] if want_energy else []) + (
        [METRIC_MODULE_POWER] if want_power else []
    )
    for metric, value in zip(metrics, values, strict=True):
        if isinstance(value, NotSupported):
            raw.unsupported.append(metric)
        elif isinstance(value, NvmlFailure):
            raw.gaps.append(metric)
        elif metric == METRIC_MODULE_ENERGY:
            raw.module_energy_mj = int(value)
        else:
            raw.module_power_mw = int(value)


def _module_fields(energy: bool, power: bool) -> list[tuple[int, int]]:
    fields = []
    if energy:
        fields.append((FI_ENERGY, SCOPE_MODULE))
    if power:
        fields.append((FI_POWER_AVERAGE, SCOPE_MODULE))
    return fields


def _mig_layout(nvml: Nvml, handle: Any) -> list[MigDevice]:
    return nvml.mig_devices(handle) if nvml.mig_enabled(handle) else []


def _mig_activity(nvml: Nvml, device: GpuDevice, mig: list[MigDevice]) -> dict[int, float] | None:
    """GPM activity per GPU instance since the previous cycle; None on the first cycle.

    Limitation: GPM needs its two samples more than 100 ms apart; polling faster than that gives
    NVML's error for the metric and the share falls back to slices for that cycle.
    """
    activity: dict[int, float] = {}
    complete = True
    instances = sorted({m.gpu_instance_id for m in mig})
    for gone in set(device.gpm_last) - set(instances):
        nvml.gpm_free(device.gpm_last.pop(gone))
    for gpu_instance_id in instances:
        sample = nvml.gpm_mig_sample(device.handle, gpu_instance_id)
        earlier = device.gpm_last.pop(gpu_instance_id, None)
        device.gpm_last[gpu_instance_id] = sample
        if earlier is None:
            complete = False
            continue
        try:
            activity[gpu_instance_id] = nvml.gpm_graphics_util_pct(earlier, sample)
        except Transient:
            complete = False
        finally:
            nvml.gpm_free(earlier)
    return activity if complete else None


def release_gpm(nvml: Nvml, device: GpuDevice) -> None:
    for sample in device.gpm_last.values():
        nvml.gpm_free(sample)
    device.gpm_last.clear()


def _metric(raw: RawSample, metric: str, function: Any, *args: Any) -> Any:
    """Call a reading; NotSupported and transient failures leave it None and say so in ``raw``."""
    try:
        return function(*args)
    except NotSupported:
        raw.unsupported.append(metric)
    except Transient:
        raw.gaps.append(metric)
    return None


def _try(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except (NotSupported, Transient):
        return None
