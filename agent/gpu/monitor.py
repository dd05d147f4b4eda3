"""Sample every GPU of the node once per cycle, and keep sampling through GPU and driver faults.

NVML is behind :class:`~.nvml.Nvml` and runs on its worker thread; each :meth:`GpuMonitor.poll`
reads all GPUs in one batch and hands every result to the :class:`~.accounting.Accountant`
(energy, power checks, MIG shares). This module decides what happens to a GPU:

* a lost GPU, or one whose call hung, is isolated (its baselines forgotten, so the unknown stretch
  is not counted), kept in the output with ``healthy=False`` and its energy held, and re-opened by
  UUID with exponential backoff while the others keep being sampled;
* a GPU that fails before its UUID is known is opened again by index with the same backoff;
* a driver that is not loaded is retried with backoff; the monitor stays up meanwhile;
* a transient failure skips that reading for the cycle (a gap); cumulative energy catches up at
  the next read;
* GPUs are matched by UUID, never by index, across re-inits and agent restarts.

The ledger is not saved here: the agent runner calls ``ledger.save()`` on its own schedule.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattledger.agent.gpu.accounting import Accountant
from wattledger.agent.gpu.device import (
    GpuDevice,
    Probe,
    RawSample,
    probe_gpu,
    read_gpu,
    release_gpm,
)
from wattledger.agent.gpu.energy import NS_PER_S, CrossCheck, PowerIntegrator
from wattledger.agent.gpu.nvml import (
    CallTimedOut,
    DriverNotLoaded,
    GpuLost,
    GpuProcess,
    Nvml,
    NvmlFailure,
    Transient,
)
from wattledger.agent.gpu.reading import GpuReading
from wattledger.agent.gpu.track import (
    STATUS_HUNG,
    STATUS_LOST,
    STATUS_OK,
    Backoff,
    GpuTrack,
    Unopened,
)
from wattledger.agent.gpu.worker import HUNG, SKIPPED, StepFailed
from wattledger.agent.ledger import CounterLedger

logger = logging.getLogger(__name__)

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


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
        self._stats: Counter[str] = Counter()
        self._accounts = Accountant(
            ledger,
            self._stats,
            boot_id=boot_id() if callable(boot_id) else boot_id,
            power_limit_margin=power_limit_margin,
        )
        self._crosscheck = (crosscheck_window_s, crosscheck_tolerance)
        self._max_gap_s = max_integration_gap_s
        self._backoff = (backoff_first_s, backoff_max_s)
        self._mig_refresh_ns = int(mig_refresh_s * NS_PER_S)
        self._tracks: dict[str, GpuTrack] = {}
        self._unopened: dict[int, Unopened] = {}
        self._order: list[GpuTrack] = []
        self._ready = False
        self._init_backoff = Backoff(backoff_first_s, backoff_max_s)
        self._init_retry_ns: int | None = None
        self._last_t_ns = 0

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

        jobs: list[tuple[GpuTrack, str, Callable[[], Any]]] = []
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
            "%s ready (driver %s): %s",
            "simulated NVML" if getattr(self._nvml.lib, "SIMULATED", False) else "NVML",
            driver or "unknown",
            ", ".join(f"{n}x {sku}" for sku, n in sorted(skus.items())) or "no GPUs",
        )
        self._ready = True
        self._init_backoff.reset()
        self._init_retry_ns = None
        return True

    def _enumerate(self) -> tuple[list[Probe], list[Unopened]]:
        """Open every GPU by index; return the probes and the indices that failed."""
        count = self._nvml.call(self._nvml.device_count)
        pending = [Unopened(index, Backoff(*self._backoff), 0) for index in range(count)]
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

    def _settle_opening(self, unopened: Unopened, result: Any, t_ns: int) -> None:
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
                track = GpuTrack(
                    device=device,
                    backoff=Backoff(*self._backoff),
                    integrator=PowerIntegrator(self._max_gap_s),
                    crosscheck=CrossCheck(*self._crosscheck),
                    mig_checked_ns=t_ns,
                )
                self._tracks[device.uuid] = track
                self._accounts.log_unsupported(track, probe.unsupported)
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
        modules: dict[str, list[GpuTrack]] = {}
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

    def _guarded(self, track: GpuTrack | Unopened, step: Callable[[], Any]) -> Callable[[], Any]:
        """Mark the GPU busy while its step runs, so a stuck step is never run twice at once."""

        def run() -> Any:
            track.busy = True
            try:
                return step()
            finally:
                track.busy = False

        return run

    def _reopen(self, track: GpuTrack) -> tuple[GpuDevice, RawSample]:
        handle = self._nvml.handle_by_uuid(track.uuid)
        index = self._nvml.index(handle)
        index = track.device.index if index is None else index
        probe = probe_gpu(self._nvml, handle, index, track.device.caps)
        probe.device.module_leader = track.device.module_leader
        return probe.device, read_gpu(self._nvml, probe.device)

    def _settle(self, track: GpuTrack, kind: str, result: Any, t_ns: int) -> GpuReading | None:
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
            return self._accounts.reading(track, raw, t_ns)
        return self._accounts.reading(track, result, t_ns)

    def _settle_failure(
        self, track: GpuTrack, kind: str, error: BaseException, t_ns: int
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

    def _isolate(self, track: GpuTrack, t_ns: int, status: str, problem: str) -> None:
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
        self._accounts.forget_baselines(track, t_ns)
        track.retry_ns = t_ns + int(track.backoff.next_delay_s() * NS_PER_S)

    # ---------------------------------------------------------------- output

    def _log_opened(self, track: GpuTrack) -> None:
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

    def _stale(self, track: GpuTrack) -> GpuReading:
        """A healthy GPU that gave nothing new this cycle: totals held, gauges absent."""
        return self._accounts.held(track, healthy=True, problem=None)

    def _unhealthy(self, track: GpuTrack) -> GpuReading:
        if not self._ready:
            return self._accounts.held(
                track, healthy=False, problem=track.problem or "NVML not initialised"
            )
        return self._accounts.held(track, healthy=track.status == STATUS_OK, problem=track.problem)


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
