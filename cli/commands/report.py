"""``wattledger report``: what the fleet's tokens cost, split, compared and over time."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn

from wattledger.cli.app import TIME, App, OutputFile, db_option, pass_app
from wattledger.cli.output import Column, emit, fixed, format_option
from wattledger.cli.reports.compare import ALONG, compare_report
from wattledger.cli.reports.cost import IDLE_MODES, cost_report
from wattledger.cli.reports.report import Report
from wattledger.cli.reports.split import split_report
from wattledger.cli.reports.table_view import money_or_unpriced, table_view
from wattledger.cli.reports.trend import PERIODS, trend_report
from wattledger.cli.reports.usage_query import DIMENSIONS
from wattledger.collector.usage import pending_hours, refresh
from wattledger.timeutil import ceil_hour, floor_hour, iso

NO_USAGE = "No usage in this window. Is an agent running, and is the window right?"


@click.group("report")
def report_group() -> None:
    """Cost per million tokens, prefill/decode split, comparisons and trends across your fleet.

    Every report reads the hourly usage the store keeps, charges each hour at the prices in
    force then, and names any GPU without a price. Output as a table, JSON or CSV.
    """


# --- shared options ---------------------------------------------------------------------------


def window_options(func: Callable) -> Callable:
    func = click.option(
        "--until",
        type=TIME,
        default="now",
        show_default=True,
        help="End of the window (exclusive), rounded up to the hour.",
    )(func)
    func = click.option(
        "--since",
        type=TIME,
        default="7d",
        show_default=True,
        help="Start of the window: 2026-11-01, 2026-11-01T10:00, 2026-11, or an age: 24h, 7d.",
    )(func)
    return func


def by_option(default: str) -> Callable:
    def parse(_ctx, _param, value: str) -> list[str]:
        names = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [n for n in names if n not in DIMENSIONS]
        if unknown or not names:
            raise click.BadParameter(
                f"choose one or more of {', '.join(DIMENSIONS)}, comma-separated"
            )
        return list(dict.fromkeys(names))  # a dimension named twice groups once

    return click.option(
        "--by",
        default=default,
        show_default=True,
        callback=parse,
        help=f"Group rows by one or more of: {', '.join(DIMENSIONS)} (comma-separated).",
    )


def where_option(func: Callable) -> Callable:
    def parse(_ctx, _param, values: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        where: dict[str, tuple[str, ...]] = {}
        for value in values:
            name, sep, wanted = value.partition("=")
            name, wanted = name.strip(), wanted.strip()
            if not sep or name not in DIMENSIONS:
                raise click.BadParameter(
                    f"{value!r}: use DIMENSION=VALUE with one of {', '.join(DIMENSIONS)}"
                )
            if wanted not in where.get(name, ()):
                where[name] = (*where.get(name, ()), wanted)
        return where

    return click.option(
        "--where",
        multiple=True,
        callback=parse,
        metavar="DIM=VALUE",
        help="Keep only usage where a dimension has this value. Repeatable: values of one "
        "dimension are alternatives (--where model=a --where model=b keeps both models); "
        "different dimensions must all hold (--where model=a --where node=n1 keeps model a on "
        "node n1).",
    )(func)


def idle_option(func: Callable) -> Callable:
    return click.option(
        "--idle",
        type=click.Choice(IDLE_MODES),
        default="none",
        show_default=True,
        help="Keep idle GPU cost apart (none), or share it out evenly or in proportion to "
        "serving cost.",
    )(func)


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


class PlotPath(OutputFile):
    """A picture file to write: .png, .svg or .pdf, in a folder that exists and is writable."""

    def convert(self, value, param, ctx):
        path = Path(value).expanduser()
        if path.suffix.lower() not in PLOT_SUFFIXES:
            self.fail(
                f"{value!r} must end in .png, .svg or .pdf (the picture's format), "
                f"e.g. {path.with_suffix('.png').name}",
                param,
                ctx,
            )
        return str(super().convert(value, param, ctx))


def plot_option(what: str) -> Callable:
    return click.option(
        "--plot",
        type=PlotPath(),
        help=f"Also draw {what} to this file (.png, .svg or .pdf).",
    )


def refresh_usage(engine, quiet: bool) -> None:
    """Attribute any hours that changed since the last report, with a progress bar when slow."""
    pending = pending_hours(engine)
    if not pending:
        return
    if quiet or pending < 48:
        refresh(engine)
        return
    with Progress(
        TextColumn("attributing usage"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} hours"),
        transient=True,
    ) as progress:
        task = progress.add_task("usage", total=pending)
        refresh(
            engine, progress=lambda done, total: progress.update(task, completed=done, total=total)
        )


def prepare(app: App, db_url: str | None, fmt: str, since: int, until: int):
    """The engine with usage attributed up to now, and the window widened to whole hours."""
    engine = app.engine(db_url)
    refresh_usage(engine, quiet=fmt != "table")
    return engine, floor_hour(since), ceil_hour(until)


def show(
    report: Report,
    columns: list[Column],
    fmt: str,
    title: str,
    places: dict[str, int],
    unpriced_keys: tuple[str, ...] = (),
    empty: str = NO_USAGE,
) -> None:
    """Emit a report; the table rounds additive columns so rows add up to the total shown.

    ``empty`` is the note for a report without rows.
    """
    rows, total = report.rows, report.total
    if not rows:
        report.notes.append(empty)
    if fmt == "table":
        rows, total, columns = table_view(rows, total, columns, places, unpriced_keys)
    emit(rows, columns, fmt, title=title, total=total, footer=report.notes)


def no_usage(where: dict[str, tuple[str, ...]], since: int, until: int) -> str:
    """Why a report has no rows: nothing in the window, or nothing that --where lets through.

    With --where, "is an agent running?" would point the wrong way; the likelier cause is a value
    spelled differently from the stored one, so the note gives the command that lists them.
    """
    if not where:
        return NO_USAGE
    given = " ".join(
        f"--where {shlex.quote(f'{name}={value}')}"
        for name, values in where.items()
        for value in values
    )
    listing = (
        f"wattledger report cost --since {iso(since)} --until {iso(until)} --by {','.join(where)}"
    )
    return f"No usage matches {given} in this window; {listing} lists the values there are."


def plot_written(path: str, fmt: str) -> None:
    click.echo(f"plot written to {path}", err=fmt != "table")


def key_columns(by: list[str]) -> list[Column]:
    return [Column(name, name.replace("_", " ").capitalize(), justify="left") for name in by]


# --- report cost ------------------------------------------------------------------------------

# Headings are short so that the main table (by architecture and model) fits 120 columns; the
# table's title says the amounts are USD.
COST_COLUMNS_LEAD = [
    Column("gpu_hours", "GPU-h", fixed(2)),
    Column("energy_kwh", "kWh", fixed(2)),
    Column("input_tokens", "Tok in", fixed(0)),
    Column("output_tokens", "Tok out", fixed(0)),
    Column("cost_usd", "Cost", fixed(2)),
    Column("idle_usd", "Idle", fixed(2)),
    Column("usd_per_mtok", "USD/Mtok", money_or_unpriced(4)),
    Column("j_per_token", "J/tok", fixed(3)),
]
COST_COLUMNS_DATA = [
    Column("cached_tokens", "Cached tok", fixed(0)),
    Column("requests", "Requests", fixed(0)),
    Column("serving_usd", "Serving USD", fixed(2)),
    Column("idle_shared_usd", "Idle shared USD", fixed(2)),
    Column("total_usd", "Total USD", fixed(2)),
    Column("utilization", "Util", fixed(3)),
    Column("unpriced_gpu_hours", "Unpriced GPU-h", fixed(2)),
    Column("unmapped_tokens", "Unmapped tok", fixed(0)),
]
COST_PLACES = {
    "gpu_hours": 2,
    "energy_kwh": 2,
    "input_tokens": 0,
    "output_tokens": 0,
    "cost_usd": 2,
    "idle_usd": 2,
}


@report_group.command("cost")
@window_options
@by_option("model")
@idle_option
@where_option
@format_option()
@plot_option("USD per million tokens per row")
@db_option
@pass_app
def cost_command(
    app: App,
    since: int,
    until: int,
    by: list[str],
    idle: str,
    where: dict,
    fmt: str,
    plot: str | None,
    db_url: str | None,
) -> None:
    """Cost per million tokens, GPU-hours, energy and idle cost, per group.

    Each row's cost is its GPUs' time (USD per GPU-hour) and energy (kWh x PUE x USD per kWh)
    while they served tokens, each hour at the prices in force then; idle time is kept apart
    unless --idle shares it out. The total line is the sum of the rows.

    \b
    Examples:
      wattledger report cost --since 2026-11-01 --until 2026-12-01 --by architecture,model
      wattledger report cost --since 24h --by node --idle proportional --format csv
      wattledger report cost --since 7d --by endpoint --where model=llama-70b --plot cost.png
    """
    engine, since, until = prepare(app, db_url, fmt, since, until)
    report = cost_report(engine, since, until, by, idle=idle, where=where)

    columns = key_columns(by) + COST_COLUMNS_LEAD + (COST_COLUMNS_DATA if fmt != "table" else [])
    show(
        report,
        columns,
        fmt,
        "Cost per million tokens (USD)",
        COST_PLACES,
        ("usd_per_mtok",),
        empty=no_usage(where, since, until),
    )
    if plot:
        from wattledger.cli.reports.plots import bar_chart

        bar_chart(report.rows, by, "usd_per_mtok", "USD per million tokens", plot)
        plot_written(plot, fmt)


# --- report split -----------------------------------------------------------------------------

SPLIT_TABLE = [
    Column("method", "Method", justify="left"),
    Column("prefill_gpu_hours", "Prefill GPU-h", fixed(2)),
    Column("decode_gpu_hours", "Decode GPU-h", fixed(2)),
    Column("prefill_kwh", "Prefill kWh", fixed(2)),
    Column("decode_kwh", "Decode kWh", fixed(2)),
    Column("prefill_usd", "Prefill USD", fixed(2)),
    Column("decode_usd", "Decode USD", fixed(2)),
    Column("idle_usd", "Idle USD", fixed(2)),
    Column("usd_per_m_input", "USD/M in", money_or_unpriced(4)),
    Column("usd_per_m_output", "USD/M out", money_or_unpriced(4)),
]
SPLIT_DATA = [
    Column("method", "Method", justify="left"),
    Column("estimate", "Estimate"),
    Column("prefill_gpu_seconds", "Prefill GPU-s"),
    Column("decode_gpu_seconds", "Decode GPU-s"),
    Column("idle_gpu_seconds", "Idle GPU-s"),
    Column("prefill_kwh", "Prefill kWh"),
    Column("decode_kwh", "Decode kWh"),
    Column("idle_kwh", "Idle kWh"),
    Column("prefill_usd", "Prefill USD"),
    Column("decode_usd", "Decode USD"),
    Column("idle_usd", "Idle USD"),
    Column("idle_shared_usd", "Idle shared USD"),
    Column("cost_usd", "Cost USD"),
    Column("input_tokens", "Input tok"),
    Column("output_tokens", "Output tok"),
    Column("usd_per_m_input", "USD/M input"),
    Column("usd_per_m_output", "USD/M output"),
    Column("disaggregated_share", "Disaggregated share"),
    Column("phase_time_share", "Phase time share"),
    Column("default_ratio_share", "Default ratio share"),
    Column("unpriced_gpu_hours", "Unpriced GPU-h"),
    Column("unmapped_input_tokens", "Unmapped input tok"),
    Column("unmapped_output_tokens", "Unmapped output tok"),
]
SPLIT_PLACES = {
    "prefill_gpu_hours": 2,
    "decode_gpu_hours": 2,
    "prefill_kwh": 2,
    "decode_kwh": 2,
    "prefill_usd": 2,
    "decode_usd": 2,
    "idle_usd": 2,
}


@report_group.command("split")
@window_options
@by_option("endpoint,model")
@idle_option
@where_option
@format_option()
@plot_option("USD per million input and output tokens per row")
@db_option
@pass_app
def split_command(
    app: App,
    since: int,
    until: int,
    by: list[str],
    idle: str,
    where: dict,
    fmt: str,
    plot: str | None,
    db_url: str | None,
) -> None:
    """Prefill versus decode: GPU time, energy and cost, per million input and output tokens.

    Disaggregated pools are priced from their own GPUs (a prefill pool is all prefill, a
    decode pool all decode). Aggregated endpoints are split by the engine's measured prefill
    and decode time; without it, by tokens at [report] default_output_token_weight, marked as
    an estimate. Every row names its method.

    \b
    Examples:
      wattledger report split --since 2026-11-01 --until 2026-12-01
      wattledger report split --since 7d --by model --format json
      wattledger report split --since 24h --where engine=vllm --plot split.png
    """
    engine, since, until = prepare(app, db_url, fmt, since, until)
    weight = app.config.report.default_output_token_weight
    report = split_report(
        engine, since, until, by, output_token_weight=weight, idle=idle, where=where
    )

    for row in report.rows + [report.total]:
        row["prefill_gpu_hours"] = row["prefill_gpu_seconds"] / 3600.0
        row["decode_gpu_hours"] = row["decode_gpu_seconds"] / 3600.0
    columns = key_columns(by) + (SPLIT_TABLE if fmt == "table" else SPLIT_DATA)
    show(
        report,
        columns,
        fmt,
        "Prefill and decode cost (USD)",
        SPLIT_PLACES,
        ("usd_per_m_input", "usd_per_m_output"),
        empty=no_usage(where, since, until),
    )
    if plot:
        from wattledger.cli.reports.plots import paired_bars

        names = [" / ".join(str(row[k]) for k in by) for row in report.rows]
        pairs = [(row["usd_per_m_input"], row["usd_per_m_output"]) for row in report.rows]
        paired_bars(
            names,
            pairs,
            ("per M input tokens (prefill)", "per M output tokens (decode)"),
            "USD per million tokens",
            "Prefill and decode cost per token",
            plot,
        )
        plot_written(plot, fmt)


# --- report compare ---------------------------------------------------------------------------

COMPARE_SIDE = [
    ("usd_per_mtok", "USD/Mtok", 4),
    ("tokens_per_gpu_s", "Tok/GPU-s serving", 1),
    ("serving_share", "Serving share", 3),
    ("utilization", "Util", 3),
    ("usd_per_gpu_hour", "USD/GPU-h", 3),
    ("watts", "W", 0),
    ("j_per_token", "J/token", 4),
]
# Each factor is A's cost per token over B's; the headings say which way each figure is taken,
# so that a throughput factor of 44x (B over A) reads with the side table's 0.0225x (A over B).
COMPARE_WHY = [
    Column("ratio", "USD/Mtok A/B", fixed(4)),
    Column("factor_gpu_hour_cost", "= GPU-h cost A/B", fixed(4)),
    Column("factor_throughput", "x Throughput B/A", fixed(4)),
    Column("factor_serving_share", "x Serving share B/A", fixed(4)),
    Column("factor_price", "GPU-h price A/B", fixed(4)),
    Column("factor_energy", "x Energy factor", fixed(4)),
]
COMPARE_WHY_TITLE = (
    "Why: USD/Mtok A/B = GPU-hour cost A/B x throughput B/A x serving share B/A; "
    "GPU-hour cost = price x energy factor"
)


@report_group.command("compare")
@window_options
@click.option(
    "--along",
    type=click.Choice(ALONG),
    default="architecture",
    show_default=True,
    help="The dimension whose two values are compared.",
)
@click.option("--a", "a", metavar="VALUE", help="Side A (default for architecture: hopper).")
@click.option("--b", "b", metavar="VALUE", help="Side B (default for architecture: blackwell).")
@by_option("model")
@where_option
@format_option()
@plot_option("USD per million tokens, A beside B, per row")
@db_option
@pass_app
def compare_command(
    app: App,
    since: int,
    until: int,
    along: str,
    a: str | None,
    b: str | None,
    by: list[str],
    where: dict,
    fmt: str,
    plot: str | None,
    db_url: str | None,
) -> None:
    """Two groups side by side per model (Hopper versus Blackwell by default), and why.

    For each side: USD per million tokens (idle included), tokens per GPU-second while serving,
    share of time serving, utilisation, USD per GPU-hour, watts and joules per token. The ratio
    of cost per token (A over B) is decomposed into factors that multiply back to it exactly:
    GPU-hour cost A/B (price x energy) x throughput B/A x serving share B/A. Throughput and
    serving share are taken B over A: the side that serves more makes the other one dearer.

    \b
    Examples:
      wattledger report compare --since 2026-11-01 --until 2026-12-01
      wattledger report compare --along engine --a vllm --b trtllm --since 7d
      wattledger report compare --along sku --a H200 --b GB300 --format csv --plot compare.png
    """
    engine, since, until = prepare(app, db_url, fmt, since, until)
    report = compare_report(engine, since, until, along=along, a=a, b=b, by=by, where=where)
    if not report.rows:
        report.notes.append(no_usage(where, since, until))

    if fmt != "table":
        emit(
            report.rows,
            key_columns(by) + _compare_data_columns(),
            fmt,
            title="Comparison",
            total=report.total,
            footer=report.notes,
        )
    else:
        emit(
            _compare_side_rows(report, by),
            key_columns(by) + _compare_side_columns(),
            fmt,
            title=f"{along}: {report.total['a']} (A) versus {report.total['b']} (B)",
        )
        emit(
            report.rows + [report.total],
            key_columns(by) + COMPARE_WHY,
            fmt,
            title=COMPARE_WHY_TITLE,
            footer=report.notes,
        )
    if plot:
        from wattledger.cli.reports.plots import paired_bars

        rows = report.rows + [report.total]
        names = [" / ".join(str(row[k]) for k in by) for row in report.rows] + ["all models"]
        pairs = [(row["a_usd_per_mtok"], row["b_usd_per_mtok"]) for row in rows]
        paired_bars(
            names,
            pairs,
            (report.total["a"], report.total["b"]),
            "USD per million tokens",
            f"Cost per token: {report.total['a']} versus {report.total['b']}",
            plot,
        )
        plot_written(plot, fmt)


def _compare_data_columns() -> list[Column]:
    from wattledger.cli.reports.compare import FACTORS, SIDE_FIELDS

    columns = [Column("a", "A"), Column("b", "B")]
    for side in ("a", "b"):
        columns += [
            Column(f"{side}_{name}", f"{side}_{name}") for name in (*SIDE_FIELDS, "unpriced")
        ]
    columns += [
        Column(name, name) for name in ("watts_ratio", "j_per_token_ratio", "ratio", *FACTORS)
    ]
    return columns + [Column("factor_product", "factor_product"), Column("why", "why")]


def _compare_side_columns() -> list[Column]:
    columns = [Column("side", "Side", justify="left")]
    return columns + [
        Column(key, heading, money_or_unpriced(places)) for key, heading, places in COMPARE_SIDE
    ]


def _compare_side_rows(report: Report, by: list[str]) -> list[dict]:
    """Each compared row as three lines: side A, side B, and A over B."""
    lines = []
    for row in report.rows + [report.total]:
        keys = {name: row[name] for name in by}
        for side in ("a", "b"):
            line = {**keys, "side": f"{side.upper()}: {row[side]}"}
            for key, _heading, _places in COMPARE_SIDE:
                value = row[f"{side}_{key}"]
                cost = key in ("usd_per_mtok", "usd_per_gpu_hour")
                line[key] = (
                    "unpriced" if value is None and cost and row[f"{side}_unpriced"] else value
                )
            lines.append(line)
            keys = dict.fromkeys(by, "")
        ratio = {**keys, "side": "A / B"}
        for key, _heading, _places in COMPARE_SIDE:
            a_value, b_value = row[f"a_{key}"], row[f"b_{key}"]
            ratio[key] = f"{a_value / b_value:.4g}x" if a_value is not None and b_value else None
        lines.append(ratio)
    return lines


# --- report trend -----------------------------------------------------------------------------

TREND_TABLE = [
    Column("gpu_hours", "GPU-h", fixed(2)),
    Column("input_tokens", "Tok in", fixed(0)),
    Column("output_tokens", "Tok out", fixed(0)),
    Column("cost_usd", "Cost", fixed(2)),
    Column("idle_usd", "Idle", fixed(2)),
    Column("usd_per_mtok", "USD/Mtok", money_or_unpriced(4)),
    Column("change", "Change", lambda v: "-" if v is None else f"{v:+.1%}"),
]
TREND_DATA = (
    [Column("period_start", "Period start")]
    + COST_COLUMNS_LEAD
    + COST_COLUMNS_DATA
    + [Column("change", "Change")]
)
TREND_PLACES = {"gpu_hours": 2, "input_tokens": 0, "output_tokens": 0, "cost_usd": 2, "idle_usd": 2}


@report_group.command("trend")
@window_options
@by_option("model")
@click.option(
    "--every",
    type=click.Choice(PERIODS),
    default="day",
    show_default=True,
    help="Length of each period (UTC; weeks start on Monday).",
)
@idle_option
@where_option
@format_option()
@plot_option("USD per million tokens over time, one line per group")
@db_option
@pass_app
def trend_command(
    app: App,
    since: int,
    until: int,
    by: list[str],
    every: str,
    idle: str,
    where: dict,
    fmt: str,
    plot: str | None,
    db_url: str | None,
) -> None:
    """USD per million tokens per day or week, per group, so that a change shows as a step.

    Each row also gives the change from the group's previous period; the notes list the
    largest steps (an engine upgrade, a new price, a shift in traffic).

    \b
    Examples:
      wattledger report trend --since 2026-10-01 --by model --every week --plot trend.png
      wattledger report trend --since 30d --by endpoint --where model=llama-70b
      wattledger report trend --since 2026-11 --by engine --format csv
    """
    engine, since, until = prepare(app, db_url, fmt, since, until)
    report = trend_report(engine, since, until, by, every=every, idle=idle, where=where)

    columns = [Column("period", "Period", justify="left")] + key_columns(by)
    columns += TREND_TABLE if fmt == "table" else TREND_DATA
    show(
        report,
        columns,
        fmt,
        f"USD per million tokens per {every}",
        TREND_PLACES,
        ("usd_per_mtok",),
        empty=no_usage(where, since, until),
    )
    if plot:
        from wattledger.cli.reports.plots import line_chart

        series: dict[str, list] = {}
        for row in report.rows:
            name = " / ".join(str(row[k]) for k in by)
            series.setdefault(name, []).append((row["period"], row["usd_per_mtok"]))
        line_chart(series, "USD per million tokens", f"USD per million tokens per {every}", plot)
        plot_written(plot, fmt)
