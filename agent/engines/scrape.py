"""Fetching an engine's metrics page over HTTP, and keeping the last good reading of it.

A failed scrape is never a reading of zeros: an unreachable endpoint, a timeout (llama.cpp's
``/metrics`` blocks while it decodes, llama.cpp #24866), an HTTP error or an empty body (TGI
#2184) leave the last good reading in place and are counted as a gap. Counters catch up on the
next good scrape, so a gap loses nothing but time resolution.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from wattledger import __version__
from wattledger.agent.engines.errors import EmptyPayload, ScrapeError, Unreachable
from wattledger.agent.engines.read import read_payload
from wattledger.agent.engines.reading import EngineReading
from wattledger.contract import ENGINES, ROLES
from wattledger.errors import ConfigError

logger = logging.getLogger(__name__)

# Prometheus text first: every engine capture seen speaks it; OpenMetrics is read as well.
# Only the classic text format is asked for: prometheus_client (which vLLM, SGLang and
# trtllm-serve serve through) picks OpenMetrics whenever it is listed at all, q-values aside, and
# its 0.26 OpenMetrics output escapes ':' in sample names but not in headers. OpenMetrics pages
# that arrive anyway are still read (see exposition.py).
ACCEPT = "text/plain;version=0.0.4, */*;q=0.1"
MAX_PAGE_BYTES = 32 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class EndpointSpec:
    """One engine endpoint the agent scrapes.

    ``engine`` and ``role`` override what the page says; ``gpus`` are the UUIDs of the GPUs the
    endpoint runs on; ``model`` names the model of an engine that labels none (llama.cpp, TGI).
    """

    name: str
    url: str
    engine: str | None = None
    role: str | None = None
    gpus: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    model: str | None = None

    def __post_init__(self) -> None:
        where = f"endpoint {self.name!r}"
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{where}: url {self.url!r} is not an http(s) URL")
        if self.engine is not None and self.engine not in ENGINES:
            raise ConfigError(f"{where}: engine {self.engine!r} is not one of {', '.join(ENGINES)}")
        if self.role is not None and self.role not in ROLES:
            raise ConfigError(f"{where}: role {self.role!r} is not one of {', '.join(ROLES)}")
        if not self.timeout_s > 0:
            raise ConfigError(f"{where}: timeout_s must be above 0 seconds, not {self.timeout_s}")


@dataclass(frozen=True)
class Page:
    text: str
    content_type: str
    elapsed_s: float


def fetch(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Page:
    """GET ``url`` within ``timeout_s`` seconds in all; raise :class:`ScrapeError` on failure."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ScrapeError(f"{url!r} is not an http(s) URL; give the engine's metrics URL")

    request = urllib.request.Request(
        url,
        headers={
            "Accept": ACCEPT,
            "Accept-Encoding": "gzip",
            "User-Agent": f"wattledger-agent/{__version__}",
        },
    )
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = _read_within(response, deadline, url, timeout_s)
            content_type = response.headers.get("Content-Type", "")
            encoding = response.headers.get("Content-Encoding", "")
    except urllib.error.HTTPError as exc:
        raise ScrapeError(
            f"{url} answered HTTP {exc.code} {exc.reason}; check the metrics path and that "
            "metrics are enabled on the engine"
        ) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError | socket.timeout):
            raise _timed_out(url, timeout_s) from None
        raise Unreachable(f"{url} is unreachable ({exc.reason}); is the engine running?") from None
    except TimeoutError:
        raise _timed_out(url, timeout_s) from None
    except (ConnectionError, http.client.HTTPException) as exc:
        raise ScrapeError(f"{url} broke off its answer ({exc.__class__.__name__})") from None

    text = _decode(body, encoding, url)
    if not text.strip():
        raise EmptyPayload(f"{url} answered with an empty page: a failed scrape, not zero traffic")
    return Page(text, content_type, time.monotonic() - started)


def _read_within(response, deadline: float, url: str, timeout_s: float) -> bytes:
    # Limitation: the deadline is checked between reads; one read of a body trickled byte by
    # byte can run past it before the page is refused (each wait is bounded by the timeout).
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read(CHUNK_BYTES):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_PAGE_BYTES:
            raise ScrapeError(f"{url} sent more than {MAX_PAGE_BYTES} bytes; not a metrics page")
        if time.monotonic() > deadline:
            raise _timed_out(url, timeout_s)
    return b"".join(chunks)


def _decode(body: bytes, encoding: str, url: str) -> str:
    if encoding.lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            raise ScrapeError(f"{url} sent a gzip body that does not decompress") from None
    return body.decode("utf-8", errors="replace")


def _timed_out(url: str, timeout_s: float) -> ScrapeError:
    return ScrapeError(
        f"{url} did not answer within {timeout_s:g} s; raise the endpoint's timeout if the "
        "engine blocks its metrics page while busy"
    )


@dataclass
class ScrapeHealth:
    """How scraping one endpoint has gone: successes, gaps and the last error."""

    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_success_at: float | None = None
    last_attempt_at: float | None = None


@dataclass
class EndpointScraper:
    """Scrapes one endpoint, keeping the last good reading and recording gaps."""

    spec: EndpointSpec
    fetcher: Callable[[str, float], Page] = fetch
    clock: Callable[[], float] = time.time
    health: ScrapeHealth = field(default_factory=ScrapeHealth)
    last_good: EngineReading | None = None

    def scrape(self) -> EngineReading | None:
        """Scrape once: the new reading, or ``None`` when this scrape failed (a gap)."""
        now = self.clock()
        self.health.last_attempt_at = now
        try:
            page = self.fetcher(self.spec.url, self.spec.timeout_s)
            reading = read_payload(
                page.text, engine=self.spec.engine, role=self.spec.role, model=self.spec.model
            )
        except ScrapeError as exc:
            self._failed(str(exc))
            return None

        if self.health.consecutive_failures:
            logger.info(
                "endpoint %s answers again after %d failed scrapes",
                self.spec.name,
                self.health.consecutive_failures,
            )
        self.health.successes += 1
        self.health.consecutive_failures = 0
        self.health.last_success_at = now
        self.last_good = reading
        return reading

    def _failed(self, error: str) -> None:
        self.health.failures += 1
        self.health.consecutive_failures += 1
        self.health.last_error = error
        if self.health.consecutive_failures == 1:
            logger.warning("endpoint %s: %s", self.spec.name, error)
        else:
            logger.debug("endpoint %s still failing: %s", self.spec.name, error)
