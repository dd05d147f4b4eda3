"""Power over time as a piecewise-linear curve, with its exact integral.

The fake NVML drives its energy counters, averaged power readings and module readings from one
curve per GPU, so every number it reports agrees with every other to the millijoule, and a test can
compute the expected joules by hand.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence


class PowerCurve:
    """Watts as a function of seconds: linear between points, flat before the first and after
    the last."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        if not points:
            raise ValueError("a power curve needs at least one (seconds, watts) point")
        ordered = sorted((float(t), float(w)) for t, w in points)
        self._times = [t for t, _ in ordered]
        self._watts = [w for _, w in ordered]
        self._area = [0.0]  # joules from the first point to each point
        for i in range(1, len(ordered)):
            width = self._times[i] - self._times[i - 1]
            self._area.append(self._area[-1] + width * (self._watts[i] + self._watts[i - 1]) / 2)

    @classmethod
    def constant(cls, watts: float) -> PowerCurve:
        return cls([(0.0, watts)])

    @classmethod
    def ramp(cls, start_s: float, start_w: float, end_s: float, end_w: float) -> PowerCurve:
        return cls([(start_s, start_w), (end_s, end_w)])

    def watts(self, t: float) -> float:
        i = bisect_right(self._times, t)
        if i == 0:
            return self._watts[0]
        if i == len(self._times):
            return self._watts[-1]
        t0, t1 = self._times[i - 1], self._times[i]
        w0, w1 = self._watts[i - 1], self._watts[i]
        return w0 + (w1 - w0) * (t - t0) / (t1 - t0)

    def joules(self, start_s: float, end_s: float) -> float:
        """Exact energy between two times (negative if ``end_s`` is before ``start_s``)."""
        return self._cumulative(end_s) - self._cumulative(start_s)

    def _cumulative(self, t: float) -> float:
        first = self._times[0]
        if t <= first:
            return (t - first) * self._watts[0]
        i = bisect_right(self._times, t) - 1
        if i == len(self._times) - 1:
            return self._area[-1] + (t - self._times[-1]) * self._watts[-1]
        w_at_t = self.watts(t)
        return self._area[i] + (t - self._times[i]) * (self._watts[i] + w_at_t) / 2
