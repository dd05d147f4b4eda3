"""Prices over time: per GPU SKU and per site, each in force from a moment until the next.

A GPU SKU has a price per GPU-hour, given directly (rented) or derived from a capital cost spread
over an amortisation period (owned: ``capex_usd / (years * 8760)``). A site has an electricity
price per kWh and a PUE. A site without its own entry uses the site named ``default``. Without
an electricity price, energy adds no cost (a rental price includes it), but joules are still
reported. A GPU whose SKU has no price in force is *unpriced*, never free.
"""

from __future__ import annotations

import bisect
import difflib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, select

from wattledger.collector import schema as s
from wattledger.collector.sqlbulk import upsert_replace
from wattledger.errors import WattledgerError

logger = logging.getLogger(__name__)

HOURS_PER_YEAR = 8760
DEFAULT_SITE = "default"
FOREVER = 2**62
SCOPE_SKU = "sku"
SCOPE_SITE = "site"


class PriceError(WattledgerError):
    exit_code = 2


@dataclass(frozen=True)
class PriceEntry:
    scope: str
    key: str
    effective_from: int
    usd_per_gpu_hour: float | None = None
    capex_usd: float | None = None
    amortization_years: float | None = None
    usd_per_kwh: float | None = None
    pue: float | None = None
    currency: str = "USD"
    note: str | None = None

    @property
    def gpu_hour_rate(self) -> float | None:
        """USD per GPU-hour, from the direct price or the amortised capital cost."""
        if self.usd_per_gpu_hour is not None:
            return self.usd_per_gpu_hour
        if self.capex_usd is not None and self.amortization_years:
            return self.capex_usd / (self.amortization_years * HOURS_PER_YEAR)
        return None


# The largest value each price figure may take. They are far above any real price and keep sums
# over years of a large fleet finite; a value beyond one is a typo (an extra digit, an exponent).
LIMITS = {
    "usd_per_gpu_hour": 1e6,
    "capex_usd": 1e10,
    "amortization_years": 100.0,
    "usd_per_kwh": 1e3,
    "pue": 10.0,
}
OPTION_NAMES = {"amortization_years": "years"}


def canonical_sku(key: str) -> str:
    """The SKU as the agent spells it when ``key`` names one in other case: ``h100`` is ``H100``.

    A vendor prefix goes (``NVIDIA H100`` is ``H100``). Any other key is kept as given: a longer
    name that holds a SKU (``NVIDIA H100 80GB HBM3``) is not silently cut down to it; see
    :func:`sku_hint`.
    """
    from wattledger.agent.gpu.sku import normalise_sku

    canonical = normalise_sku(key)
    if canonical.upper() == _bare(key).upper():
        return canonical
    return key.strip()


def sku_hint(key: str) -> str | None:
    """The SKU the agent would report for a GPU named ``key``, when that differs from ``key``."""
    from wattledger.agent.gpu.sku import UNKNOWN, normalise_sku

    canonical = normalise_sku(key)
    if canonical == UNKNOWN or canonical == canonical_sku(key):
        return None
    return canonical


def reported_skus(engine: Engine) -> list[str]:
    """The SKUs the store's GPUs have reported, sorted."""
    with engine.connect() as conn:
        return sorted(row[0] for row in conn.execute(select(s.gpus.c.sku).distinct()) if row[0])


def unreported_sku_warning(sku: str, reported: list[str]) -> str | None:
    """A warning when GPUs have reported SKUs but not ``sku``, with a close match if there is one.

    The price is stored all the same: a price may be set before its GPUs first report.
    """
    if not reported or sku in reported:
        return None
    message = f"no GPU has reported SKU {sku!r} yet; reported SKUs: {', '.join(reported)}"
    close = difflib.get_close_matches(sku.upper(), reported, n=1, cutoff=0.5)
    return message + (f"; did you mean --sku {close[0]}?" if close else "")


def _bare(key: str) -> str:
    words = key.split()
    if words and words[0].lower() in ("nvidia", "tesla"):
        words = words[1:]
    return " ".join(words)


