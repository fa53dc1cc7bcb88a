"""Big requests on the frontend's client port, over real gRPC on 127.0.0.1: a request bigger than the
configured frame allows is refused RESOURCE_EXHAUSTED by gRPC before the frontend reads it, while
another client keeps being served; a frontend configured for 4K frames takes them."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as rpc

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.servicer import message_limit, start
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable
from tests.fakes import FakeWorkers

pytestmark = pytest.mark.integration

SEND = [("grpc.max_send_message_length", 256 << 20)]


@contextmanager
def frontend(frame_shape: tuple[int, int, int]) -> Iterator[tuple[FrontendDataPlane, str]]:
    """A frontend for `frame_shape` frames in front of fake workers, its event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = App.model_validate({"name": "cam", "rate": 50, "slo_ms": 2000, "modules": [{"name": "x", "model": "m"}]})
    route = ModuleRoute("x", (3, 8, 8), (TupleSpec(1, 1, 50.0, 0.0, 0.0),), (("w1",),), ("cam/x@b1",))

    async def up():
        plane = FrontendDataPlane(RoutingTable(1, "batch-aware", {"cam": app}, {("cam", "x"): route}),
                                  frame_shape=frame_shape, client=FakeWorkers())
        server, port = await start(plane, 0)
        return plane, server, port

    plane, server, port = asyncio.run_coroutine_threadsafe(up(), loop).result(30)
    try:
        yield plane, f"127.0.0.1:{port}"
    finally:
        async def down():
            await server.stop(1)
            await plane.close()

        asyncio.run_coroutine_threadsafe(down(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def request(shape: tuple[int, int, int], rid: str = "") -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="cam", id=rid, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="FRAME", datatype="UINT8", shape=list(shape))], raw_input_contents=[bytes(math.prod(shape))])


def test_an_over_limit_request_is_refused_unread_and_another_client_is_served_meanwhile():
    big = (2400, 2400, 3)  # a frame of legal sides, in a 17.3 MB request: over the 16 MiB a small frame allows
    assert request(big).ByteSize() > message_limit((48, 64, 3))
    with frontend((48, 64, 3)) as (plane, address):
        codes: list[tuple[grpc.StatusCode, str]] = []

        def flood() -> None:
            with grpc.insecure_channel(address, options=SEND) as channel:
                stub = rpc.GRPCInferenceServiceStub(channel)
                message = request(big)
                for _ in range(6):
                    try:
                        stub.ModelInfer(message, timeout=30)
                        codes.append((grpc.StatusCode.OK, ""))
                    except grpc.RpcError as exc:
                        codes.append((exc.code(), exc.details() or ""))

        flooder = threading.Thread(target=flood)
        flooder.start()
        with grpc.insecure_channel(address) as channel:
            stub = rpc.GRPCInferenceServiceStub(channel)
            ids = [stub.ModelInfer(request((48, 64, 3), f"s{i}"), timeout=30).id for i in range(30)]
        flooder.join(60)
    assert ids == [f"s{i}" for i in range(30)]  # every small frame answered, each its own
    assert len(codes) == 6 and all(c == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in d
                                   for c, d in codes), codes
    assert plane.counters["cam"].frames == 30  # the big requests never reached the frontend's code


def test_a_frontend_configured_for_4k_frames_takes_them_and_refuses_bigger_requests():
    with frontend((2160, 3840, 3)) as (plane, address), grpc.insecure_channel(address, options=SEND) as channel:
        stub = rpc.GRPCInferenceServiceStub(channel)
        frame = np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), dtype=np.uint8)
        reply = stub.ModelInfer(pb.ModelInferRequest(
            model_name="cam", id="4k", inputs=[pb.ModelInferRequest.InferInputTensor(
                name="FRAME", datatype="UINT8", shape=[2160, 3840, 3])], raw_input_contents=[frame.tobytes()]),
            timeout=30)
        assert reply.id == "4k" and reply.outputs[0].name == "x_0"
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request((4096, 4096, 3)), timeout=30)  # 50 MB: more than a 4K frame's request
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert plane.counters["cam"].frames == 1
