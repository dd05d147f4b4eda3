"""Where the agent's batches go: a collector over OTLP/HTTP, or a database in the same process.

Both sinks take the SDK's ``MetricsData``. The database sink encodes it with the SDK's own OTLP
encoder and stores it through the collector's decoder and ingester, so a single node without a
collector runs exactly the code a fleet does.
"""

from __future__ import annotations

import gzip
import logging
from typing import Protocol

import requests
from google.protobuf.message import DecodeError
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from sqlalchemy import Engine

from wattledger import __version__
from wattledger.agent.spool import Delivery, Spool
from wattledger.collector.ingest import Ingestor
from wattledger.collector.otlp import CONTENT_PROTOBUF, points_from_request

logger = logging.getLogger(__name__)

# Worth another try later: timeouts, rate limits, and the collector's own failures (5xx).
RETRYABLE_STATUS = frozenset({408, 425, 429})


class Sink(Protocol):
    def __call__(self, metrics_data: MetricsData) -> bool: ...

    def close(self) -> None: ...


class DatabaseSink:
    """Stores batches straight into a database (``wattledger agent run --db``)."""

    def __init__(self, engine: Engine) -> None:
        self._ingestor = Ingestor(engine)
        self.last_result = None

    def __call__(self, metrics_data: MetricsData) -> bool:
        request = encode_metrics(metrics_data)
        decoded = points_from_request(request)
        self.last_result = self._ingestor.ingest(decoded.points)
        if self.last_result.rejected:
            logger.warning(
                "the store rejected %d points: %s",
                self.last_result.rejected,
                "; ".join(self.last_result.rejections[:3]),
            )
        return True

    def close(self) -> None:
        pass


class OtlpSink:
    """Sends batches to a collector over OTLP/HTTP: protobuf, gzip, a bearer token.

    Live batches go through the OpenTelemetry SDK's own ``OTLPMetricExporter``. ``spool``
    (optional) keeps the batches the collector did not take, as the SDK's protobuf encoding, and
    replays them oldest first before anything new is sent, so the collector sees every series in
    time order. Replays are plain POSTs of the stored bytes (the SDK exporter takes only SDK
    objects), and their answers say whether a batch is worth keeping: a batch the collector
    refuses for good (a 4xx other than auth and rate limits) is dropped and counted.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        spool: Spool | None = None,
        certificate_file: str | None = None,
    ) -> None:
        self.url = url
        self.spool = spool
        self.timeout_s = timeout_s
        self._verify: str | bool = certificate_file or True
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Content-Type": CONTENT_PROTOBUF,
                "Content-Encoding": "gzip",
                "User-Agent": f"wattledger-agent/{__version__}",
            }
        )
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._exporter = OTLPMetricExporter(
            endpoint=url,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            timeout=timeout_s,
            compression=Compression.Gzip,
            certificate_file=certificate_file,
            session=_exporter_session(certificate_file, url),
        )

    def __call__(self, metrics_data: MetricsData) -> bool:
        if self.spool is not None and not self.spool.replay(self.send):
            self.spool.put(encode_metrics(metrics_data).SerializeToString())
            return False

        if self._exporter.export(metrics_data) is MetricExportResult.SUCCESS:
            return True
        logger.warning("collector at %s did not take the batch", self.url)
        if self.spool is not None:
            self.spool.put(encode_metrics(metrics_data).SerializeToString())
        return False

    def send(self, body: bytes) -> Delivery:
        """POST one serialized request; says whether to keep it for another try."""
        try:
            response = self._session.post(
                self.url, data=gzip.compress(body, 6), timeout=self.timeout_s, verify=self._verify
            )
        except requests.RequestException as exc:
            logger.warning("collector at %s unreachable: %s", self.url, _reason(exc))
            return Delivery.RETRY

        status = response.status_code
        if 200 <= status < 300:
            _log_partial_success(response)
            return Delivery.DELIVERED
        message = response.text.strip().splitlines()[0] if response.text.strip() else ""
        if status in (401, 403):
            logger.error(
                "collector at %s refused the agent's token (%d: %s); check agent.token_file, "
                "or make a token with: wattledger token create NAME --node NODE",
                self.url,
                status,
                message or "no reason given",
            )
            return Delivery.RETRY
        if status in RETRYABLE_STATUS or status >= 500:
            logger.warning("collector at %s busy or failing (%d): %s", self.url, status, message)
            return Delivery.RETRY
        logger.error("collector at %s refused a batch for good (%d): %s", self.url, status, message)
        return Delivery.REFUSED

    def close(self) -> None:
        self._exporter.shutdown()
        self._session.close()
        if self.spool is not None:
            self.spool.close()


def _exporter_session(certificate_file: str | None, url: str) -> requests.Session | None:
    """A session for the SDK exporter that keeps to ``certificate_file`` when one is given.

    The exporter sets its CA bundle on the session, and ``requests`` lets REQUESTS_CA_BUNDLE
    or CURL_CA_BUNDLE from the environment take precedence over a session's setting
    (psf/requests#3829), so a private CA would be ignored wherever those are set. The session
    given here does not read the environment; proxies from it are carried over by hand.
    """
    if not certificate_file:
        return None
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(url))
    return session


def _log_partial_success(response: requests.Response) -> None:
    if not response.content or CONTENT_PROTOBUF not in response.headers.get("Content-Type", ""):
        return
    reply = ExportMetricsServiceResponse()
    try:
        reply.ParseFromString(response.content)
    except DecodeError:
        return
    if reply.partial_success.rejected_data_points:
        logger.warning(
            "collector rejected %d points: %s",
            reply.partial_success.rejected_data_points,
            reply.partial_success.error_message,
        )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
