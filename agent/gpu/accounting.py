"""One GPU's raw sample in, its exported reading out: energy through the ledger, checked power.

* Energy comes from the NVML total-energy counter (mJ) through the :class:`CounterLedger`, keyed
  by GPU UUID: a driver reload (the counter goes down) starts a new baseline instead of a
  negative delta, and an agent restart continues from the persisted baseline, so the energy used
  while the agent was down appears in the next interval. The node's boot id is the ledger's
  restart marker, so a reboot during an outage is a reset even if the new counter has already
  passed the old value.
* Where the counter is not supported, energy is the trapezoid integral of power
  (``energy_source="power_integral"``). Where both exist, the integral cross-checks the counter
  over one-minute windows and a large disagreement is logged and counted.
* Power outside 0 .. 1.2 x the board's maximum limit is rejected and counted.
* A Grace module's energy is its own ledger series, read on one GPU per module and never added
  to a GPU's energy.
"""

from __future__ import annotations

import logging
from collections import Counter

from wattledger.agent.gpu.device import (
    METRIC_ENERGY_COUNTER,
    METRIC_GPM,
    METRIC_MODULE_ENERGY,
    METRIC_MODULE_POWER,
    METRIC_POWER,
    METRIC_UTILIZATION,
    GpuDevice,
    RawSample,
)
from wattledger.agent.gpu.energy import NS_PER_S
from wattledger.agent.gpu.mig import MigSlot, mig_shares
from wattledger.agent.gpu.reading import GpuReading, MigInstanceReading
from wattledger.agent.gpu.track import GpuTrack
from wattledger.agent.ledger import CounterLedger
from wattledger.contract import ENERGY_SOURCE_COUNTER, ENERGY_SOURCE_POWER_INTEGRAL

logger = logging.getLogger(__name__)

ENERGY_COUNTER_MODULUS = 2**64  # nvmlDeviceGetTotalEnergyConsumption is a uint64 in mJ

_UNSUPPORTED_CONSEQUENCE = {
    METRIC_ENERGY_COUNTER: "energy is integrated from power readings instead",
    METRIC_POWER: "the power gauge falls back to module power where there is one",
    METRIC_UTILIZATION: "utilization is not reported",
    METRIC_MODULE_ENERGY: "module energy is not reported",
    METRIC_MODULE_POWER: "module power is not reported",
    METRIC_GPM: "MIG shares follow slice sizes",
}


