"""Reading price entries from TOML and CSV files, and the shipped example catalogue."""

from __future__ import annotations

import csv
import io
import tomllib
from importlib import resources
from pathlib import Path

from wattledger.cli.reports.prices import SCOPE_SITE, SCOPE_SKU, PriceEntry, PriceError, validate
from wattledger.timeutil import TimeFormatError, parse_time

NUMBER_FIELDS = ("usd_per_gpu_hour", "capex_usd", "amortization_years", "usd_per_kwh", "pue")
CSV_COLUMNS = ("scope", "key", "effective_from", *NUMBER_FIELDS, "currency", "note")


def read_price_file(path: Path) -> list[PriceEntry]:
    """Entries from ``path``: TOML (``[[sku]]`` and ``[[site]]`` tables) or CSV (one per row)."""
    if not path.is_file():
        raise PriceError(f"price file {path} does not exist")
    if path.suffix.lower() == ".toml":
        return _from_toml(path)
    if path.suffix.lower() == ".csv":
        return _from_csv(path)
    raise PriceError(f"price file {path} must end in .toml or .csv")


def example_tiers() -> dict[str, dict[str, float]]:
    text = resources.files("wattledger.cli.catalogue").joinpath("example-prices.toml").read_text()
    return tomllib.loads(text)["tiers"]


def example_entries(tier: str, effective_from: int) -> list[PriceEntry]:
    tiers = example_tiers()
    if tier not in tiers:
        raise PriceError(f"no example tier {tier!r}; choose from {', '.join(tiers)}")
    note = f"example: InferenceX/SemiAnalysis {tier} tier"
    return [
        PriceEntry(SCOPE_SKU, sku, effective_from, usd_per_gpu_hour=float(rate), note=note)
        for sku, rate in sorted(tiers[tier].items())
    ]


def _from_toml(path: Path) -> list[PriceEntry]:
    try:
        document = tomllib.loads(_read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise PriceError(f"price file {path} is not valid TOML: {exc}") from None
    unknown = set(document) - {SCOPE_SKU, SCOPE_SITE}
    if unknown:
        raise PriceError(
            f"price file {path}: unknown section {sorted(unknown)[0]!r}; use [[sku]] or [[site]]"
        )

    entries = []
    for scope in (SCOPE_SKU, SCOPE_SITE):
        tables = document.get(scope, [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise PriceError(
                f"price file {path}: {scope} must be tables written [[{scope}]], one per price, "
                f'e.g. [[sku]] then sku = "H100" on the next line'
            )
        for i, table in enumerate(tables):
            where = f"{path} [[{scope}]] #{i + 1}"
            entries.append(_entry(scope, table.get(scope) or table.get("key"), table, where))
    return entries


def _from_csv(path: Path) -> list[PriceEntry]:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    missing = {"scope", "key", "effective_from"} - set(reader.fieldnames or ())
    if missing:
        raise PriceError(f"price file {path} lacks the column(s) {', '.join(sorted(missing))}")
    unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
    if unknown:
        raise PriceError(f"price file {path} has unknown column {sorted(unknown)[0]!r}")
    entries = []
    for line, row in enumerate(reader, start=2):
        table = {k: v for k, v in row.items() if v not in (None, "")}
        entries.append(_entry(row["scope"], row["key"], table, f"{path} line {line}"))
    return entries


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PriceError(
            f"price file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise PriceError(f"cannot read price file {path}: {exc.strerror or exc}") from None


def _entry(scope: str, key, table: dict, where: str) -> PriceEntry:
    if scope not in (SCOPE_SKU, SCOPE_SITE):
        raise PriceError(f"{where}: scope must be sku or site, not {scope!r}")
    if not key:
        raise PriceError(f"{where}: give the {scope} name")
    if "effective_from" not in table:
        raise PriceError(f"{where}: give effective_from, e.g. 2026-11-01")
    try:
        effective_from = parse_time(str(table["effective_from"]))
    except TimeFormatError as exc:
        raise PriceError(f"{where}: {exc}") from None
    numbers = {}
    for name in NUMBER_FIELDS:
        if name in table:
            value = table[name]
            try:
                if isinstance(value, bool):
                    raise TypeError(value)
                numbers[name] = float(value)
            except (TypeError, ValueError):
                raise PriceError(f"{where}: {name} must be a number, not {value!r}") from None
    entry = PriceEntry(
        scope,
        str(key),
        effective_from,
        currency=str(table.get("currency", "USD")),
        note=table.get("note"),
        **numbers,
    )
    try:
        return validate(entry, label=str)
    except PriceError as exc:
        raise PriceError(f"{where}: {exc}") from None
