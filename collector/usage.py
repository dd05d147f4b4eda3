"""Who used each GPU-hour: attributing GPU time, energy and tokens to endpoints and models.

For every hour with new data, the rollups of that hour are turned into ``usage_hourly`` rows.
The rules:

* A **device** is a whole GPU, or one MIG instance of a GPU. A MIG instance gets its parent's
  seconds and joules times its share (measured activity, else slice size, as the agent reports);
  whatever the shares leave over stays with the parent, unassigned.
* A device is shared **equally** by the endpoints that run on it during the hour. A device no
  endpoint runs on is **unassigned**: all of it idle.
* An endpoint **serves** for as many seconds of the hour as its busiest token series grew in
  (``active_seconds``); that share of its device time and energy is serving, the rest idle.
  Limitation: energy is split between serving and idle in proportion to time, although a GPU
  draws less while idle, so idle energy is overstated when an hour mixes both.
* Within an endpoint, each **model** (base model or LoRA adapter) gets a share of the time in
  proportion to its tokens in the hour; in an hour without tokens the endpoint's known models
  share it equally.
* **Tokens** of an endpoint that runs on several devices are divided among them, so that sums
  over rows count each token once; an endpoint whose GPUs are unknown keeps its tokens on a row
  without a device.

No price enters here: prices are applied when a report reads these rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, and_, delete, select

from wattledger import contract as c
from wattledger.collector import schema as s
from wattledger.collector.rollup import HOUR_S, NS_PER_S

logger = logging.getLogger(__name__)

CHUNK_HOURS = 24

TOKEN_FIELDS = {
    c.TOKEN_INPUT: "input_tokens",
    c.TOKEN_OUTPUT: "output_tokens",
    c.TOKEN_INPUT_CACHED: "cached_tokens",
}
PHASE_FIELDS = {c.PHASE_PREFILL: "prefill_seconds", c.PHASE_DECODE: "decode_seconds"}
MEASURES = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "requests",
    "prefill_seconds",
    "decode_seconds",
)


@dataclass
class GpuHour:
    seconds: float = 0.0
    joules: float = 0.0
    utilization_sum: float = 0.0
    utilization_samples: int = 0

    def busy_and_known_seconds(self) -> tuple[float, float]:
        """Seconds a kernel ran (mean utilization times time), and the seconds that covers."""
        if not self.utilization_samples:
            return 0.0, 0.0
        return self.utilization_sum / self.utilization_samples * self.seconds, self.seconds


@dataclass
class EndpointHour:
    """One endpoint's counters in one hour, per model."""

    models: dict[str, dict[str, float]] = field(default_factory=dict)
    active_seconds: float = 0.0
    known_models: set[str] = field(default_factory=set)

    def model(self, name: str) -> dict[str, float]:
        return self.models.setdefault(name, dict.fromkeys(MEASURES, 0.0))


@dataclass
class HourInputs:
    """Everything one hour's attribution needs, read from the rollups."""

    gpus: dict[str, GpuHour] = field(default_factory=dict)
    mig_shares: dict[str, float] = field(default_factory=dict)  # MIG uuid -> share
    endpoints: dict[int, EndpointHour] = field(default_factory=dict)
    links: dict[int, set[str]] = field(default_factory=dict)  # endpoint -> device uuids


