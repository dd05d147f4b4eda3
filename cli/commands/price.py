"""``wattledger price``: GPU-hour and electricity prices, each in force from a date."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from wattledger.cli.app import TIME, App, db_option, pass_app
from wattledger.cli.output import Column, emit, fixed, format_option, text
from wattledger.cli.reports.price_files import example_entries, example_tiers, read_price_file
from wattledger.cli.reports.prices import (
    SCOPE_SITE,
    SCOPE_SKU,
    PriceEntry,
    PriceError,
    describe_price,
    list_prices,
    replaced_by,
    reported_skus,
    set_prices,
    sku_hint,
    unreported_sku_warning,
    validate,
)
from wattledger.timeutil import iso


@click.group("price")
def price_group() -> None:
    """Set and list prices: per GPU SKU (GPU-hour, or capex over years) and per site (kWh, PUE)."""


@price_group.command("set")
@click.option(
    "--sku",
    help="GPU SKU the price is for: H100, H200, B200, GB200, B300, GB300, ... Stored as the agent "
    "spells it, in upper case: h100 and 'nvidia h100' are H100.",
)
@click.option(
    "--site", help="Site the electricity price is for ('default' covers sites without their own)."
)
@click.option(
    "--from",
    "effective_from",
    type=TIME,
    default="2000-01-01",
    show_default=True,
    help="When the price takes effect (UTC).",
)
@click.option(
    "--usd-per-gpu-hour", type=float, help="Rented (or all-in) price of one GPU for one hour."
)
@click.option("--capex-usd", type=float, help="Purchase cost of one GPU, spread over --years.")
@click.option(
    "--years", "amortization_years", type=float, help="Amortisation period for --capex-usd."
)
@click.option("--usd-per-kwh", type=float, help="Electricity price at the site.")
@click.option("--pue", type=float, help="Power usage effectiveness of the site (1.0 if not given).")
@click.option("--note", help="Free text kept with the price (a contract number, a source).")
@db_option
@pass_app
def set_command(
    app: App,
    sku,
    site,
    effective_from,
    usd_per_gpu_hour,
    capex_usd,
    amortization_years,
    usd_per_kwh,
    pue,
    note,
    db_url,
) -> None:
    """Record a price in force from --from until the next price for the same SKU or site.

    A price for the same SKU or site and the same --from replaces the earlier one, and says so.
    Every figure must be a finite number, not negative, and below a ceiling no real price
    reaches (1e6 USD per GPU-hour, 1e10 USD capex, 100 years, 1,000 USD per kWh, PUE 10).

    \b
    Examples:
      wattledger price set --sku H100 --usd-per-gpu-hour 2.00 --from 2026-11-01
      wattledger price set --sku B200 --capex-usd 45000 --years 4
      wattledger price set --site default --usd-per-kwh 0.10 --pue 1.25
    """
    if bool(sku) == bool(site):
        raise PriceError("give exactly one of --sku (GPU-hour price) or --site (electricity price)")
    scope, key = (SCOPE_SKU, sku) if sku else (SCOPE_SITE, site)
    entry = validate(
        PriceEntry(
            scope,
            key,
            effective_from,
            usd_per_gpu_hour=usd_per_gpu_hour,
            capex_usd=capex_usd,
            amortization_years=amortization_years,
            usd_per_kwh=usd_per_kwh,
            pue=pue,
            note=note,
        )
    )
    engine = app.engine(db_url)
    earlier = replaced_by(engine, [entry])
    set_prices(engine, [entry])
    if scope == SCOPE_SKU:
        _warn_about_sku(engine, key, entry.key)
    spelled = f" ({key!r} is stored as the SKU {entry.key})" if entry.key != key else ""
    message = f"price for {scope} {entry.key}{spelled} set from {iso(effective_from)}"
    if _defaulted("effective_from"):
        message += " (the default without --from: it covers all usage before any later price)"
    if earlier:
        message += f"; replaced the earlier price from then (was {describe_price(earlier[0])})"
    click.echo(message)


def _defaulted(parameter: str) -> bool:
    """Whether the person left ``parameter`` at its default."""
    source = click.get_current_context().get_parameter_source(parameter)
    return source == ParameterSource.DEFAULT


def _warn_about_sku(engine, given: str, sku: str) -> None:
    """Say on stderr when the SKU priced is unlikely to match a GPU; the price is kept."""
    hint = sku_hint(given)
    if hint:
        click.echo(
            f"note: the agent reports a GPU named {given!r} as SKU {hint}; prices apply by SKU, "
            f"so this one may match no GPU: use --sku {hint}",
            err=True,
        )
        return
    warning = unreported_sku_warning(sku, reported_skus(engine))
    if warning:
        click.echo(f"warning: {warning}", err=True)


@price_group.command("list")
@format_option()
@db_option
@pass_app
def list_command(app: App, fmt: str, db_url) -> None:
    """Show every price entry, oldest first per SKU and site."""
    rows = []
    for entry in list_prices(app.engine(db_url)):
        rows.append(
            {
                "scope": entry.scope,
                "key": entry.key,
                "effective_from": iso(entry.effective_from),
                "usd_per_gpu_hour": entry.gpu_hour_rate,
                "capex_usd": entry.capex_usd,
                "amortization_years": entry.amortization_years,
                "usd_per_kwh": entry.usd_per_kwh,
                "pue": entry.pue,
                "currency": entry.currency,
                "note": entry.note,
            }
        )
    columns = [
        Column("scope", "Scope", justify="left"),
        Column("key", "SKU / site", justify="left"),
        Column("effective_from", "From (UTC)", justify="left"),
        Column("usd_per_gpu_hour", "USD/GPU-h", fixed(4)),
        Column("capex_usd", "Capex USD", fixed(0)),
        Column("amortization_years", "Years", fixed(1)),
        Column("usd_per_kwh", "USD/kWh", fixed(4)),
        Column("pue", "PUE", fixed(2)),
        Column("note", "Note", text, justify="left"),
    ]
    emit(rows, columns, fmt, title="Prices")
    if not rows and fmt == "table":
        click.echo(
            "No prices yet. Set one: wattledger price set --sku H100 --usd-per-gpu-hour 2.00"
        )


@price_group.command("import")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--example", "tier", help="Import a tier of the shipped example catalogue instead of a file."
)
@click.option(
    "--from",
    "effective_from",
    type=TIME,
    default="2000-01-01",
    show_default=True,
    help="With --example: when the example prices take effect.",
)
@db_option
@pass_app
def import_command(
    app: App, path: Path | None, tier: str | None, effective_from: int, db_url
) -> None:
    """Import prices from a TOML or CSV file, or one tier of the example catalogue.

    \b
    TOML:  [[sku]] sku = "H100"  usd_per_gpu_hour = 2.0  effective_from = 2026-11-01
           [[site]] site = "default"  usd_per_kwh = 0.10  pue = 1.25  effective_from = 2026-01-01
    CSV:   scope,key,effective_from,usd_per_gpu_hour,capex_usd,amortization_years,
           usd_per_kwh,pue,currency,note
    Example catalogue: see 'wattledger price examples'; nothing from it applies unless imported.
    SKUs are stored as the agent spells them (h100 becomes H100); an entry with the same SKU or
    site and start as a stored one replaces it, and the command says how many it replaced.
    """
    if bool(path) == bool(tier):
        raise PriceError("give a price file, or --example TIER, but not both")
    entries = read_price_file(path) if path else example_entries(tier, effective_from)
    engine = app.engine(db_url)
    earlier = replaced_by(engine, entries)
    count = set_prices(engine, entries)
    source = path if path else f"example tier {tier!r} (published figures, not your contract)"
    replaced = f"; {len(earlier)} replaced earlier entries with the same start" if earlier else ""
    click.echo(f"imported {count} price entries from {source}{replaced}")


@price_group.command("examples")
@format_option()
def examples_command(fmt: str) -> None:
    """Show the shipped example catalogue of published USD per GPU-hour tiers (not applied)."""
    tiers = example_tiers()
    skus = sorted({sku for prices in tiers.values() for sku in prices})
    rows = [{"sku": sku, **{tier: tiers[tier].get(sku) for tier in tiers}} for sku in skus]
    columns = [Column("sku", "SKU", justify="left")] + [Column(t, t, fixed(3)) for t in tiers]
    emit(
        rows,
        columns,
        fmt,
        title="EXAMPLE USD per GPU-hour (SemiAnalysis TCO tiers via InferenceX)",
        footer=[
            "Examples only. Import one with: wattledger price import --example TIER --from DATE"
        ],
    )
