"""Big requests on the client port: the message limit follows the configured frame, a request's frame
is cut out of its bytes without copying and parses to what protobuf parses, and requests the event
loop cannot afford to parse are refused unparsed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from harpagon.runtime.frontend import servicer
from harpagon.runtime.frontend.servicer import (
    MAX_FIELDS_BYTES,
    MAX_WAITING_CALLS,
    MESSAGE_FLOOR,
    MESSAGE_SLACK,
    InferCall,
    Oversized,
    TritonServicer,
    Undecodable,
    client_port_options,
    decode_infer,
    message_limit,
)
from harpagon.runtime.wire.errors import InvalidArgument, ResourceExhausted
from harpagon.runtime.wire.tensors import cut_bytes_field

RAW = 7  # ModelInferRequest.raw_input_contents


def infer_request(shape=(480, 640, 3), raws: int = 1, typed: bool = False, seed: int = 0) -> pb.ModelInferRequest:
    rng = np.random.default_rng(seed)
    r = pb.ModelInferRequest(model_name="cam", model_version="1", id="frame-7")
    r.parameters["priority"].uint64_param = 1
    r.parameters["triton_enable_empty_final_response"].bool_param = True
    r.inputs.append(pb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=list(shape)))
    r.outputs.append(pb.ModelInferRequest.InferRequestedOutputTensor(name="x_0"))
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    if typed:
        r.inputs[0].contents.uint_contents.extend(frame.ravel().tolist())
    for i in range(raws):
        r.raw_input_contents.append(frame.tobytes() if i == 0 else bytes([i]) * 100)
    return r


def test_the_limit_fits_the_configured_frame_and_never_falls_below_the_floor():
    assert message_limit((480, 640, 3)) == MESSAGE_FLOOR == 16 << 20  # a small frame: the floor (1080p fits)
    assert message_limit((1080, 1920, 3)) == MESSAGE_FLOOR
    four_k = 2160 * 3840 * 3
    assert message_limit((2160, 3840, 3)) == four_k + MESSAGE_SLACK  # a 4K frame and the rest of its request
    options = dict(client_port_options((2160, 3840, 3)))
    assert options["grpc.max_receive_message_length"] == four_k + MESSAGE_SLACK
    # the configured frame's request, as tritonclient builds it, fits its limit
    big = infer_request((2160, 3840, 3))
    assert big.ByteSize() <= message_limit((2160, 3840, 3))
    # gRPC's bound on waiting calls (it answers CANCELLED past it) far above its default 1,000-3,000
    assert (options["grpc.server.max_pending_requests"] == options["grpc.server.max_pending_requests_hard_limit"]
            == MAX_WAITING_CALLS >= 10_000)


@pytest.mark.parametrize("raws", [0, 1, 3])
def test_cutting_the_frame_out_parses_to_what_protobuf_parses(raws):
    request = infer_request((64, 96, 3), raws=raws)
    data = request.SerializeToString()
    cut = cut_bytes_field(data, RAW)
    assert cut is not None
    rest, blobs = cut
    assert [bytes(b) for b in blobs] == list(request.raw_input_contents)
    assert all(isinstance(b, memoryview) and b.obj is data for b in blobs)  # views of the message: no copy
    without = pb.ModelInferRequest()
    without.CopyFrom(request)
    del without.raw_input_contents[:]
    assert pb.ModelInferRequest.FromString(rest) == without


def test_fields_in_any_order_and_unknown_ones_are_kept():
    frame = b"\x01\x02\x03" * 1000
    # raw tensor first, then the model name, an unknown varint field (99), a fixed32 and a fixed64 one
    data = (b"\x3a" + _varint(len(frame)) + frame + b"\x0a\x03cam" + _varint(99 << 3) + _varint(300)
            + _varint((98 << 3) | 5) + b"abcd" + _varint((97 << 3) | 1) + b"abcdefgh")
    rest, blobs = cut_bytes_field(data, RAW)
    assert [bytes(b) for b in blobs] == [frame]
    parsed = pb.ModelInferRequest.FromString(rest)
    assert parsed.model_name == "cam" and parsed == pb.ModelInferRequest.FromString(data.replace(
        b"\x3a" + _varint(len(frame)) + frame, b""))


@pytest.mark.parametrize("data", [
    b"\x3a\x10short",  # a tensor that runs past the end
    b"\x0a\x05cam",  # a name that does
    b"\x3b\x3c",  # a group
    b"\x38\x01",  # the tensor field as a varint
    b"\x00\x01",  # field number 0
    b"\x08" + b"\xff" * 11,  # a varint longer than 10 bytes
    b"\x0a\x01a" * 300,  # more fields than it reads one at a time
], ids=["truncated-raw", "truncated-name", "group", "raw-as-varint", "field-0", "long-varint", "many-fields"])
def test_what_is_not_plain_wire_format_is_left_to_the_parser(data):
    assert cut_bytes_field(data, RAW) is None


def test_a_big_request_decodes_with_its_frame_in_place_and_a_small_one_whole():
    big = infer_request((480, 640, 3)).SerializeToString()
    call = decode_infer(big)
    assert isinstance(call, InferCall) and call.request.model_name == "cam" and not call.request.raw_input_contents
    assert isinstance(call.raw[0], memoryview) and call.raw[0].obj is big
    small = infer_request((8, 8, 3)).SerializeToString()
    call = decode_infer(small)
    assert isinstance(call, InferCall) and bytes(call.raw[0]) == infer_request((8, 8, 3)).raw_input_contents[0]
    garbage = b"\xff" * 100_000
    assert isinstance(decode_infer(garbage), Undecodable)


def test_typed_contents_too_big_to_parse_on_the_loop_are_refused_unparsed():
    fits = infer_request((480, 640, 3), raws=0, typed=True)  # the default frame, typed: up to 1.8 MB
    assert isinstance(decode_infer(fits.SerializeToString()), InferCall)
    over = infer_request((1024, 1024, 3), raws=0, typed=True)
    decoded = decode_infer(over.SerializeToString())
    assert isinstance(decoded, Oversized) and decoded.size > MAX_FIELDS_BYTES
    assert "raw_input_contents" in decoded.message
    with pytest.raises(ResourceExhausted):
        asyncio.run(TritonServicer(None)._infer(decoded))  # refused before anything else is looked at


@pytest.mark.parametrize("shape", [(8, 8, 3), (300, 300, 3)], ids=["on-the-loop", "off-the-loop"])
def test_typed_contents_become_the_frame_they_hold(shape):
    request = infer_request(shape, raws=0, typed=True)
    frame = asyncio.run(TritonServicer(None)._frame(request, []))
    assert (frame.encoding, frame.height, frame.width) == ("raw", shape[0], shape[1]) and isinstance(frame.data, bytes)
    assert frame.data == np.asarray(request.inputs[0].contents.uint_contents, np.uint8).tobytes()
    request.inputs[0].contents.uint_contents[-1] = 256
    with pytest.raises(InvalidArgument, match="above 255"):
        asyncio.run(TritonServicer(None)._frame(request, []))


def test_a_frame_cut_out_reads_like_the_parsed_one():
    request = infer_request((480, 640, 3))
    call = decode_infer(request.SerializeToString())
    frame = asyncio.run(TritonServicer(None)._frame(call.request, call.raw))
    # a raw frame of the request's bytes, at full size (the workers resize it): a view of the message read off
    # the wire, not a copy (its one copy is into the worker's request)
    assert (frame.encoding, frame.height, frame.width) == ("raw", 480, 640) and isinstance(frame.data, memoryview)
    assert frame.data == request.raw_input_contents[0]
    assert servicer.TYPED_OFF_LOOP < 300 * 300 * 3  # the typed test above does go off the loop


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
