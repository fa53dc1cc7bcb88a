"""`harpagon health HOST:PORT` against real gRPC health servers on 127.0.0.1: the standard servicer and
the plaintext health port the components serve (harpagon.runtime.wire.rpc.health_server), so the image's
HEALTHCHECK asks what Kubernetes' probes ask."""

from __future__ import annotations

import socket
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from harpagon.cli import main
from harpagon.runtime.frontend.servicer import LIVENESS
from harpagon.runtime.wire.rpc import health_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def checker():
    """A standard health servicer on a free port: "" SERVING, `liveness` SERVING, `ready` NOT_SERVING."""
    servicer = health.HealthServicer()
    servicer.set("", SERVING)
    servicer.set(LIVENESS, SERVING)
    servicer.set("ready", NOT_SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serving_exits_0_and_says_so(checker, capsys):
    _, address = checker
    assert main(["health", address]) == 0
    assert capsys.readouterr().out == "SERVING\n"
    assert main(["health", "--service", LIVENESS, address]) == 0


def test_not_serving_exits_1_with_the_status(checker, capsys):
    servicer, address = checker
    assert main(["health", "--service", "ready", address]) == 1
    assert capsys.readouterr().out == "NOT_SERVING\n"
    servicer.set("", NOT_SERVING)  # the component as a whole going down
    assert main(["health", address]) == 1
    assert capsys.readouterr().out == "NOT_SERVING\n"


def test_an_unknown_service_exits_1_naming_it(checker, capsys):
    _, address = checker
    assert main(["health", "--service", "nope", address]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NOT_FOUND" in err and "'nope'" in err, err


def test_the_components_plaintext_health_port_answers_it(capsys):
    servicer = health.HealthServicer()
    server, port = health_server("127.0.0.1", 0, servicer, asynchronous=False)
    server.start()
    try:
        assert main(["health", f"127.0.0.1:{port}"]) == 0  # "" is SERVING until set otherwise
        servicer.set("", NOT_SERVING)
        assert main(["health", f"127.0.0.1:{port}"]) == 1
    finally:
        server.stop(None)
    assert capsys.readouterr().out == "SERVING\nNOT_SERVING\n"


def test_nothing_listening_exits_1_at_once(capsys):
    start = time.monotonic()
    assert main(["health", "--timeout", "10", f"127.0.0.1:{_free_port()}"]) == 1
    assert time.monotonic() - start < 5, "a refused connection must not wait for the deadline"
    err = capsys.readouterr().err
    assert err.startswith("harpagon health: 127.0.0.1:") and "UNAVAILABLE" in err and err.count("\n") == 1


def test_a_peer_that_never_answers_exits_1_at_the_deadline(capsys):
    """A socket that accepts connections (the kernel's backlog) but never speaks HTTP/2: a hung process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        start = time.monotonic()
        assert main(["health", "--timeout", "0.5", f"127.0.0.1:{s.getsockname()[1]}"]) == 1
        took = time.monotonic() - start
    assert 0.4 < took < 5, took
    assert "DEADLINE_EXCEEDED: no answer within 0.5 s" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["nohost"], ["127.0.0.1"], ["127.0.0.1:0"], ["127.0.0.1:65536"],
                                  [":8090"], ["host:port"], ["::1:8090"], ["127.0.0.1:8090", "--timeout", "0"],
                                  ["127.0.0.1:8090", "--timeout", "soon"], ["127.0.0.1:8090", "--timeout", "nan"]])
def test_bad_arguments_exit_2_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["health", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("harpagon health: error:") and err.count("\n") == 1, err


def test_ipv6_addresses_are_bracketed(capsys):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    assert main(["health", f"[::1]:{_free_port()}"]) == 1  # parsed, dialled, nothing there
    assert "UNAVAILABLE" in capsys.readouterr().err  # not an argument error
