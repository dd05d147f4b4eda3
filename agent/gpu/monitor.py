"""Sample every GPU on the node once per cycle and turn raw NVML numbers into exported readings.

The monitor owns the policy; NVML itself is behind :class:`~.nvml.Nvml` and runs on its worker
thread. Each :meth:`GpuMonitor.poll` reads all GPUs in one batch and then, on the caller's
thread:

* **Energy** comes from the NVML total-energy counter (mJ) through the :class:`CounterLedger`,
  keyed by GPU UUID: a driver reload (the counter goes down) starts a new baseline instead of a
  negative delta, and an agent restart continues from the persisted baseline, so the energy used
  while the agent was down appears in the next interval. The node's boot id is the ledger's
  restart marker, so a reboot during an outage is a reset even if the new counter has already
  passed the old value. Where the counter is not supported, energy is the trapezoid integral of
  power (``energy_source="power_integral"``). Where both exist, the integral cross-checks the
  counter over one-minute windows and a large disagreement is logged and counted.
* **Power** outside 0 .. 1.2 x the board's maximum limit is rejected and counted.
* **Grace superchips** (GB200, GB300) have their module energy and power read apart, on one GPU
  per module, and never added to the GPU's; on GH200 the counter itself covers the module and the
  reading says ``power_scope="module"``.
* **MIG**: energy and power are read once on the parent; each instance gets a share (see
  :mod:`.mig`); utilization is absent.
* **Faults**: a lost GPU, or one whose call hung, is isolated (its baseline forgotten, so the
  unknown stretch is not counted), kept in the output with ``healthy=False`` and its energy held,
  and re-opened by UUID with exponential backoff while the others keep being sampled. A driver
  that is not loaded is retried with the same backoff; the monitor stays up and returns nothing
  until it comes. A transient failure skips that reading for the cycle (a gap); cumulative
  energy catches up at the next read.

The ledger is not saved here: the agent runner calls ``ledger.save()`` on its own schedule.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattledger.agent.gpu.device import (
    METRIC_ENERGY_COUNTER,
    METRIC_GPM,
    METRIC_MODULE_ENERGY,
    METRIC_MODULE_POWER,
    METRIC_POWER,
    METRIC_UTILIZATION,
    GpuDevice,
    Probe,
    RawSample,
    probe_gpu,
    read_gpu,
    release_gpm,
)
from wattledger.agent.gpu.energy import NS_PER_S, CrossCheck, PowerIntegrator
from wattledger.agent.gpu.mig import MigSlot, mig_shares
from wattledger.agent.gpu.nvml import (
    CallTimedOut,
    DriverNotLoaded,
    GpuLost,
    GpuProcess,
    Nvml,
    NvmlFailure,
    Transient,
)
from wattledger.agent.gpu.reading import GpuReading, MigInstanceReading
from wattledger.agent.gpu.worker import HUNG, SKIPPED, StepFailed
from wattledger.agent.ledger import CounterLedger

from wattledger.contract import ENERGY_SOURCE_COUNTER, ENERGY_SOURCE_POWER_INTEGRAL

logger = logging.getLogger(__name__)

ENERGY_COUNTER_MODULUS = 2**64  # nvmlDeviceGetTotalEnergyConsumption is a uint64 in mJ
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

STATUS_OK = "ok"
STATUS_LOST = "lost"
STATUS_HUNG = "hung"

_UNSUPPORTED_CONSEQUENCE = {
    METRIC_ENERGY_COUNTER: "energy is integrated from power readings instead",
    METRIC_POWER: "the power gauge falls back to module power where there is one",
    METRIC_UTILIZATION: "utilization is not reported",
    METRIC_MODULE_ENERGY: "module energy is not reported",
    METRIC_MODULE_POWER: "module power is not reported",
    METRIC_GPM: "MIG shares follow slice sizes",
}


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
class _Track:
    """The monitor's bookkeeping for one GPU, kept across re-opens and re-inits."""

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
        return f"gpu/{self.device.uuid}/energy_mj"

    @property
    def integral_key(self) -> str:
        return f"gpu/{self.device.uuid}/energy_j"

    @property
    def module_key(self) -> str | None:
        module = self.device.module_id
        return f"module/{module}/energy_mj" if module and self.device.module_leader else None


@dataclass
class _Unopened:
    """A GPU index that failed before its UUID was known; opened again with backoff."""

    index: int
    backoff: Backoff
    retry_ns: int
    busy: bool = False


def read_boot_id() -> str | None:
    """The kernel's boot id: changes at every reboot, which resets every NVML energy counter."""
    try:
        return BOOT_ID_PATH.read_text().strip() or None
    except OSError:
        return None


