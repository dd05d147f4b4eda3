"""The monitor's bookkeeping for each GPU: health, retry schedule, integrals, exported totals."""

from __future__ import annotations

from dataclasses import dataclass, field

from wattledger.agent.gpu.device import GpuDevice
from wattledger.agent.gpu.energy import CrossCheck, PowerIntegrator

STATUS_OK = "ok"
STATUS_LOST = "lost"  # NVML says the GPU is gone or needs a reset
STATUS_HUNG = "hung"  # an NVML call for it did not return in time


class Backoff:
    """Exponential delays: first, 2 x first, ... capped."""

    def __init__(self, first_s: float, cap_s: float) -> None:
        self._first = first_s
        self._cap = cap_s
        self._next = first_s

    def next_delay_s(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._first


@dataclass
class GpuTrack:
    """One GPU as the monitor follows it, kept across re-opens and NVML re-inits."""

    device: GpuDevice
    backoff: Backoff
    integrator: PowerIntegrator
    crosscheck: CrossCheck
    status: str = STATUS_OK
    problem: str | None = None
    retry_ns: int = 0
    busy: bool = False  # a step for this GPU is running (or stuck) on a worker thread
    energy_j: float | None = None
    energy_start_ns: int | None = None
    module_energy_j: float | None = None
    module_start_ns: int | None = None
    mig_checked_ns: int = 0
    rejected: int = 0
    logged: set[str] = field(default_factory=set)

    @property
    def uuid(self) -> str:
        return self.device.uuid

    @property
    def counter_key(self) -> str:
        """Ledger series of the NVML energy counter, raw values in mJ; keyed by UUID."""
        return f"gpu/{self.device.uuid}/energy_mj"

    @property
    def integral_key(self) -> str:
        """Ledger series of integrated power, in J, for GPUs without a counter."""
        return f"gpu/{self.device.uuid}/energy_j"

    @property
    def module_key(self) -> str | None:
        """Ledger series of the Grace module's energy, on the module's leader GPU only."""
        module = self.device.module_id
        return f"module/{module}/energy_mj" if module and self.device.module_leader else None


@dataclass
class Unopened:
    """A GPU index that failed before its UUID was known; opened again with backoff."""

    index: int
    backoff: Backoff
    retry_ns: int
    busy: bool = False
