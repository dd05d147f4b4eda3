"""The one place the agent talks to NVML.

Every call goes through :class:`Nvml`, which turns pynvml's thirty-odd error classes into the few
outcomes the agent acts on:

============================  ============================================================
:class:`NotSupported`         not on this board or in this mode: probed once, cached, logged once
:class:`GpuLost`              the GPU fell off the bus or needs a reset: isolate it, re-open later
:class:`DriverNotLoaded`      the library is there but the kernel driver is not: retry with backoff
:class:`Transient`            anything else: skip this sample and record a gap
``NvmlUnavailable``           no ``libnvidia-ml.so.1`` at all: one clear line, no traceback
============================  ============================================================

Units stay in the names (``_mw``, ``_mj``) until the monitor converts them. The pynvml module is
an argument, so tests and the demo pass :mod:`wattledger.agent.gpu.fake` instead.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from wattledger.agent.gpu.sku import parse_mig_profile
from wattledger.agent.gpu.worker import CallWorker
from wattledger.errors import NvmlUnavailable

logger = logging.getLogger(__name__)

NO_LIBRARY_MESSAGE = (
    "NVML not available: no NVIDIA driver found (libnvidia-ml.so.1); "
    "install the driver or run with --fake-gpus"
)
NO_BINDINGS_MESSAGE = (
    "NVML not available: the nvidia-ml-py package is not installed; "
    "pip install nvidia-ml-py or run with --fake-gpus"
)

# NVML return codes (nvml.h), kept here so the mapping does not depend on the binding's version.
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_RESET_REQUIRED = 16
ERROR_LIB_RM_VERSION_MISMATCH = 18
ERROR_ARGUMENT_VERSION_MISMATCH = 25
ERROR_DEPRECATED = 26
ERROR_GPU_NOT_FOUND = 28

# Field ids and scopes for nvmlDeviceGetFieldValues.
FI_POWER_AVERAGE = 185  # mW
FI_POWER_INSTANT = 186  # mW
FI_POWER_MAX_LIMIT = 188  # mW
FI_ENERGY = 191  # mJ, takes a scope
SCOPE_GPU = 0
SCOPE_MODULE = 1  # GPU and Grace CPU on GH200 / GB200 / GB300

GPM_METRIC_GRAPHICS_UTIL = 1  # % of time any compute or graphics work ran
GPM_METRICS_GET_VERSION = 1
MIG_ENABLED = 1
NOT_AVAILABLE_U32 = 0xFFFFFFFF

_VALUE_FIELDS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")


class NvmlFailure(Exception):
    """An NVML call failed; the subclass says what the agent does about it."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotSupported(NvmlFailure):
    """The metric does not exist on this board, in this mode, or with this driver."""


class GpuLost(NvmlFailure):
    """The GPU is gone (Xid 79), needs a reset, or the driver changed under the library."""


class DriverNotLoaded(NvmlFailure):
    """The NVML library loaded but the kernel driver is not there (yet)."""


class Transient(NvmlFailure):
    """A failure worth no more than a skipped sample."""


class CallTimedOut(Transient):
    """The call did not return in time; the GPU it was for is suspect."""


_NOT_SUPPORTED_CODES = frozenset(
    {
        ERROR_INVALID_ARGUMENT,
        ERROR_NOT_SUPPORTED,
        ERROR_NO_PERMISSION,
        ERROR_FUNCTION_NOT_FOUND,
        ERROR_ARGUMENT_VERSION_MISMATCH,
        ERROR_DEPRECATED,
    }
)
_LOST_CODES = frozenset(
    {ERROR_GPU_IS_LOST, ERROR_RESET_REQUIRED, ERROR_LIB_RM_VERSION_MISMATCH, ERROR_GPU_NOT_FOUND}
)


