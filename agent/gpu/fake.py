"""A stand-in for the ``pynvml`` module, for tests, benchmarks and ``--fake-gpus`` demos.

It has the function names the agent's translation layer calls, raises pynvml's own exception
classes (``pynvml.NVMLError(15)`` is an ``NVMLError_GpuIsLost``) and returns pynvml's own ctypes
structures, so the agent code under test is the code that runs on a real node. Names it does not
fake (constants, structures, exception classes) are taken from the installed ``pynvml``.

Everything it reports follows from one clock and one :class:`PowerCurve` per GPU: the energy
counter is the exact integral of the curve (in mJ, ticking every ``counter_period_ms``), the power
reading is the curve's 1 s average (or its instantaneous value on boards that report that), and a
Grace module's readings are the sum of its GPUs' curves and the rest of the module. Faults are
scripted: unsupported calls, lost GPUs, a driver that is not loaded for the first N inits, a
missing library, calls that hang, driver reloads, and out-of-range power readings.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml

from wattledger.agent.gpu.boards import PROFILES, BoardProfile
from wattledger.agent.gpu.power_curve import PowerCurve
from wattledger.agent.gpu.sku import MigProfile, parse_mig_profile
from wattledger.errors import ConfigError

ERROR_UNINITIALIZED = 1
ERROR_NOT_SUPPORTED = 3
ERROR_NOT_FOUND = 6
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_GPU_IS_LOST = 15
ERROR_NO_DATA = 21

FI_TOTAL_ENERGY_CONSUMPTION = 83
FI_POWER_AVERAGE = 185
FI_POWER_INSTANT = 186
FI_POWER_MAX_LIMIT = 188
FI_ENERGY = 191
SCOPE_GPU = 0
SCOPE_MODULE = 1
VALUE_UNSIGNED_INT = 1
VALUE_UNSIGNED_LONG_LONG = 3
GPM_METRIC_GRAPHICS_UTIL = 1
NOT_AVAILABLE_U32 = 0xFFFFFFFF
UINT64 = 2**64  # the energy counter is a uint64 register and wraps like one
HANG_SAFETY_S = 60.0  # a scripted hang ends by itself after this long, so a test cannot wedge


class ManualClock:
    """Seconds that move only when told to."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.t = float(start_s)

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = float(t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeMig:
    """One MIG device: a GPU instance with one compute instance."""

    uuid: str
    profile: MigProfile
    gpu_instance_id: int
    compute_instance_id: int = 0
    activity: list[tuple[float, float]] = field(default_factory=lambda: [(-math.inf, 0.0)])

    def busy_seconds(self, t: float) -> float:
        """Integral of the activity fraction up to ``t`` (piecewise constant)."""
        total = 0.0
        for (start, level), (end, _) in zip(
            self.activity, [*self.activity[1:], (t, 0.0)], strict=True
        ):
            lo, hi = max(start, 0.0), min(end, t)
            if hi > lo:
                total += (hi - lo) * level
        return total


@dataclass
class FakeModule:
    """A Grace superchip: the GPUs on it and what the rest of the module draws."""

    gpus: list[FakeGpu]
    rest: PowerCurve
    limit_mw: int
    min_limit_mw: int

    def watts(self, t: float) -> float:
        return sum(gpu.power.watts(t) for gpu in self.gpus) + self.rest.watts(t)

    def joules(self, start_s: float, end_s: float) -> float:
        gpus = sum(gpu.power.joules(start_s, end_s) for gpu in self.gpus)
        return gpus + self.rest.joules(start_s, end_s)


@dataclass
class FakeGpu:
    profile: BoardProfile
    uuid: str
    serial: str
    power: PowerCurve
    initial_energy_mj: int
    module: FakeModule | None = None
    memory_used_bytes: int = 0
    utilization_pct: int | None = None  # None: follows power between idle and the limit
    mig: list[FakeMig] = field(default_factory=list)
    processes: list[tuple[int, int | None, int | None]] = field(default_factory=list)
    power_script: list[tuple[float, float, int]] = field(default_factory=list)


class _Handle:
    __slots__ = ("gpu", "mig")

    def __init__(self, gpu: FakeGpu, mig: FakeMig | None = None) -> None:
        self.gpu = gpu
        self.mig = mig

    def __repr__(self) -> str:
        return f"<fake handle {self.mig.uuid if self.mig else self.gpu.uuid}>"


@dataclass
class _Fault:
    code: int
    function: str | None
    uuid: str | None
    start_s: float
    end_s: float
    remaining: int | None


def _nvml(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a fake NVML function: count the call, then apply init state, hangs and faults."""
    name = function.__name__

    @functools.wraps(function)
    def wrapper(self: FakeNvml, *args: Any, **kwargs: Any) -> Any:
        self._enter(name, self._gpu_of(args))
        return function(self, *args, **kwargs)

    return wrapper


class FakeNvml:
    """A fake ``pynvml`` module for a node of GPUs; pass it wherever pynvml is expected."""

    SIMULATED = True  # read by the monitor so logs never call these GPUs real

    def __init__(
        self,
        boards: BoardProfile | Sequence[BoardProfile],
        count: int = 1,
        *,
        clock: Callable[[], float] | None = None,
        counter_period_ms: int = 100,
        driver_version: str = "580.105.08",
        uuid_seed: str = "",
    ) -> None:
        profiles = [boards] * count if isinstance(boards, BoardProfile) else list(boards)
        # A real UUID is unique in the world; fakes on different nodes must differ too.
        self._uuid_tag = (
            hashlib.sha256(uuid_seed.encode()).hexdigest()[:12] if uuid_seed else "0" * 12
        )
        self.clock: Callable[[], float] = clock or ManualClock()
        self.counter_period_ms = counter_period_ms
        self.driver_version = driver_version
        self.gpus: list[FakeGpu] = []
        self.calls: Counter[tuple[str, str | None]] = Counter()
        self.init_calls = 0
        self.library_missing = False
        self.driver_missing_inits = 0
        self._refcount = 0
        self._start_s = self.clock()
        self._reloads: list[float] = []
        self._faults: list[_Fault] = []
        self._hangs: dict[tuple[str, str | None], threading.Event] = {}
        self._gpm_samples: dict[int, tuple[Any, str, int, float, float]] = {}
        self._lock = threading.Lock()
        self._build(profiles)

    def _build(self, profiles: list[BoardProfile]) -> None:
        module_slots: dict[str, FakeModule] = {}
        for index, profile in enumerate(profiles):
            module_number = index // profile.gpus_per_module + 1
            serial_number = module_number if profile.gpus_per_module > 1 else index + 1
            gpu = FakeGpu(
                profile=profile,
                uuid=f"GPU-{index:08x}-{self._uuid_tag[:4]}-{self._uuid_tag[4:8]}-"
                f"{self._uuid_tag[8:12]}-{index:012x}",
                serial=f"1650000{serial_number:06d}",
                power=PowerCurve.constant(profile.idle_power_mw / 1000),
                initial_energy_mj=1_000_000_000 + 1_000_000 * index,
            )
            if profile.module_power_limit_mw is not None:
                module = module_slots.get(gpu.serial)
                if module is None:
                    rest = PowerCurve.constant((profile.module_rest_idle_mw or 0) / 1000)
                    module = FakeModule(
                        [],
                        rest,
                        profile.module_power_limit_mw,
                        profile.module_min_power_limit_mw or 0,
                    )
                    module_slots[gpu.serial] = module
                module.gpus.append(gpu)
                gpu.module = module
            self.gpus.append(gpu)

    # ------------------------------------------------------------ pass-through

    def __getattr__(self, name: str) -> Any:
        if name.startswith("nvml") and name != "nvmlStructToFriendlyObject":
            raise AttributeError(f"the fake NVML does not implement {name}")
        return getattr(pynvml, name)

    # ------------------------------------------------------------ test controls

    def gpu(self, which: int | str) -> FakeGpu:
        """A GPU by its current index or its UUID."""
        if isinstance(which, int):
            return self.gpus[which]
        for gpu in self.gpus:
            if gpu.uuid == which:
                return gpu
        raise KeyError(which)

    def set_power(self, which: int | str, curve: PowerCurve | float) -> None:
        gpu = self.gpu(which)
        gpu.power = curve if isinstance(curve, PowerCurve) else PowerCurve.constant(curve)

    def set_power_all(self, curve: PowerCurve | float) -> None:
        for index in range(len(self.gpus)):
            self.set_power(index, curve)

    def fail(
        self,
        code: int,
        function: str | None = None,
        gpu: int | str | None = None,
        *,
        start_s: float = -math.inf,
        end_s: float = math.inf,
        times: int | None = None,
    ) -> None:
        """Make ``function`` (every function if None) on ``gpu`` (every GPU if None) raise the
        NVML error ``code`` between ``start_s`` and ``end_s``, at most ``times`` times."""
        uuid = self.gpu(gpu).uuid if gpu is not None else None
        self._faults.append(_Fault(code, function, uuid, start_s, end_s, times))

    def not_supported(self, function: str, gpu: int | str | None = None) -> None:
        self.fail(ERROR_NOT_SUPPORTED, function, gpu)

    def lose_gpu(self, gpu: int | str, at_s: float, back_at_s: float = math.inf) -> None:
        """Every call on the GPU raises NVMLError_GpuIsLost from ``at_s`` until ``back_at_s``."""
        self.fail(ERROR_GPU_IS_LOST, None, gpu, start_s=at_s, end_s=back_at_s)

    def hang(self, function: str, gpu: int | str | None = None) -> threading.Event:
        """Make ``function`` block until the returned event is set."""
        release = threading.Event()
        uuid = self.gpu(gpu).uuid if gpu is not None else None
        self._hangs[(function, uuid)] = release
        return release

    def release_hangs(self) -> None:
        for event in self._hangs.values():
            event.set()
        self._hangs.clear()

    def reload_driver(self, at_s: float) -> None:
        """From ``at_s`` every energy counter counts again from zero."""
        self._reloads.append(at_s)
        self._reloads.sort()

    def script_power(
        self, which: int | str, milliwatts: int, start_s: float, end_s: float = math.inf
    ) -> None:
        """Make the power reading say ``milliwatts`` (out of range if you like) for a while."""
        self.gpu(which).power_script.append((start_s, end_s, milliwatts))

    def enable_mig(
        self,
        which: int | str,
        profiles: Sequence[str],
        gpu_instance_ids: Sequence[int] | None = None,
    ) -> list[FakeMig]:
        gpu = self.gpu(which)
        if not gpu.profile.mig_slices:
            raise ValueError(f"{gpu.profile.name} has no MIG")
        index = self.gpus.index(gpu)
        ids = list(gpu_instance_ids) if gpu_instance_ids else list(range(1, len(profiles) + 1))
        gpu.mig = []
        for slot, (text, gi) in enumerate(zip(profiles, ids, strict=True)):
            profile = parse_mig_profile(text)
            if profile is None:
                raise ValueError(f"not a MIG profile: {text!r}")
            uuid = f"MIG-{index:08x}-{slot:04x}-0000-0000-{slot:012x}"
            gpu.mig.append(FakeMig(uuid, profile, gi))
        return gpu.mig

    def set_mig_activity(self, mig_uuid: str, fraction: float) -> None:
        """From now on, the MIG instance is busy ``fraction`` of the time."""
        for gpu in self.gpus:
            for mig in gpu.mig:
                if mig.uuid == mig_uuid:
                    mig.activity.append((self.clock(), fraction))
                    return
        raise KeyError(mig_uuid)

    def set_processes(
        self, which: int | str, processes: Iterable[int | tuple[int, int | None, int | None]]
    ) -> None:
        """Compute processes on a GPU: PIDs, or (pid, gpu instance id, compute instance id)."""
        self.gpu(which).processes = [
            p if isinstance(p, tuple) else (p, None, None) for p in processes
        ]

    def reorder(self, uuids: Sequence[str]) -> None:
        """Enumerate the GPUs in another order (indices change across a reboot)."""
        self.gpus = [self.gpu(uuid) for uuid in uuids]

    # --------------------------------------------------------------- physics

    def energy_mj(self, gpu: FakeGpu, t: float | None = None) -> int:
        """What the GPU's total-energy counter says at ``t``."""
        t = self.clock() if t is None else t
        tick = self._tick(t)
        reload = self._last_reload(t)
        source = gpu.module if gpu.profile.counter_covers_module and gpu.module else gpu.power
        if reload is None:
            joules = source.joules(self._start_s, tick)
            return (gpu.initial_energy_mj + round(1000 * joules)) % UINT64
        return round(1000 * source.joules(reload, max(tick, reload))) % UINT64

    def module_energy_mj(self, gpu: FakeGpu, t: float | None = None) -> int:
        assert gpu.module is not None
        t = self.clock() if t is None else t
        tick = self._tick(t)
        reload = self._last_reload(t)
        first = gpu.module.gpus[0]
        if reload is None:
            joules = gpu.module.joules(self._start_s, tick)
            return first.initial_energy_mj * 2 + round(1000 * joules)
        return round(1000 * gpu.module.joules(reload, max(tick, reload)))

    def power_reading_mw(self, gpu: FakeGpu, t: float | None = None) -> int:
        """What nvmlDeviceGetPowerUsage says at ``t``."""
        t = self.clock() if t is None else t
        for start, end, milliwatts in gpu.power_script:
            if start <= t < end:
                return milliwatts
        if gpu.profile.averaged_power:
            return round(1000 * gpu.power.joules(t - 1.0, t))
        return round(1000 * gpu.power.watts(t))

    def _module_power_mw(self, gpu: FakeGpu, t: float) -> int:
        assert gpu.module is not None
        if gpu.profile.averaged_power:
            return round(1000 * gpu.module.joules(t - 1.0, t))
        return round(1000 * gpu.module.watts(t))

    def _tick(self, t: float) -> float:
        if self.counter_period_ms <= 0:
            return t
        period = self.counter_period_ms
        return math.floor(t * 1000 / period) * period / 1000

    def _last_reload(self, t: float) -> float | None:
        last = None
        for at in self._reloads:
            if at <= t:
                last = at
        return last

    # ----------------------------------------------------------- call gate

    def _gpu_of(self, args: tuple[Any, ...]) -> FakeGpu | None:
        """The GPU a call is about: from its handle, its UUID or its index."""
        if not args:
            return None
        first = args[0]
        if isinstance(first, _Handle):
            return first.gpu
        if isinstance(first, str):
            return next((gpu for gpu in self.gpus if gpu.uuid == first), None)
        if isinstance(first, int) and 0 <= first < len(self.gpus):
            return self.gpus[first]
        return None

    def _enter(self, name: str, gpu: FakeGpu | None) -> None:
        uuid = gpu.uuid if gpu is not None else None
        with self._lock:
            self.calls[(name, uuid)] += 1
        if self._refcount <= 0 and name not in ("nvmlInit", "nvmlInitWithFlags"):
            raise pynvml.NVMLError(ERROR_UNINITIALIZED)
        if self._hangs:
            release = self._hangs.get((name, uuid)) or self._hangs.get((name, None))
            if release is not None:
                release.wait(HANG_SAFETY_S)
        if self._faults:
            self._raise_scripted(name, uuid)

    def _raise_scripted(self, name: str, uuid: str | None) -> None:
        t = self.clock()
        for fault in self._faults:
            if fault.function is not None and fault.function != name:
                continue
            if fault.uuid is not None and fault.uuid != uuid:
                continue
            if not fault.start_s <= t < fault.end_s:
                continue
            if fault.remaining is not None:
                if fault.remaining <= 0:
                    continue
                fault.remaining -= 1
            raise pynvml.NVMLError(fault.code)

    # ----------------------------------------------------- library lifecycle

    @_nvml
    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.library_missing:
            raise pynvml.NVMLError(ERROR_LIBRARY_NOT_FOUND)
        if self.driver_missing_inits > 0:
            self.driver_missing_inits -= 1
            raise pynvml.NVMLError(ERROR_DRIVER_NOT_LOADED)
        self._refcount += 1

    @_nvml
    def nvmlShutdown(self) -> None:
        self._refcount -= 1

    @_nvml
    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver_version

    # -------------------------------------------------------------- devices

    @_nvml
    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    @_nvml
    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(self.gpus[index])

    @_nvml
    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return _Handle(gpu)
        raise pynvml.NVMLError(ERROR_NOT_FOUND)

    @_nvml
    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return handle.mig.uuid if handle.mig else handle.gpu.uuid

    @_nvml
    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        if handle.mig:
            return f"{handle.gpu.profile.name} MIG {handle.mig.profile.name}"
        return handle.gpu.profile.name

    @_nvml
    def nvmlDeviceGetSerial(self, handle: _Handle) -> str:
        return handle.gpu.serial

    @_nvml
    def nvmlDeviceGetIndex(self, handle: _Handle) -> int:
        return self.gpus.index(handle.gpu)

    @_nvml
    def nvmlDeviceGetArchitecture(self, handle: _Handle) -> int:
        return handle.gpu.profile.architecture

    # -------------------------------------------------------- power, energy

    @_nvml
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        self._parent_only(handle)
        if not handle.gpu.profile.energy_counter:
            raise pynvml.NVMLError(ERROR_NOT_SUPPORTED)
        return self.energy_mj(handle.gpu)

    @_nvml
    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        self._parent_only(handle)
        if not handle.gpu.profile.gpu_scope_power:
            raise pynvml.NVMLError(ERROR_NOT_SUPPORTED)
        return self.power_reading_mw(handle.gpu)

    @_nvml
    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: _Handle) -> list[int]:
        self._parent_only(handle)
        profile = handle.gpu.profile
        return [profile.min_power_limit_mw, profile.power_limit_mw]

    @_nvml
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        self._parent_only(handle)
        return handle.gpu.profile.power_limit_mw

    @_nvml
    def nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: Sequence[Any]) -> Any:
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        t = self.clock()
        for slot, requested in zip(values, field_ids, strict=True):
            field_id, scope = requested if isinstance(requested, tuple) else (requested, 0)
            slot.fieldId = field_id
            slot.scopeId = scope
            slot.timestamp = int(t * 1_000_000)
            slot.latencyUsec = 0
            reading = None if handle.mig else self._field(handle.gpu, field_id, scope, t)
            if reading is None:
                slot.nvmlReturn = ERROR_NOT_SUPPORTED
                continue
            value_type, value = reading
            slot.nvmlReturn = 0
            slot.valueType = value_type
            if value_type == VALUE_UNSIGNED_LONG_LONG:
                slot.value.ullVal = value
            else:
                slot.value.uiVal = value
        return values

    def _field(self, gpu: FakeGpu, field_id: int, scope: int, t: float) -> tuple[int, int] | None:
        profile = gpu.profile
        module = gpu.module
        if field_id == FI_TOTAL_ENERGY_CONSUMPTION and profile.energy_counter:
            return VALUE_UNSIGNED_LONG_LONG, self.energy_mj(gpu, t)
        if scope == SCOPE_MODULE:
            if module is None:
                return None
            if field_id == FI_ENERGY:
                return VALUE_UNSIGNED_LONG_LONG, self.module_energy_mj(gpu, t)
            if field_id in (FI_POWER_AVERAGE, FI_POWER_INSTANT):
                return VALUE_UNSIGNED_INT, self._module_power_mw(gpu, t)
            if field_id == FI_POWER_MAX_LIMIT:
                return VALUE_UNSIGNED_INT, module.limit_mw
            return None
        if scope != SCOPE_GPU or not profile.gpu_scope_power:
            return None
        if field_id == FI_ENERGY and profile.energy_counter:
            return VALUE_UNSIGNED_LONG_LONG, self.energy_mj(gpu, t)
        if field_id == FI_POWER_AVERAGE:
            return VALUE_UNSIGNED_INT, self.power_reading_mw(gpu, t)
        if field_id == FI_POWER_INSTANT:
            return VALUE_UNSIGNED_INT, round(1000 * gpu.power.watts(t))
        if field_id == FI_POWER_MAX_LIMIT:
            return VALUE_UNSIGNED_INT, profile.power_limit_mw
        return None

    # ------------------------------------------------- activity and memory

    @_nvml
    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        gpu = handle.gpu
        if handle.mig or gpu.mig:
            raise pynvml.NVMLError(ERROR_NOT_SUPPORTED)
        busy = gpu.utilization_pct
        if busy is None:
            profile = gpu.profile
            span = (profile.power_limit_mw - profile.idle_power_mw) / 1000
            above_idle = gpu.power.watts(self.clock()) - profile.idle_power_mw / 1000
            busy = round(min(max(above_idle / span, 0.0), 1.0) * 100)
        return pynvml.c_nvmlUtilization_t(gpu=busy, memory=busy // 2)

    @_nvml
    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> Any:
        gpu = handle.gpu
        if handle.mig:
            total = handle.mig.profile.memory_gb * 1000**3
            return pynvml.c_nvmlMemory_t(total=total, free=total, used=0)
        total = gpu.profile.memory_total_bytes
        used = gpu.memory_used_bytes
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    # ----------------------------------------------------------------- MIG

    @_nvml
    def nvmlDeviceGetMigMode(self, handle: _Handle) -> list[int]:
        if not handle.gpu.profile.mig_slices:
            raise pynvml.NVMLError(ERROR_NOT_SUPPORTED)
        mode = 1 if handle.gpu.mig else 0
        return [mode, mode]

    @_nvml
    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        return handle.gpu.profile.mig_slices

    @_nvml
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, index: int) -> _Handle:
        if not 0 <= index < len(handle.gpu.mig):
            raise pynvml.NVMLError(ERROR_NOT_FOUND)
        return _Handle(handle.gpu, handle.gpu.mig[index])

    @_nvml
    def nvmlDeviceGetGpuInstanceId(self, handle: _Handle) -> int:
        if handle.mig is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle.mig.gpu_instance_id

    @_nvml
    def nvmlDeviceGetComputeInstanceId(self, handle: _Handle) -> int:
        if handle.mig is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle.mig.compute_instance_id

    @_nvml
    def nvmlDeviceGetAttributes(self, handle: _Handle) -> Any:
        if handle.mig is None:
            raise pynvml.NVMLError(ERROR_NOT_SUPPORTED)
        profile = handle.mig.profile
        return pynvml.c_nvmlDeviceAttributes(
            gpuInstanceSliceCount=profile.gpu_slices,
            computeInstanceSliceCount=profile.compute_slices,
            memorySizeMB=profile.memory_gb * 1000,
        )

    # ----------------------------------------------------------------- GPM

    @_nvml
    def nvmlGpmQueryDeviceSupport(self, handle: _Handle) -> Any:
        support = pynvml.c_nvmlGpmSupport_t()
        support.version = pynvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = 1 if handle.gpu.profile.gpm else 0
        return support

    @_nvml
    def nvmlGpmSampleAlloc(self) -> Any:
        buffer = pynvml.struct_c_nvmlGpmSample_t()
        sample = ctypes.pointer(buffer)
        with self._lock:
            self._gpm_samples[ctypes.addressof(buffer)] = (buffer, "", -1, math.nan, math.nan)
        return sample

    @_nvml
    def nvmlGpmSampleFree(self, sample: Any) -> None:
        with self._lock:
            self._gpm_samples.pop(_address(sample), None)

    @_nvml
    def nvmlGpmMigSampleGet(self, handle: _Handle, gpu_instance_id: int, sample: Any) -> Any:
        gpu = handle.gpu
        if not gpu.profile.gpm:
            raise pynvml.NVMLError(ERROR_NOT_SUPPORTED)
        for mig in gpu.mig:
            if mig.gpu_instance_id == gpu_instance_id:
                t = self.clock()
                address = _address(sample)
                with self._lock:
                    buffer = self._gpm_samples[address][0]
                    self._gpm_samples[address] = (
                        buffer,
                        gpu.uuid,
                        gpu_instance_id,
                        t,
                        mig.busy_seconds(t),
                    )
                return sample
        raise pynvml.NVMLError(ERROR_NOT_FOUND)

    @_nvml
    def nvmlGpmMetricsGet(self, request: Any) -> Any:
        with self._lock:
            _, uuid1, gi1, t1, busy1 = self._gpm_samples[_address(request.sample1)]
            _, uuid2, gi2, t2, busy2 = self._gpm_samples[_address(request.sample2)]
        for i in range(request.numMetrics):
            metric = request.metrics[i]
            if metric.metricId != GPM_METRIC_GRAPHICS_UTIL or (uuid1, gi1) != (uuid2, gi2):
                metric.nvmlReturn = ERROR_NOT_SUPPORTED
            elif not t2 - t1 > 0:
                metric.nvmlReturn = ERROR_NO_DATA
            else:
                metric.nvmlReturn = 0
                metric.value = 100.0 * (busy2 - busy1) / (t2 - t1)
        return request

    # ------------------------------------------------------------ processes

    @_nvml
    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[Any]:
        out = []
        for pid, gi, ci in handle.gpu.processes:
            info = pynvml.c_nvmlProcessInfo_v3_t(
                pid=pid,
                usedGpuMemory=0,
                gpuInstanceId=NOT_AVAILABLE_U32 if gi is None else gi,
                computeInstanceId=NOT_AVAILABLE_U32 if ci is None else ci,
            )
            out.append(pynvml.nvmlStructToFriendlyObject(info))
        return out

    # ------------------------------------------------------------ internals

    @staticmethod
    def _parent_only(handle: _Handle) -> None:
        """Power, energy and limits exist only on the parent GPU, never on a MIG device."""
        if handle.mig is not None:
            raise pynvml.NVMLError(ERROR_NOT_SUPPORTED)


def _address(sample: Any) -> int:
    return ctypes.cast(sample, ctypes.c_void_p).value or 0


_SPEC_ITEM = re.compile(r"^\s*(?:(\d+)\s*[xX]\s*)?([A-Za-z0-9]+)\s*$")


def fake_from_spec(
    spec: str, *, clock: Callable[[], float] | None = None, node: str | None = None
) -> FakeNvml:
    """A fake node from a spec such as ``8xH100`` or ``4xGB200,2xB200``.

    With ``node``, the GPUs' UUIDs carry a tag derived from the node's name, so simulated
    nodes never share a GPU.
    """
    boards: list[BoardProfile] = []
    for item in spec.split(","):
        match = _SPEC_ITEM.match(item)
        key = match.group(2).upper() if match else ""
        if not match or key not in PROFILES:
            known = ", ".join(sorted(PROFILES))
            raise ConfigError(
                f"--fake-gpus {spec!r}: use COUNTxBOARD items separated by commas, "
                f"BOARD one of {known} (e.g. 8xH100)"
            )
        boards.extend([PROFILES[key]] * int(match.group(1) or 1))
    return FakeNvml(boards, clock=clock, uuid_seed=node or "")
