"""``wattledger agent probe`` and ``wattledger agent discover``: read engine metrics pages by hand.

``probe`` shows what the agent would count from one page: engine, role, and per model the input,
cached input and output tokens, finished requests, and prefill and decode seconds, with every
absent value shown as absent and the reason why. ``discover`` looks for engines on given URLs or
on the usual local ports.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import click

from wattledger.agent.engines.errors import (
    EmptyPayload,
    ScrapeError,
    UnknownEngine,
    Unreachable,
)
from wattledger.agent.engines.read import read_payload
from wattledger.agent.engines.reading import EngineReading
from wattledger.agent.engines.roles import apply_role
from wattledger.agent.engines.scrape import MAX_PAGE_BYTES, fetch
from wattledger.agent.engines.tables import LABELS, MAIN_QUANTITIES
from wattledger.cli.app import FiniteRange
from wattledger.cli.output import Column, emit, fixed, format_option, text
from wattledger.cli.page_kind import is_binary, page_kind
from wattledger.contract import ENGINES, ROLES
from wattledger.errors import WattledgerError

logger = logging.getLogger(__name__)

LOCAL_PORTS = (8000, 8080, 30000, 3000, 8081, 9090, 9000, 8002)
LOCAL_URLS = (
    *(f"http://127.0.0.1:{port}/metrics" for port in LOCAL_PORTS),
    "http://127.0.0.1:8000/prometheus/metrics",  # trtllm-serve
)

PROBE_COLUMNS = (
    Column("engine", "engine", justify="left"),
    Column("role", "role", justify="left"),
    Column("model", "model", justify="left"),
    Column("input_tokens", "input tok", fixed(0)),
    Column("input_cached_tokens", "cached in", fixed(0)),
    Column("output_tokens", "output tok", fixed(0)),
    Column("requests", "requests", fixed(0)),
    Column("prefill_seconds", "prefill s", fixed(3)),
    Column("decode_seconds", "decode s", fixed(3)),
)
DISCOVER_COLUMNS = (
    Column("url", "url", justify="left"),
    Column("engine", "engine", justify="left"),
    Column("role", "role", justify="left"),
    Column("models", "models", justify="left"),
    Column("status", "status", text, justify="left"),
)


@click.command("probe")
@click.option("--file", "payload_file", type=click.Path(path_type=Path), help="A saved page.")
@click.option("--url", help="An engine's metrics URL, e.g. http://127.0.0.1:8000/metrics.")
@click.option("--engine", type=click.Choice(ENGINES), help="Read the page as this engine's.")
@click.option("--role", type=click.Choice(ROLES), help="The endpoint's disaggregation role.")
@click.option("--model", help="Model name for an engine that labels none (llama.cpp, TGI).")
@click.option(
    "--timeout", "timeout_s", type=FiniteRange(0.01, 600.0), default=5.0, show_default=True
)
@format_option()
def probe_command(
    payload_file: Path | None,
    url: str | None,
    engine: str | None,
    role: str | None,
    model: str | None,
    timeout_s: float,
    fmt: str,
) -> None:
    """Read one engine metrics page and show what the agent would count from it.

    Example: wattledger agent probe --url http://127.0.0.1:8000/metrics --format json
    """
    if (payload_file is None) == (url is None):
        raise click.ClickException("give exactly one of --file PAYLOAD or --url URL")

    text_page = _read_file(payload_file) if payload_file else _fetch(url, timeout_s)
    try:
        reading = apply_role(read_payload(text_page, engine=engine, role=role, model=model))
    except EmptyPayload as exc:
        if payload_file is None:
            raise click.ClickException(str(exc)) from None
        raise click.ClickException(f"{payload_file} is empty; give a saved metrics page") from None
    except UnknownEngine as exc:
        if payload_file is None:
            raise click.ClickException(str(exc)) from None
        raise click.ClickException(
            f"{payload_file} is not an engine metrics page: it looks like {page_kind(text_page)}; "
            "save the page an engine serves, e.g. curl -s http://127.0.0.1:8000/metrics > page.txt"
        ) from None
    except WattledgerError as exc:
        raise click.ClickException(str(exc)) from None

    emit(
        probe_rows(reading),
        PROBE_COLUMNS,
        fmt,
        title=_title(reading),
        footer=probe_footer(reading),
    )


@click.command("discover")
@click.option("--url", "urls", multiple=True, help="A metrics URL to try; repeat for more.")
@click.option("--local", is_flag=True, help="Try the usual engine ports on 127.0.0.1.")
@click.option(
    "--timeout", "timeout_s", type=FiniteRange(0.01, 600.0), default=0.5, show_default=True
)
@format_option()
def discover_command(urls: tuple[str, ...], local: bool, timeout_s: float, fmt: str) -> None:
    """Look for serving engines and say what each one is.

    Example: wattledger agent discover --local
    """
    if not urls and not local:
        raise click.ClickException("give --url URL (repeatable) or --local")

    candidates = list(dict.fromkeys((*urls, *(LOCAL_URLS if local else ()))))
    with ThreadPoolExecutor(max_workers=min(8, len(candidates))) as pool:
        results = list(pool.map(lambda u: _discover_one(u, timeout_s), candidates))

    rows, silent = [], []
    for candidate, (row, refused) in zip(candidates, results, strict=True):
        if refused and candidate not in urls:
            silent.append(candidate)
        else:
            rows.append(row)

    footer = []
    if silent:
        footer.append(f"nothing listening at: {', '.join(silent)}")
    if not any(row["engine"] for row in rows):
        footer.append("no engine metrics page found")
    emit(rows, DISCOVER_COLUMNS, fmt, title="engine endpoints", footer=footer)


def probe_rows(reading: EngineReading) -> list[dict]:
    """One row per model; one row of absent values when the page names no model."""
    models = list(reading.models.values()) or [None]
    rows = []
    for model in models:
        row = {"engine": reading.engine, "role": reading.role, "model": None}
        for key in MAIN_QUANTITIES:
            row[key] = None
        if model is not None:
            row["model"] = model.model
            for key in MAIN_QUANTITIES:
                quantity = getattr(model, key)
                row[key] = None if quantity is None else quantity.value
        rows.append(row)
    return rows


def probe_footer(reading: EngineReading) -> list[str]:
    lines = [f"absent: {sentence}" for sentence in reading.absent]
    sources: dict[str, str] = {}
    for model in reading.models.values():
        for key in MAIN_QUANTITIES:
            quantity = getattr(model, key)
            if quantity is not None:
                sources.setdefault(key, quantity.source)
    lines.extend(f"source: {LABELS[key]} from {source}" for key, source in sources.items())
    if reading.started_at is not None:
        started = datetime.fromtimestamp(reading.started_at, UTC).isoformat(timespec="seconds")
        lines.append(f"restart marker: counters created {started}")
    lines.extend(f"note: {note}" for note in reading.notes)
    return lines


def _title(reading: EngineReading) -> str:
    version = f" ({reading.version_hint})" if reading.version_hint else ""
    return (
        f"{reading.engine}{version}; role {reading.role} from {reading.role_source}; "
        f"{reading.parse_errors} parse errors"
    )


def _read_file(path: Path) -> str:
    """The saved page, read no further than a page's size limit (as a scrape is)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_PAGE_BYTES + 1)
    except FileNotFoundError:
        raise click.ClickException(f"payload file {path} not found; check the path") from None
    except IsADirectoryError:
        raise click.ClickException(f"{path} is a folder; give a saved metrics page") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read payload file {path}: {exc.strerror}") from None
    if len(data) > MAX_PAGE_BYTES:
        raise click.ClickException(
            f"{path} is larger than {MAX_PAGE_BYTES // 2**20} MB, the most a metrics page may "
            "be; it is not one: check the path"
        )
    if is_binary(data):
        raise click.ClickException(
            f"{path} is not an engine metrics page: it looks like binary data; check the path"
        )
    return data.decode("utf-8", errors="replace")


def _fetch(url: str, timeout_s: float) -> str:
    try:
        return fetch(url, timeout_s).text
    except ScrapeError as exc:
        raise click.ClickException(str(exc)) from None


def _discover_one(url: str, timeout_s: float) -> tuple[dict, bool]:
    """A row for ``url`` and whether nothing was listening there."""
    row = {"url": url, "engine": None, "role": None, "models": None, "status": "ok"}
    try:
        reading = read_payload(fetch(url, timeout_s).text)
    except Unreachable as exc:
        row["status"] = str(exc)
        return row, True
    except WattledgerError as exc:
        row["status"] = str(exc)
        return row, False
    row.update(
        engine=reading.engine,
        role=reading.role,
        models=", ".join(reading.models) or None,
        status=f"ok, {reading.parse_errors} parse errors" if reading.parse_errors else "ok",
    )
    return row, False
