"""A configured endpoint as the agent loop sees it: scrape it, and know which GPUs it runs on.

GPUs come from the configuration (UUIDs, MIG UUIDs or NVML indexes), or, when none are given,
from the processes NVML reports on each GPU matched against the process tree listening on the
endpoint's port. The automatic match is redone every few minutes, since engines restart and move.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from wattledger.agent.engines import EndpointScraper, EndpointSpec, EngineReading, gpus_for_port
from wattledger.agent.gpu.reading import GpuReading
from wattledger.config import EndpointConfig

logger = logging.getLogger(__name__)

REMAP_INTERVAL_S = 300.0


class ScrapedEndpoint:
    """One endpoint from the configuration, scraped over HTTP."""

    def __init__(
        self,
        config: EndpointConfig,
        *,
        gpu_processes: Callable[[], Mapping[str, set[int]]] | None = None,
        scraper: EndpointScraper | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = config.name
        self.engine = config.engine
        self.role = config.role
        self._configured_gpus = tuple(config.gpus)
        self._gpu_processes = gpu_processes
        self._monotonic = monotonic
        self._auto: tuple[str, ...] = ()
        self._auto_at: float | None = None
        self.scraper = scraper or EndpointScraper(
            EndpointSpec(
                name=config.name,
                url=config.url,
                engine=config.engine,
                role=config.role,
                gpus=tuple(config.gpus),
                timeout_s=config.timeout_s,
                model=config.model,
            )
        )
        self.port = urlsplit(config.url).port or (443 if config.url.startswith("https") else 80)

    def scrape(self) -> EngineReading | None:
        return self.scraper.scrape()

    def gpu_ids(self, gpus: Sequence[GpuReading]) -> tuple[str, ...]:
        if self._configured_gpus:
            return resolve_configured(self._configured_gpus, gpus)
        return self._automatic()

    def _automatic(self) -> tuple[str, ...]:
        if self._gpu_processes is None:
            return ()
        now = self._monotonic()
        if self._auto_at is None or now - self._auto_at >= REMAP_INTERVAL_S:
            self._auto_at = now
            try:
                found = gpus_for_port(self.port, self._gpu_processes())
            except Exception:  # a failed lookup keeps the last mapping
                logger.exception("could not map endpoint %s to GPUs", self.name)
                return self._auto
            if found != self._auto:
                logger.info("endpoint %s runs on %s", self.name, ", ".join(found) or "no GPU found")
            self._auto = found
        return self._auto


def resolve_configured(entries: Sequence[str], gpus: Sequence[GpuReading]) -> tuple[str, ...]:
    """UUIDs as given; numbers as NVML indexes of the GPUs sampled on this node."""
    by_index = {gpu.index: gpu.uuid for gpu in gpus}
    out = []
    for entry in entries:
        if entry.isdigit():
            uuid = by_index.get(int(entry))
            if uuid is None:
                logger.warning("configured GPU index %s is not on this node", entry)
                continue
            out.append(uuid)
        else:
            out.append(entry)
    return tuple(out)
