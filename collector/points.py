"""Decoded points and the rules that tie each one to a series and a dimension row.

The OTLP decoder turns a request into :class:`Point` objects; the ingester turns points into
deltas. In between, this module decides a point's *identity*: which attributes make two points
the same series. Identity uses only what cannot change during a series' life (node, GPU UUID,
endpoint, model, token type, phase). Descriptive attributes that may change (the GPU list of an
endpoint, the energy source, a cluster name) are stored on the dimension rows instead: if they
were part of the identity, a changed GPU list would start a new series whose first point carried
the whole running total, and the collector would count it twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wattledger import contract as c

COUNTER = "counter"
DELTA = "delta"
GAUGE = "gauge"

GPU_METRICS = frozenset(
    {
        c.METRIC_ENERGY,
        c.METRIC_MODULE_ENERGY,
        c.METRIC_POWER,
        c.METRIC_UTILIZATION,
        c.METRIC_MEMORY_USAGE,
        c.METRIC_MEMORY_LIMIT,
        c.METRIC_MIG_SHARE,
    }
)
ENGINE_METRICS = frozenset({c.METRIC_TOKENS, c.METRIC_REQUESTS, c.METRIC_PHASE_TIME})
KNOWN_METRICS = GPU_METRICS | ENGINE_METRICS

LABEL_ATTRIBUTE = {
    c.METRIC_TOKENS: c.ATTR_TOKEN_TYPE,
    c.METRIC_PHASE_TIME: c.ATTR_PHASE,
}

LABEL_VALUES = {
    c.METRIC_TOKENS: frozenset(c.TOKEN_TYPES),
    c.METRIC_PHASE_TIME: frozenset(c.PHASES),
}


@dataclass(frozen=True, slots=True)
class Point:
    """One data point of a known metric, with its resource's attributes.

    ``kind`` is ``counter`` (cumulative monotonic sum), ``delta`` (delta-temporality monotonic
    sum) or ``gauge`` (gauges and non-monotonic sums).
    """

    metric: str
    kind: str
    resource: Mapping[str, Any]
    attrs: Mapping[str, Any]
    start_ns: int | None
    t_ns: int
    value: float


class InvalidPoint(ValueError):
    """A point that cannot be stored; the message says which attribute or value is wrong."""


def node_of(resource: Mapping[str, Any]) -> str:
    node = resource.get(c.RES_NODE) or resource.get(c.RES_HOST_NAME)
    if not node:
        raise InvalidPoint(f"resource has neither {c.RES_NODE} nor {c.RES_HOST_NAME}")
    return str(node)


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    prefix = c.RES_TAG_PREFIX
    return {k[len(prefix) :]: str(v) for k, v in resource.items() if k.startswith(prefix)}


@dataclass(frozen=True, slots=True)
class SeriesIdentity:
    """What makes a series: the fields stored on the ``series`` row plus their hash."""

    key_hash: str
    metric: str
    node: str
    gpu_uuid: str | None
    endpoint: str | None
    model: str | None
    label: str | None


# Longest identity values the store keeps (the widths of the columns they go to).
IDENTITY_LIMITS = {
    c.RES_NODE: 255,
    c.ATTR_HW_ID: 96,
    c.ATTR_ENDPOINT: 255,
    c.ATTR_MODEL: 255,
}
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def identify(point: Point) -> SeriesIdentity:
    """The identity of the series ``point`` belongs to, or :class:`InvalidPoint`."""
    node = _checked(c.RES_NODE, node_of(point.resource))
    attrs = point.attrs

    gpu_uuid = endpoint = model = label = None
    if point.metric in GPU_METRICS:
        gpu_uuid = _checked(c.ATTR_HW_ID, _required(attrs, c.ATTR_HW_ID, point.metric))
    else:
        endpoint = _checked(c.ATTR_ENDPOINT, _required(attrs, c.ATTR_ENDPOINT, point.metric))
        model = _checked(c.ATTR_MODEL, str(attrs.get(c.ATTR_MODEL) or "unknown"))
        label_attr = LABEL_ATTRIBUTE.get(point.metric)
        if label_attr:
            label = _required(attrs, label_attr, point.metric)
            if label not in LABEL_VALUES[point.metric]:
                allowed = ", ".join(sorted(LABEL_VALUES[point.metric]))
                raise InvalidPoint(f"{point.metric} has {label_attr}={label!r}; expected {allowed}")

    key = json.dumps([point.metric, node, gpu_uuid, endpoint, model, label], separators=(",", ":"))
    key_hash = hashlib.sha256(key.encode()).hexdigest()
    return SeriesIdentity(key_hash, point.metric, node, gpu_uuid, endpoint, model, label)


def _checked(name: str, value: str) -> str:
    """An identity value as given, or :class:`InvalidPoint` if the store cannot keep it as is.

    Identity values are never cut or cleaned: two different names must not become one series.
    """
    limit = IDENTITY_LIMITS[name]
    if len(value) > limit:
        raise InvalidPoint(f"{name} is {len(value)} characters long; the limit is {limit}")
    if CONTROL_CHARACTERS.search(value):
        raise InvalidPoint(f"{name} {value[:40]!r} contains control characters")
    return value


def _required(attrs: Mapping[str, Any], name: str, metric: str) -> str:
    value = attrs.get(name)
    if value is None or value == "":
        raise InvalidPoint(f"{metric} point has no {name} attribute")
    return str(value)