def option_name(field_name: str) -> str:
    return "--" + OPTION_NAMES.get(field_name, field_name).replace("_", "-")


def validate(entry: PriceEntry, *, label: Callable[[str], str] = option_name) -> PriceEntry:
    """Check an entry and fill what follows from it; raises :class:`PriceError`.

    A SKU entry's key is made the SKU's canonical spelling (see :func:`canonical_sku`).
    ``label`` names a figure in messages (the command-line option by default).
    """
    if entry.currency != "USD":
        raise PriceError(f"currency {entry.currency!r} is not supported yet; give prices in USD")
    if not entry.key or not entry.key.strip():
        raise PriceError(f"give the {entry.scope} name")
    for name, limit in LIMITS.items():
        value = getattr(entry, name)
        if value is None:
            continue
        if not math.isfinite(value):
            raise PriceError(f"{label(name)} must be a finite number (got {value})")
        if value < 0:
            raise PriceError(f"{label(name)} must not be negative (got {value:g})")
        if value > limit:
            raise PriceError(
                f"{label(name)} {value:g} is beyond any real price (at most {limit:g}); "
                "check for an extra digit"
            )

    if entry.scope == SCOPE_SKU:
        entry = PriceEntry(**{**entry.__dict__, "key": canonical_sku(entry.key)})
        if entry.usd_per_kwh is not None or entry.pue is not None:
            raise PriceError("electricity price and PUE belong to a site; use --site, not --sku")
        direct = entry.usd_per_gpu_hour is not None
        owned = entry.capex_usd is not None or entry.amortization_years is not None
        if direct and owned:
            raise PriceError(
                f"SKU {entry.key}: give --usd-per-gpu-hour or --capex-usd with --years, not both"
            )
        if owned and not (entry.capex_usd is not None and entry.amortization_years):
            raise PriceError(
                f"SKU {entry.key}: --capex-usd needs --years (amortisation period) above zero"
            )
        if not direct and not owned:
            raise PriceError(
                f"SKU {entry.key}: give --usd-per-gpu-hour, or --capex-usd and --years"
            )
        return entry

    if entry.scope == SCOPE_SITE:
        if entry.usd_per_gpu_hour is not None or entry.capex_usd is not None:
            raise PriceError("a GPU-hour price belongs to a SKU; use --sku, not --site")
        if entry.usd_per_kwh is None:
            raise PriceError(f"site {entry.key}: give --usd-per-kwh (and optionally --pue)")
        pue = 1.0 if entry.pue is None else entry.pue
        if pue < 1.0:
            raise PriceError(f"site {entry.key}: PUE is at least 1.0 (got {pue})")
        return PriceEntry(**{**entry.__dict__, "pue": pue})

    raise PriceError(f"unknown price scope {entry.scope!r}")


def set_prices(engine: Engine, entries: Iterable[PriceEntry]) -> int:
    """Store entries; an entry for the same scope, key and start replaces the old one."""
    rows = []
    now = time.time_ns()
    for entry in entries:
        entry = validate(entry)
        rows.append(
            {
                "scope": entry.scope,
                "key": entry.key,
                "effective_from": entry.effective_from,
                "usd_per_gpu_hour": entry.usd_per_gpu_hour,
                "capex_usd": entry.capex_usd,
                "amortization_years": entry.amortization_years,
                "usd_per_kwh": entry.usd_per_kwh,
                "pue": entry.pue,
                "currency": entry.currency,
                "note": entry.note,
                "created_ns": now,
            }
        )
    with engine.begin() as conn:
        upsert_replace(
            conn,
            s.prices,
            rows,
            ("scope", "key", "effective_from"),
            (
                "usd_per_gpu_hour",
                "capex_usd",
                "amortization_years",
                "usd_per_kwh",
                "pue",
                "currency",
                "note",
                "created_ns",
            ),
        )
    return len(rows)


