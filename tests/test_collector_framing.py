"""Where a request's body ends: a body that stops short, or two Content-Lengths, is a 4xx with
one line of reason and one log line, and the connection is closed."""

import logging
import socket

import pytest
from otlp_build import T0, S, energy_request

from wattledger.collector import server as collector_server
from wattledger.collector.server import CollectorServer, serve_in_thread


@pytest.fixture
def address(sqlite_engine, monkeypatch, caplog):
    monkeypatch.setattr(collector_server._Handler, "timeout", 0.5)
    caplog.set_level(logging.INFO, logger="wattledger.collector.server")
    server = CollectorServer(("127.0.0.1", 0), sqlite_engine)
    serve_in_thread(server)
    yield server.server_address[:2]
    server.stop()


def exchange(address, head: bytes, body: bytes = b"", *, half_close: bool = False) -> bytes:
    """Send raw bytes, then read until the collector closes the connection."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def request_head(*lengths: int) -> bytes:
    lines = [
        b"POST /v1/metrics HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/x-protobuf",
    ]
    lines += [b"Content-Length: %d" % length for length in lengths]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def status_and_body(reply: bytes) -> tuple[bytes, bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def server_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wattledger.collector.server"]


def test_a_body_that_never_arrives_is_408_with_one_log_line_and_the_connection_closed(
    address, caplog
):
    reply = exchange(address, request_head(10), b"abc")

    assert status_and_body(reply) == (
        b"HTTP/1.1 408 Request Timeout",
        b"timed out after 0.5 s waiting for a body of 10 bytes\n",
    )
    [record] = server_records(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "request from 127.0.0.1 refused: timed out after 0.5 s waiting for a body of 10 bytes"
    )
    assert record.exc_info is None


def test_a_body_cut_short_by_the_client_closing_is_400(address, caplog):
    reply = exchange(address, request_head(10), b"abc", half_close=True)

    assert status_and_body(reply) == (
        b"HTTP/1.1 400 Bad Request",
        b"body ended after 3 of 10 bytes (Content-Length)\n",
    )
    [record] = server_records(caplog)
    assert record.getMessage() == (
        "request from 127.0.0.1 refused: body ended after 3 of 10 bytes (Content-Length)"
    )
    assert record.exc_info is None


def test_differing_content_lengths_are_400_and_the_connection_is_closed(address, caplog):
    # Without half-closing, a reply that arrives proves the collector closed the connection.
    reply = exchange(address, request_head(5, 6), b"hello")

    assert status_and_body(reply) == (
        b"HTTP/1.1 400 Bad Request",
        b"conflicting Content-Length headers\n",
    )
    assert [r.getMessage() for r in server_records(caplog)] == [
        "request from 127.0.0.1 refused: conflicting Content-Length headers"
    ]


def test_identical_content_lengths_are_taken(address):
    body = energy_request("node-a", [("GPU-a", T0 + 60 * S, 100.0)]).SerializeToString()
    head = request_head(len(body), len(body)).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")

    reply = exchange(address, head, body)

    assert status_and_body(reply)[0] == b"HTTP/1.1 200 OK"


def test_a_fleet_connecting_at_once_is_queued_not_dropped(sqlite_engine):
    # Nothing accepts yet: every connection must wait in the listen backlog. The standard
    # library's backlog of 5 would leave the rest unanswered in the handshake.
    server = CollectorServer(("127.0.0.1", 0), sqlite_engine)
    clients = []
    try:
        for _ in range(200):
            clients.append(socket.create_connection(server.server_address[:2], timeout=2))
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        for client in clients:
            client.sendall(head)
    except OSError:
        for client in clients:
            client.close()
        server.server_close()
        raise
    try:
        serve_in_thread(server)

        replies = []
        for client in clients:
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
            replies.append(status_and_body(reply))
    finally:
        for client in clients:
            client.close()
        server.stop()

    assert replies == [(b"HTTP/1.1 200 OK", b"ok\n")] * 200
