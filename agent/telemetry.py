"""The agent's OpenTelemetry side: instruments of the wire contract fed from the latest readings.

Each contract metric is an asynchronous instrument whose callback reports the values of the most
recent sampling cycle (:class:`Snapshot`). The agent collects on its own schedule through
:class:`SnapshotReader`, which stamps every point with the time its reading was taken and with the
start of its series as the ledger remembers it. That way a point's time is when the GPU or engine
was read (not when the SDK happened to collect), and a series keeps its start across agent
restarts, so the collector sees one continuous counter.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    Gauge,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.resources import Resource

from wattledger import __version__
from wattledger import contract as c

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesValue:
    """One value to export: its attributes, value, and the start of its series (counters)."""

    attributes: dict[str, Any]
    value: float
    start_ns: int | None = None


@dataclass
class Snapshot:
    """The values of one collection, per metric name, and the time they were read."""

    t_ns: int = 0
    values: dict[str, list[SeriesValue]] = field(default_factory=dict)

    def add(
        self, metric: str, attributes: dict[str, Any], value: float, start_ns: int | None = None
    ) -> None:
        self.values.setdefault(metric, []).append(SeriesValue(attributes, value, start_ns))

    def point_count(self) -> int:
        return sum(len(v) for v in self.values.values())


INSTRUMENTS: tuple[tuple[str, str, str], ...] = (
    (c.METRIC_ENERGY, "counter", "Energy used by the GPU since the series start"),
    (c.METRIC_MODULE_ENERGY, "counter", "Energy of the whole Grace module (GPU and CPU), apart"),
    (c.METRIC_POWER, "gauge", "GPU power draw"),
    (c.METRIC_UTILIZATION, "gauge", "Share of time a kernel ran on the GPU"),
    (c.METRIC_MEMORY_USAGE, "updown", "GPU memory in use"),
    (c.METRIC_MEMORY_LIMIT, "updown", "GPU memory size"),
    (c.METRIC_MIG_SHARE, "gauge", "Share of the parent GPU given to a MIG instance"),
    (c.METRIC_TOKENS, "counter", "Tokens processed by the serving engine"),
    (c.METRIC_REQUESTS, "counter", "Requests finished by the serving engine"),
    (c.METRIC_PHASE_TIME, "counter", "Request time summed per phase"),
)


def build_resource(
    node: str,
    *,
    host_name: str | None = None,
    cluster: str | None = None,
    site: str | None = None,
    tags: dict[str, str] | None = None,
) -> Resource:
    attributes: dict[str, Any] = {
        c.RES_SERVICE_NAME: c.SERVICE_NAME,
        "service.version": __version__,
        c.RES_HOST_NAME: host_name or node,
        c.RES_NODE: node,
    }
    if cluster:
        attributes[c.RES_CLUSTER] = cluster
    if site:
        attributes[c.RES_SITE] = site
    for key, value in (tags or {}).items():
        attributes[c.RES_TAG_PREFIX + key] = value
    return Resource.create(attributes)


# The SDK folds attribute sets beyond its per-instrument limit (2,000 by default) into one
# overflow point with no attributes, which the collector must refuse. A node's series are
# bounded by its GPUs, endpoints and models; many LoRA adapters on one endpoint can pass 2,000.
SERIES_PER_INSTRUMENT = 100_000


class SnapshotReader(MetricReader):
    """Collects on demand and hands the stamped batch to ``sink``."""

    def __init__(self, sink: Callable[[MetricsData], bool]) -> None:
        super().__init__(
            cardinality_limits={
                ObservableCounter: SERIES_PER_INSTRUMENT,
                ObservableGauge: SERIES_PER_INSTRUMENT,
                ObservableUpDownCounter: SERIES_PER_INSTRUMENT,
            }
        )
        self._sink = sink
        self._stamp: Callable[[MetricsData], MetricsData] | None = None
        self.last_result: bool | None = None

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs
    ) -> None:
        if self._stamp is not None:
            metrics_data = self._stamp(metrics_data)
        self.last_result = self._sink(metrics_data)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


class AgentTelemetry:
    """Instruments of the wire contract, reporting whatever :meth:`publish` last handed over."""

    def __init__(self, resource: Resource, sink: Callable[[MetricsData], bool]) -> None:
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        self._starts: dict[tuple[str, tuple], int | None] = {}
        self.reader = SnapshotReader(sink)
        self.reader._stamp = self._restamp
        self.provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        meter = self.provider.get_meter(c.SCOPE_NAME, __version__)
        for name, kind, description in INSTRUMENTS:
            callback = self._callback_for(name)
            unit = c.UNITS[name]
            if kind == "counter":
                meter.create_observable_counter(
                    name, [callback], unit=unit, description=description
                )
            elif kind == "updown":
                meter.create_observable_up_down_counter(
                    name, [callback], unit=unit, description=description
                )
            else:
                meter.create_observable_gauge(name, [callback], unit=unit, description=description)

    def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` what the next collection reports."""
        crowded = [
            m for m, values in snapshot.values.items() if len(values) > SERIES_PER_INSTRUMENT
        ]
        for metric in crowded:
            # Limitation: beyond this many series one instrument's extra series are folded
            # into an overflow point that the collector refuses.
            logger.warning(
                "%s has %d series, more than the %d one export carries; the rest are lost",
                metric,
                len(snapshot.values[metric]),
                SERIES_PER_INSTRUMENT,
            )
        with self._lock:
            self._snapshot = snapshot
            self._starts = {
                (metric, _attr_key(v.attributes)): v.start_ns
                for metric, values in snapshot.values.items()
                for v in values
            }

    def collect(self) -> bool | None:
        """Collect the published snapshot and send it; returns what the sink said."""
        self.reader.last_result = None
        self.reader.collect()
        return self.reader.last_result

    def shutdown(self) -> None:
        self.provider.shutdown()

    def _callback_for(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                values = list(self._snapshot.values.get(name, ()))
            return [Observation(v.value, v.attributes) for v in values]

        return callback

    def _restamp(self, metrics_data: MetricsData) -> MetricsData:
        """Give each point the snapshot's reading time and its series' own start time."""
        with self._lock:
            t_ns = self._snapshot.t_ns
            starts = dict(self._starts)

        def stamp_points(metric_name: str, points) -> list[NumberDataPoint]:
            stamped = []
            for point in points:
                start = starts.get((metric_name, _attr_key(point.attributes)))
                stamped.append(
                    dataclasses.replace(point, time_unix_nano=t_ns, start_time_unix_nano=start or 0)
                )
            return stamped

        resource_metrics = []
        for rm in metrics_data.resource_metrics:
            scope_metrics = []
            for sm in rm.scope_metrics:
                metrics = []
                for metric in sm.metrics:
                    data = metric.data
                    if isinstance(data, Sum | Gauge):
                        data = dataclasses.replace(
                            data, data_points=stamp_points(metric.name, data.data_points)
                        )
                    metrics.append(dataclasses.replace(metric, data=data))
                scope_metrics.append(dataclasses.replace(sm, metrics=metrics))
            resource_metrics.append(dataclasses.replace(rm, scope_metrics=scope_metrics))
        return dataclasses.replace(metrics_data, resource_metrics=resource_metrics)


def _attr_key(attributes) -> tuple:
    return tuple(
        sorted(
            (k, tuple(v) if isinstance(v, list) else v) for k, v in dict(attributes or {}).items()
        )
    )
