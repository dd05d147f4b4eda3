"""The agent's loop: sample GPUs, scrape engines, export, on three clocks of their own.

GPUs are sampled often (power integration needs it), engines scraped less often (their pages are
larger and some block while decoding), and batches exported least often. Each step is guarded: a
failing GPU, endpoint or collector is logged and retried on the next tick, and never ends the
loop. Time comes from an injectable clock so a simulated fleet can run a day in seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wattledger import contract as c
from wattledger.agent.engines.reading import EngineReading
from wattledger.agent.engines.roles import apply_role
from wattledger.agent.gpu.reading import GpuReading
from wattledger.agent.ledger import CounterLedger
from wattledger.agent.telemetry import AgentTelemetry, Snapshot

logger = logging.getLogger(__name__)

NS = 1_000_000_000


class GpuSource(Protocol):
    def poll(self, t_ns: int) -> list[GpuReading]: ...


class EngineSource(Protocol):
    """One scraped endpoint: its name, how it is known, and a way to read it."""

    name: str
    engine: str | None
    role: str | None

    def scrape(self) -> EngineReading | None: ...

    def gpu_ids(self, gpus: Sequence[GpuReading]) -> tuple[str, ...]: ...


@dataclass
class Intervals:
    sample_s: float = 1.0
    scrape_s: float = 15.0
    export_s: float = 60.0


@dataclass
class _EndpointTotals:
    """Exported totals of one endpoint, per (model, metric, label)."""

    engine: str
    role: str
    version: str | None
    values: dict[tuple[str, str, str | None], tuple[float, int]] = field(default_factory=dict)


# (reading field, contract metric, label attribute, label value)
ENGINE_QUANTITIES: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("input_tokens", c.METRIC_TOKENS, c.ATTR_TOKEN_TYPE, c.TOKEN_INPUT),
    ("input_cached_tokens", c.METRIC_TOKENS, c.ATTR_TOKEN_TYPE, c.TOKEN_INPUT_CACHED),
    ("output_tokens", c.METRIC_TOKENS, c.ATTR_TOKEN_TYPE, c.TOKEN_OUTPUT),
    ("requests", c.METRIC_REQUESTS, None, None),
    ("prefill_seconds", c.METRIC_PHASE_TIME, c.ATTR_PHASE, c.PHASE_PREFILL),
    ("decode_seconds", c.METRIC_PHASE_TIME, c.ATTR_PHASE, c.PHASE_DECODE),
)


class Agent:
    """One node's agent: owns the ledger, the sources and the telemetry pipeline."""

    def __init__(
        self,
        *,
        telemetry: AgentTelemetry,
        ledger: CounterLedger,
        gpus: GpuSource | None,
        endpoints: Sequence[EngineSource],
        intervals: Intervals | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.telemetry = telemetry
        self.ledger = ledger
        self.gpus = gpus
        self.endpoints = list(endpoints)
        self.intervals = intervals or Intervals()
        self.clock = clock
        self._gpu_readings: list[GpuReading] = []
        self._endpoint_totals: dict[str, _EndpointTotals] = {}
        self._next_sample = self._next_scrape = self._next_export = 0
        self.exports_ok = 0
        self.exports_failed = 0

    def tick(self, now_ns: int | None = None) -> None:
        """Do every step that is due at ``now_ns``."""
        now_ns = self.clock() if now_ns is None else now_ns
        if now_ns >= self._next_sample:
            self.sample(now_ns)
            self._next_sample = now_ns + int(self.intervals.sample_s * NS)
        if now_ns >= self._next_scrape:
            self.scrape(now_ns)
            self._next_scrape = now_ns + int(self.intervals.scrape_s * NS)
        if now_ns >= self._next_export:
            self.export(now_ns)
            self._next_export = now_ns + int(self.intervals.export_s * NS)

    def sample(self, now_ns: int) -> None:
        if self.gpus is None:
            return
        try:
            self._gpu_readings = self.gpus.poll(now_ns)
        except Exception:  # one bad cycle must not end the agent
            logger.exception("GPU sampling failed; keeping the last readings")

    def scrape(self, now_ns: int) -> None:
        for endpoint in self.endpoints:
            try:
                reading = endpoint.scrape()
            except Exception:  # one bad endpoint must not stop the others
                logger.exception("scraping endpoint %s failed", endpoint.name)
                continue
            if reading is not None:
                self._account(endpoint, reading, now_ns)

    def export(self, now_ns: int) -> bool | None:
        """Save baselines, then send everything read so far. Returns the sink's verdict."""
        try:
            self.ledger.save()
        except OSError as exc:  # a full disk must not stop the agent; memory keeps the state
            logger.warning("cannot save the agent state (%s); it is kept in memory meanwhile", exc)
        self.telemetry.publish(self.snapshot(now_ns))
        try:
            ok = self.telemetry.collect()
        except Exception:
            logger.exception("export failed")
            ok = False
        if ok:
            self.exports_ok += 1
        else:
            self.exports_failed += 1
        return ok

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        """Tick until ``stop`` is set, then export once more so nothing read is left behind."""
        while not stop.is_set():
            self.tick()
            if on_tick is not None:
                on_tick()
            wait_ns = min(self._next_sample, self._next_scrape, self._next_export) - self.clock()
            stop.wait(max(wait_ns, 0) / NS)
        self.export(self.clock())

    def snapshot(self, now_ns: int) -> Snapshot:
        """Everything the agent currently knows, as values of the wire contract."""
        snap = Snapshot(t_ns=now_ns)
        for gpu in self._gpu_readings:
            _add_gpu(snap, gpu)
        for endpoint in self.endpoints:
            totals = self._endpoint_totals.get(endpoint.name)
            if totals is None:
                continue
            gpu_ids = endpoint.gpu_ids(self._gpu_readings)
            for (model, metric, label), (value, start_ns) in totals.values.items():
                attrs = {
                    c.ATTR_ENDPOINT: endpoint.name,
                    c.ATTR_ENGINE: totals.engine,
                    c.ATTR_MODEL: model,
                    c.ATTR_ROLE: totals.role,
                    c.ATTR_GPU_IDS: gpu_ids,
                }
                if totals.version:
                    attrs[c.ATTR_ENGINE_VERSION] = totals.version
                label_attr = _label_attribute(metric)
                if label_attr:
                    attrs[label_attr] = label
                snap.add(metric, attrs, value, start_ns)
        return snap

    def _account(self, endpoint: EngineSource, reading: EngineReading, now_ns: int) -> None:
        """Pass each raw counter of ``reading`` through the ledger into exported totals."""
        reading = apply_role(reading, endpoint.role)
        role, engine = reading.role, endpoint.engine or reading.engine
        totals = self._endpoint_totals.get(endpoint.name)
        if totals is None or totals.role != role or totals.engine != engine:
            totals = self._endpoint_totals[endpoint.name] = _EndpointTotals(
                engine, role, reading.version_hint
            )

        for model, counters in reading.models.items():
            for field_name, metric, _label_attr, label in ENGINE_QUANTITIES:
                quantity = getattr(counters, field_name)
                if quantity is None:
                    continue
                key = f"engine|{endpoint.name}|{model}|{field_name}"
                observed = self.ledger.observe(
                    key, quantity.value, now_ns, marker=reading.started_at
                )
                totals.values[(model, metric, label)] = (observed.cumulative, observed.start_ns)


def _label_attribute(metric: str) -> str | None:
    if metric == c.METRIC_TOKENS:
        return c.ATTR_TOKEN_TYPE
    if metric == c.METRIC_PHASE_TIME:
        return c.ATTR_PHASE
    return None


def _add_gpu(snap: Snapshot, gpu: GpuReading) -> None:
    base = {
        c.ATTR_HW_ID: gpu.uuid,
        c.ATTR_HW_TYPE: c.HW_TYPE_GPU,
        c.ATTR_HW_NAME: gpu.name,
        c.ATTR_HW_VENDOR: c.HW_VENDOR_NVIDIA,
        c.ATTR_ARCHITECTURE: gpu.architecture,
        c.ATTR_SKU: gpu.sku,
    }
    if gpu.energy_joules is not None:
        attrs = {
            **base,
            c.ATTR_ENERGY_SOURCE: gpu.energy_source,
            c.ATTR_POWER_SCOPE: gpu.power_scope,
        }
        snap.add(c.METRIC_ENERGY, attrs, gpu.energy_joules, gpu.energy_start_ns)
    if gpu.module_energy_joules is not None:
        snap.add(
            c.METRIC_MODULE_ENERGY,
            {**base, c.ATTR_POWER_SCOPE: "module"},
            gpu.module_energy_joules,
            gpu.module_energy_start_ns,
        )
    if gpu.power_watts is not None:
        snap.add(c.METRIC_POWER, {**base, c.ATTR_POWER_SCOPE: gpu.power_scope}, gpu.power_watts)
    if gpu.utilization is not None:
        snap.add(c.METRIC_UTILIZATION, base, gpu.utilization)
    if gpu.memory_used_bytes is not None:
        snap.add(c.METRIC_MEMORY_USAGE, base, gpu.memory_used_bytes)
    if gpu.memory_total_bytes is not None:
        snap.add(c.METRIC_MEMORY_LIMIT, base, gpu.memory_total_bytes)
    for mig in gpu.mig_instances:
        attrs = {
            c.ATTR_HW_ID: mig.uuid,
            c.ATTR_HW_TYPE: c.HW_TYPE_GPU,
            c.ATTR_HW_PARENT: mig.parent_uuid,
            c.ATTR_MIG_PROFILE: mig.profile,
            c.ATTR_SHARE_METHOD: mig.share_method,
            c.ATTR_SKU: gpu.sku,
            c.ATTR_ARCHITECTURE: gpu.architecture,
            c.ATTR_HW_NAME: gpu.name,
        }
        snap.add(c.METRIC_MIG_SHARE, attrs, mig.share)
