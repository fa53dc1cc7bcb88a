"""The metrics port on loopback: a fixed few threads whatever the connections. Guarantees: a scrape is
answered while hundreds of idle connections are open (they hold no thread); an idle connection is
closed after its idle time; connections stuck mid-request hold a thread at most that long each."""

from __future__ import annotations

import select
import socket
import threading
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from harpagon.runtime.metrics import METRICS_IDLE_MAX, METRICS_THREADS, serve_metrics

pytestmark = pytest.mark.integration


@pytest.fixture
def served():
    registry = CollectorRegistry()
    Counter("harpagon_test_scrapes", "a metric to find in the scrape", registry=registry).inc(7)
    servers = []

    def start(**bounds):
        server = serve_metrics(registry, 0, "127.0.0.1", **bounds)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def scrape(port: int, timeout_s: float = 15.0) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s).read().decode()


def closed_by_server(conns: list[socket.socket], want: int, limit_s: float = 15.0) -> int:
    """How many of `conns` the server has closed (EOF readable), waiting (bounded) until `want` are."""
    deadline = time.monotonic() + limit_s
    gone: set[socket.socket] = set()
    while len(gone) < want and time.monotonic() < deadline:
        readable, _, _ = select.select([c for c in conns if c not in gone], [], [], 0.1)
        for c in readable:
            if c.recv(1) == b"":
                gone.add(c)
    return len(gone)


def test_hundreds_of_idle_connections_hold_no_thread_and_a_scrape_is_answered_meanwhile(served):
    before = set(threading.enumerate())
    server = served(threads=4, idle_s=60.0)
    started = set(threading.enumerate()) - before  # the server's (other tests' threads may end meanwhile)
    assert len(started) <= 5  # 4 workers and the loop that accepts

    def new_threads() -> set[threading.Thread]:
        return set(threading.enumerate()) - before - started

    conns = [socket.create_connection(("127.0.0.1", server.server_port), timeout=10) for _ in range(200)]
    try:
        assert not new_threads() and all(t.is_alive() for t in started)
        # the oldest beyond METRICS_IDLE_MAX are closed to make room; the rest stay open, idle
        assert closed_by_server(conns, 200 - METRICS_IDLE_MAX) == 200 - METRICS_IDLE_MAX
        assert "harpagon_test_scrapes_total 7.0" in scrape(server.server_port)
        assert not new_threads() and all(t.is_alive() for t in started)
        # the scrape's connection took the place of the oldest idle one; the others are still open
        assert closed_by_server(conns, 202 - METRICS_IDLE_MAX, limit_s=0.5) == 201 - METRICS_IDLE_MAX
    finally:
        for c in conns:
            c.close()


def test_idle_connections_are_closed_after_their_idle_time(served):
    server = served(idle_s=0.5)
    conns = [socket.create_connection(("127.0.0.1", server.server_port), timeout=10) for _ in range(10)]
    try:
        assert closed_by_server(conns, 10) == 10
    finally:
        for c in conns:
            c.close()


def test_connections_stuck_mid_request_delay_a_scrape_by_their_timeout_only(served):
    """Every worker thread taken by a client that sent half a request: the scrape waits for their
    socket timeout (idle_s), then is answered."""
    server = served(threads=2, idle_s=1.0)
    stuck = [socket.create_connection(("127.0.0.1", server.server_port), timeout=10) for _ in range(2)]
    try:
        for c in stuck:
            c.sendall(b"GET /metrics HTTP/1.0\r\n")  # no blank line: the request never ends
        assert "harpagon_test_scrapes_total 7.0" in scrape(server.server_port, timeout_s=30.0)
        assert closed_by_server(stuck, 2) == 2
    finally:
        for c in stuck:
            c.close()


def test_shutdown_stops_serving():
    server = serve_metrics(CollectorRegistry(), 0)
    port = server.server_port
    server.shutdown()
    server.server_close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_server_close_ends_its_threads():
    """Every thread the server started ends (threads of earlier tests may end meanwhile too: the
    server's own are followed, not the process's count)."""
    before = set(threading.enumerate())
    server = serve_metrics(CollectorRegistry(), 0)
    started = {t for t in set(threading.enumerate()) - before if t.name.startswith("metrics")}
    assert len(started) == METRICS_THREADS + 1  # the workers and the accepting loop
    server.shutdown()
    server.server_close()
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t.name for t in started if t.is_alive()]
