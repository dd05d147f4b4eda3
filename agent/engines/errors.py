"""Why reading an engine's metrics page failed, in one line a person can act on."""

from __future__ import annotations

from wattledger.errors import WattledgerError


class ScrapeError(WattledgerError):
    """An engine endpoint could not be read: unreachable, too slow, an HTTP error, or no metrics."""


class Unreachable(ScrapeError):
    """Nothing answered at the endpoint's address (connection refused, no route, unknown host)."""


class EmptyPayload(ScrapeError):
    """The endpoint answered with no metrics at all: a failed scrape, never a page of zeros."""


class UnknownEngine(ScrapeError):
    """The page holds no metric family of any engine this agent knows."""
