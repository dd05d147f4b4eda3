"""Turns raw counters that reset into the never-decreasing counters the agent exports.

Every source the agent reads (the NVML energy counter, an engine's token counters) can go back to
zero: a driver reload, a GPU reset, an engine restart. The collector must never see a counter go
down, so the agent keeps, per series, the last raw value it saw and the cumulative total it has
exported, and adds only the growth in between.

The rules, each on purpose:

* **First sight** of a raw counter sets the baseline and adds nothing: what the engine counted
  before the agent watched it cannot be placed in time.
* **Growth** adds ``raw - last_raw``.
* **Reset** (the raw value went down, or the source's restart marker changed) adds the new raw
  value: the source started again from zero. What it counted between the last reading and the
  reset is lost; that last interval is unavoidable.
* **Wrap**: a counter with a known modulus (a 64-bit register) that goes down from near the top
  adds ``modulus - last_raw + raw`` instead.
* **Repeat or late** readings (a timestamp not after the last one) add nothing.
* **Missing** readings add nothing; the next reading catches up the whole gap.

The state is saved to disk as one JSON document, written aside and renamed, so an agent restart
continues every series: cumulative totals and baselines are always saved together, so the energy
used while the agent was down shows up in the next interval.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass
class SeriesState:
    """The ledger's memory of one series."""

    cumulative: float
    last_raw: float | None
    last_ns: int
    start_ns: int
    marker: float | str | None = None
    resets: int = 0


@dataclass(frozen=True)
class Observation:
    """The outcome of one raw reading: what was added and why."""

    added: float
    cumulative: float
    start_ns: int
    event: str  # baseline | growth | reset | wrap | repeat | late


class CounterLedger:
    """Cumulative exported totals per series key, with baselines persisted to ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = Path(path) if path else None
        self._series: dict[str, SeriesState] = {}
        self._lock = threading.Lock()
        if self._path and self._path.exists():
            self._load()

    def observe(
        self,
        key: str,
        raw: float,
        t_ns: int,
        *,
        marker: float | str | None = None,
        modulus: float | None = None,
    ) -> Observation:
        """Record a raw counter reading taken at ``t_ns`` and return the exported total."""
        with self._lock:
            state = self._series.get(key)
            if state is None:
                self._series[key] = SeriesState(0.0, raw, t_ns, t_ns, marker)
                return Observation(0.0, 0.0, t_ns, "baseline")

            if t_ns < state.last_ns:
                return Observation(0.0, state.cumulative, state.start_ns, "late")
            if t_ns == state.last_ns and raw == state.last_raw:
                return Observation(0.0, state.cumulative, state.start_ns, "repeat")

            added, event = self._growth(state, raw, marker, modulus)
            state.cumulative += added
            state.last_raw = raw
            state.last_ns = t_ns
            state.marker = marker
            if event == "reset":
                state.resets += 1
                logger.info("counter %s reset; counting %.6g from its new start", key, raw)
            return Observation(added, state.cumulative, state.start_ns, event)

    def add(self, key: str, amount: float, t_ns: int) -> Observation:
        """Add an amount measured directly (integrated power) rather than read off a counter."""
        if amount < 0:
            raise ValueError(f"cannot add a negative amount ({amount}) to {key}")
        with self._lock:
            state = self._series.get(key)
            if state is None:
                state = SeriesState(0.0, None, t_ns, t_ns)
                self._series[key] = state
            if t_ns < state.last_ns:
                return Observation(0.0, state.cumulative, state.start_ns, "late")
            state.cumulative += amount
            state.last_ns = t_ns
            return Observation(amount, state.cumulative, state.start_ns, "growth")

    def rebaseline(self, key: str) -> None:
        """Forget the raw baseline of ``key`` (its source became untrustworthy, e.g. a lost GPU).

        The cumulative total is kept; the next raw reading sets a new baseline and adds nothing.
        """
        with self._lock:
            state = self._series.get(key)
            if state is not None:
                state.last_raw = None

    def get(self, key: str) -> SeriesState | None:
        with self._lock:
            state = self._series.get(key)
            return None if state is None else SeriesState(**asdict(state))

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._series)

    def save(self) -> None:
        """Write the state aside and rename it into place, so a crash leaves the old or the new."""
        if self._path is None:
            return
        with self._lock:
            document = {
                "version": STATE_VERSION,
                "series": {key: asdict(state) for key, state in self._series.items()},
            }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ledger-", dir=self._path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _growth(
        self,
        state: SeriesState,
        raw: float,
        marker: float | str | None,
        modulus: float | None,
    ) -> tuple[float, str]:
        if state.last_raw is None:
            return 0.0, "baseline"
        if marker is not None and state.marker is not None and marker != state.marker:
            return raw, "reset"
        if raw >= state.last_raw:
            return raw - state.last_raw, "growth"
        if modulus is not None and state.last_raw > modulus * 0.5 and raw < modulus * 0.5:
            return modulus - state.last_raw + raw, "wrap"
        return raw, "reset"

    def _load(self) -> None:
        assert self._path is not None
        try:
            document = json.loads(self._path.read_text())
            if document.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {document.get('version')!r}")
            self._series = {
                key: SeriesState(**fields) for key, fields in document["series"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            broken = self._path.with_suffix(self._path.suffix + ".broken")
            os.replace(self._path, broken)
            logger.warning(
                "agent state %s is unreadable (%s); moved it to %s and starting fresh baselines",
                self._path,
                exc,
                broken,
            )
            self._series = {}
