"""From parsed samples to per-model readings, following an engine table.

How series of one quantity and one model add up (every rule on purpose):

1. **Replicas** (``tp_rank``, ``pp_rank``, ``moe_ep_rank``): tensor, pipeline and expert ranks
   of one engine see the same requests, so their series are copies: the largest is kept
   (identical copies are counted once; a rank that lags is not added to one that does not).
2. **Processes** (``pid``): several API-server processes of one engine (vLLM
   ``--api-server-count``) may each print a series. Gauges keep the largest (one process holds
   the real value, vLLM #28792). Counters and histogram sums: if every per-pid series holds the
   same value they are copies of one count and are counted once; if the values differ, each
   process counted its own share and they are summed.
3. **Everything else** (``engine`` and ``dp_rank`` for data-parallel engines, ``finished_reason``,
   ``status``, ``version``, the values a table's ``where`` keeps) is summed; gauges marked
   ``combine="max"`` (cache usage) keep the largest.

A value that is NaN, infinite or (for a count) negative is never a count: the quantity is
absent for that model and a note says why. ``*_created`` samples are never data; the earliest of
those belonging to the counters read is the restart marker ``started_at``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.samples import Sample

from wattledger.agent.engines.exposition import ParsedPayload
from wattledger.agent.engines.reading import EngineReading, ModelReading, Quantity
from wattledger.agent.engines.resolve import (
    PROCESS_START,
    denominator_names,
    family_of_sample,
    sample_names,
)
from wattledger.agent.engines.tables import (
    COUNTER,
    GAUGE,
    HISTOGRAM_MEAN,
    HISTOGRAM_SUM,
    LABELS,
    MAIN_QUANTITIES,
    RATIO,
    EngineTable,
    Source,
)

logger = logging.getLogger(__name__)

# Limitation: engines that label no model (llama.cpp, TGI) are read as this model unless the
# endpoint is given a model name.
UNNAMED_MODEL = "unknown"
REPLICA_LABELS = frozenset({"tp_rank", "pp_rank", "moe_ep_rank"})
PROCESS_LABEL = "pid"
# A latency histogram whose every observation sits in a bucket this low is suspect (vLLM #6337).
SUSPECT_LOWEST_BUCKET_S = 0.001


class Unusable(Exception):
    """A series that cannot be a value of this quantity (NaN, infinite, negative count)."""


@dataclass(frozen=True)
class Choice:
    """The source picked for one quantity on one page, with its samples."""

    quantity: str
    table: EngineTable
    source: Source
    name: str
    samples: tuple[Sample, ...]
    denominator: tuple[Sample, ...] = ()
    denominator_name: str = ""


class PageMapper:
    """Reads one parsed page with a list of tables into an :class:`EngineReading`."""

    def __init__(
        self,
        parsed: ParsedPayload,
        tables: tuple[EngineTable, ...],
        default_model: str | None = None,
    ) -> None:
        self.parsed = parsed
        self.tables = tables
        self.default_model = default_model or UNNAMED_MODEL
        self.notes: list[str] = []
        self._catalog = self._model_catalog()

    def fill(self, reading: EngineReading) -> None:
        """Set the models, started_at, absent sentences and notes of ``reading``."""
        choices = {key: choice for key in self._quantity_keys() if (choice := self.choose(key))}
        failures: dict[str, list[str]] = defaultdict(list)

        for key, choice in choices.items():
            for model, samples in self._by_model(choice.samples, choice.table).items():
                model_reading = reading.models.setdefault(model, ModelReading(model))
                try:
                    quantity = self._value(choice, model, samples)
                except Unusable as exc:
                    failures[key].append(f"{exc} for model {model}, not a value")
                    continue
                if quantity is not None:
                    _assign(model_reading, key, quantity)
            if choice.source.note:
                self._say(choice.source.note)

        reading.started_at = self._started_at(choices.values())
        reading.absent.extend(self._absent_sentences(reading, choices, failures))
        for key, reasons in failures.items():
            for reason in reasons:
                self._say(f"{LABELS.get(key, key.split('.')[-1])}: {reason}")
        for table in self._tables_used(choices.values()):
            for note in table.notes:
                self._say(note)
        reading.notes.extend(self.notes)

    def choose(self, key: str) -> Choice | None:
        """The first source of ``key`` with samples on this page, across the tables in order."""
        for table in self.tables:
            for source in table.quantities.get(key, ()):
                choice = self._first_present(key, table, source)
                if choice is not None:
                    return choice
        return None

    # -- choosing -----------------------------------------------------------------------------

    def _quantity_keys(self) -> list[str]:
        keys: list[str] = []
        for table in self.tables:
            keys.extend(key for key in table.quantities if key not in keys)
        return keys

    def _first_present(self, key: str, table: EngineTable, source: Source) -> Choice | None:
        for name in sample_names(table, source):
            samples = tuple(s for s in self.parsed.get(name) if _kept(s, source))
            if not samples:
                continue
            if source.kind not in (HISTOGRAM_MEAN, RATIO):
                return Choice(key, table, source, name, samples)
            denominator_name = self._denominator_name(table, source, name)
            if denominator_name:
                denominator = tuple(
                    s for s in self.parsed.get(denominator_name) if _kept(s, source)
                )
                return Choice(key, table, source, name, samples, denominator, denominator_name)
        return None

    def _denominator_name(self, table: EngineTable, source: Source, name: str) -> str:
        if source.kind == HISTOGRAM_MEAN:
            count = name[: -len("_sum")] + "_count"
            return count if self.parsed.has(count) else ""
        return next((n for n in denominator_names(table, source) if self.parsed.has(n)), "")

    # -- models -------------------------------------------------------------------------------

    def _model_catalog(self) -> dict[str, str]:
        """Lower-cased model name to its original spelling, from the tables' catalog gauges."""
        catalog: dict[str, str] = {}
        for table in self.tables:
            for name in table.model_catalog:
                for sample in self.parsed.get(name):
                    for label in table.model_labels:
                        if value := sample.labels.get(label):
                            catalog.setdefault(value.lower(), value)
        return catalog

    def _model_of(self, sample: Sample, table: EngineTable) -> str:
        for label in table.model_labels:
            value = sample.labels.get(label)
            if not value:
                continue
            if value in table.placeholder_models:
                self._say(
                    f"the engine labels its model {label}={value!r} (served from a path); "
                    + (
                        f"named {self.default_model!r} as given"
                        if self.default_model != UNNAMED_MODEL
                        else "give a model name to replace it"
                    )
                )
                return self.default_model if self.default_model != UNNAMED_MODEL else value
            original = self._catalog.get(value.lower(), value)
            if original != value:
                self._say(
                    f"model label {value!r} is lower-cased on this page; read as {original!r}"
                )
            return original
        return self.default_model

    def _by_model(self, samples: Iterable[Sample], table: EngineTable) -> dict[str, list[Sample]]:
        grouped: dict[str, list[Sample]] = defaultdict(list)
        for sample in samples:
            grouped[self._model_of(sample, table)].append(sample)
        return grouped

    # -- values -------------------------------------------------------------------------------

    def _value(self, choice: Choice, model: str, samples: list[Sample]) -> Quantity | None:
        source = choice.source
        counting = source.kind != GAUGE
        value = self._combine(choice.name, samples, choice.table, counting, source.combine)

        if source.kind in (HISTOGRAM_MEAN, RATIO):
            divisor_samples = self._by_model(choice.denominator, choice.table).get(model, [])
            if not divisor_samples:
                return None
            divisor = self._combine(
                choice.denominator_name, divisor_samples, choice.table, True, "sum"
            )
            if divisor <= 0:
                return None
            if source.kind == HISTOGRAM_MEAN:
                self._check_timing(choice, model, value, divisor)
            value = value / divisor
        elif source.kind == HISTOGRAM_SUM:
            self._check_timing(choice, model, value, None)

        if source.sentinel is not None and value == source.sentinel:
            self._say(f"{choice.name} is {source.sentinel:g} for model {model}: disabled")
            return None
        return Quantity(value, self._describe(choice))

    def _combine(
        self, name: str, samples: list[Sample], table: EngineTable, counting: bool, how: str
    ) -> float:
        for sample in samples:
            if not math.isfinite(sample.value):
                raise Unusable(f"{name} is {_spell(sample.value)}")
            if counting and sample.value < 0:
                raise Unusable(f"{name} is negative ({sample.value:g})")

        ignored = set(table.model_labels) | {"le"}
        replicas: dict[tuple, list[float]] = defaultdict(list)
        for sample in samples:
            key = _key(sample.labels, ignored | REPLICA_LABELS)
            replicas[key].append(sample.value)
        if any(len(values) > 1 for values in replicas.values()):
            self._say(f"{name}: series repeated per tp_rank/pp_rank/moe_ep_rank counted once")

        processes: dict[tuple, list[float]] = defaultdict(list)
        for key, values in replicas.items():
            processes[_without(key, PROCESS_LABEL)].append(max(values))
        totals = [self._merge_processes(name, values, counting) for values in processes.values()]

        return max(totals) if how == "max" else math.fsum(totals)

    def _merge_processes(self, name: str, values: list[float], counting: bool) -> float:
        if len(values) == 1:
            return values[0]
        if not counting:
            self._say(f"{name}: one series per pid (vLLM #28792); kept the largest")
            return max(values)
        # Limitation: distinct processes that happen to hold the same non-zero count are taken
        # for copies and counted once.
        if len(set(values)) == 1:
            self._say(f"{name}: identical per-pid series are copies of one count; counted once")
            return values[0]
        self._say(f"{name}: per-pid series differ, each process counted its own share; summed")
        return math.fsum(values)

    def _check_timing(self, choice: Choice, model: str, total: float, count: float | None) -> None:
        """Say when a latency histogram looks broken (every observation in its lowest bucket)."""
        family = choice.name[: -len("_sum")]
        if not family.endswith("seconds"):
            return
        table, source = choice.table, choice.source
        buckets = [s for s in self.parsed.get(family + "_bucket") if _kept(s, source)]
        counts = [s for s in self.parsed.get(family + "_count") if _kept(s, source)]
        buckets = self._by_model(buckets, table).get(model, [])
        counts = self._by_model(counts, table).get(model, [])
        if not buckets or not counts:
            return
        observed = count if count is not None else math.fsum(s.value for s in counts)
        lowest = min(float(s.labels.get("le", "inf")) for s in buckets)
        in_lowest = math.fsum(s.value for s in buckets if float(s.labels["le"]) == lowest)
        if observed > 0 and in_lowest >= observed and lowest <= SUSPECT_LOWEST_BUCKET_S:
            self._say(
                f"{family}: every observation for model {model} is in its lowest bucket "
                f"(le={lowest:g}); the timings are suspect (vLLM #6337)"
            )
        elif observed > 0 and total <= 0:
            self._say(f"{family}: {observed:g} observations summing to {total:g}; suspect")

    # -- what is said ---------------------------------------------------------------------------

    def _describe(self, choice: Choice) -> str:
        source = choice.source
        where = ""
        if source.where:
            where = "{" + ",".join(f"{k}={'|'.join(v)}" for k, v in source.where) + "}"
        if source.kind == COUNTER:
            return f"counter {self._page_spelling(choice.name)}{where}"
        if source.kind == GAUGE:
            return f"gauge {choice.name}{where}"
        if source.kind == RATIO:
            numerator = self._page_spelling(choice.name)
            return f"ratio {numerator}/{self._page_spelling(choice.denominator_name)}"
        return f"{source.kind} {family_of_sample(choice.name)}{where}"

    def _page_spelling(self, name: str) -> str:
        """The counter's name as the page wrote it (the library adds ``_total`` to Triton's)."""
        bare = name[: -len("_total")] if name.endswith("_total") else name
        families = self.parsed.families
        if not self.parsed.openmetrics and name not in families and bare in families:
            return bare
        return name

    def _started_at(self, choices: Iterable[Choice]) -> float | None:
        created: list[float] = []
        for choice in choices:
            if choice.source.kind == GAUGE:
                continue
            for name in filter(None, (choice.name, choice.denominator_name)):
                for sample in self.parsed.get(family_of_sample(name) + "_created"):
                    if math.isfinite(sample.value) and sample.value > 0:
                        created.append(sample.value)
        # Limitation: prometheus multiprocess mode (vLLM --api-server-count > 1) prints neither
        # _created nor process_start_time_seconds; resets are then told only by a value going down.
        if created:
            return min(created)
        starts = [s.value for s in self.parsed.get(PROCESS_START) if math.isfinite(s.value)]
        return min(starts) if starts else None

    def _absent_sentences(
        self,
        reading: EngineReading,
        choices: dict[str, Choice],
        failures: dict[str, list[str]],
    ) -> list[str]:
        sentences = []
        for key in MAIN_QUANTITIES:
            if any(getattr(model, key) is not None for model in reading.models.values()):
                continue
            label = LABELS[key]
            if key in failures:
                sentences.append(f"{label}: {'; '.join(failures.pop(key))}")
            elif key in choices:
                sentences.append(f"{label}: {choices[key].name} has no usable value")
            else:
                sentences.append(self._missing_sentence(key, label))
        return sentences

    def _missing_sentence(self, key: str, label: str) -> str:
        looked_for = [
            family_of_sample(name)
            for table in self.tables
            for source in table.quantities.get(key, ())
            for name in sample_names(table, source)
        ]
        for family in looked_for:
            for declared in (family, family + "_total"):
                if declared in self.parsed.empty_families:
                    return f"{label}: {declared} is declared with no samples (absent, not zero)"
        for table in self.tables:
            if key in table.absent:
                return table.absent[key]
        if not looked_for:
            return f"{label}: {self.tables[0].engine} exports no such metric"
        named = list(dict.fromkeys(looked_for))
        return f"{label}: no readable {' or '.join(named[:3])} on this page"

    def _tables_used(self, choices: Iterable[Choice]) -> list[EngineTable]:
        used = [self.tables[0]]
        for choice in choices:
            if choice.table not in used:
                used.append(choice.table)
        return used

    def _say(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)


def _spell(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _kept(sample: Sample, source: Source) -> bool:
    return all(sample.labels.get(label) in values for label, values in source.where)


def _key(labels: dict[str, str], ignored: set[str] | frozenset[str]) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ignored))


def _without(key: tuple, label: str) -> tuple:
    return tuple(item for item in key if item[0] != label)


def _assign(model: ModelReading, key: str, quantity: Quantity) -> None:
    if key.startswith("token_split."):
        model.token_split[key.split(".", 1)[1]] = quantity
    elif key.startswith("indicators."):
        model.indicators[key.split(".", 1)[1]] = quantity
    else:
        setattr(model, key, quantity)