def failure_for_code(code: int, detail: str = "") -> Exception:
    """The agent's exception for an NVML return code."""
    message = f"NVML error {code}{': ' + detail if detail else ''}"
    if code == ERROR_LIBRARY_NOT_FOUND:
        return NvmlUnavailable(NO_LIBRARY_MESSAGE)
    if code in _NOT_SUPPORTED_CODES:
        return NotSupported(message, code)
    if code in _LOST_CODES:
        return GpuLost(message, code)
    if code == ERROR_DRIVER_NOT_LOADED:
        return DriverNotLoaded(message, code)
    return Transient(message, code)


@dataclass(frozen=True)
class MigDevice:
    """One MIG device (a compute instance inside a GPU instance) of a parent GPU."""

    handle: Any
    uuid: str
    name: str
    profile: str
    gpu_instance_id: int
    compute_instance_id: int
    gpu_slices: int
    compute_slices: int


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    gpu_instance_id: int | None  # None when the GPU is not in MIG mode
    compute_instance_id: int | None


class Nvml:
    """pynvml behind one translation layer, its calls run under a timeout."""

    def __init__(self, lib: Any, *, call_timeout_s: float | None = 2.0) -> None:
        self.lib = lib
        self.worker = CallWorker(call_timeout_s)
        self.initialised = False
        mismatch = getattr(lib, "NVMLLibraryMismatchError", None)
        self._errors: tuple[type[BaseException], ...] = (lib.NVMLError,) + (
            (mismatch,) if isinstance(mismatch, type) else ()
        )

    # ----------------------------------------------------------------- plumbing

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except self._errors as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: BaseException) -> Exception:
        code = getattr(exc, "value", None)
        if not isinstance(code, int):
            return NotSupported(f"NVML binding and driver disagree: {exc}")
        return failure_for_code(code, _error_text(exc))

    def run(self, steps: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run steps on the worker thread (see :class:`CallWorker.run`)."""
        return self.worker.run(steps)

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run one translated call on the worker; a hang raises :class:`CallTimedOut`."""
        try:
            return self.worker.call(function, *args)
        except TimeoutError as exc:
            raise CallTimedOut(str(exc)) from exc

    # ---------------------------------------------------------------- lifecycle

    def init(self) -> None:
        """Start NVML. Raises NvmlUnavailable, DriverNotLoaded or Transient."""
        self._call(self.lib.nvmlInit)
        self.initialised = True

    def shutdown(self) -> None:
        if self.initialised:
            self.initialised = False
            self._call(self.lib.nvmlShutdown)

    def close(self) -> None:
        """Shut NVML down (under the timeout) and stop the worker; never raises."""
        try:
            if self.initialised:
                self.call(self.shutdown)
        except (NvmlFailure, NvmlUnavailable) as exc:
            logger.debug("NVML shutdown failed: %s", exc)
        self.worker.close()

    def driver_version(self) -> str | None:
        try:
            return _text(self._call(self.lib.nvmlSystemGetDriverVersion))
        except NvmlFailure:
            return None

    # -------------------------------------------------------- devices, identity

    def device_count(self) -> int:
        return int(self._call(self.lib.nvmlDeviceGetCount))

    def handle_by_index(self, index: int) -> Any:
        return self._call(self.lib.nvmlDeviceGetHandleByIndex, index)

    def handle_by_uuid(self, uuid: str) -> Any:
        try:
            return self.lib.nvmlDeviceGetHandleByUUID(uuid)
        except self._errors as exc:
            if getattr(exc, "value", None) == ERROR_NOT_FOUND:
                raise GpuLost(f"no GPU with UUID {uuid}", ERROR_NOT_FOUND) from exc
            raise self._translate(exc) from exc

    def index(self, handle: Any) -> int | None:
        try:
            return int(self._call(self.lib.nvmlDeviceGetIndex, handle))
        except NotSupported:
            return None

    def uuid(self, handle: Any) -> str:
        return _text(self._call(self.lib.nvmlDeviceGetUUID, handle))

    def name(self, handle: Any) -> str:
        return _text(self._call(self.lib.nvmlDeviceGetName, handle))

    def serial(self, handle: Any) -> str | None:
        try:
            serial = _text(self._call(self.lib.nvmlDeviceGetSerial, handle)).strip()
        except NotSupported:
            return None
        return serial or None

    def architecture(self, handle: Any) -> int | None:
        try:
            return int(self._call(self.lib.nvmlDeviceGetArchitecture, handle))
        except NotSupported:
            return None

    # ------------------------------------------------------------ power, energy

    def energy_mj(self, handle: Any) -> int:
        """Total energy since the driver was loaded, mJ (a uint64 register)."""
        return int(self._call(self.lib.nvmlDeviceGetTotalEnergyConsumption, handle))

    def power_mw(self, handle: Any) -> int:
        """Board power, mW; a 1 s average on Ampere (except GA100) and newer."""
        return int(self._call(self.lib.nvmlDeviceGetPowerUsage, handle))

    def power_limits_mw(self, handle: Any) -> tuple[int, int]:
        """(min, max) power limit the board accepts, mW."""
        low, high = self._call(self.lib.nvmlDeviceGetPowerManagementLimitConstraints, handle)
        return int(low), int(high)

    def enforced_limit_mw(self, handle: Any) -> int:
        return int(self._call(self.lib.nvmlDeviceGetEnforcedPowerLimit, handle))

    def field_values(
        self, handle: Any, fields: Sequence[tuple[int, int]]
    ) -> list[float | NvmlFailure]:
        """Read (field id, scope) pairs at once; a field that failed gives its failure."""
        values = self._call(self.lib.nvmlDeviceGetFieldValues, handle, list(fields))
        out: list[float | NvmlFailure] = []
        for value in values:
            if value.nvmlReturn != 0:
                failure = failure_for_code(value.nvmlReturn, f"field {value.fieldId}")
                out.append(failure if isinstance(failure, NvmlFailure) else Transient(str(failure)))
                continue
            kind = int(value.valueType)
            member = _VALUE_FIELDS[kind] if 0 <= kind < len(_VALUE_FIELDS) else "ullVal"
            out.append(getattr(value.value, member))
        return out

    # ------------------------------------------------------ activity and memory

    def utilization_pct(self, handle: Any) -> int:
        """% of the last sample period in which a kernel ran (not SM occupancy)."""
        return int(self._call(self.lib.nvmlDeviceGetUtilizationRates, handle).gpu)

    def memory_bytes(self, handle: Any) -> tuple[int, int]:
        """(used, total) device memory in bytes."""
        info = self._call(self.lib.nvmlDeviceGetMemoryInfo, handle)
        return int(info.used), int(info.total)

    # ---------------------------------------------------------------------- MIG

    def mig_enabled(self, handle: Any) -> bool:
        try:
            current, _pending = self._call(self.lib.nvmlDeviceGetMigMode, handle)
        except NotSupported:
            return False
        return current == MIG_ENABLED

    def mig_devices(self, handle: Any) -> list[MigDevice]:
        """The MIG devices that exist on a parent GPU, empty slots skipped."""
        devices = []
        for index in range(int(self._call(self.lib.nvmlDeviceGetMaxMigDeviceCount, handle))):
            try:
                mig = self.lib.nvmlDeviceGetMigDeviceHandleByIndex(handle, index)
            except self._errors as exc:
                if getattr(exc, "value", None) == ERROR_NOT_FOUND:
                    continue
                raise self._translate(exc) from exc
            devices.append(self._mig_device(mig))
        return devices

    def _mig_device(self, mig: Any) -> MigDevice:
        name = self.name(mig)
        parsed = parse_mig_profile(name)
        gpu_slices = parsed.gpu_slices if parsed else 0
        compute_slices = parsed.compute_slices if parsed else 0
        try:
            attributes = self._call(self.lib.nvmlDeviceGetAttributes, mig)
            gpu_slices = int(attributes.gpuInstanceSliceCount) or gpu_slices
            compute_slices = int(attributes.computeInstanceSliceCount) or compute_slices
        except NotSupported:
            pass
        return MigDevice(
            handle=mig,
            uuid=self.uuid(mig),
            name=name,
            profile=parsed.name if parsed else "unknown",
            gpu_instance_id=int(self._call(self.lib.nvmlDeviceGetGpuInstanceId, mig)),
            compute_instance_id=int(self._call(self.lib.nvmlDeviceGetComputeInstanceId, mig)),
            gpu_slices=gpu_slices,
            compute_slices=compute_slices or gpu_slices,
        )

    # ---------------------------------------------------------------------- GPM

    def gpm_supported(self, handle: Any) -> bool:
        try:
            return bool(self._call(self.lib.nvmlGpmQueryDeviceSupport, handle).isSupportedDevice)
        except NotSupported:
            return False

    def gpm_mig_sample(self, handle: Any, gpu_instance_id: int) -> Any:
        """Take a GPM sample of one GPU instance; free it with :meth:`gpm_free`."""
        sample = self._call(self.lib.nvmlGpmSampleAlloc)
        try:
            self._call(self.lib.nvmlGpmMigSampleGet, handle, gpu_instance_id, sample)
        except NvmlFailure:
            self.gpm_free(sample)
            raise
        return sample

    def gpm_graphics_util_pct(self, earlier: Any, later: Any) -> float:
        """% of time graphics/compute work ran between two GPM samples (>100 ms apart)."""
        request = self.lib.c_nvmlGpmMetricsGet_t()
        request.version = GPM_METRICS_GET_VERSION
        request.numMetrics = 1
        request.sample1 = earlier
        request.sample2 = later
        request.metrics[0].metricId = GPM_METRIC_GRAPHICS_UTIL
        self._call(self.lib.nvmlGpmMetricsGet, request)
        metric = request.metrics[0]
        if metric.nvmlReturn != 0:
            failure = failure_for_code(metric.nvmlReturn, "GPM graphics utilization")
            raise failure if isinstance(failure, NvmlFailure) else Transient(str(failure))
        return float(metric.value)

    def gpm_free(self, sample: Any) -> None:
        try:
            self._call(self.lib.nvmlGpmSampleFree, sample)
        except NvmlFailure as exc:
            logger.debug("freeing a GPM sample failed: %s", exc)

    # ---------------------------------------------------------------- processes

    def compute_processes(self, handle: Any) -> list[GpuProcess]:
        processes = []
        for info in self._call(self.lib.nvmlDeviceGetComputeRunningProcesses, handle):
            gi = getattr(info, "gpuInstanceId", NOT_AVAILABLE_U32)
            ci = getattr(info, "computeInstanceId", NOT_AVAILABLE_U32)
            processes.append(
                GpuProcess(
                    pid=int(info.pid),
                    gpu_instance_id=None if gi in (None, NOT_AVAILABLE_U32) else int(gi),
                    compute_instance_id=None if ci in (None, NOT_AVAILABLE_U32) else int(ci),
                )
            )
        return processes


def open_nvml(lib: Any = None, *, call_timeout_s: float | None = 2.0) -> Nvml:
    """Load NVML and start it.

    Raises :class:`NvmlUnavailable` (one line, exit code 3) when there is no NVML library or no
    pynvml binding. A driver that is not loaded yet is not fatal: the session comes back
    uninitialised and :class:`~wattledger.agent.gpu.monitor.GpuMonitor` retries with backoff.
    """
    if lib is None:
        lib = _import_pynvml()
    nvml = Nvml(lib, call_timeout_s=call_timeout_s)
    try:
        nvml.call(nvml.init)
    except NvmlUnavailable:
        nvml.worker.close()
        raise
    except DriverNotLoaded:
        logger.warning("NVIDIA driver not loaded yet; the agent keeps retrying NVML init")
    except Transient as exc:
        logger.warning("NVML init failed (%s); the agent keeps retrying", exc)
    return nvml


def _import_pynvml() -> ModuleType:
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise NvmlUnavailable(NO_BINDINGS_MESSAGE) from exc


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _error_text(exc: BaseException) -> str:
    """pynvml's message for an error, without asking a library that may not be loaded."""
    strings = getattr(type(exc), "_errcode_to_string", None)
    code = getattr(exc, "value", None)
    if isinstance(strings, dict) and code in strings:
        return str(strings[code])
    return type(exc).__name__
