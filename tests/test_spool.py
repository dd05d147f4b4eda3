"""The agent's spool: bounded, oldest first, counted drops, and the sink that replays it."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wattledger.agent.sinks import OtlpSink
from wattledger.agent.spool import Delivery, Spool


class Recorder:
    def __init__(self, outcomes=()):
        self.outcomes = list(outcomes)
        self.sent: list[bytes] = []

    def __call__(self, body: bytes) -> Delivery:
        outcome = self.outcomes.pop(0) if self.outcomes else Delivery.DELIVERED
        if outcome is Delivery.DELIVERED:
            self.sent.append(body)
        return outcome


def test_replay_sends_oldest_first_and_empties_the_spool(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1000)
    for body in (b"one", b"two", b"three"):
        spool.put(body)
    send = Recorder()

    assert spool.replay(send) is True

    assert send.sent == [b"one", b"two", b"three"]
    assert len(spool) == 0
    assert spool.counters()["replayed"] == 3


def test_replay_stops_at_the_first_batch_the_collector_does_not_take(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1000)
    for body in (b"one", b"two", b"three"):
        spool.put(body)
    send = Recorder([Delivery.DELIVERED, Delivery.RETRY])

    assert spool.replay(send) is False

    assert send.sent == [b"one"]
    assert len(spool) == 2


def test_a_refused_batch_is_dropped_and_counted_so_it_cannot_block_the_rest(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1000)
    spool.put(b"poison")
    spool.put(b"good")

    assert spool.replay(Recorder([Delivery.REFUSED])) is True

    assert spool.counters()["refused"] == 1
    assert len(spool) == 0


def test_over_its_size_the_spool_drops_the_oldest_and_counts_them(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=25)
    for i in range(5):
        spool.put(b"%d" % i * 10)  # 10 bytes each
    send = Recorder()

    spool.replay(send)

    assert send.sent == [b"3" * 10, b"4" * 10]
    assert spool.counters()["dropped_for_size"] == 3


def test_the_spool_and_its_counters_survive_a_restart(tmp_path):
    path = tmp_path / "spool.sqlite"
    first = Spool(path, max_bytes=15)
    first.put(b"a" * 10)
    first.put(b"b" * 10)
    first.close()

    again = Spool(path, max_bytes=15)

    assert (len(again), again.pending_bytes) == (1, 10)
    assert again.counters()["dropped_for_size"] == 1
    assert again.counters()["spooled"] == 2


def test_on_a_full_disk_the_oldest_half_makes_room_and_the_drop_is_counted(tmp_path):
    """SQLite's page cap raises SQLITE_FULL, the error a full disk gives."""
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**9)
    page_size = spool._conn.execute("PRAGMA page_size").fetchone()[0]
    big = b"x" * (page_size * 4)
    for _ in range(4):
        spool.put(big)
    used = spool._conn.execute("PRAGMA page_count").fetchone()[0]
    spool._conn.execute(f"PRAGMA max_page_count = {used}")

    kept = spool.put(b"y" * (page_size * 4))

    assert kept is True
    assert len(spool) == 3
    assert spool.counters()["dropped_disk_full"] == 2


def test_when_nothing_can_be_freed_the_new_batch_is_dropped_and_counted(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**9)
    used = spool._conn.execute("PRAGMA page_count").fetchone()[0]
    spool._conn.execute(f"PRAGMA max_page_count = {used}")
    big = b"x" * 100_000

    assert spool.put(big) is False

    assert spool.counters()["dropped_disk_full"] == 1
    assert len(spool) == 0


def test_a_batch_larger_than_the_whole_spool_is_dropped(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10)

    assert spool.put(b"x" * 11) is False
    assert spool.counters()["dropped_for_size"] == 1


def test_a_zero_size_spool_is_refused(tmp_path):
    with pytest.raises(ValueError):
        Spool(tmp_path / "spool.sqlite", max_bytes=0)


class FlakyCollector:
    """Answers each POST with the next scripted status and keeps the bodies it accepted."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = collector.statuses.pop(0) if collector.statuses else 200
                collector.headers.append(dict(self.headers))
                if status == 200:
                    import gzip

                    collector.bodies.append(gzip.decompress(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/metrics"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    "status, outcome",
    [
        (200, Delivery.DELIVERED),
        (503, Delivery.RETRY),
        (429, Delivery.RETRY),
        (401, Delivery.RETRY),
        (400, Delivery.REFUSED),
        (413, Delivery.REFUSED),
    ],
)
def test_the_sink_classifies_the_collectors_answers(status, outcome):
    collector = FlakyCollector([status])
    try:
        sink = OtlpSink(collector.url, token="wlt_1_secret")
        assert sink.send(b"body") is outcome
    finally:
        collector.close()
    assert collector.headers[0]["Authorization"] == "Bearer wlt_1_secret"
    assert collector.headers[0]["Content-Encoding"] == "gzip"
    assert collector.headers[0]["Content-Type"] == "application/x-protobuf"


def test_an_unreachable_collector_is_worth_a_retry():
    sink = OtlpSink("http://127.0.0.1:9/v1/metrics", timeout_s=1)

    assert sink.send(b"body") is Delivery.RETRY


def test_after_an_outage_spooled_batches_go_first_in_order(tmp_path):
    from opentelemetry.sdk.metrics.export import MetricsData

    collector = FlakyCollector([503, 503])
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=10**6)
    # A timeout shorter than the SDK exporter's first back-off makes it give up after one try.
    sink = OtlpSink(collector.url, spool=spool, timeout_s=0.5)
    batches = [MetricsData(resource_metrics=[]) for _ in range(3)]
    try:
        results = [sink(batch) for batch in batches]
    finally:
        collector.close()

    # The first failed (503) and was spooled; the second found the spool not drained (the replay
    # got the second 503), so it was spooled without being sent; the third replayed both, then
    # went itself through the SDK exporter.
    assert results == [False, False, True]
    assert len(collector.headers) == 5
    assert len(collector.bodies) == 3
    assert len(spool) == 0
