"""The authenticated control plane with real processes on 127.0.0.1: a controller and a worker
under mutual TLS, and every hostile call refused: no certificate, a foreign CA, or a certificate
whose role may not make the call."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient import utils as triton_utils

from harpagon.runtime.wire.rpc import sync_channel
from harpagon.runtime.wire.tls import TlsFiles, make_certs
from harpagon.v1 import controller_pb2 as cpb
from harpagon.v1 import controller_pb2_grpc as crpc
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc

pytestmark = pytest.mark.integration


@pytest.fixture
def pki(tmp_path):
    make_certs(tmp_path / "ours", days=1)
    make_certs(tmp_path / "theirs", days=1)  # a CA the cluster does not trust
    return tmp_path


def _code(call) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def test_only_authenticated_peers_in_their_roles_steer_the_control_plane(pki, start_service):
    controller = start_service(["controller", "--config", "configs/demo.yaml", "--port", "0",
                                "--tls-dir", str(pki / "ours/controller"), "--health-port", "0"],
                               "controller listening on ")
    worker = start_service(["worker", "--device", "emulated:t4", "--port", "0", "--controller", controller.address,
                            "--tls-dir", str(pki / "ours/worker")], "worker listening on ")
    line = worker.wait_for_line("registered with the controller")
    worker_id = line.rsplit(" as ", 1)[1].strip()

    def stub(kind, address, role_dir=None, peer=None):
        tls = TlsFiles.load(pki / role_dir) if role_dir else None
        channel = sync_channel(address, tls, peer)
        return (crpc.ControllerStub if kind == "controller" else rpc.WorkerStub)(channel)

    register = cpb.RegisterRequest(worker_id="intruder", address="127.0.0.1:1", hardware="t4", device="emulated:t4")
    apply = pb.ApplyConfigRequest(config=pb.WorkerConfig(version=1 << 62))
    # no certificate, or one from another CA: the handshake fails, nothing reaches a servicer
    for role_dir in (None, "theirs/worker"):
        assert _code(lambda d=role_dir: stub("controller", controller.address, d, "controller").Register(
            register, timeout=5)) == grpc.StatusCode.UNAVAILABLE
        assert _code(lambda d=role_dir: stub("worker", worker.address, d, "worker").ApplyConfig(apply, timeout=5)) \
            == grpc.StatusCode.UNAVAILABLE
    # our CA, but a role that may not make the call
    frontend_at_controller = stub("controller", controller.address, "ours/frontend", "controller")
    assert _code(lambda: frontend_at_controller.Register(register, timeout=5)) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: frontend_at_controller.Heartbeat(cpb.HeartbeatRequest(worker_id=worker_id), timeout=5)) \
        == grpc.StatusCode.PERMISSION_DENIED
    worker_at_controller = stub("controller", controller.address, "ours/worker", "controller")
    assert _code(lambda: next(worker_at_controller.WatchRoutes(cpb.WatchRoutesRequest(frontend_id="x"), timeout=5))) \
        == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: worker_at_controller.ReportRates(cpb.RatesReport(frontend_id="x", app_rates={"traffic": 1e9}),
                                                          timeout=5)) == grpc.StatusCode.PERMISSION_DENIED
    for role_dir in ("ours/frontend", "ours/worker"):
        assert _code(lambda d=role_dir: stub("worker", worker.address, d, "worker").ApplyConfig(apply, timeout=5)) \
            == grpc.StatusCode.PERMISSION_DENIED
    infer = pb.InferRequest(module="x")
    assert _code(lambda: stub("worker", worker.address, "ours/controller", "worker").Infer(infer, timeout=5)) \
        == grpc.StatusCode.PERMISSION_DENIED
    # a worker certificate cannot take over a live worker's id from another address
    assert _code(lambda: worker_at_controller.Register(cpb.RegisterRequest(
        worker_id=worker_id, address="127.0.0.1:9", hardware="t4", device="emulated:t4"), timeout=5)) \
        == grpc.StatusCode.ALREADY_EXISTS
    # the rightful callers are served, and the worker's version is untouched by every refused push
    health = stub("worker", worker.address, "ours/controller", "worker").Health(pb.HealthRequest(), timeout=5)
    assert health.hardware == "t4" and health.config_version < 1 << 62
    # a peer proves its role: the controller's certificate does not pass for a worker's
    assert _code(lambda: stub("worker", controller.address, "ours/frontend", "worker").Health(
        pb.HealthRequest(), timeout=5)) == grpc.StatusCode.UNAVAILABLE
    # probes: plaintext health on its own port, and nothing else there
    health_port = controller.lines[0].rsplit("health on ", 1)[1].strip()
    with grpc.insecure_channel(health_port) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert _code(lambda: crpc.ControllerStub(ch).Register(register, timeout=5)) == grpc.StatusCode.UNIMPLEMENTED


def test_a_remote_frontend_serves_clients_over_tls_through_an_authenticated_control_plane(pki, start_service,
                                                                                          write_yaml):
    """Controller, worker and frontend as separate processes under mutual TLS, with server TLS on the
    client-facing port: a tritonclient with the CA gets its frame answered; a plaintext client does
    not get through."""
    import numpy as np
    import tritonclient.grpc as triton

    from tests.conftest import BASE

    config = write_yaml({"hardware": [BASE["hardware"][1]], "profiles": [BASE["profiles"][1]],
                         "apps": [{"name": "cam", "rate": 10, "slo_ms": 500, "modules": [
                             {"name": "m", "model": "resnet50"}]}],
                         "serve": {"input_shape": [3, 16, 16], "frame_shape": [24, 32, 3]}})
    controller = start_service(["controller", "--config", str(config), "--port", "0",
                                "--tls-dir", str(pki / "ours/controller")], "controller listening on ")
    start_service(["worker", "--device", "emulated:t4", "--port", "0", "--controller", controller.address,
                   "--tls-dir", str(pki / "ours/worker")], "worker listening on ")
    frontend = start_service(["frontend", "--controller", controller.address, "--port", "0", "--metrics-port", "0",
                              "--frame-shape", "24,32,3", "--tls-dir", str(pki / "ours/frontend"),
                              "--client-tls-dir", str(pki / "ours/frontend")], "frontend listening on ")
    client = triton.InferenceServerClient(frontend.address, ssl=True,
                                          root_certificates=str(pki / "ours/ca.crt"),
                                          channel_args=[("grpc.ssl_target_name_override", "harpagon-frontend")])
    deadline = time.monotonic() + 60
    while not client.is_server_ready() and time.monotonic() < deadline:
        time.sleep(0.2)
    frame = triton.InferInput("FRAME", [24, 32, 3], "UINT8")
    frame.set_data_from_numpy(np.zeros((24, 32, 3), np.uint8))
    result = client.infer("cam", [frame], client_timeout=5)
    assert result.as_numpy("m_0").shape[0] == 1
    plaintext = triton.InferenceServerClient(frontend.address)
    with pytest.raises(triton_utils.InferenceServerException):
        plaintext.is_server_live(client_timeout=3)
