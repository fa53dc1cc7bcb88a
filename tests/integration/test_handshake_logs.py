"""A peer that fails the TLS handshake over and over does not fill the server's log: gRPC core wrote
one line per failed handshake (harpagon.runtime.wire.quiet_grpc_core)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import grpc
import pytest

from harpagon.runtime.wire.tls import make_certs
from harpagon.v1 import controller_pb2 as cpb
from harpagon.v1 import controller_pb2_grpc as crpc
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

ATTEMPTS = 40


def _controller(pki, log) -> tuple[subprocess.Popen, str]:
    """A controller under mutual TLS, its output in `log`, with gRPC's log setting left to it: the
    test process may have set GRPC_VERBOSITY itself, which a child would inherit."""
    env = {k: v for k, v in os.environ.items() if k not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "harpagon.cli", "controller", "--config", "configs/demo.yaml",
                                 "--port", "0", "--tls-dir", str(pki / "controller")],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    ready = "controller listening on "
    deadline = time.monotonic() + 120  # a start that never comes fails the test, it measures nothing
    while time.monotonic() < deadline and proc.poll() is None:
        line = next((ln for ln in log.read_text().splitlines() if ln.startswith(ready)), None)
        if line:
            return proc, line[len(ready):].split()[0]
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("controller did not start:\n" + log.read_text())


def test_failed_handshakes_are_not_logged_one_line_each(tmp_path):
    make_certs(tmp_path / "pki", days=1)
    log = tmp_path / "controller.log"
    proc, address = _controller(tmp_path / "pki", log)
    try:
        before = len(log.read_text().splitlines())
        ca = (tmp_path / "pki" / "ca.crt").read_bytes()
        refused = 0
        for _ in range(ATTEMPTS):  # the server is trusted, but the client shows no certificate
            with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca),
                                     options=[("grpc.ssl_target_name_override", "harpagon-controller")]) as channel:
                try:
                    crpc.ControllerStub(channel).Register(cpb.RegisterRequest(worker_id="w"), timeout=10)
                except grpc.RpcError as exc:
                    refused += exc.code() == grpc.StatusCode.UNAVAILABLE
        assert refused == ATTEMPTS
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lines = log.read_text().splitlines()[before:]
    assert len(lines) < ATTEMPTS // 4, "\n".join(lines[:5])
    assert not [ln for ln in lines if "Handshake failed" in ln]