class GpuMonitor:
    """Reads every GPU of the node through NVML; one :meth:`poll` per sampling cycle.

    Not thread-safe: call :meth:`poll`, :meth:`gpu_processes` and :meth:`close` from one thread
    (the agent's sampling loop). The ledger may be shared with other threads.
    """

    def __init__(
        self,
        nvml: Nvml,
        ledger: CounterLedger,
        *,
        boot_id: str | None | Callable[[], str | None] = read_boot_id,
        crosscheck_window_s: float = 60.0,
        crosscheck_tolerance: float = 0.2,
        max_integration_gap_s: float = 30.0,
        backoff_first_s: float = 1.0,
        backoff_max_s: float = 300.0,
        mig_refresh_s: float = 60.0,
        power_limit_margin: float = 1.2,
    ) -> None:
        self._nvml = nvml
        self._ledger = ledger
        self._boot_id = boot_id() if callable(boot_id) else boot_id
        self._crosscheck = (crosscheck_window_s, crosscheck_tolerance)
        self._max_gap_s = max_integration_gap_s
        self._backoff = (backoff_first_s, backoff_max_s)
        self._mig_refresh_ns = int(mig_refresh_s * NS_PER_S)
        self._margin = power_limit_margin
        self._tracks: dict[str, _Track] = {}
        self._unopened: dict[int, _Unopened] = {}
        self._order: list[_Track] = []
        self._ready = False
        self._init_backoff = Backoff(backoff_first_s, backoff_max_s)
        self._init_retry_ns: int | None = None
        self._last_t_ns = 0
        self._stats: Counter[str] = Counter()

    # ---------------------------------------------------------------- public

    def poll(self, t_ns: int) -> list[GpuReading]:
        """Read every GPU once and return one reading per known GPU, in NVML index order.

        ``t_ns`` is the time of the cycle (Unix ns); counters and integrals are stamped with it.
        A GPU that is lost or hung is in the list with ``healthy=False``; a GPU that gave nothing
        new this cycle (a gap) is healthy with its totals held and no gauges. Until NVML starts
        (no driver yet) the list holds only GPUs known from earlier, all unhealthy.
        """
        self._last_t_ns = t_ns
        if not self._ready and not self._start(t_ns):
            return [self._unhealthy(track) for track in self._order]

        jobs: list[tuple[_Track, str, Callable[[], Any]]] = []
        for track in self._order:
            if track.busy:
                continue
            if track.status == STATUS_OK:
                # Limitation: a MIG layout change is seen at the next refresh (a minute by
                # default); until then shares follow the old layout.
                refresh = t_ns - track.mig_checked_ns >= self._mig_refresh_ns
                if refresh:
                    track.mig_checked_ns = t_ns
                step = functools.partial(read_gpu, self._nvml, track.device, refresh_mig=refresh)
                jobs.append((track, "read", self._guarded(track, step)))
            elif t_ns >= track.retry_ns:
                step = functools.partial(self._reopen, track)
                jobs.append((track, "reopen", self._guarded(track, step)))

        openings = [u for u in self._unopened.values() if not u.busy and t_ns >= u.retry_ns]
        open_steps = [
            self._guarded(u, functools.partial(self._open_index, u.index)) for u in openings
        ]

        results = self._nvml.run([step for _, _, step in jobs] + open_steps)
        for unopened, result in zip(openings, results[len(jobs) :], strict=True):
            self._settle_opening(unopened, result, t_ns)
        fresh: dict[str, GpuReading] = {}
        for (track, kind, _), result in zip(jobs, results, strict=False):
            reading = self._settle(track, kind, result, t_ns)
            if reading is None:  # the driver went away: everything waits for a re-init
                return [self._unhealthy(track) for track in self._order]
            fresh[track.uuid] = reading
        return [fresh.get(track.uuid) or self._unhealthy(track) for track in self._order]

    def gpu_processes(self) -> dict[str, set[int]]:
        """PIDs of compute processes per GPU UUID.

        On a MIG GPU a process is listed under its MIG device's UUID only, not under the parent's
        as well, so an engine on one instance is not mapped to the whole GPU.
        """
        if not self._ready:
            return {}
        tracks = [t for t in self._order if t.status == STATUS_OK and not t.busy]
        steps = [
            self._guarded(t, functools.partial(self._nvml.compute_processes, t.device.handle))
            for t in tracks
        ]
        out: dict[str, set[int]] = {}
        for track, result in zip(tracks, self._nvml.run(steps), strict=True):
            if result is HUNG:
                self._stats["timeout"] += 1
                self._isolate(track, self._last_t_ns, STATUS_HUNG, "an NVML call timed out")
                continue
            if isinstance(result, StepFailed):
                if isinstance(result.error, GpuLost):
                    self._isolate(track, self._last_t_ns, STATUS_LOST, str(result.error))
                continue
            if result is SKIPPED:
                continue
            out.update(_processes_by_device(track.device, result))
        return out

    def stats(self) -> dict[str, int]:
        """Event counts since start: gaps, timeouts, lost GPUs, rejected power, disagreements..."""
        return dict(self._stats)

    def close(self) -> None:
        """Free GPM samples and shut NVML down; never raises, safe to call twice."""
        idle = [t for t in self._order if not t.busy and t.device.gpm_last]
        self._nvml.run([functools.partial(release_gpm, self._nvml, t.device) for t in idle])
        self._nvml.close()

    # ----------------------------------------------------- start and re-init

    def _start(self, t_ns: int) -> bool:
        """Initialise NVML and enumerate the GPUs; False (and a retry scheduled) if not now."""
        if self._init_retry_ns is not None and t_ns < self._init_retry_ns:
            return False
        try:
            if not self._nvml.initialised:
                self._nvml.call(self._nvml.init)
            probes, failed = self._enumerate()
            driver = self._nvml.call(self._nvml.driver_version)
        except (DriverNotLoaded, Transient) as exc:
            self._stats["init_retry"] += 1
            delay = self._init_backoff.next_delay_s()
            self._init_retry_ns = t_ns + int(delay * NS_PER_S)
            level = logging.WARNING if self._stats["init_retry"] == 1 else logging.DEBUG
            logger.log(level, "NVML not ready (%s); retrying in %.0f s", exc, delay)
            return False

        for unopened in failed:
            unopened.retry_ns = t_ns + int(unopened.backoff.next_delay_s() * NS_PER_S)
        self._unopened = {unopened.index: unopened for unopened in failed}
        self._adopt(probes, t_ns)
        skus = Counter(probe.device.sku for probe in probes)
        logger.info(
            "NVML ready (driver %s): %s",
            driver or "unknown",
            ", ".join(f"{n}x {sku}" for sku, n in sorted(skus.items())) or "no GPUs",
        )
        self._ready = True
        self._init_backoff.reset()
        self._init_retry_ns = None
        return True

    def _enumerate(self) -> tuple[list[Probe], list[_Unopened]]:
        """Open every GPU by index; return the probes and the indices that failed."""
        count = self._nvml.call(self._nvml.device_count)
        pending = [_Unopened(index, Backoff(*self._backoff), 0) for index in range(count)]
        steps = [self._guarded(u, functools.partial(self._open_index, u.index)) for u in pending]
        probes, failed = [], []
        for unopened, result in zip(pending, self._nvml.run(steps), strict=True):
            if isinstance(result, StepFailed) and isinstance(result.error, DriverNotLoaded):
                raise result.error
            if isinstance(result, Probe):
                probes.append(result)
                continue
            why = result.error if isinstance(result, StepFailed) else "its NVML call hung"
            logger.warning(
                "GPU %d could not be opened (%s); trying again later", unopened.index, why
            )
            failed.append(unopened)
        return probes, failed

    def _settle_opening(self, unopened: _Unopened, result: Any, t_ns: int) -> None:
        """A GPU that failed at start either opens now (sampled from the next cycle) or waits."""
        if isinstance(result, Probe):
            del self._unopened[unopened.index]
            self._adopt([result], t_ns, complete=False)
            return
        if isinstance(result, StepFailed) and isinstance(result.error, DriverNotLoaded):
            return  # the GPUs being read say the same, and the driver loss is handled there
        unopened.retry_ns = t_ns + int(unopened.backoff.next_delay_s() * NS_PER_S)

    def _open_index(self, index: int) -> Any:
        handle = self._nvml.handle_by_index(index)
        return probe_gpu(self._nvml, handle, index)

    def _adopt(self, probes: list[Probe], t_ns: int, *, complete: bool = True) -> None:
        """Match opened GPUs to known ones by UUID (never by index) and set up new ones.

        ``complete`` says the probes are every GPU NVML now lists, so a known GPU missing from
        them is gone.
        """
        seen = set()
        for probe in probes:
            device = probe.device
            seen.add(device.uuid)
            track = self._tracks.get(device.uuid)
            if track is None:
                track = _Track(
                    device=device,
                    backoff=Backoff(*self._backoff),
                    integrator=PowerIntegrator(self._max_gap_s),
                    crosscheck=CrossCheck(*self._crosscheck),
                    mig_checked_ns=t_ns,
                )
                self._tracks[device.uuid] = track
                self._log_unsupported(track, probe.unsupported)
                self._log_opened(track)
            else:
                device.caps = track.device.caps
                track.device = device
                track.status, track.problem = STATUS_OK, None
                track.backoff.reset()
        for uuid, track in self._tracks.items():
            if complete and uuid not in seen and track.status == STATUS_OK:
                self._isolate(track, t_ns, STATUS_LOST, "not found after NVML re-init")
        self._order = sorted(self._tracks.values(), key=lambda t: t.device.index)
        self._elect_module_leaders()

    def _elect_module_leaders(self) -> None:
        """One GPU per Grace module reads the module: the one with the lowest UUID, so the choice
        survives restarts and re-enumeration in another order."""
        modules: dict[str, list[_Track]] = {}
        for track in self._tracks.values():
            track.device.module_leader = False
            if track.device.module_id:
                modules.setdefault(track.device.module_id, []).append(track)
        for members in modules.values():
            # Limitation: while the leader is lost its module is not read; the other GPU of the
            # module does not take over, so the module series keeps one owner.
            min(members, key=lambda t: t.uuid).device.module_leader = True

    def _driver_gone(self, t_ns: int) -> None:
        """Every call says the driver is gone: drop the session and retry init with backoff.

        Baselines are kept: a reloaded driver restarts the counters from zero, which the ledger
        treats as a reset and counts from the new start.
        """
        logger.warning("the NVIDIA driver went away; sampling stops until NVML can be started")
        self._stats["driver_lost"] += 1
        self._ready = False
        self._nvml.initialised = False
        for track in self._order:
            track.integrator.restart()
            track.problem = "NVIDIA driver not loaded"
        self._init_retry_ns = t_ns + int(self._init_backoff.next_delay_s() * NS_PER_S)

    # ------------------------------------------------------ per-GPU results

    def _guarded(self, track: _Track | _Unopened, step: Callable[[], Any]) -> Callable[[], Any]:
        """Mark the GPU busy while its step runs, so a stuck step is never run twice at once."""

        def run() -> Any:
            track.busy = True
            try:
                return step()
            finally:
                track.busy = False

        return run

    def _reopen(self, track: _Track) -> tuple[GpuDevice, RawSample]:
        handle = self._nvml.handle_by_uuid(track.uuid)
        index = self._nvml.index(handle)
        index = track.device.index if index is None else index
        probe = probe_gpu(self._nvml, handle, index, track.device.caps)
        probe.device.module_leader = track.device.module_leader
        return probe.device, read_gpu(self._nvml, probe.device)

    def _settle(self, track: _Track, kind: str, result: Any, t_ns: int) -> GpuReading | None:
        """Turn one step's result into a reading; None when the driver went away."""
        if result is HUNG:
            self._stats["timeout"] += 1
            self._isolate(track, t_ns, STATUS_HUNG, "an NVML call timed out")
            return self._unhealthy(track)
        if result is SKIPPED:
            self._stats["gap"] += 1
            return self._stale(track)
        if isinstance(result, StepFailed):
            return self._settle_failure(track, kind, result.error, t_ns)

        if kind == "reopen":
            device, raw = result
            release_gpm(self._nvml, track.device)
            track.device = device
            track.status, track.problem = STATUS_OK, None
            track.backoff.reset()
            track.mig_checked_ns = t_ns
            self._stats["reopened"] += 1
            logger.info(
                "GPU %d %s (%s) is back; sampling it again", device.index, device.name, device.uuid
            )
            return self._account(track, raw, t_ns)
        return self._account(track, result, t_ns)

    def _settle_failure(
        self, track: _Track, kind: str, error: BaseException, t_ns: int
    ) -> GpuReading | None:
        if isinstance(error, DriverNotLoaded):
            self._driver_gone(t_ns)
            return None
        if isinstance(error, GpuLost | CallTimedOut):
            if kind == "read":
                self._stats["gpu_lost"] += 1
            self._isolate(track, t_ns, STATUS_LOST, str(error))
            return self._unhealthy(track)
        if isinstance(error, NvmlFailure):
            if kind == "reopen":
                self._isolate(track, t_ns, track.status, str(error))
                return self._unhealthy(track)
            self._stats["gap"] += 1
            return self._stale(track)
        if "unexpected" not in track.logged:
            track.logged.add("unexpected")
            logger.error("reading GPU %s failed unexpectedly", track.uuid, exc_info=error)
        self._stats["gap"] += 1
        return self._stale(track)

    def _isolate(self, track: _Track, t_ns: int, status: str, problem: str) -> None:
        """Stop sampling a GPU, forget its baselines, and schedule a re-open with backoff."""
        if track.status == STATUS_OK:
            device = track.device
            logger.warning(
                "GPU %d %s (%s): %s; isolating it, the other GPUs keep being sampled",
                device.index,
                device.name,
                device.uuid,
                problem,
            )
        track.status, track.problem = status, problem
        # The energy used while the GPU was unreadable is not counted: the counter may have been
        # reset or be wrong, and a first reading after re-open is only a new baseline.
        self._ledger.rebaseline(track.counter_key)
        if track.module_key:
            self._ledger.rebaseline(track.module_key)
        track.integrator.restart()
        track.crosscheck.add(t_ns, None, None)
        track.retry_ns = t_ns + int(track.backoff.next_delay_s() * NS_PER_S)

    # ------------------------------------------------------------ accounting

    def _account(self, track: _Track, raw: RawSample, t_ns: int) -> GpuReading:
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
        return GpuReading(
            uuid=device.uuid,
            index=device.index,
            name=device.name,
            sku=device.sku,
            architecture=device.architecture,
            energy_joules=track.energy_j,
            energy_source=_energy_source(device),
            power_watts=power_w,
            power_scope=device.power_scope,
            utilization=utilization,
            memory_used_bytes=raw.memory_used_bytes,
            memory_total_bytes=raw.memory_total_bytes,
            module_energy_joules=track.module_energy_j if track.module_key else None,
            energy_start_ns=track.energy_start_ns,
            module_energy_start_ns=track.module_start_ns if track.module_key else None,
            mig_instances=self._mig_readings(device, raw.mig_activity_pct),
            module_power_watts=module_power_w if device.module_leader else None,
            module_id=device.module_id,
        )

    def _count_energy(self, track: _Track, energy_mj: int | None, t_ns: int) -> float | None:
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
            self._stats["counter_reset"] += 1
        return observed.added / 1000 if observed.event == "growth" else None

    def _checked_power(
        self, track: _Track, milliwatts: int | None, limit_mw: int | None, what: str
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

    # ------------------------------------------------------- logging, output

    def _switch_off(self, track: _Track, metrics: list[str]) -> None:
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
        self._log_unsupported(track, metrics)

    def _log_unsupported(self, track: _Track, metrics: list[str]) -> None:
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

    def _log_opened(self, track: _Track) -> None:
        device = track.device
        if device.mig:
            logger.info(
                "GPU %d %s: MIG enabled with %d instances; utilization is not reported and energy "
                "is shared by %s",
                device.index,
                device.name,
                len(device.mig),
                "measured activity" if device.caps.gpm else "slice size",
            )
        logger.debug(
            "opened GPU %d %s (%s, %s)", device.index, device.name, device.sku, device.uuid
        )

    def _stale(self, track: _Track) -> GpuReading:
        """A healthy GPU that gave nothing new this cycle: totals held, gauges absent."""
        return dataclasses.replace(self._unhealthy(track), healthy=True, problem=None)

    def _unhealthy(self, track: _Track) -> GpuReading:
        device = track.device
        return GpuReading(
            uuid=device.uuid,
            index=device.index,
            name=device.name,
            sku=device.sku,
            architecture=device.architecture,
            energy_joules=track.energy_j,
            energy_source=_energy_source(device),
            power_watts=None,
            power_scope=device.power_scope,
            utilization=None,
            memory_used_bytes=None,
            memory_total_bytes=None,
            module_energy_joules=track.module_energy_j if track.module_key else None,
            energy_start_ns=track.energy_start_ns,
            module_energy_start_ns=track.module_start_ns if track.module_key else None,
            mig_instances=(),
            healthy=track.status == STATUS_OK and self._ready,
            module_id=device.module_id,
            problem=track.problem or (None if self._ready else "NVML not initialised"),
        )


def _energy_source(device: GpuDevice) -> str:
    return ENERGY_SOURCE_COUNTER if device.caps.energy_counter else ENERGY_SOURCE_POWER_INTEGRAL


def _processes_by_device(device: GpuDevice, processes: list[GpuProcess]) -> dict[str, set[int]]:
    """Processes of one GPU keyed by the UUID of the device they run on (parent or MIG device)."""
    out: dict[str, set[int]] = {device.uuid: set()}
    migs = {(m.gpu_instance_id, m.compute_instance_id): m.uuid for m in device.mig}
    for mig_uuid in migs.values():
        out[mig_uuid] = set()
    for process in processes:
        key = (process.gpu_instance_id, process.compute_instance_id)
        out[migs.get(key, device.uuid)].add(process.pid)
    if device.mig and not out[device.uuid]:
        del out[device.uuid]
    return out
