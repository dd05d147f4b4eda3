"""Energy from power samples, and the check of the energy counter against it.

Where a GPU has no energy counter, energy is the trapezoid integral of its power readings. Where it
has one, the counter is the truth (it is maintained by the GPU and misses nothing between polls)
and the integral only checks it: over a window of a minute or so the two should agree within a few
percent; a large gap between them means one of the two is wrong (a frozen counter, a wrong scale, a
power reading that is really a module reading) and is worth a warning.

Short windows: the counter ticks every 20 to 100 ms, so two reads close together can show no
change. The agent never turns a counter difference into power, and the exported energy is
cumulative, so a read that saw no tick adds nothing now and the next tick carries the whole
amount; nothing is ever reported as 0 W because a window was short.
"""

from __future__ import annotations

from dataclasses import dataclass

NS_PER_S = 1_000_000_000


class PowerIntegrator:
    """Trapezoid integral of power samples, one interval per new sample.

    A gap longer than ``max_gap_s`` between two good samples is not bridged (the power in between
    is unknown): the integral restarts from the later sample and the gap is counted.
    """

    def __init__(self, max_gap_s: float = 30.0) -> None:
        self._max_gap_ns = int(max_gap_s * NS_PER_S)
        self._last_ns: int | None = None
        self._last_w = 0.0
        self.gaps = 0

    def add(self, t_ns: int, watts: float) -> float | None:
        """Add a sample; return the joules since the previous one, or None if there was none."""
        last_ns, last_w = self._last_ns, self._last_w
        if last_ns is not None and t_ns <= last_ns:
            return None
        self._last_ns, self._last_w = t_ns, watts
        if last_ns is None:
            return None
        if t_ns - last_ns > self._max_gap_ns:
            self.gaps += 1
            return None
        return (t_ns - last_ns) / NS_PER_S * (last_w + watts) / 2

    def restart(self) -> None:
        """Forget the last sample (the GPU was lost; what happened meanwhile is unknown)."""
        self._last_ns = None


@dataclass(frozen=True)
class Disagreement:
    """Counter and power integral over one window, when they differ by more than allowed."""

    start_ns: int
    end_ns: int
    counter_joules: float
    integral_joules: float

    @property
    def ratio(self) -> float:
        return self.counter_joules / self.integral_joules if self.integral_joules else float("inf")


class CrossCheck:
    """Sums counter and integral energy over windows of ``window_s`` and compares them.

    A window holds only intervals where both are known; any interval where one is missing (a gap,
    a counter reset, a rejected power reading) starts a new window, so the comparison is always
    between the same stretch of time.
    """

    def __init__(
        self, window_s: float = 60.0, tolerance: float = 0.2, min_joules: float = 100.0
    ) -> None:
        self._window_ns = int(window_s * NS_PER_S)
        self._tolerance = tolerance
        self._min_joules = min_joules
        self._start_ns: int | None = None
        self._counter = 0.0
        self._integral = 0.0

    def add(
        self, t_ns: int, counter_joules: float | None, integral_joules: float | None
    ) -> Disagreement | None:
        """Add one interval ending at ``t_ns``; return a Disagreement when a window closes badly."""
        if counter_joules is None or integral_joules is None or self._start_ns is None:
            self._restart(t_ns)
            return None

        self._counter += counter_joules
        self._integral += integral_joules
        if t_ns - self._start_ns < self._window_ns:
            return None

        start_ns, counter, integral = self._start_ns, self._counter, self._integral
        self._restart(t_ns)
        larger = max(counter, integral)
        if larger < self._min_joules or abs(counter - integral) <= self._tolerance * larger:
            return None
        return Disagreement(start_ns, t_ns, counter, integral)

    def _restart(self, t_ns: int) -> None:
        self._start_ns = t_ns
        self._counter = 0.0
        self._integral = 0.0
