"""Where the agent's batches go: a collector over OTLP/HTTP, or a database in the same process.

Both sinks take the SDK's ``MetricsData``. The database sink encodes it with the SDK's own OTLP
encoder and stores it through the collector's decoder and ingester, so a single node without a
collector runs exactly the code a fleet does.
"""

from __future__ import annotations

import logging
from typing import Protocol

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from sqlalchemy import Engine

from wattledger.collector.ingest import Ingestor
from wattledger.collector.otlp import points_from_request

logger = logging.getLogger(__name__)


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
    """Sends batches to a collector with the OpenTelemetry SDK's OTLP/HTTP exporter.

    ``spool`` (optional) keeps batches the collector did not take and replays them, oldest first,
    before anything new is sent, so the collector sees every series in time order.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        spool=None,
        certificate_file: str | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.url = url
        self.spool = spool
        self._exporter = OTLPMetricExporter(
            endpoint=url,
            headers=headers,
            timeout=timeout_s,
            compression=Compression.Gzip,
            certificate_file=certificate_file,
        )

    def __call__(self, metrics_data: MetricsData) -> bool:
        if self.spool is not None and not self.spool.replay():
            self.spool.put(encode_metrics(metrics_data).SerializeToString())
            return False

        result = self._exporter.export(metrics_data)
        if result is MetricExportResult.SUCCESS:
            return True

        logger.warning("collector at %s did not take the batch", self.url)
        if self.spool is not None:
            self.spool.put(encode_metrics(metrics_data).SerializeToString())
        return False

    def close(self) -> None:
        self._exporter.shutdown()
