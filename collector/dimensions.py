"""GPUs, endpoints and endpoint-to-GPU links, written only when they say something new.

Every batch names the GPUs and endpoints its points belong to. Rewriting those rows on every
batch would double the collector's writes for nothing, so each collector remembers what it last
wrote and writes a row again only when

* it has not written the row yet (or its cache was cleared),
* a descriptive field changed (a SKU filled in, a new role, other tags),
* a point is earlier than the stored first-seen time, or
* a point is in a later hour than the stored last-seen time, or more than
  :data:`LAST_SEEN_STEP_NS` later: last-seen times are kept to that step, and every hour with
  data is covered, which is what hourly attribution reads them for.

What a collector remembers is updated only after its transaction commits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, tuple_

from wattledger import contract as c
from wattledger.collector import schema as s
from wattledger.collector.points import CONTROL_CHARACTERS, Point, SeriesIdentity, tags_of
from wattledger.collector.rollup import HOUR_NS
from wattledger.collector.sqlbulk import upsert_replace

logger = logging.getLogger(__name__)

LAST_SEEN_STEP_NS = 300 * 1_000_000_000
MAX_REMEMBERED = 1_000_000

GPU_FIELDS = (
    "node",
    "cluster",
    "site",
    "name",
    "sku",
    "architecture",
    "parent_uuid",
    "mig_profile",
    "tags",
)
ENDPOINT_FIELDS = ("engine", "engine_version", "role", "cluster", "site", "tags")


@dataclass
class _Pending:
    """Rows written in the open transaction, remembered once it commits."""

    rows: dict[tuple[str, Any], dict[str, Any]] = field(default_factory=dict)
    endpoint_ids: dict[tuple[str, str], int] = field(default_factory=dict)


class DimensionWriter:
    """Writes the dimension rows of a batch and knows every endpoint's id."""

    def __init__(self) -> None:
        self._written: dict[tuple[str, Any], dict[str, Any]] = {}
        self._endpoint_ids: dict[tuple[str, str], int] = {}
        self._pending = _Pending()

    def forget(self) -> None:
        self._written.clear()
        self._endpoint_ids.clear()

    def commit(self) -> None:
        """The transaction committed: remember what it wrote."""
        if len(self._written) + len(self._pending.rows) > MAX_REMEMBERED:
            self.forget()
        self._written.update(self._pending.rows)
        self._endpoint_ids.update(self._pending.endpoint_ids)
        self._pending = _Pending()

    def rollback(self) -> None:
        self._pending = _Pending()

    def write(
        self, conn: Connection, accepted: Sequence[tuple[Point, SeriesIdentity]]
    ) -> dict[tuple[str, str], int]:
        """Write what is new in the batch; return the ids of the batch's endpoints."""
        gpus, endpoints, links = _collect(accepted)

        gpu_rows = self._changed("gpu", gpus, GPU_FIELDS)
        endpoint_rows = self._changed("endpoint", endpoints, ENDPOINT_FIELDS)
        upsert_replace(
            conn,
            s.gpus,
            [gpu_rows[k] for k in sorted(gpu_rows)],
            ("uuid",),
            (*GPU_FIELDS, "last_seen_ns"),
            keep_min=("first_seen_ns",),
        )
        upsert_replace(
            conn,
            s.endpoints,
            [endpoint_rows[k] for k in sorted(endpoint_rows)],
            ("node", "name"),
            (*ENDPOINT_FIELDS, "last_seen_ns"),
            keep_min=("first_seen_ns",),
        )

        endpoint_ids = self._ids_of(conn, endpoints, endpoint_rows)
        link_rows = {
            (endpoint_ids[key], gpu_uuid): {
                "endpoint_id": endpoint_ids[key],
                "gpu_uuid": gpu_uuid,
                **times,
            }
            for (key, gpu_uuid), times in links.items()
        }
        link_rows = self._changed("link", link_rows, ())
        upsert_replace(
            conn,
            s.endpoint_gpus,
            [link_rows[k] for k in sorted(link_rows)],
            ("endpoint_id", "gpu_uuid"),
            ("last_seen_ns",),
            keep_min=("first_seen_ns",),
        )
        return endpoint_ids

    def _changed(
        self, kind: str, rows: dict[Any, dict[str, Any]], fields: Sequence[str]
    ) -> dict[Any, dict[str, Any]]:
        """The rows that must be written, with the times the database will hold afterwards."""
        out = {}
        for key, row in rows.items():
            known = self._pending.rows.get((kind, key)) or self._written.get((kind, key))
            if known is not None and not _news(known, row, fields):
                continue
            if known is not None:
                row = {
                    **row,
                    "first_seen_ns": min(row["first_seen_ns"], known["first_seen_ns"]),
                    "last_seen_ns": max(row["last_seen_ns"], known["last_seen_ns"]),
                }
            out[key] = row
            self._pending.rows[(kind, key)] = row
        return out

    def _ids_of(
        self,
        conn: Connection,
        endpoints: dict[tuple[str, str], dict[str, Any]],
        written: dict[tuple[str, str], dict[str, Any]],
    ) -> dict[tuple[str, str], int]:
        ids = {key: self._endpoint_ids[key] for key in endpoints if key in self._endpoint_ids}
        missing = sorted(set(endpoints) - set(ids))
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            table = s.endpoints
            rows = conn.execute(
                select(table.c.id, table.c.node, table.c.name).where(
                    tuple_(table.c.node, table.c.name).in_(chunk)
                )
            )
            for endpoint_id, node, name in rows:
                ids[(node, name)] = endpoint_id
                self._pending.endpoint_ids[(node, name)] = endpoint_id
        return ids


