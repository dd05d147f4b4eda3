"""``wattledger demo``: a simulated Hopper and Blackwell fleet, run through the real path."""

from __future__ import annotations

import logging
import time

import click

from wattledger.cli.app import FiniteRange
from wattledger.cli.demo import present
from wattledger.cli.demo.figures import PUE, TIERS, USD_PER_KWH, figures_table
from wattledger.cli.demo.fleet import FLEET
from wattledger.cli.demo.session import build
from wattledger.cli.demo.simulation import SITE, Window
from wattledger.cli.demo.store import DEFAULT_PATH, check_target, demo_path, demo_prices
from wattledger.cli.output import make_console
from wattledger.cli.reports.prices import LIMITS
from wattledger.timeutil import DAY_S, day_start

logger = logging.getLogger(__name__)

DEFAULT_STEP_S = 300
EXPORT_EVERY_STEPS = 2


@click.command("demo")
@click.option(
    "--db",
    "db",
    metavar="PATH",
    default=DEFAULT_PATH,
    show_default=True,
    help="SQLite file to write (a path or sqlite:///PATH). Never overwrites a file that "
    "is not an earlier demo.",
)
@click.option("--force", is_flag=True, help="Replace an earlier demo database at --db.")
@click.option(
    "--hours",
    type=click.IntRange(1, 24),
    default=24,
    show_default=True,
    help="Simulate this many hours of yesterday (UTC), from midnight.",
)
@click.option(
    "--step-s",
    type=click.IntRange(10, 3600),
    default=DEFAULT_STEP_S,
    show_default=True,
    help="Simulated seconds between agent cycles (sample, scrape); must divide an hour.",
)
@click.option(
    "--price-tier",
    type=click.Choice(TIERS),
    default=TIERS[0],
    show_default=True,
    help="Which published SemiAnalysis TCO tier prices the GPU-hours.",
)
@click.option(
    "--usd-per-kwh",
    type=FiniteRange(0.0, LIMITS["usd_per_kwh"]),
    default=USD_PER_KWH.value,
    show_default=True,
    help="Electricity price of the simulated site (0 leaves energy out).",
)
@click.option(
    "--pue",
    type=FiniteRange(1.0, LIMITS["pue"]),
    default=PUE.value,
    show_default=True,
    help="Power usage effectiveness of the simulated site.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo_command(
    db: str,
    force: bool,
    hours: int,
    step_s: int,
    price_tier: str,
    usd_per_kwh: float,
    pue: float,
    quiet: bool,
) -> None:
    """Run a simulated day of a small Hopper + Blackwell fleet, then report what tokens cost.

    Four simulated nodes (H100, H200, B200, GB200) serve gpt-oss-120b and DeepSeek-R1 through
    vLLM, SGLang, trtllm-serve and an NVIDIA Dynamo prefill/decode pair. Their GPUs are a fake
    NVML and their engines generated metrics pages; the agents, OTLP export, collector, SQLite
    store and cost report are the real ones. Every figure used is printed with its source.

    \b
    Examples:
      wattledger demo
      wattledger demo --db /tmp/demo.db --hours 6 --price-tier rental
    """
    path = demo_path(db)
    check_target(path, force=force)
    window = Window(day_start(int(time.time())) - DAY_S, hours, step_s, EXPORT_EVERY_STEPS)
    prices = demo_prices(price_tier, usd_per_kwh, pue, SITE, window.since_s)

    console = make_console()
    present.banner(console, window, path)
    present.fleet_table(console, FLEET)
    with present.progress_bar(console, window, hidden=quiet) as advance:
        outcome = build(path, window, prices, progress=advance)

    present.run_summary(console, outcome)
    present.figures_table(console, figures_table(price_tier, usd_per_kwh, pue))
    present.prices_note(console, prices, price_tier)
    present.cost_table(console, outcome)
    present.comparison(console, outcome)
    console.print(f"Database written: {path} (simulated data, marked as a demo).", highlight=False)
    present.next_steps(console, window, path)
