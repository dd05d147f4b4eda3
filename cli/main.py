"""The ``wattledger`` command."""

import click

from wattledger import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="wattledger")
def cli() -> None:
    """What a million tokens really costs on your GPU inference fleet, and why."""


def main() -> None:
    cli()