def allocate(hour: int, inputs: HourInputs, parents: dict[str, str]) -> list[dict]:
    """The ``usage_hourly`` rows of one hour. ``parents`` maps MIG uuids to their GPU."""
    rows: list[dict] = []
    devices = _devices(inputs, parents)

    endpoints_on: dict[str, list[int]] = defaultdict(list)
    for endpoint_id, device_uuids in inputs.links.items():
        for device in device_uuids:
            if device in devices:
                endpoints_on[device].append(endpoint_id)

    # Devices each endpoint actually has this hour, for dividing its tokens.
    devices_of: dict[int, list[str]] = defaultdict(list)
    for device, endpoint_ids in endpoints_on.items():
        for endpoint_id in endpoint_ids:
            devices_of[endpoint_id].append(device)

    for device, (gpu_uuid, seconds, joules, busy, known) in sorted(devices.items()):
        users = sorted(endpoints_on.get(device, ()))
        if not users:
            rows.append(
                _row(hour, gpu_uuid, device, None, None, seconds, 0.0, joules, 0.0, busy, known)
            )
            continue
        parent_seconds = inputs.gpus[gpu_uuid].seconds or seconds
        for endpoint_id in users:
            endpoint = inputs.endpoints.get(endpoint_id, EndpointHour())
            share = 1.0 / len(users)
            serving = min(1.0, endpoint.active_seconds / parent_seconds) if parent_seconds else 0.0
            n_devices = len(devices_of[endpoint_id])
            for model, weight in _model_weights(endpoint):
                row = _row(
                    hour,
                    gpu_uuid,
                    device,
                    endpoint_id,
                    model,
                    seconds * share * weight,
                    seconds * share * weight * serving,
                    joules * share * weight,
                    joules * share * weight * serving,
                    busy * share * weight,
                    known * share * weight,
                )
                counters = endpoint.models.get(model)
                if counters:
                    for name in MEASURES:
                        row[name] = counters[name] / n_devices
                rows.append(row)

    for endpoint_id, endpoint in sorted(inputs.endpoints.items()):
        if devices_of.get(endpoint_id):
            continue
        for model, counters in sorted(endpoint.models.items()):
            row = _row(hour, None, None, endpoint_id, model, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            row.update(counters)
            rows.append(row)
    return rows


def _devices(
    inputs: HourInputs, parents: dict[str, str]
) -> dict[str, tuple[str, float, float, float, float]]:
    """Device uuid -> (physical GPU, seconds, joules, busy seconds, seconds with utilization)."""
    devices: dict[str, tuple[str, float, float, float, float]] = {}
    instances: dict[str, list[str]] = defaultdict(list)
    for mig_uuid, parent in parents.items():
        if parent in inputs.gpus and mig_uuid in inputs.mig_shares:
            instances[parent].append(mig_uuid)

    for gpu_uuid, gpu in inputs.gpus.items():
        migs = instances.get(gpu_uuid)
        if not migs:
            devices[gpu_uuid] = (gpu_uuid, gpu.seconds, gpu.joules, *gpu.busy_and_known_seconds())
            continue
        shares = {m: max(0.0, inputs.mig_shares[m]) for m in migs}
        total = sum(shares.values())
        if total > 1.0:
            shares = {m: v / total for m, v in shares.items()}
            total = 1.0
        for mig_uuid, share in shares.items():
            devices[mig_uuid] = (gpu_uuid, gpu.seconds * share, gpu.joules * share, 0.0, 0.0)
        leftover = 1.0 - total
        if leftover > 1e-9:
            devices[gpu_uuid] = (gpu_uuid, gpu.seconds * leftover, gpu.joules * leftover, 0.0, 0.0)
    return devices


def _model_weights(endpoint: EndpointHour) -> list[tuple[str | None, float]]:
    tokens = {
        model: counters["input_tokens"] + counters["output_tokens"]
        for model, counters in endpoint.models.items()
    }
    total = sum(tokens.values())
    if total > 0:
        return [(model, value / total) for model, value in sorted(tokens.items()) if value > 0]
    known = sorted(endpoint.known_models or endpoint.models)
    if not known:
        return [(None, 1.0)]
    return [(model, 1.0 / len(known)) for model in known]


def _row(
    hour, gpu_uuid, device, endpoint_id, model, seconds, serving_s, joules, serving_j, busy, known
) -> dict:
    row = {
        "hour": hour,
        "gpu_uuid": gpu_uuid,
        "device_uuid": device,
        "endpoint_id": endpoint_id,
        "model": model,
        "gpu_seconds": seconds,
        "serving_seconds": serving_s,
        "energy_j": joules,
        "serving_energy_j": serving_j,
        "util_busy_seconds": busy,
        "util_known_seconds": known,
    }
    row.update(dict.fromkeys(MEASURES, 0.0))
    return row


def refresh(engine: Engine, *, progress=None) -> int:
    """Recompute usage rows for every hour marked dirty; returns the number of hours done.

    ``progress`` (optional) is called with ``(done, total)`` after each chunk of hours.
    """
    with engine.connect() as conn:
        marks = conn.execute(
            select(s.dirty_hours.c.hour, s.dirty_hours.c.version).order_by(s.dirty_hours.c.hour)
        ).all()
    if not marks:
        return 0

    done = 0
    for start in range(0, len(marks), CHUNK_HOURS):
        chunk = marks[start : start + CHUNK_HOURS]
        with engine.begin() as conn:
            _refresh_chunk(conn, [hour for hour, _ in chunk])
            for hour, version in chunk:
                conn.execute(
                    delete(s.dirty_hours).where(
                        and_(s.dirty_hours.c.hour == hour, s.dirty_hours.c.version == version)
                    )
                )
        done += len(chunk)
        if progress is not None:
            progress(done, len(marks))
    logger.info("attributed usage for %d hours", done)
    return done


def pending_hours(engine: Engine) -> int:
    from sqlalchemy import func

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(s.dirty_hours)).scalar_one()


