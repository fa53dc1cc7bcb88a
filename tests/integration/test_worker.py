"""A real worker process on CPU with real torch models (small inputs), and an emulated one."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest
import yaml

from harpagon.runtime.wire.tensors import from_numpy, to_numpy
from harpagon.v1 import controller_pb2 as cpb
from harpagon.v1 import controller_pb2_grpc as crpc
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc
from tests.integration.conftest import ServiceProcess

pytestmark = pytest.mark.integration
SMALL = [3, 32, 32]


def config(version: int, *modules: tuple[str, str, int]) -> pb.ApplyConfigRequest:
    return pb.ApplyConfigRequest(config=pb.WorkerConfig(version=version, modules=[
        pb.ModuleConfig(name=name, model=model, batch=batch, input_shape=SMALL) for name, model, batch in modules]))


def frames(n: int, dtype=np.uint8) -> pb.Tensor:
    return from_numpy(np.random.default_rng(n).integers(0, 255, (n, *SMALL)).astype(dtype))


def code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_cpu_worker_applies_a_config_serves_batches_and_rejects_bad_input(start_worker, tmp_path):
    w = start_worker("--device", "cpu", "--threads", "1")
    health = w.stub.Health(pb.HealthRequest())
    assert health.device == "cpu" and health.hardware.startswith("cpu-") and not health.emulated
    reply = w.stub.ApplyConfig(config(1, ("cls", "resnet18", 4), ("small", "mobilenet_v3_small", 2)), timeout=120)
    assert (reply.version, reply.changed) == (1, True)
    assert w.stub.ApplyConfig(config(1, ("cls", "resnet18", 4), ("small", "mobilenet_v3_small", 2))).changed is False

    r = w.stub.Infer(pb.InferRequest(module="cls", input=frames(3), id="req-7"), timeout=60)
    (logits,) = [to_numpy(t) for t in r.outputs]
    assert r.id == "req-7" and logits.shape == (3, 1000) and logits.dtype == np.float32
    assert (r.batch, r.dummies) == (4, 1) and r.exec_ms > 0
    f32 = w.stub.Infer(pb.InferRequest(module="small", input=frames(2, np.float32)), timeout=60)
    assert to_numpy(f32.outputs[0]).shape == (2, 1000) and f32.dummies == 0

    # bad inputs: a clear error for that request, and the worker keeps serving
    assert code(lambda: w.stub.Infer(pb.InferRequest(module="nope", input=frames(1))))[0] == grpc.StatusCode.NOT_FOUND
    bad_dtype = from_numpy(np.zeros((1, *SMALL), np.int32))
    status, details = code(lambda: w.stub.Infer(pb.InferRequest(module="cls", input=bad_dtype)))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "int32" in details
    wrong_shape = from_numpy(np.zeros((1, 3, 16, 16), np.uint8))
    status, details = code(lambda: w.stub.Infer(pb.InferRequest(module="cls", input=wrong_shape)))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "[n, 3, 32, 32]" in details
    short = pb.Tensor(dtype="uint8", shape=[1, *SMALL], data=b"\0" * 10)
    status, details = code(lambda: w.stub.Infer(pb.InferRequest(module="cls", input=short)))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "10 bytes" in details
    status, details = code(lambda: w.stub.Infer(pb.InferRequest(module="cls", input=frames(5))))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "batches of 4" in details

    # a config that cannot be loaded is rejected with the reason; the previous one stays in force
    status, details = code(lambda: w.stub.ApplyConfig(config(2, ("cls", "bert", 4))))
    assert status == grpc.StatusCode.FAILED_PRECONDITION and "'bert' is not in the registry" in details
    bad_weights = pb.ApplyConfigRequest(config=pb.WorkerConfig(version=2, modules=[pb.ModuleConfig(
        name="cls", model="resnet18", batch=4, input_shape=SMALL, weights=str(tmp_path / "missing.pt"))]))
    status, details = code(lambda: w.stub.ApplyConfig(bad_weights))
    assert status == grpc.StatusCode.FAILED_PRECONDITION and "missing.pt" in details
    assert w.stub.Health(pb.HealthRequest()).config_version == 1
    assert w.stub.Infer(pb.InferRequest(module="cls", input=frames(1)), timeout=60).batch == 4
    status, _ = code(lambda: w.stub.ApplyConfig(config(0, ("cls", "resnet18", 4))))
    assert status == grpc.StatusCode.FAILED_PRECONDITION  # older than the one in force

    stats = {m.module: m for m in w.stub.Stats(pb.StatsRequest()).modules}
    assert stats["cls"].requests == 4 and stats["cls"].batches == 2 and stats["cls"].dummies == 4
    assert stats["small"].requests == 2
    assert not w.stub.Stats(pb.StatsRequest()).HasField("gpu_utilization")  # no GPU here: absent


def test_local_weights_file_is_loaded(start_worker, tmp_path):
    import torch
    from torchvision import models

    path = tmp_path / "r18.pt"
    m = models.resnet18(weights=None)
    torch.nn.init.zeros_(m.fc.weight)
    torch.nn.init.constant_(m.fc.bias, 0.5)
    torch.save(m.state_dict(), path)
    w = start_worker("--device", "cpu", "--threads", "1", "--weights-dir", str(tmp_path))
    w.stub.ApplyConfig(pb.ApplyConfigRequest(config=pb.WorkerConfig(version=1, modules=[pb.ModuleConfig(
        name="cls", model="resnet18", batch=1, input_shape=SMALL, weights="r18.pt")])), timeout=120)
    (logits,) = [to_numpy(t) for t in w.stub.Infer(pb.InferRequest(module="cls", input=frames(1)), timeout=60).outputs]
    assert np.allclose(logits, 0.5)


def test_reconfiguring_under_load_loses_no_request(start_worker):
    w = start_worker("--device", "cpu", "--threads", "1")
    w.stub.ApplyConfig(config(1, ("a", "resnet18", 4)), timeout=120)
    errors: list[Exception] = []
    served = []
    stop = threading.Event()

    def load() -> None:
        stub = rpc.WorkerStub(grpc.insecure_channel(w.address))
        i = 0
        while not stop.is_set() and i < 2000:
            i += 1
            try:
                served.append(stub.Infer(pb.InferRequest(module="a", input=frames(2), id=str(i)), timeout=60).id)
            except grpc.RpcError as exc:
                errors.append(exc)

    with futures.ThreadPoolExecutor(3) as pool:
        running = [pool.submit(load) for _ in range(3)]
        w.stub.ApplyConfig(config(2, ("a", "resnet18", 4), ("b", "mobilenet_v3_small", 2)), timeout=120)
        w.stub.ApplyConfig(config(3, ("a", "resnet18", 8)), timeout=120)  # reloads "a", unloads "b"
        stop.set()
        for f in running:
            f.result()
    assert errors == [] and len(served) > 0
    assert w.stub.Health(pb.HealthRequest()).config_version == 3
    assert w.stub.Infer(pb.InferRequest(module="a", input=frames(8)), timeout=60).dummies == 0
    assert code(lambda: w.stub.Infer(pb.InferRequest(module="b", input=frames(1))))[0] == grpc.StatusCode.NOT_FOUND


def test_emulated_worker_sleeps_its_profile_and_says_so(start_worker, tmp_path):
    w = start_worker("--device", "emulated:v100")
    health = w.stub.Health(pb.HealthRequest())
    assert health.emulated and health.device == "emulated:v100" and health.hardware == "v100"
    w.stub.ApplyConfig(pb.ApplyConfigRequest(config=pb.WorkerConfig(version=1, modules=[
        pb.ModuleConfig(name="r", model="resnet50", batch=16, input_shape=SMALL)])), timeout=30)
    r = w.stub.Infer(pb.InferRequest(module="r", input=frames(5)), timeout=30)
    assert r.exec_ms >= 13.05 and (r.batch, r.dummies) == (16, 11)  # d(16) of ResNet-50 on V100
    assert w.stub.Stats(pb.StatsRequest()).emulated
    status, details = code(lambda: w.stub.ApplyConfig(pb.ApplyConfigRequest(config=pb.WorkerConfig(
        version=2, modules=[pb.ModuleConfig(name="r", model="resnet50", batch=5, input_shape=SMALL)]))))
    assert status == grpc.StatusCode.FAILED_PRECONDITION and "no profile" in details and "batch 5" in details


class FakeController(crpc.ControllerServicer):
    def __init__(self) -> None:
        self.registered: list[cpb.RegisterRequest] = []
        self.beats = threading.Event()

    def Register(self, request, context):
        self.registered.append(request)
        return cpb.RegisterResponse(heartbeat_ms=100)

    def Heartbeat(self, request, context):
        self.beats.set()
        return cpb.HeartbeatResponse(known=True)


@pytest.fixture
def fake_controller() -> Iterator[tuple[FakeController, str]]:
    """A FakeController serving on 127.0.0.1, and its address."""
    controller = FakeController()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    crpc.add_ControllerServicer_to_server(controller, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield controller, f"127.0.0.1:{port}"
    server.stop(0)


def test_worker_registers_with_the_controller_and_heartbeats(start_worker, fake_controller):
    controller, address = fake_controller
    w = start_worker("--device", "emulated:t4", "--controller", address)
    assert controller.beats.wait(30)
    (reg,) = controller.registered
    assert reg.address == w.address and reg.hardware == "t4" and reg.emulated and reg.worker_id


def test_a_worker_sent_sigterm_by_a_controller_without_leave_stops_at_once(start_worker, fake_controller):
    """An older controller answers Leave UNIMPLEMENTED: nothing will re-plan around the worker, so it
    does not wait out its drain timeout."""
    controller, address = fake_controller
    w = start_worker("--device", "emulated:t4", "--controller", address)
    assert controller.beats.wait(30)
    started = time.monotonic()
    assert ServiceProcess.stop(w, signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    assert any("does not know Leave" in line for line in w.lines), w.lines[-5:]


def test_profiler_output_is_read_back_by_the_planner(tmp_path):
    from harpagon.config import load_workload
    from harpagon.planner.harpagon import plan
    from harpagon.profiler import profile, write_profiles

    hardware, rows = profile("resnet18", "cpu", [1, 2], SMALL, repeats=2, warmup=1, threads=1, hardware="test-cpu")
    assert hardware == "test-cpu" and [r[0] for r in rows] == [1, 2] and all(r[1] > 0 and r[2] >= 0 for r in rows)
    path = tmp_path / "cpu.yaml"
    write_profiles(path, "resnet18", hardware, rows, "test")
    apps = tmp_path / "apps.yaml"
    apps.write_text(yaml.safe_dump({
        "hardware": [{"name": "test-cpu", "price_per_hour": 0.1}],
        "apps": [{"name": "a", "rate": 5, "slo_ms": 10 * rows[-1][1], "modules": [{"name": "m", "model": "resnet18"}]}],
    }))
    p = plan(load_workload([path, apps]))
    assert p.apps and p.apps[0].modules[0].tuples[0].hardware == "test-cpu"


def test_json_logs(start_service):
    import json

    w = start_service(["--log-format", "json", "worker", "--port", "0", "--device", "emulated:t4"],
                      "worker listening on ")
    records = [json.loads(line) for line in w.lines if line.startswith("{")]
    assert all(line.startswith("{") for line in w.lines), w.lines  # every line, the banner's too
    assert any(r["logger"] == "harpagon.worker" and r["level"] == "INFO" and "EMULATED" in r["message"]
               for r in records), w.lines
    (banner,) = [r for r in records if r["message"].startswith("worker listening on ")]
    assert banner["address"] == w.address and banner["emulated"] is True


def test_an_emulated_detectors_crops_reach_the_client(start_worker):
    """Crops travel in the InferResponse and a GrpcWorkerClient decodes them per child module."""
    import asyncio

    from harpagon.runtime.wire.clients import GrpcWorkerClient
    from harpagon.runtime.wire.modules import CropEdge, ModuleSpec

    w = start_worker("--device", "emulated:v100")
    edges = (CropEdge("cars", (3, 8, 8), labels=(3,), scale=1.5), CropEdge("people", (3, 4, 6), scale=0.5))
    detector = ModuleSpec("det", "yolo9000", 1, tuple(SMALL), crops=edges)

    async def scenario() -> list:
        client = GrpcWorkerClient()
        try:
            assert await client.apply(w.address, 1, [detector], timeout_s=30) == 1
            return [await client.infer(w.address, "det", np.zeros((1, *SMALL), np.uint8), timeout_s=30)
                    for _ in range(4)]
        finally:
            await client.close()

    replies = asyncio.run(scenario())
    assert [r.crops["cars"].counts.tolist() for r in replies] == [[1], [2], [1], [2]]
    assert [r.crops["people"].counts.tolist() for r in replies] == [[0], [1], [0], [1]]
    for r in replies:
        boxes, _, labels = r.outputs
        assert boxes.shape == (1, 100, 4) and (labels >= 0).sum() == sum(c.counts.sum() for c in r.crops.values())
        cars, items = r.crops["cars"].of(0)
        assert (labels[0, cars] == 3).all() and items.shape == (len(cars), 3, 8, 8) and items.dtype == np.uint8


def test_cpu_worker_answers_a_batch_of_jpeg_frames_and_an_error_for_a_bad_one(start_worker):
    """Frames as clients send them: JPEG bytes of any size, decoded and resized on the worker; the
    unreadable one is an error of its item, and the batch is answered."""
    import warnings

    import torch
    from torchvision.io import encode_jpeg

    def jpeg(h: int, w: int, seed: int) -> pb.Frame:
        image = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, h, w), dtype=np.uint8))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return pb.Frame(data=encode_jpeg(image, quality=90).numpy().tobytes(), encoding="jpeg")

    w = start_worker("--device", "cpu", "--threads", "1")
    w.stub.ApplyConfig(config(1, ("cls", "resnet18", 4)), timeout=120)
    bad = pb.Frame(data=b"\xff\xd8\xff" + bytes(100), encoding="jpeg")
    r = w.stub.Infer(pb.InferRequest(module="cls", id="j", frames=[jpeg(120, 160, 1), bad, jpeg(32, 32, 2)]),
                     timeout=60)
    (logits,) = [to_numpy(t) for t in r.outputs]
    assert r.id == "j" and logits.shape == (3, 1000) and (r.batch, r.dummies) == (4, 1)
    assert [e.item for e in r.errors] == [1] and "JPEG frame" in r.errors[0].message
    assert np.isfinite(logits[[0, 2]]).all()
    both = pb.InferRequest(module="cls", input=frames(1), frames=[jpeg(8, 8, 3)])
    status, details = code(lambda: w.stub.Infer(both))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and "got both" in details
    assert w.stub.Infer(pb.InferRequest(module="cls", input=frames(2)), timeout=60).batch == 4  # tensors as before


def test_a_worker_says_once_that_its_controller_is_unreachable(caplog):
    """Registration is retried every RETRY_S while the controller is down; the log says so once (and
    again only after it was back), not at every retry."""
    import logging
    import socket
    import time

    from harpagon.runtime.worker.data_plane import WorkerDataPlane
    from harpagon.runtime.worker.executor import EmulatedExecutor
    from harpagon.runtime.worker.server import RETRY_S, ControllerLink

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    caplog.set_level(logging.DEBUG, "harpagon.worker")
    link = ControllerLink(dead, "127.0.0.1:1", WorkerDataPlane(EmulatedExecutor("t4", {})))
    link.start()
    time.sleep(6 * RETRY_S)
    link.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
    retries = [r for r in caplog.records if r.levelno == logging.DEBUG and "still unreachable" in r.getMessage()]
    assert len(warnings) == 1 and len(retries) >= 2, [r.getMessage() for r in caplog.records]
