"""The frontend on 127.0.0.1 in front of real (emulated) worker processes, called with tritonclient; and
in front of fake workers (tests/fakes.py), called with raw gRPC messages: garbage, bounds, overload."""

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
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.servicer import start
from harpagon.runtime.wire.modules import worker_module_name
from harpagon.runtime.wire.routes import AppRoute, ModuleRoute, RoutingTable
from harpagon.v1 import worker_pb2 as pb

pytestmark = pytest.mark.integration
SHAPE = (3, 16, 16)


class Frontend:
    """The frontend's event loop in a thread, so that the synchronous tritonclient can call it."""

    def __init__(self, table: RoutingTable, client=None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.plane, self.server, self.port = asyncio.run_coroutine_threadsafe(self._start(table, client),
                                                                              self.loop).result(30)

    async def _start(self, table, client):
        plane = FrontendDataPlane(table, frame_shape=(48, 64, 3), client=client)
        server, port = await start(plane, 0)
        return plane, server, port

    def stop(self) -> None:
        async def stop():
            await self.server.stop(1)
            await self.plane.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def app(name: str, slo: float) -> AppRoute:
    return app_route(App.model_validate({"name": name, "rate": 50, "slo_ms": slo, "modules": [
        {"name": "detect", "model": "resnet50"},
        {"name": "classify", "model": "resnet50", "after": ["detect"], "scale": 2.0},
    ]}))


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
    assert [i.name for i in meta.inputs] == ["FRAME"] and [o.name for o in meta.outputs] == [
        "classify_0", "classify_top_class", "classify_top_score"]  # a classifier's scores and its best classes
    assert client.get_model_config("traffic").config.max_batch_size == 0

    r = client.infer("traffic", [frame_input()], request_id="frame-1")
    assert r.get_response().id == "frame-1"
    assert r.as_numpy("classify_0").shape == (2, 1000)  # scale 2: two requests per frame, 1000 scores each
    assert r.as_numpy("classify_top_class").shape == (2, 5)

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
    assert client.infer("traffic", [frame_input()]).as_numpy("classify_0").shape == (2, 1000)


def test_typed_contents_are_accepted_like_raw_bytes(cluster):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{cluster.port}"))
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=[48, 64, 3])
    tensor.contents.uint_contents.extend([7] * (48 * 64 * 3))
    reply = stub.ModelInfer(service_pb2.ModelInferRequest(model_name="traffic", id="typed", inputs=[tensor]),
                            timeout=30)
    assert reply.id == "typed" and [o.name for o in reply.outputs][0] == "classify_0"
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


# --- raw gRPC against fake workers: garbage, bounds, overload ---------------------------------------

INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


@pytest.fixture(scope="module")
def fake_frontend():
    from tests.fakes import FakeWorkers

    fake = FakeWorkers()
    route = ModuleRoute("detect", SHAPE, (TupleSpec(1, 1, 50.0, 0.0, 0.0),), (("w1",),), ("fake/detect@b1",))
    solo = app_route(App.model_validate({"name": "fake", "rate": 50, "slo_ms": 1000, "modules": [
        {"name": "detect", "model": "resnet50"}]}))
    fe = Frontend(RoutingTable(1, "batch-aware", {"fake": solo}, {("fake", "detect"): route}), client=fake)
    fe.fake = fake
    yield fe
    fe.stop()


def infer_request(rid: str = "", model: str = "fake", shape=(48, 64, 3), inputs: int = 1):
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model, id=rid)
    for _ in range(inputs):
        request.inputs.append(service_pb2.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8",
                                                                             shape=list(shape)))
    n = int(np.prod(shape)) if all(d > 0 for d in shape) and np.prod(shape) < 1 << 24 else 1
    request.raw_input_contents.append(np.full(n, 7, np.uint8).tobytes())
    return request


