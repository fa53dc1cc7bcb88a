"""Big requests on the frontend's client port, over real gRPC on 127.0.0.1: a request bigger than the
configured frame allows is refused RESOURCE_EXHAUSTED by gRPC before the frontend reads it, while
another client keeps being served; a frontend configured for 4K frames takes them."""

from __future__ import annotations

import math
import threading

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as rpc

from harpagon.runtime.frontend.servicer import message_limit
from tests.integration.conftest import threaded_frontend

pytestmark = pytest.mark.integration

SEND = [("grpc.max_send_message_length", 256 << 20)]


def request(shape: tuple[int, int, int], rid: str = "") -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="cam", id=rid, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="FRAME", datatype="UINT8", shape=list(shape))], raw_input_contents=[bytes(math.prod(shape))])


def test_an_over_limit_request_is_refused_unread_and_another_client_is_served_meanwhile():
    big = (2400, 2400, 3)  # a frame of legal sides, in a 17.3 MB request: over the 16 MiB a small frame allows
    assert request(big).ByteSize() > message_limit((48, 64, 3))
    with threaded_frontend((48, 64, 3)) as (plane, address, _):
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
    with threaded_frontend((2160, 3840, 3)) as (plane, address, _), \
            grpc.insecure_channel(address, options=SEND) as channel:
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