def _refresh_chunk(conn, hours: Sequence[int]) -> None:
    inputs = _read_inputs(conn, hours)
    parents = dict(
        conn.execute(
            select(s.gpus.c.uuid, s.gpus.c.parent_uuid).where(s.gpus.c.parent_uuid.is_not(None))
        ).all()
    )
    rows: list[dict] = []
    for hour in hours:
        rows.extend(allocate(hour, inputs.get(hour, HourInputs()), parents))

    conn.execute(delete(s.usage_hourly).where(s.usage_hourly.c.hour.in_(list(hours))))
    for start in range(0, len(rows), 2_000):
        conn.execute(s.usage_hourly.insert(), rows[start : start + 2_000])


def _read_inputs(conn, hours: Sequence[int]) -> dict[int, HourInputs]:
    r, sr = s.rollup_hourly, s.series
    per_hour: dict[int, HourInputs] = defaultdict(HourInputs)
    query = (
        select(
            r.c.hour,
            sr.c.metric,
            sr.c.gpu_uuid,
            sr.c.endpoint_id,
            sr.c.model,
            sr.c.label,
            r.c.value,
            r.c.seconds,
            r.c.active_seconds,
            r.c.samples,
        )
        .join(sr, sr.c.id == r.c.series_id)
        .where(r.c.hour.in_(list(hours)))
    )
    for (
        hour,
        metric,
        gpu_uuid,
        endpoint_id,
        model,
        label,
        value,
        seconds,
        active,
        samples,
    ) in conn.execute(query):
        inputs = per_hour[hour]
        if metric == c.METRIC_ENERGY:
            gpu = inputs.gpus.setdefault(gpu_uuid, GpuHour())
            gpu.seconds += seconds
            gpu.joules += value
        elif metric == c.METRIC_UTILIZATION and samples:
            gpu = inputs.gpus.setdefault(gpu_uuid, GpuHour())
            gpu.utilization_sum += value
            gpu.utilization_samples += samples
        elif metric == c.METRIC_MIG_SHARE and samples:
            inputs.mig_shares[gpu_uuid] = value / samples
        elif endpoint_id is not None:
            _add_engine(
                inputs.endpoints.setdefault(endpoint_id, EndpointHour()),
                metric,
                model,
                label,
                value,
                active,
            )

    _drop_gpus_without_energy(per_hour)
    _read_links(conn, hours, per_hour)
    _read_known_models(conn, per_hour)
    return per_hour


def _add_engine(
    endpoint: EndpointHour, metric: str, model: str, label: str | None, value: float, active: float
) -> None:
    counters = endpoint.model(model)
    if metric == c.METRIC_TOKENS:
        counters[TOKEN_FIELDS[label]] += value
        endpoint.active_seconds = max(endpoint.active_seconds, active)
    elif metric == c.METRIC_REQUESTS:
        counters["requests"] += value
    elif metric == c.METRIC_PHASE_TIME:
        counters[PHASE_FIELDS[label]] += value


def _drop_gpus_without_energy(per_hour: dict[int, HourInputs]) -> None:
    """A GPU with utilization but no energy in an hour has no time to attribute."""
    for inputs in per_hour.values():
        for uuid in [u for u, g in inputs.gpus.items() if g.seconds == 0 and g.joules == 0]:
            del inputs.gpus[uuid]


def _read_links(conn, hours: Sequence[int], per_hour: dict[int, HourInputs]) -> None:
    first, last = min(hours), max(hours) + HOUR_S
    links = s.endpoint_gpus
    rows = conn.execute(
        select(
            links.c.endpoint_id, links.c.gpu_uuid, links.c.first_seen_ns, links.c.last_seen_ns
        ).where(
            and_(links.c.first_seen_ns < last * NS_PER_S, links.c.last_seen_ns >= first * NS_PER_S)
        )
    )
    for endpoint_id, gpu_uuid, first_ns, last_ns in rows:
        for hour in hours:
            if first_ns < (hour + HOUR_S) * NS_PER_S and last_ns >= hour * NS_PER_S:
                per_hour[hour].links.setdefault(endpoint_id, set()).add(gpu_uuid)


def _read_known_models(conn, per_hour: dict[int, HourInputs]) -> None:
    endpoint_ids = {eid for inputs in per_hour.values() for eid in inputs.links}
    if not endpoint_ids:
        return
    rows = conn.execute(
        select(s.series.c.endpoint_id, s.series.c.model)
        .where(s.series.c.endpoint_id.in_(endpoint_ids), s.series.c.metric == c.METRIC_TOKENS)
        .distinct()
    )
    known: dict[int, set[str]] = defaultdict(set)
    for endpoint_id, model in rows:
        known[endpoint_id].add(model)
    for inputs in per_hour.values():
        for endpoint_id in inputs.links:
            endpoint = inputs.endpoints.setdefault(endpoint_id, EndpointHour())
            endpoint.known_models |= known.get(endpoint_id, set())
