"""wattledger: what a million tokens really costs on a GPU inference fleet, and why."""

__version__ = "0.1.0"