class Accountant:
    """Keeps each GPU's exported totals in the ledger and builds its readings."""

    def __init__(
        self,
        ledger: CounterLedger,
        stats: Counter[str],
        *,
        boot_id: str | None,
        power_limit_margin: float = 1.2,
    ) -> None:
        self._ledger = ledger
        self._stats = stats
        self._boot_id = boot_id
        self._margin = power_limit_margin

    def forget_baselines(self, track: GpuTrack, t_ns: int) -> None:
        """The GPU became unreadable: what it does until it is back is not counted.

        The counter may have been reset or be wrong meanwhile, so the first reading after a
        re-open is only a new baseline; the power integral and the cross-check window restart.
        """
        self._ledger.rebaseline(track.counter_key)
        if track.module_key:
            self._ledger.rebaseline(track.module_key)
        track.integrator.restart()
        track.crosscheck.add(t_ns, None, None)

    def reading(self, track: GpuTrack, raw: RawSample, t_ns: int) -> GpuReading:
        """The reading for a fresh sample; updates the track's totals and capabilities."""
        device = track.device
        caps = device.caps
        if raw.unsupported:
            self._switch_off(track, raw.unsupported)
        if raw.gaps:
            self._stats["gap"] += len(raw.gaps)
        if raw.mig is not None:
            if [m.uuid for m in raw.mig] != [m.uuid for m in device.mig]:
                logger.info(
                    "GPU %d %s: MIG layout now has %d instances",
                    device.index,
                    device.name,
                    len(raw.mig),
                )
            device.mig = raw.mig
            if not raw.mig and caps.utilization is False:
                caps.utilization = None  # MIG went off: utilization may exist again

        power_w = self._checked_power(track, raw.power_mw, device.power_limit_mw, "power")
        module_power_w = self._checked_power(
            track, raw.module_power_mw, device.module_power_limit_mw, "module power"
        )
        if power_w is None and device.power_scope == "module":
            power_w = module_power_w
        # Limitation: on Ampere (except GA100) and newer the power reading is a 1 s average, so
        # an integral of it trails the true power by about half a second on ramps; totals over
        # steady periods are unaffected.
        integral_j = track.integrator.add(t_ns, power_w) if power_w is not None else None

        if caps.energy_counter:
            counter_j = self._count_energy(track, raw.energy_mj, t_ns)
            disagreement = track.crosscheck.add(t_ns, counter_j, integral_j)
            if disagreement is not None:
                self._stats["energy_disagreement"] += 1
                logger.warning(
                    "GPU %d %s: energy counter says %.0f J but integrated power says %.0f J "
                    "over the last %.0f s; the counter is exported",
                    device.index,
                    device.name,
                    disagreement.counter_joules,
                    disagreement.integral_joules,
                    (disagreement.end_ns - disagreement.start_ns) / NS_PER_S,
                )
        elif integral_j is not None or track.energy_j is None:
            # Limitation: without a counter, energy used while the agent is down is not known;
            # the integral restarts at the first sample after a restart.
            added = self._ledger.add(track.integral_key, integral_j or 0.0, t_ns)
            track.energy_j, track.energy_start_ns = added.cumulative, added.start_ns

        if raw.module_energy_mj is not None and track.module_key:
            observed = self._ledger.observe(
                track.module_key,
                raw.module_energy_mj,
                t_ns,
                marker=self._boot_id,
                modulus=ENERGY_COUNTER_MODULUS,
            )
            track.module_energy_j = observed.cumulative / 1000
            track.module_start_ns = observed.start_ns

        utilization = None
        if not device.mig and raw.utilization_pct is not None:
            utilization = raw.utilization_pct / 100
        return _reading(
            track,
            power_watts=power_w,
            utilization=utilization,
            memory_used_bytes=raw.memory_used_bytes,
            memory_total_bytes=raw.memory_total_bytes,
            mig_instances=self._mig_readings(device, raw.mig_activity_pct),
            module_power_watts=module_power_w if device.module_leader else None,
        )

    def _count_energy(self, track: GpuTrack, energy_mj: int | None, t_ns: int) -> float | None:
        """Feed the counter to the ledger; return the joules of this interval if it was growth.

        Limitation: a driver reload without a reboot while the agent is down goes unnoticed if
        the new counter has already passed the old value by the restart; the energy before the
        reload is then undercounted by the old value. A reboot is caught by the boot id.
        """
        if energy_mj is None:
            return None
        observed = self._ledger.observe(
            track.counter_key,
            energy_mj,
            t_ns,
            marker=self._boot_id,
            modulus=ENERGY_COUNTER_MODULUS,
        )
        track.energy_j = observed.cumulative / 1000
        track.energy_start_ns = observed.start_ns
        if observed.event in ("reset", "wrap"):
            self._stats[f"counter_{observed.event}"] += 1
        return observed.added / 1000 if observed.event == "growth" else None

    def _checked_power(
        self, track: GpuTrack, milliwatts: int | None, limit_mw: int | None, what: str
    ) -> float | None:
        """Watts, or None when the reading is outside 0 .. margin x the board's maximum limit."""
        if milliwatts is None:
            return None
        if milliwatts >= 0 and (limit_mw is None or milliwatts <= self._margin * limit_mw):
            return milliwatts / 1000

        self._stats["power_rejected"] += 1
        track.rejected += 1
        level = logging.WARNING if track.rejected == 1 else logging.DEBUG
        limit = f"{limit_mw / 1000:.0f} W" if limit_mw else "unknown"
        logger.log(
            level,
            "GPU %d %s: rejected a %s reading of %.1f W (limit %s); it is left out",
            track.device.index,
            track.device.name,
            what,
            milliwatts / 1000,
            limit,
        )
        return None

    def _mig_readings(
        self, device: GpuDevice, activity: dict[int, float] | None
    ) -> tuple[MigInstanceReading, ...]:
        if not device.mig:
            return ()
        slots = [
            MigSlot(m.uuid, m.gpu_instance_id, m.gpu_slices, m.compute_slices) for m in device.mig
        ]
        shares, method = mig_shares(slots, activity)
        return tuple(
            MigInstanceReading(m.uuid, device.uuid, m.profile, shares[m.uuid], method)
            for m in device.mig
        )

    def _switch_off(self, track: GpuTrack, metrics: list[str]) -> None:
        caps = track.device.caps
        attributes = {
            METRIC_ENERGY_COUNTER: "energy_counter",
            METRIC_POWER: "power",
            METRIC_UTILIZATION: "utilization",
            METRIC_MODULE_ENERGY: "module_energy",
            METRIC_MODULE_POWER: "module_power",
            METRIC_GPM: "gpm",
        }
        for metric in metrics:
            if metric in attributes:
                setattr(caps, attributes[metric], False)
        self.log_unsupported(track, metrics)

    def log_unsupported(self, track: GpuTrack, metrics: list[str]) -> None:
        """Say once per GPU and metric that it is missing, and what the agent does instead."""
        device = track.device
        for metric in metrics:
            if metric in track.logged or metric not in _UNSUPPORTED_CONSEQUENCE:
                continue
            track.logged.add(metric)
            level = logging.WARNING if metric == METRIC_ENERGY_COUNTER else logging.INFO
            logger.log(
                level,
                "GPU %d %s (%s): %s not supported; %s",
                device.index,
                device.name,
                device.uuid,
                metric,
                _UNSUPPORTED_CONSEQUENCE[metric],
            )

    def held(self, track: GpuTrack, *, healthy: bool, problem: str | None) -> GpuReading:
        """A reading with the totals held and no gauges: for a gap, a lost GPU, no driver."""
        return _reading(
            track,
            power_watts=None,
            utilization=None,
            memory_used_bytes=None,
            memory_total_bytes=None,
            healthy=healthy,
            problem=problem,
        )


def _reading(track: GpuTrack, **measured) -> GpuReading:
    """A reading of ``track``'s GPU: who it is and its energy totals, plus ``measured``."""
    device = track.device
    return GpuReading(
        uuid=device.uuid,
        index=device.index,
        name=device.name,
        sku=device.sku,
        architecture=device.architecture,
        energy_joules=track.energy_j,
        energy_source=_energy_source(device),
        power_scope=device.power_scope,
        module_energy_joules=track.module_energy_j if track.module_key else None,
        energy_start_ns=track.energy_start_ns,
        module_energy_start_ns=track.module_start_ns if track.module_key else None,
        module_id=device.module_id,
        **measured,
    )


def _energy_source(device: GpuDevice) -> str:
    return ENERGY_SOURCE_COUNTER if device.caps.energy_counter else ENERGY_SOURCE_POWER_INTEGRAL
