"""Constructed fleets for the report tests: points once a minute, through the real ingest path.

Each GPU's energy counter and each endpoint's token and phase-time counters are cumulative from
the fleet's start, as an agent sends them. A counter grows only in the minutes it is active, so
an endpoint that serves half an hour is idle the other half.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wattledger import contract as c
from wattledger.collector.ingest import Ingestor
from wattledger.collector.points import COUNTER, GAUGE, Point
from wattledger.collector.usage import refresh

S = 1_000_000_000
HOUR = 1_764_000_000  # 2025-11-24T16:00:00Z, a Monday, on an hour boundary (seconds)
DAY = 86_400


def minutes(first: int, last: int) -> range:
    """Minutes ``first`` to ``last`` inclusive from the fleet's start (minute 1 ends at +60 s)."""
    return range(first, last + 1)


@dataclass
class Fleet:
    """Points of a constructed fleet; ``start`` is the series start time in seconds."""

    start: int = HOUR
    length_minutes: int = 60
    points: list[Point] = field(default_factory=list)

    def _t(self, minute: int) -> int:
        return (self.start + minute * 60) * S

    def gpu(
        self,
        node: str,
        uuid: str,
        sku: str | None,
        architecture: str | None,
        watts: float,
        *,
        site: str | None = None,
        utilization: float | None = None,
        parent: str | None = None,
    ) -> None:
        """A GPU drawing ``watts`` for the whole fleet length (an energy counter, once a minute)."""
        resource = {c.RES_NODE: node} | ({c.RES_SITE: site} if site else {})
        attrs = {c.ATTR_HW_ID: uuid, c.ATTR_HW_TYPE: "gpu", c.ATTR_HW_NAME: f"NVIDIA {sku}"}
        if sku:
            attrs[c.ATTR_SKU] = sku
        if architecture:
            attrs[c.ATTR_ARCHITECTURE] = architecture
        if parent:
            attrs[c.ATTR_HW_PARENT] = parent
        start_ns = self.start * S
        for minute in minutes(1, self.length_minutes):
            t = self._t(minute)
            self.points.append(
                Point(c.METRIC_ENERGY, COUNTER, resource, attrs, start_ns, t, watts * minute * 60.0)
            )
            if utilization is not None:
                self.points.append(
                    Point(c.METRIC_UTILIZATION, GAUGE, resource, attrs, None, t, utilization)
                )

    def mig(
        self, node: str, uuid: str, parent: str, sku: str, architecture: str, share: float
    ) -> None:
        """A MIG instance of ``parent`` given ``share`` of it (the agent's share gauge)."""
        resource = {c.RES_NODE: node}
        attrs = {
            c.ATTR_HW_ID: uuid,
            c.ATTR_HW_TYPE: "gpu",
            c.ATTR_HW_PARENT: parent,
            c.ATTR_SKU: sku,
            c.ATTR_ARCHITECTURE: architecture,
            c.ATTR_MIG_PROFILE: "3g.40gb",
        }
        for minute in minutes(1, self.length_minutes):
            self.points.append(
                Point(c.METRIC_MIG_SHARE, GAUGE, resource, attrs, None, self._t(minute), share)
            )

    def endpoint(
        self,
        node: str,
        name: str,
        gpu_ids: Iterable[str],
        model: str,
        *,
        input_per_s: float | Callable[[int], float] = 0.0,
        output_per_s: float | Callable[[int], float] = 0.0,
        prefill_per_s: float | Callable[[int], float] | None = None,
        decode_per_s: float | Callable[[int], float] | None = None,
        active: Iterable[int] | None = None,
        phase_active: Iterable[int] | None = None,
        engine: str = "vllm",
        version: str | None = None,
        role: str | None = None,
    ) -> None:
        """An endpoint's counters; they grow at the given rates in the ``active`` minutes only.

        ``prefill_per_s`` / ``decode_per_s`` are phase seconds per second (summed request time).
        A rate may be a function of the minute, for traffic that changes over time. Phase
        counters grow in ``phase_active`` minutes (default: the ``active`` ones).
        """
        resource = {c.RES_NODE: node}
        common = {
            c.ATTR_ENDPOINT: name,
            c.ATTR_ENGINE: engine,
            c.ATTR_MODEL: model,
            c.ATTR_GPU_IDS: tuple(gpu_ids),
        }
        if version:
            common[c.ATTR_ENGINE_VERSION] = version
        if role:
            common[c.ATTR_ROLE] = role
        active_minutes = set(active) if active is not None else set(minutes(1, self.length_minutes))
        phase_minutes = set(phase_active) if phase_active is not None else active_minutes
        counters = [
            (c.METRIC_TOKENS, {c.ATTR_TOKEN_TYPE: c.TOKEN_INPUT}, input_per_s, active_minutes),
            (c.METRIC_TOKENS, {c.ATTR_TOKEN_TYPE: c.TOKEN_OUTPUT}, output_per_s, active_minutes),
        ]
        if prefill_per_s is not None:
            counters.append(
                (c.METRIC_PHASE_TIME, {c.ATTR_PHASE: c.PHASE_PREFILL}, prefill_per_s, phase_minutes)
            )
        if decode_per_s is not None:
            counters.append(
                (c.METRIC_PHASE_TIME, {c.ATTR_PHASE: c.PHASE_DECODE}, decode_per_s, phase_minutes)
            )

        start_ns = self.start * S
        for metric, label, rate, growing in counters:
            attrs = common | label
            value = 0.0
            for minute in minutes(1, self.length_minutes):
                if minute in growing:
                    value += (rate(minute) if callable(rate) else rate) * 60.0
                self.points.append(
                    Point(metric, COUNTER, resource, attrs, start_ns, self._t(minute), value)
                )

    def store(self, engine) -> None:
        """Ingest every point, then attribute the hours, as the collector and a report would."""
        result = Ingestor(engine).ingest(self.points)
        assert result.rejected == 0, result.rejections
        refresh(engine)