def test_garbage_in_a_stream_gets_an_error_response_and_the_stream_goes_on(fake_frontend):
    import grpc
    from tritonclient.grpc import service_pb2

    channel = grpc.insecure_channel(f"127.0.0.1:{fake_frontend.port}")
    call = channel.stream_stream(STREAM, request_serializer=lambda b: b,
                                 response_deserializer=service_pb2.ModelStreamInferResponse.FromString)
    outgoing: queue.Queue = queue.Queue()

    def requests():
        while (item := outgoing.get(timeout=30)) is not None:
            yield item

    responses = call(requests(), timeout=30)
    got = []
    # one message at a time, each answered before the next: the order of the responses is the requests'
    for message in (infer_request("a").SerializeToString(), b"\xff\xff\xff garbage \x00\x07",
                    infer_request("b").SerializeToString()):
        outgoing.put(message)
        got.append(next(responses))
    outgoing.put(None)
    assert list(responses) == [] and responses.code() == grpc.StatusCode.OK  # the stream then ends OK
    channel.close()
    assert [r.error_message == "" for r in got] == [True, False, True]
    assert [r.infer_response.id for r in got] == ["a", "", "b"]
    assert got[1].error_message.startswith("INVALID_ARGUMENT") and "not a valid message" in got[1].error_message
    assert [o.name for o in got[2].infer_response.outputs][0] == "detect_0"


def test_garbage_in_a_unary_call_is_invalid_argument(fake_frontend):
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{fake_frontend.port}")
    call = channel.unary_unary(INFER, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        call(b"\xff\xff\xff garbage", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid message" in info.value.details()
    meta = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        meta(b"\xff\xff\xff", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


@pytest.mark.parametrize("request_args, code, text", [
    ({"model": "m" * 300}, "INVALID_ARGUMENT", "model_name is 300 characters long"),
    ({"rid": "i" * 257}, "INVALID_ARGUMENT", "id is 257 characters long"),
    ({"shape": (9000, 64, 3)}, "INVALID_ARGUMENT", "9000 x 64 (H x W) pixels"),
    ({"shape": (48, 100_000, 3)}, "INVALID_ARGUMENT", "at most 4096"),
    ({"shape": (1, 1, 1, 1, 1, 1, 1, 1, 1, 1)}, "INVALID_ARGUMENT", "shape of rank 10"),
    ({"inputs": 1000}, "INVALID_ARGUMENT", "got 1000 inputs"),
    ({"model": "nope"}, "NOT_FOUND", "'nope' is not served"),
], ids=["model-name", "id", "height", "width", "rank", "inputs", "unknown-model"])
def test_requests_past_the_bounds_get_a_clear_status(fake_frontend, request_args, code, text):
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{fake_frontend.port}")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(infer_request(**request_args), timeout=30)
    assert info.value.code().name == code and text in info.value.details()
    assert len(info.value.details()) < 1000  # nothing huge echoed back
    channel.close()


def test_metadata_for_an_over_long_name_is_invalid_argument(fake_frontend):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{fake_frontend.port}")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="n" * 10_000), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:  # not implemented here: UNIMPLEMENTED, not UNKNOWN
        stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert stub.ModelInfer(infer_request("ok"), timeout=30).id == "ok"
    channel.close()


def test_an_overloaded_app_is_resource_exhausted(fake_frontend):
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    plane = fake_frontend.plane
    limit = plane.limit(plane.table.apps["fake"])
    asyncio.run_coroutine_threadsafe(_hold(plane, "fake", limit), fake_frontend.loop).result(10)
    channel = grpc.insecure_channel(f"127.0.0.1:{fake_frontend.port}")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(infer_request("over"), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "overloaded" in info.value.details()
    finally:
        asyncio.run_coroutine_threadsafe(_hold(plane, "fake", -limit), fake_frontend.loop).result(10)
    assert stub.ModelInfer(infer_request("again"), timeout=30).id == "again"
    channel.close()


async def _hold(plane: FrontendDataPlane, app: str, frames: int) -> None:
    """Count `frames` more frames of `app` in flight (on the plane's loop)."""
    plane.in_flight[app] += frames


@pytest.mark.parametrize("taken", ["--port", "--metrics-port"])
def test_a_port_in_use_is_one_line_naming_it(taken, capsys):
    """A frontend whose Triton or metrics port another process holds stops at once with one line that
    names the port (exit 2), not a traceback."""
    import socket

    from harpagon.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        ports = {"--port": "0", "--metrics-port": "0", taken: str(port)}
        assert main(["frontend", "--controller", "127.0.0.1:1", *[x for kv in ports.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harpagon frontend: cannot listen on") and f":{port}" in err[0], err
