"""Serving-engine scrapers: Prometheus text in, token and phase-time counters out.

The agent runner's entry points:

* :func:`read_payload` turns one metrics page into an :class:`EngineReading`;
* :class:`EndpointScraper` fetches an :class:`EndpointSpec` over HTTP, keeping the last good
  reading and counting gaps;
* :func:`apply_role` applies the disaggregation counting rule before export;
* :func:`gpus_for_port` finds the GPUs of the process tree serving a port.
"""

from wattledger.agent.engines.errors import EmptyPayload, ScrapeError, UnknownEngine, Unreachable
from wattledger.agent.engines.gpus import gpus_for_port, listening_pids
from wattledger.agent.engines.read import read_payload
from wattledger.agent.engines.reading import EngineReading, ModelReading, Quantity
from wattledger.agent.engines.roles import apply_role
from wattledger.agent.engines.scrape import (
    EndpointScraper,
    EndpointSpec,
    Page,
    ScrapeHealth,
    fetch,
)

__all__ = [
    "EmptyPayload",
    "EndpointScraper",
    "EndpointSpec",
    "EngineReading",
    "ModelReading",
    "Page",
    "Quantity",
    "ScrapeError",
    "ScrapeHealth",
    "UnknownEngine",
    "Unreachable",
    "apply_role",
    "fetch",
    "gpus_for_port",
    "listening_pids",
    "read_payload",
]
