"""What the agent reads from one GPU in one sampling cycle, ready for export."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MigInstanceReading:
    """One MIG instance of a parent GPU and the share of the parent's energy it is given."""

    uuid: str
    parent_uuid: str
    profile: str
    share: float
    share_method: str  # "activity" when measured, "slices" when by slice size


@dataclass(frozen=True)
class GpuReading:
    """One physical GPU after a sampling cycle.

    ``energy_joules`` is the cumulative, never-decreasing energy the agent exports for this GPU
    (from the ledger), not the raw NVML counter, and ``energy_start_ns`` the start of that
    exported series as the ledger remembers it. ``power_scope`` says what the power and energy
    cover: ``gpu`` for the GPU alone, ``module`` where only a Grace module reading exists.

    ``module_energy_joules`` and ``module_power_watts`` are a Grace superchip's whole-module
    readings (GPUs, CPU, memory), never part of the GPU's own figures. Both GPUs of a GB200/GB300
    module carry the same ``module_id``; only one of them carries the module readings, so summing
    over GPUs counts each module once.

    A GPU that is lost or whose NVML calls hang stays in the output with ``healthy=False``, its
    energy held at the last exported total, and ``problem`` saying why.
    """

    uuid: str
    index: int
    name: str
    sku: str
    architecture: str
    energy_joules: float | None
    energy_source: str
    power_watts: float | None
    power_scope: str
    utilization: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    module_energy_joules: float | None = None
    energy_start_ns: int | None = None
    module_energy_start_ns: int | None = None
    mig_instances: tuple[MigInstanceReading, ...] = ()
    healthy: bool = True
    module_power_watts: float | None = None
    module_id: str | None = None
    problem: str | None = None