def replaced_by(engine: Engine, entries: Iterable[PriceEntry]) -> list[PriceEntry]:
    """The stored entries that ``entries`` would replace (same scope, key and start)."""
    wanted = {(e.scope, e.key, e.effective_from) for e in (validate(e) for e in entries)}
    return [e for e in list_prices(engine) if (e.scope, e.key, e.effective_from) in wanted]


def describe_price(entry: PriceEntry) -> str:
    """An entry's figures in a few words, e.g. ``2.5 USD/GPU-h`` or ``0.1 USD/kWh at PUE 1.2``."""
    if entry.scope == SCOPE_SITE:
        return f"{entry.usd_per_kwh:g} USD/kWh at PUE {entry.pue if entry.pue else 1.0:g}"
    if entry.usd_per_gpu_hour is not None:
        return f"{entry.usd_per_gpu_hour:g} USD/GPU-h"
    return (
        f"{entry.capex_usd:g} USD over {entry.amortization_years:g} years "
        f"= {entry.gpu_hour_rate:.4g} USD/GPU-h"
    )


def list_prices(engine: Engine) -> list[PriceEntry]:
    p = s.prices
    with engine.connect() as conn:
        rows = (
            conn.execute(select(p).order_by(p.c.scope, p.c.key, p.c.effective_from))
            .mappings()
            .all()
        )
    return [
        PriceEntry(
            scope=row["scope"],
            key=row["key"],
            effective_from=row["effective_from"],
            usd_per_gpu_hour=row["usd_per_gpu_hour"],
            capex_usd=row["capex_usd"],
            amortization_years=row["amortization_years"],
            usd_per_kwh=row["usd_per_kwh"],
            pue=row["pue"],
            currency=row["currency"],
            note=row["note"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Segment:
    """A price in force over ``[start, end)`` (seconds since the epoch)."""

    key: str
    start: int
    end: int
    usd_per_gpu_hour: float | None = None
    usd_per_kwh: float | None = None
    pue: float | None = None


class PriceBook:
    """Every price entry, as segments of time, ready to join with usage."""

    def __init__(self, entries: Iterable[PriceEntry]) -> None:
        self._sku: dict[str, list[PriceEntry]] = {}
        self._site: dict[str, list[PriceEntry]] = {}
        for entry in sorted(entries, key=lambda e: e.effective_from):
            target = self._sku if entry.scope == SCOPE_SKU else self._site
            target.setdefault(entry.key, []).append(entry)

    @classmethod
    def load(cls, engine: Engine) -> PriceBook:
        return cls(list_prices(engine))

    @property
    def empty(self) -> bool:
        return not self._sku and not self._site

    def sku_segments(self, skus: Iterable[str]) -> list[Segment]:
        segments = []
        for sku in sorted(set(skus)):
            entries = self._sku.get(sku, [])
            for entry, end in _with_ends(entries):
                segments.append(
                    Segment(sku, entry.effective_from, end, usd_per_gpu_hour=entry.gpu_hour_rate)
                )
        return segments

    def site_segments(self, sites: Iterable[str | None]) -> list[Segment]:
        """Electricity segments for each site, falling back to the ``default`` site's entries.

        A GPU with no site is keyed by the empty string.
        """
        segments = []
        for site in sorted({site or "" for site in sites}):
            entries = self._site.get(site) or self._site.get(DEFAULT_SITE, [])
            for entry, end in _with_ends(entries):
                segments.append(
                    Segment(
                        site,
                        entry.effective_from,
                        end,
                        usd_per_kwh=entry.usd_per_kwh,
                        pue=entry.pue,
                    )
                )
        return segments

    def gpu_rate(self, sku: str, at: int) -> float | None:
        entries = self._sku.get(sku, [])
        starts = [e.effective_from for e in entries]
        i = bisect.bisect_right(starts, at) - 1
        return entries[i].gpu_hour_rate if i >= 0 else None


def _with_ends(entries: list[PriceEntry]):
    for i, entry in enumerate(entries):
        end = entries[i + 1].effective_from if i + 1 < len(entries) else FOREVER
        yield entry, end