def _news(known: dict[str, Any], row: dict[str, Any], fields: Sequence[str]) -> bool:
    if any(row[name] is not None and row[name] != known.get(name) for name in fields):
        return True
    if row["first_seen_ns"] < known["first_seen_ns"]:
        return True
    last_known, last_new = known["last_seen_ns"], row["last_seen_ns"]
    return last_new // HOUR_NS > last_known // HOUR_NS or last_new - last_known > LAST_SEEN_STEP_NS


def _collect(accepted: Sequence[tuple[Point, SeriesIdentity]]):
    gpus: dict[str, dict[str, Any]] = {}
    endpoints: dict[tuple[str, str], dict[str, Any]] = {}
    links: dict[tuple[tuple[str, str], str], dict[str, Any]] = {}

    for point, identity in accepted:
        if identity.gpu_uuid is not None:
            row = gpus.get(identity.gpu_uuid)
            if row is None:
                gpus[identity.gpu_uuid] = _gpu_row(identity, point)
            else:
                _merge_gpu(row, point)
            continue

        key = (identity.node, identity.endpoint)
        row = endpoints.get(key)
        if row is None:
            endpoints[key] = _endpoint_row(identity, point)
        else:
            _widen(row, point.t_ns)
        for gpu_uuid in _gpu_ids(point.attrs.get(c.ATTR_GPU_IDS)):
            link = links.get((key, gpu_uuid))
            if link is None:
                links[(key, gpu_uuid)] = {"first_seen_ns": point.t_ns, "last_seen_ns": point.t_ns}
            else:
                _widen(link, point.t_ns)
    return gpus, endpoints, links


def _widen(row: dict[str, Any], t_ns: int) -> None:
    if t_ns < row["first_seen_ns"]:
        row["first_seen_ns"] = t_ns
    if t_ns > row["last_seen_ns"]:
        row["last_seen_ns"] = t_ns


def _gpu_row(identity: SeriesIdentity, point: Point) -> dict[str, Any]:
    attrs, resource = point.attrs, point.resource
    return {
        "uuid": identity.gpu_uuid,
        "node": identity.node,
        "cluster": _clean(resource.get(c.RES_CLUSTER), 255),
        "site": _clean(resource.get(c.RES_SITE), 255),
        "name": _clean(attrs.get(c.ATTR_HW_NAME), 255),
        "sku": _clean(attrs.get(c.ATTR_SKU), 64),
        "architecture": _clean(attrs.get(c.ATTR_ARCHITECTURE), 32),
        "parent_uuid": _clean(attrs.get(c.ATTR_HW_PARENT), 96),
        "mig_profile": _clean(attrs.get(c.ATTR_MIG_PROFILE), 64),
        "tags": json.dumps(tags_of(resource), sort_keys=True),
        "first_seen_ns": point.t_ns,
        "last_seen_ns": point.t_ns,
    }


def _merge_gpu(row: dict[str, Any], point: Point) -> None:
    """Fill descriptive fields a later point of the same GPU carries (gauges may carry fewer)."""
    for column, attr, width in (
        ("name", c.ATTR_HW_NAME, 255),
        ("sku", c.ATTR_SKU, 64),
        ("architecture", c.ATTR_ARCHITECTURE, 32),
        ("parent_uuid", c.ATTR_HW_PARENT, 96),
        ("mig_profile", c.ATTR_MIG_PROFILE, 64),
    ):
        if row[column] is None and point.attrs.get(attr):
            row[column] = _clean(point.attrs[attr], width)
    _widen(row, point.t_ns)


def _endpoint_row(identity: SeriesIdentity, point: Point) -> dict[str, Any]:
    attrs, resource = point.attrs, point.resource
    role = str(attrs.get(c.ATTR_ROLE) or c.ROLE_AGGREGATED)
    if role not in c.ROLES:
        role = c.ROLE_AGGREGATED
    return {
        "node": identity.node,
        "name": identity.endpoint,
        "engine": _clean(attrs.get(c.ATTR_ENGINE), 32),
        "engine_version": _clean(attrs.get(c.ATTR_ENGINE_VERSION), 64),
        "role": role,
        "cluster": _clean(resource.get(c.RES_CLUSTER), 255),
        "site": _clean(resource.get(c.RES_SITE), 255),
        "tags": json.dumps(tags_of(resource), sort_keys=True),
        "first_seen_ns": point.t_ns,
        "last_seen_ns": point.t_ns,
    }


def _gpu_ids(value: Any) -> list[str]:
    """The GPU UUIDs an endpoint names; ones the store could not keep as given are skipped."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value if v]
    return [p for p in parts if p and len(p) <= 96 and not CONTROL_CHARACTERS.search(p)]


def _clean(value: Any, limit: int) -> str | None:
    """A descriptive value the store can keep: control characters dropped, cut to ``limit``."""
    if value is None or value == "":
        return None
    text = CONTROL_CHARACTERS.sub("", str(value))
    return text[:limit] or None
