"""From priced usage to charge lines: who pays for which GPU time, per charge period.

The cost library's ``aggregate()`` sums the window's usage by node, endpoint, model, SKU,
architecture and site, plus the charge period and the agents' tags. Each group is split in two:

* its **serving** part (GPU time and energy while its endpoint produced tokens, and the tokens),
  charged to the cost centre the allocation rules pick for it;
* its **idle** part (the rest of its GPU time), which the ``idle`` setting either leaves with the
  same centre on separate lines (``none``), moves to one named centre (``centre``), or shares out
  within each charge period across the centres that served tokens in it, equally (``even``) or
  in proportion to their serving cost (``proportional``). A centre's share is spread over its
  serving lines in proportion to their serving cost. Idle GPU-hours and energy travel with the
  idle dollars, so the lines always add up to the fleet's whole GPU time, energy and cost.

The lines are keyed by charge period, cost centre, service (the model), resource (the endpoint,
or the GPU for time no endpoint used), kind (serving or idle) and the GPUs' node.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, literal, literal_column
from sqlalchemy.engine import Connection

from wattledger.cli.chargeback.settings import ChargebackSettings, Subject
from wattledger.cli.reports.prices import PriceBook
from wattledger.cli.reports.usage_query import (
    UNASSIGNED_LABEL,
    UNKNOWN_LABEL,
    Group,
    aggregate,
    ep,
    g,
    u,
)
from wattledger.timeutil import iso

logger = logging.getLogger(__name__)

SERVING = "serving"
IDLE = "idle"
UNALLOCATED_SERVICE = "Unallocated GPU capacity"
UNIDENTIFIED_MODEL = "Unidentified model"

BY = ("node", "endpoint", "model", "sku", "architecture", "site")
BUCKET_SECONDS = {"hour": 3600, "day": 86_400}
EMPTY_TAGS = literal_column("'{}'")


@dataclass
class Line:
    """What one cost centre is charged for one service on one resource in one charge period."""

    period_start: int
    centre: str
    kind: str
    service: str
    resource_id: str
    resource_name: str
    resource_type: str
    node: str
    endpoint: str | None
    gpu: str | None
    site: str | None
    tags: Mapping[str, str]
    skus: set[str] = field(default_factory=set)
    architectures: set[str] = field(default_factory=set)
    gpu_seconds: float = 0.0
    energy_j: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost_usd: float = 0.0
    shared_idle_usd: float = 0.0
    unmapped_tokens: float = 0.0  # tokens of an endpoint whose GPUs the agent could not name

    @property
    def key(self) -> tuple:
        return self.period_start, self.centre, self.service, self.resource_id, self.kind, self.node

    @property
    def tokens(self) -> float:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Place:
    """Where GPU time was spent: the GPU's node, the endpoint's own node, and the site."""

    node: str
    endpoint_node: str
    site: str | None


@dataclass
class Allocation:
    lines: list[Line]
    unpriced_seconds: float
    notes: list[str]


def collect(
    conn: Connection,
    prices: PriceBook,
    since: int,
    until: int,
    granularity: str,
    settings: ChargebackSettings,
) -> Allocation:
    """Charge lines for ``[since, until)``, each charge period ``granularity`` long."""
    groups = aggregate(conn, prices, since, until, BY, extra_keys=_extra_keys(granularity))

    lines: dict[tuple, Line] = {}
    unpriced = 0.0
    unmapped: dict[tuple[str, str], float] = defaultdict(float)
    for group in groups:
        unpriced += group.sums["unpriced_seconds"]
        tokens = group.sums["unmapped_input_tokens"] + group.sums["unmapped_output_tokens"]
        if tokens > 0:
            unmapped[group.key[0], group.key[1]] += tokens
        for line in _split(group, settings):
            _merge(lines, line)

    notes = [
        f"endpoint {node}/{endpoint} served {tokens:,.0f} tokens on GPUs wattledger does not "
        "know; its rows carry no x_UsdPerMillionTokens. Fix: map its GPUs in [[agent.endpoints]] "
        "gpus, or make sure the engine's process is visible to the agent"
        for (node, endpoint), tokens in sorted(unmapped.items())
    ]
    ordered = sorted(lines.values(), key=lambda line: line.key)
    if settings.idle == "centre":
        ordered = _regroup(_to_centre(ordered, settings.idle_centre))
    elif settings.idle in ("even", "proportional"):
        ordered = _share_idle(ordered, settings.idle, notes)
    return Allocation(sorted(ordered, key=lambda line: line.key), unpriced, notes)


def _extra_keys(granularity: str) -> dict:
    seconds = BUCKET_SECONDS[granularity]
    bucket = literal(seconds, literal_execute=True)  # rendered inline, so GROUP BY repeats it
    period = u.c.hour if seconds == 3600 else u.c.hour - u.c.hour % bucket
    return {
        "period": period,
        "resource": func.coalesce(ep.c.name, u.c.gpu_uuid, literal_column(f"'{UNKNOWN_LABEL}'")),
        "endpoint_node": func.coalesce(ep.c.node, literal_column("''")),
        "endpoint_tags": func.coalesce(ep.c.tags, EMPTY_TAGS),
        "gpu_tags": func.coalesce(g.c.tags, EMPTY_TAGS),
    }


def _split(group: Group, settings: ChargebackSettings) -> Iterable[Line]:
    """The serving and idle lines of one aggregated group."""
    node, endpoint, model, sku, architecture, site, period, resource, ep_node, ep_tags, gpu_tags = (
        group.key
    )
    endpoint = None if endpoint == UNASSIGNED_LABEL else endpoint
    model = None if model == UNASSIGNED_LABEL else model
    # Limitation: tags are the latest an agent reported for the endpoint or GPU, not the ones in
    # force during the period, so retagging a node moves its past periods on a re-export.
    tags = _tags(gpu_tags) | _tags(ep_tags)
    centre = settings.centre_for(Subject(node=node, endpoint=endpoint, model=model, tags=tags))

    d = group.sums
    serving_usd = d["serving_time_usd"] + d["serving_energy_usd"]
    idle_usd = max(0.0, d["time_usd"] + d["energy_usd"] - serving_usd)
    tokens = d["input_tokens"] + d["output_tokens"]

    def line(kind: str) -> Line:
        own_tags = _tags(ep_tags) if endpoint else _tags(gpu_tags)
        place = Place(node, ep_node or node, None if site == UNKNOWN_LABEL else site)
        made = _describe(kind, int(period), centre, endpoint, model, resource, place, own_tags)
        if sku != UNKNOWN_LABEL:
            made.skus.add(sku)
        if architecture != UNKNOWN_LABEL:
            made.architectures.add(architecture)
        return made

    if d["serving_seconds"] > 0 or tokens > 0 or serving_usd > 0:
        serving = line(SERVING)
        serving.gpu_seconds = d["serving_seconds"]
        serving.energy_j = d["serving_energy_j"]
        serving.input_tokens = d["input_tokens"]
        serving.output_tokens = d["output_tokens"]
        serving.cost_usd = serving_usd
        serving.unmapped_tokens = d["unmapped_input_tokens"] + d["unmapped_output_tokens"]
        yield serving

    idle_seconds = max(0.0, d["gpu_seconds"] - d["serving_seconds"])
    if idle_seconds > 0 or idle_usd > 0:
        idle = line(IDLE)
        idle.gpu_seconds = idle_seconds
        idle.energy_j = max(0.0, d["energy_j"] - d["serving_energy_j"])
        idle.cost_usd = idle_usd
        yield idle


def _describe(
    kind: str,
    period: int,
    centre: str,
    endpoint: str | None,
    model: str | None,
    resource: str,
    place: Place,
    tags: Mapping[str, str],
) -> Line:
    """A line with its service, resource and place set, and its amounts zero."""
    common = dict(
        period_start=period, centre=centre, kind=kind, node=place.node, site=place.site, tags=tags
    )
    if endpoint is not None:
        return Line(
            service=model or UNIDENTIFIED_MODEL,
            resource_id=f"{place.endpoint_node}/endpoints/{endpoint}",
            resource_name=endpoint,
            resource_type="Inference Endpoint",
            endpoint=endpoint,
            gpu=None,
            **common,
        )
    return Line(
        service=UNALLOCATED_SERVICE,
        resource_id=f"{place.node}/gpus/{resource}",
        resource_name=resource,
        resource_type="GPU",
        endpoint=None,
        gpu=resource,
        **common,
    )


def _merge(lines: dict[tuple, Line], line: Line) -> None:
    existing = lines.get(line.key)
    if existing is None:
        lines[line.key] = line
        return
    _add(existing, line, 1.0)
    existing.skus |= line.skus
    existing.architectures |= line.architectures


def _add(target: Line, source: Line, weight: float) -> None:
    target.gpu_seconds += source.gpu_seconds * weight
    target.energy_j += source.energy_j * weight
    target.input_tokens += source.input_tokens * weight
    target.output_tokens += source.output_tokens * weight
    target.cost_usd += source.cost_usd * weight
    target.shared_idle_usd += source.shared_idle_usd * weight
    target.unmapped_tokens += source.unmapped_tokens * weight


def _to_centre(lines: list[Line], centre: str | None) -> list[Line]:
    for line in lines:
        if line.kind == IDLE:
            line.centre = centre or line.centre
    return lines


def _regroup(lines: list[Line]) -> list[Line]:
    merged: dict[tuple, Line] = {}
    for line in lines:
        _merge(merged, line)
    return list(merged.values())


def _share_idle(lines: list[Line], mode: str, notes: list[str]) -> list[Line]:
    """Share each charge period's idle lines across the centres that served tokens in it."""
    by_period: dict[int, list[Line]] = defaultdict(list)
    for line in lines:
        by_period[line.period_start].append(line)

    kept: list[Line] = []
    for period in sorted(by_period):
        idle = [line for line in by_period[period] if line.kind == IDLE]
        serving = [line for line in by_period[period] if line.kind == SERVING]
        receivers = [line for line in serving if line.tokens > 0]
        kept.extend(serving)
        if not idle:
            continue
        if not receivers:
            # Limitation: idle time in a charge period in which nobody served tokens has nobody
            # to be shared with; it stays with the centre that owns the idle GPUs.
            kept.extend(idle)
            notes.append(f"{iso(period)}: nobody served tokens; idle time stays with its owners")
            continue
        pool_seconds = sum(line.gpu_seconds for line in idle)
        pool_joules = sum(line.energy_j for line in idle)
        pool_usd = sum(line.cost_usd for line in idle)
        for line, weight in _weights(receivers, mode):
            line.gpu_seconds += pool_seconds * weight
            line.energy_j += pool_joules * weight
            line.cost_usd += pool_usd * weight
            line.shared_idle_usd += pool_usd * weight
    return kept


def _weights(receivers: list[Line], mode: str) -> list[tuple[Line, float]]:
    """Each receiving line's part of the idle pool: by centre first, then by serving cost."""
    centres: dict[str, list[Line]] = defaultdict(list)
    for line in receivers:
        centres[line.centre].append(line)
    centre_cost = {
        centre: sum(line.cost_usd for line in members) for centre, members in centres.items()
    }
    total_cost = sum(centre_cost.values())

    weights = []
    for centre in sorted(centres):
        members = centres[centre]
        if mode == "proportional" and total_cost > 0:
            centre_weight = centre_cost[centre] / total_cost
        else:
            centre_weight = 1.0 / len(centres)
        for line in members:
            if centre_cost[centre] > 0:
                inner = line.cost_usd / centre_cost[centre]
            else:
                inner = line.tokens / sum(member.tokens for member in members)
            weights.append((line, centre_weight * inner))
    return weights


def _tags(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
