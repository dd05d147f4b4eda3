"""Prices over a report window, cut into periods in which every price is constant.

A report charges each hour of usage at the prices in force then. Rather than join every usage
row with the price history, the window is cut at each price change into a few *periods*; within
one period every SKU and every site has one rate, so usage can be summed per period first and
priced after. A change that falls inside an hour makes that hour a period of its own, charged at
the time-weighted mean of the prices in force during it.

Time a SKU had no price for counts as unpriced: the period's rate treats it as zero and its
``priced_fraction`` says how much of the period was priced, so the report can name what is
missing instead of calling it free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wattledger.cli.reports.prices import PriceBook, Segment
from wattledger.timeutil import HOUR_S, ceil_hour, floor_hour

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuRate:
    """One SKU's GPU-hour price over one period."""

    sku: str
    period: int
    usd_per_gpu_hour: float  # mean over the period, unpriced time counted as zero
    priced_fraction: float  # share of the period that had a price


@dataclass(frozen=True)
class PowerRate:
    """One site's electricity price over one period: USD per kWh drawn by a GPU, PUE included."""

    site: str
    period: int
    usd_per_gpu_kwh: float


@dataclass(frozen=True)
class PricePeriods:
    """Period ``i`` covers ``[bounds[i], bounds[i + 1])``, in seconds since the epoch."""

    bounds: tuple[int, ...]
    gpu_rates: tuple[GpuRate, ...]
    power_rates: tuple[PowerRate, ...]

    @property
    def inner_bounds(self) -> tuple[int, ...]:
        """Where one period ends and the next begins (the first and last bound excluded)."""
        return self.bounds[1:-1]


def price_periods(
    book: PriceBook,
    skus: Iterable[str],
    sites: Iterable[str | None],
    since: int,
    until: int,
) -> PricePeriods:
    """The window ``[since, until)`` cut at every price change of the given SKUs and sites."""
    start = floor_hour(since)
    end = max(ceil_hour(until), start + HOUR_S)
    sku_segments = book.sku_segments(skus)
    site_segments = book.site_segments(sites)

    changes = {seg.start for seg in sku_segments + site_segments}
    changes |= {seg.end for seg in sku_segments + site_segments}
    cuts = {start, end}
    for t in changes:
        if start < t < end:
            cuts |= {floor_hour(t), ceil_hour(t)}
    bounds = tuple(sorted(cuts))

    gpu_rates = []
    for sku, segments in _by_key(sku_segments).items():
        for period, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
            rate, priced = _mean(segments, a, b, lambda seg: seg.usd_per_gpu_hour)
            if priced > 0:
                gpu_rates.append(GpuRate(sku, period, rate, priced))

    power_rates = []
    for site, segments in _by_key(site_segments).items():
        for period, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
            rate, priced = _mean(segments, a, b, _usd_per_gpu_kwh)
            if priced > 0:
                power_rates.append(PowerRate(site, period, rate))

    if len(bounds) > 2:
        logger.debug("window cut into %d price periods", len(bounds) - 1)
    return PricePeriods(bounds, tuple(gpu_rates), tuple(power_rates))


def _usd_per_gpu_kwh(segment: Segment) -> float | None:
    if segment.usd_per_kwh is None:
        return None
    return segment.usd_per_kwh * (1.0 if segment.pue is None else segment.pue)


def _by_key(segments: Sequence[Segment]) -> dict[str, list[Segment]]:
    keyed: dict[str, list[Segment]] = {}
    for segment in segments:
        keyed.setdefault(segment.key, []).append(segment)
    return keyed


def _mean(segments: Sequence[Segment], a: int, b: int, rate_of) -> tuple[float, float]:
    """Time-weighted mean rate over ``[a, b)`` (no price counts as zero), and the priced share."""
    # Limitation: usage is kept by the hour, so in the hour of a price change it is taken as
    # spread evenly over the hour; a burst just before the change is charged at the mean.
    pieces = []
    for segment in segments:
        rate = rate_of(segment)
        overlap = min(b, segment.end) - max(a, segment.start)
        if rate is not None and overlap > 0:
            pieces.append((rate, overlap))
    if len(pieces) == 1 and pieces[0][1] == b - a:
        return pieces[0][0], 1.0  # one price for the whole period: exactly that price
    integral = sum(rate * overlap for rate, overlap in pieces)
    priced = sum(overlap for _rate, overlap in pieces)
    return integral / (b - a), priced / (b - a)
