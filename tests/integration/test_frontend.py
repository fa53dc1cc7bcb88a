"""The frontend on 127.0.0.1 in front of real (emulated) worker processes, called with tritonclient."""

from __future__ import annotations

import asyncio
import queue
import threading

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.servicer import start
from harpagon.runtime.wire.modules import worker_module_name
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable
from harpagon.v1 import worker_pb2 as pb

pytestmark = pytest.mark.integration
SHAPE = (3, 16, 16)


class Frontend:
    """The frontend's event loop in a thread, so that the synchronous tritonclient can call it."""

    def __init__(self, table: RoutingTable):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.plane, self.server, self.port = asyncio.run_coroutine_threadsafe(self._start(table), self.loop).result(30)

    async def _start(self, table):
        plane = FrontendDataPlane(table, frame_shape=(48, 64, 3))
        server, port = await start(plane, 0)
        return plane, server, port

    def stop(self) -> None:
        async def stop():
            await self.server.stop(1)
            await self.plane.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def app(name: str, slo: float) -> App:
    return App.model_validate({"name": name, "rate": 50, "slo_ms": slo, "modules": [
        {"name": "detect", "model": "resnet50"},
        {"name": "classify", "model": "resnet50", "after": ["detect"], "scale": 2.0},
    ]})


@pytest.fixture
def cluster(start_worker):
    a = start_worker("--device", "emulated:t4")
    b = start_worker("--device", "emulated:t4")
    for w, modules in ((a, [("traffic/detect", 4), ("tight/detect", 1)]), (b, [("traffic/classify", 8),
                                                                             ("tight/classify", 1)])):
        w.stub.ApplyConfig(pb.ApplyConfigRequest(config=pb.WorkerConfig(version=1, modules=[
            pb.ModuleConfig(name=worker_module_name(n, batch), model="resnet50", batch=batch, input_shape=list(SHAPE))
            for n, batch in modules])), timeout=30)
    def route(app_module: str, batch: int, rate: float, address: str) -> ModuleRoute:
        return ModuleRoute(app_module.split("/")[1], SHAPE, (TupleSpec(batch, 1, rate),), ((address,),),
                           (worker_module_name(app_module, batch),))

    routes = {
        ("traffic", "detect"): route("traffic/detect", 4, 50.0, a.address),
        ("traffic", "classify"): route("traffic/classify", 8, 100.0, b.address),
        ("tight", "detect"): route("tight/detect", 1, 50.0, a.address),
        ("tight", "classify"): route("tight/classify", 1, 100.0, b.address),
    }
    table = RoutingTable(1, "batch-aware", {"traffic": app("traffic", 500), "tight": app("tight", 1)}, routes)
    fe = Frontend(table)
    yield fe
    fe.stop()


def frame_input() -> triton.InferInput:
    x = triton.InferInput("FRAME", [48, 64, 3], "UINT8")
    x.set_data_from_numpy(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return x


def test_tritonclient_infer_async_and_stream(cluster):
    client = triton.InferenceServerClient(f"127.0.0.1:{cluster.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("traffic")
    assert "statistics" in client.get_server_metadata().extensions
    meta = client.get_model_metadata("traffic")
    assert [i.name for i in meta.inputs] == ["FRAME"] and [o.name for o in meta.outputs] == ["classify_0"]
    assert client.get_model_config("traffic").config.max_batch_size == 0

    r = client.infer("traffic", [frame_input()], request_id="frame-1")
    assert r.get_response().id == "frame-1"
    assert r.as_numpy("classify_0").shape == (2, 1)  # scale 2: two requests per frame, one output each

    done: queue.Queue = queue.Queue()
    for i in range(6):
        client.async_infer("traffic", [frame_input()], lambda result, error: done.put((result, error)),
                           request_id=f"a{i}")
    got = [done.get(timeout=30) for _ in range(6)]
    assert all(e is None for _, e in got)
    assert sorted(r.get_response().id for r, _ in got) == [f"a{i}" for i in range(6)]

    client.start_stream(lambda result, error: done.put((result, error)))
    for i in range(5):
        client.async_stream_infer("traffic", [frame_input()], request_id=str(i))
    streamed = [done.get(timeout=30) for _ in range(5)]
    client.stop_stream()
    assert sorted(r.get_response().id for r, _ in streamed) == [str(i) for i in range(5)]

    stats = client.get_inference_statistics("traffic").model_stats[0]
    assert stats.version == "1" and stats.inference_count == 12


def test_deadlines_drop_frames_and_errors_are_clear(cluster):
    client = triton.InferenceServerClient(f"127.0.0.1:{cluster.port}")
    with pytest.raises(InferenceServerException) as info:
        client.infer("tight", [frame_input()])  # 1 ms SLO: the detector alone takes 3.52 ms
    assert "DEADLINE_EXCEEDED" in str(info.value.status()) and "deadline" in info.value.message()
    assert cluster.plane.counters["tight"].dropped == 1
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", [frame_input()])
    assert "NOT_FOUND" in str(info.value.status())
    bad = triton.InferInput("FRAME", [4, 4], "UINT8")
    bad.set_data_from_numpy(np.zeros((4, 4), np.uint8))
    with pytest.raises(InferenceServerException) as info:
        client.infer("traffic", [bad])
    assert "INVALID_ARGUMENT" in str(info.value.status()) and "[H, W, 3]" in info.value.message()
    assert client.infer("traffic", [frame_input()]).as_numpy("classify_0").shape == (2, 1)


def test_typed_contents_are_accepted_like_raw_bytes(cluster):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{cluster.port}"))
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=[48, 64, 3])
    tensor.contents.uint_contents.extend([7] * (48 * 64 * 3))
    reply = stub.ModelInfer(service_pb2.ModelInferRequest(model_name="traffic", id="typed", inputs=[tensor]),
                            timeout=30)
    assert reply.id == "typed" and [o.name for o in reply.outputs] == ["classify_0"]
    short = service_pb2.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=[48, 64, 3])
    short.contents.uint_contents.extend([7] * 10)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(service_pb2.ModelInferRequest(model_name="traffic", inputs=[short]), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "10 values" in info.value.details()


def test_a_second_frontend_on_a_taken_port_fails_instead_of_sharing_it():
    """gRPC's default SO_REUSEPORT let a second frontend bind the same port and take half the connections."""
    async def scenario():
        plane = FrontendDataPlane(None, frame_shape=(48, 64, 3))
        first, port = await start(plane, 0)
        try:
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
                await start(FrontendDataPlane(None, frame_shape=(48, 64, 3)), port)
        finally:
            await first.stop(0)

    asyncio.run(scenario())
