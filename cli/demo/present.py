"""What the demo prints: the banner, the fleet, progress, the check, the report, the sources."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wattledger.cli.commands.report import COST_COLUMNS_LEAD, COST_PLACES
from wattledger.cli.demo.figures import TCO_NOTE, TIER_NAMES, Figure
from wattledger.cli.demo.fleet import DAY_CURVE_PCT, DAY_CURVE_SOURCE, Node
from wattledger.cli.demo.session import REPORT_BY, Outcome
from wattledger.cli.demo.simulation import SITE, Window
from wattledger.cli.demo.store import url_of
from wattledger.cli.output import Column, emit
from wattledger.cli.reports.prices import SCOPE_SKU, PriceEntry
from wattledger.cli.reports.table_view import table_view
from wattledger.timeutil import iso

logger = logging.getLogger(__name__)

HOPPER, BLACKWELL = "hopper", "blackwell"


def banner(console: Console, window: Window, path: Path) -> None:
    console.print(
        Panel(
            "[bold]This fleet is SIMULATED.[/bold] No GPU is measured: "
            "the GPUs are wattledger's fake "
            "NVML drawing published power figures, and the serving engines are metrics pages "
            "generated from published throughput figures.\n"
            "Everything else is the real path: the agent on each node (NVML reader, engine "
            "scrapers, counter ledger, OpenTelemetry SDK), OTLP/HTTP to a collector on 127.0.0.1, "
            f"a SQLite database ({path}) and the cost report.\n"
            f"Simulating {iso(window.since_s)} to {iso(window.until_s)} ({window.hours} h, a step "
            f"every {window.step_s} s).",
            title="wattledger demo",
            border_style="yellow",
        )
    )


def fleet_table(console: Console, fleet: Sequence[Node]) -> None:
    table = Table(title="The simulated fleet", header_style="bold")
    for heading in ("Node", "Endpoint", "Engine", "Model", "GPUs"):
        table.add_column(heading, no_wrap=heading != "Model")
    for node in fleet:
        name = f"{node.name} ({node.spec})"
        for deployment in node.deployments:
            for worker in deployment.workers:
                engine = deployment.description
                if len(deployment.workers) > 1:
                    engine += f", {worker.role}"
                gpus = _indexes(worker.gpus)
                table.add_row(name, worker.endpoint, engine, deployment.model, gpus)
                name = ""
        if node.spares():
            table.add_row(name, "(spare, idle)", "", "", _indexes(node.spares()))
    console.print(table)
    curve = " ".join(f"{pct}" for pct in DAY_CURVE_PCT)
    console.print(f"Traffic, percent of full load per UTC hour 00..23: {curve}", highlight=False)
    console.print(f"  ({DAY_CURVE_SOURCE})", highlight=False)


def _indexes(gpus: Sequence[int]) -> str:
    ordered = sorted(gpus)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))


@contextlib.contextmanager
def progress_bar(
    console: Console, window: Window, *, hidden: bool
) -> Iterator[Callable[[int, int], None]]:
    """A callback ``(step, steps)`` that moves a progress bar (a no-op when hidden)."""
    if hidden or not console.is_terminal:
        yield lambda _step, _steps: None
        return
    columns = (
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.fields[at]} UTC"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("day", total=window.steps, at=iso(window.since_s)[11:16])

        def advance(step: int, steps: int) -> None:
            at = iso(window.since_s + step * window.step_s)[11:16]
            progress.update(task, completed=step, total=steps, at=at)

        yield advance


def run_summary(console: Console, outcome: Outcome) -> None:
    run = outcome.run
    stats = run.collector_stats
    console.print(
        f"Simulated {run.window.hours} h in {run.wall_s:.1f} s: {run.exports_ok} OTLP exports "
        f"({run.exports_failed} failed), {stats['points']:,} points received by the collector, "
        f"{stats['rejected']} rejected.",
        highlight=False,
    )
    tokens = sum(
        outcome.run.truth.tokens[key]
        for key in outcome.run.truth.tokens
        if key[1] in ("input", "output")
    )
    kwh = outcome.run.truth.joules / 3.6e6
    if outcome.energy_matches() and outcome.tokens_match():
        console.print(
            f"Check: the database holds exactly what the simulation did: {kwh:,.3f} kWh of GPU "
            f"energy (to the millijoule, per GPU) and {tokens:,} input and output tokens (to the "
            "token, per model).",
            highlight=False,
            style="green",
        )
        return
    stored_tokens = sum(v for k, v in outcome.stored.tokens.items() if k[1] in ("input", "output"))
    console.print(
        f"MISMATCH: the simulation used {kwh:,.3f} kWh and counted {tokens:,} tokens; the "
        f"database holds {outcome.stored.joules / 3.6e6:,.3f} kWh and {stored_tokens:,.0f} tokens.",
        highlight=False,
        style="bold red",
    )


def prices_note(console: Console, prices: Sequence[PriceEntry], tier: str) -> None:
    skus = ", ".join(f"{p.key} {p.usd_per_gpu_hour:.2f}" for p in prices if p.scope == SCOPE_SKU)
    site = next(p for p in prices if p.scope != SCOPE_SKU)
    console.print(
        f"Prices set in the demo database from {iso(site.effective_from)}: USD per GPU-hour "
        f"{skus} (SemiAnalysis TCO, {TIER_NAMES[tier]}, as published by InferenceX); "
        f"electricity {site.usd_per_kwh:g} USD/kWh at PUE {site.pue:g} for site {SITE}.",
        highlight=False,
    )
    console.print(TCO_NOTE, highlight=False)


def cost_table(console: Console, outcome: Outcome) -> None:
    report = outcome.report
    columns = [Column(name, name.capitalize(), justify="left") for name in REPORT_BY]
    columns += COST_COLUMNS_LEAD
    rows, total, columns = table_view(
        report.rows, report.total, columns, COST_PLACES, ("usd_per_mtok",)
    )
    emit(
        rows,
        columns,
        "table",
        title="Cost per million tokens (USD) by architecture and model (simulated fleet)",
        total=total,
        footer=report.notes,
        console=console,
    )


def comparison(console: Console, outcome: Outcome) -> None:
    """Hopper against Blackwell, per model that ran on both."""
    rows = {(row["architecture"], row["model"]): row for row in outcome.report.rows}
    models = sorted({model for _arch, model in rows})
    for model in models:
        hopper, blackwell = rows.get((HOPPER, model)), rows.get((BLACKWELL, model))
        if not (hopper and blackwell and hopper["usd_per_mtok"] and blackwell["usd_per_mtok"]):
            continue
        ratio = hopper["usd_per_mtok"] / blackwell["usd_per_mtok"]
        console.print(
            f"{model}: Blackwell {blackwell['usd_per_mtok']:.4f} USD/Mtok and "
            f"{blackwell['j_per_token']:.4f} J/token, Hopper {hopper['usd_per_mtok']:.4f} USD/Mtok "
            f"and {hopper['j_per_token']:.4f} J/token: Blackwell is {ratio:,.1f}x cheaper per "
            "token.",
            highlight=False,
        )
    console.print(
        "These ratios follow from the figures above (the simulated throughputs come from "
        "NVIDIA's own claims): they show the report at work on a simulated fleet, not a "
        "measurement of real GPUs.",
        highlight=False,
    )


def figures_table(console: Console, figures: Sequence[Figure]) -> None:
    table = Table(title="Figures and sources", header_style="bold", show_lines=False)
    table.add_column("Figure")
    table.add_column("Value", justify="right")
    table.add_column("Source")
    for figure in figures:
        value = "" if not figure.unit and not figure.value else f"{figure.value:,g} {figure.unit}"
        table.add_row(figure.what, value.strip(), figure.source)
    console.print(table)


def next_steps(console: Console, window: Window, path: Path) -> None:
    db = url_of(path)
    span = f"--since {iso(window.since_s)[:16]} --until {iso(window.until_s)[:16]}"
    lines = [
        "What to try next (the fleet above is simulated; the commands are the real ones):",
        f"  wattledger report cost --db {db} {span} --by node",
        f"  wattledger report cost --db {db} {span} --by endpoint,role",
        f"  wattledger report cost --db {db} {span} --by architecture,model --idle proportional",
        f"  wattledger report cost --db {db} {span} --by sku,engine --format csv",
        f"  wattledger price list --db {db}",
        f"  wattledger demo --db {path} --force --price-tier rental",
    ]
    for line in lines:
        console.print(line, highlight=False, markup=False)
