"""The Triton servicer's answers without a network, on the virtual clock (tests/fakes.py): every unary
call ends with a status (never UNKNOWN), a message that does not parse is INVALID_ARGUMENT, a stream
whose reader fails ends with a status after answering what it read (never a hang), and metadata and
statistics are the data plane's answers converted."""

from __future__ import annotations

import asyncio
import io
import logging

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.servicer import TritonServicer, Undecodable, _guarded, handlers
from harpagon.runtime.wire.errors import DeadlineExceeded, NotFound, Unavailable
from harpagon.runtime.wire.frames import EncodedFrame
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable
from tests.fakes import FakeWorkers, run_virtual

FRAME = (8, 8, 3)


class Aborted(grpc.aio.AbortError):
    pass


class FakeContext:
    """What the servicer uses of grpc.aio.ServicerContext: abort records the status and raises."""

    def __init__(self, gone: bool = False) -> None:
        self.status: tuple[grpc.StatusCode, str] | None = None
        self.gone = gone  # the call ended already (the client's deadline passed, or it cancelled)

    def done(self) -> bool:
        return self.gone

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        if self.gone:
            raise RuntimeError("Abort already called!")  # what gRPC does on an ended call
        self.status = (code, details)
        raise Aborted()


def plane() -> FrontendDataPlane:
    app = app_route(App.model_validate({"name": "a", "rate": 50, "slo_ms": 1000,
                                        "modules": [{"name": "m", "model": "m"}]}))
    route = ModuleRoute("m", (3, 4, 4), (TupleSpec(1, 1, 50.0, 0.0, 0.0),), (("w1",),), ("m@b1",))
    return FrontendDataPlane(RoutingTable(1, "batch-aware", {"a": app}, {("a", "m"): route}), frame_shape=FRAME,
                             client=FakeWorkers())


def request(rid: str) -> pb.ModelInferRequest:
    r = pb.ModelInferRequest(model_name="a", id=rid)
    r.inputs.append(pb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=list(FRAME)))
    r.raw_input_contents.append(np.zeros(FRAME, np.uint8).tobytes())
    return r


async def call(handler, req) -> tuple[object, FakeContext]:
    context = FakeContext()
    try:
        return await handler(req, context), context
    except Aborted:
        return None, context


@pytest.mark.parametrize("raised, code", [
    (NotFound("no such app"), grpc.StatusCode.NOT_FOUND),
    (Unavailable("not routed yet"), grpc.StatusCode.UNAVAILABLE),
    (KeyError("a bug"), grpc.StatusCode.INTERNAL),
    (ZeroDivisionError("another"), grpc.StatusCode.INTERNAL),
])
def test_a_unary_call_always_ends_with_a_status(raised, code, caplog):
    async def method(request, context):
        raise raised

    reply, context = run_virtual(call(_guarded(method), pb.ServerLiveRequest()))
    assert reply is None and context.status[0] == code
    if code == grpc.StatusCode.INTERNAL:
        assert type(raised).__name__ in context.status[1]
        assert any("failed" in r.message for r in caplog.records if r.levelno >= logging.ERROR)


@pytest.mark.parametrize("raised", [DeadlineExceeded("past its deadline"), KeyError("a bug")])
def test_a_call_that_ended_under_the_handler_is_not_aborted_twice(raised, caplog):
    """The client's deadline passed while the frame was in the DAG: gRPC has ended the call and
    refuses a status; the handler ends quietly (cancelled), with no error logged for it."""
    async def method(request, context):
        raise raised

    async def scenario():
        with pytest.raises(asyncio.CancelledError):
            await _guarded(method)(pb.ServerLiveRequest(), FakeContext(gone=True))

    run_virtual(scenario())
    assert not [r for r in caplog.records if "Abort" in r.getMessage()]


def test_an_undecodable_message_is_invalid_argument_and_model_infer_answers_through_the_guard():
    async def scenario():
        servicer = TritonServicer(plane())
        infer = handlers(servicer)["ModelInfer"].unary_unary
        bad, bad_ctx = await call(infer, Undecodable("DecodeError: truncated", 12))
        ok, ok_ctx = await call(infer, request("x"))
        return bad, bad_ctx, ok, ok_ctx

    bad, bad_ctx, ok, ok_ctx = run_virtual(asyncio.wait_for(scenario(), 10))
    assert bad is None and bad_ctx.status[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "12 bytes" in bad_ctx.status[1] and "truncated" in bad_ctx.status[1]
    assert ok.id == "x" and ok_ctx.status is None


def test_unimplemented_methods_are_not_registered():
    names = set(handlers(TritonServicer.__new__(TritonServicer)))
    assert {"ModelInfer", "ModelStreamInfer", "ServerLive", "ModelStatistics"} <= names
    assert "RepositoryIndex" not in names and "CudaSharedMemoryRegister" not in names


@pytest.mark.parametrize("failure, code", [(ConnectionResetError("peer gone"), grpc.StatusCode.INTERNAL),
                                           (Unavailable("the client's side broke"), grpc.StatusCode.UNAVAILABLE)])
def test_a_stream_whose_reader_fails_answers_what_it_read_then_ends_with_a_status(failure, code):
    async def requests():
        yield request("first")
        yield Undecodable("DecodeError", 3)
        await asyncio.sleep(0.01)
        raise failure

    async def scenario():
        servicer = TritonServicer(plane())
        context = FakeContext()
        got = []
        with pytest.raises(Aborted):
            async for reply in servicer.ModelStreamInfer(requests(), context):
                got.append(reply)
        return got, context

    got, context = run_virtual(asyncio.wait_for(scenario(), 10))  # never a hang
    assert sorted(r.infer_response.id for r in got) == ["", "first"]
    assert sum(bool(r.error_message) for r in got) == 1
    assert context.status[0] == code and str(failure) in context.status[1]


def test_a_stream_ends_ok_once_its_requests_are_answered():
    async def requests():
        for i in range(3):
            yield request(str(i))

    async def scenario():
        servicer = TritonServicer(plane())
        context = FakeContext()
        got = [r async for r in servicer.ModelStreamInfer(requests(), context)]
        return got, context

    got, context = run_virtual(asyncio.wait_for(scenario(), 10))
    assert sorted(r.infer_response.id for r in got) == ["0", "1", "2"] and not any(r.error_message for r in got)
    assert context.status is None


def test_metadata_is_answered_for_configured_apps_before_their_routes_and_statistics_for_routed_ones():
    a = app_route(App.model_validate({"name": "a", "rate": 50, "slo_ms": 1000, "modules": [
        {"name": "m", "model": "resnet18"}]}))

    async def scenario():
        servicer = TritonServicer(FrontendDataPlane(frame_shape=FRAME, client=FakeWorkers(), configured={"a": a}))
        methods = handlers(servicer)
        meta, _ = await call(methods["ModelMetadata"].unary_unary, pb.ModelMetadataRequest(name="a"))
        config, _ = await call(methods["ModelConfig"].unary_unary, pb.ModelConfigRequest(name="a"))
        _, unknown = await call(methods["ModelMetadata"].unary_unary, pb.ModelMetadataRequest(name="zzz"))
        before, _ = await call(methods["ModelStatistics"].unary_unary, pb.ModelStatisticsRequest())
        route = ModuleRoute("m", (3, 4, 4), (TupleSpec(1, 1, 50.0, 0.0, 0.0),), (("w1",),), ("m@b1",))
        await servicer.plane.update(RoutingTable(1, "batch-aware", {"a": a}, {("a", "m"): route}))
        ok, _ = await call(methods["ModelInfer"].unary_unary, request("x"))
        after, _ = await call(methods["ModelStatistics"].unary_unary, pb.ModelStatisticsRequest(name="a"))
        return meta, config, unknown, before, ok, after

    meta, config, unknown, before, ok, after = run_virtual(asyncio.wait_for(scenario(), 10))
    outputs = [("m_0", "FP32", [-1, 1000]), ("m_top_class", "INT64", [-1, 5]), ("m_top_score", "FP32", [-1, 5])]
    assert [(o.name, o.datatype, list(o.shape)) for o in meta.outputs] == outputs
    assert [(o.name, list(o.dims)) for o in config.config.output] == [(n, d) for n, _, d in outputs]
    assert [i.name for i in meta.inputs] == ["FRAME"] and list(meta.inputs[0].shape) == list(FRAME)
    assert unknown.status[0] == grpc.StatusCode.NOT_FOUND
    assert list(before.model_stats) == []  # not routed yet: no statistics
    assert [o.name for o in ok.outputs] == [n for n, _, _ in outputs]
    (stats,) = after.model_stats
    assert stats.name == "a" and stats.inference_count == 1 and stats.inference_stats.success.count == 1


# --- encoded frames (a BYTES input holding a JPEG or PNG image) ------------------------------------


def jpeg(h: int = 24, w: int = 32) -> bytes:
    from PIL import Image as PilImage

    out = io.BytesIO()
    PilImage.fromarray(np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def bytes_request(rid: str, element: bytes, shape: tuple[int, ...] = (1,), raw: bytes | None = None
                  ) -> pb.ModelInferRequest:
    """One BYTES element as tritonclient sends it: raw, a 4-byte little-endian length, then the bytes."""
    r = pb.ModelInferRequest(model_name="a", id=rid)
    r.inputs.append(pb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="BYTES", shape=list(shape)))
    r.raw_input_contents.append(raw if raw is not None else len(element).to_bytes(4, "little") + element)
    return r


def test_a_jpeg_in_a_bytes_input_reaches_the_worker_as_the_clients_bytes_and_uint8_frames_as_raw_frames():
    image = jpeg()
    typed = pb.ModelInferRequest(model_name="a", id="typed")
    typed.inputs.append(pb.ModelInferRequest.InferInputTensor(
        name="FRAME", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[image])))

    async def scenario():
        p = plane()
        infer = handlers(TritonServicer(p))["ModelInfer"].unary_unary
        got = [await call(infer, r) for r in (bytes_request("j", image), typed, request("u"))]
        return p, got

    p, got = run_virtual(asyncio.wait_for(scenario(), 10))
    assert [(r.id, ctx.status) for r, ctx in got] == [("j", None), ("typed", None), ("u", None)]
    fake = p.client
    assert isinstance(fake, FakeWorkers)
    jpeg_calls, typed_calls, uint8_calls = fake.calls
    for c in (jpeg_calls, typed_calls):
        (sent,) = c.batch
        assert isinstance(c.batch, list) and isinstance(sent, EncodedFrame)
        assert (sent.encoding, sent.data, sent.height, sent.width) == ("jpeg", image, 0, 0)
    (raw,) = uint8_calls.batch  # the client's bytes at full size, not resized here: the worker resizes them
    assert isinstance(raw, EncodedFrame) and (raw.encoding, raw.height, raw.width) == ("raw", *FRAME[:2])
    assert raw.data == request("u").raw_input_contents[0]
    assert p.counters["a"].success == 3


def png(h: int, w: int) -> bytes:
    """A 1 x 1 PNG whose header claims h x w pixels (nothing past the header is read before decoding)."""
    from PIL import Image as PilImage

    out = io.BytesIO()
    PilImage.fromarray(np.zeros((1, 1, 3), np.uint8)).save(out, "PNG")
    data = out.getvalue()
    return data[:16] + w.to_bytes(4, "big") + h.to_bytes(4, "big") + data[24:]


@pytest.mark.parametrize("make, words", [
    (lambda: bytes_request("x", b"GIF89a" + bytes(64)), "must be a JPEG or PNG image"),
    (lambda: bytes_request("x", jpeg()[:40]), "JPEG frame"),  # truncated before its frame header
    (lambda: bytes_request("x", b"\xff\xd8\xff" + bytes(100)), "JPEG frame"),
    (lambda: bytes_request("x", png(1, 1)[:20]), "PNG frame"),
    (lambda: bytes_request("x", b"", raw=(999).to_bytes(4, "little") + jpeg()), "length prefix"),
    (lambda: bytes_request("x", b"", raw=b"\x01\x00"), "4-byte length"),
    (lambda: bytes_request("x", jpeg(), shape=(2,)), "one element"),
    (lambda: bytes_request("x", png(9000, 8000)), "more than"),  # a decompression bomb's header
])
def test_a_bad_image_is_invalid_argument_for_its_request_alone_and_never_reaches_a_worker(make, words):
    async def scenario():
        p = plane()
        infer = handlers(TritonServicer(p))["ModelInfer"].unary_unary
        bad = await call(infer, make())
        ok = await call(infer, bytes_request("ok", jpeg()))
        return p, bad, ok

    p, (bad, bad_ctx), (ok, ok_ctx) = run_virtual(asyncio.wait_for(scenario(), 10))
    assert bad is None and bad_ctx.status[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert words in bad_ctx.status[1] and "'FRAME'" in bad_ctx.status[1]
    assert ok.id == "ok" and ok_ctx.status is None
    fake = p.client
    assert isinstance(fake, FakeWorkers) and len(fake.calls) == 1  # only the good one
    c = p.counters["a"]
    assert (c.success, c.failed, c.dropped, c.refused) == (1, 0, 0, 0)  # refused before admission counted it


def test_an_image_over_the_frame_byte_bound_is_refused_by_the_check_the_workers_make(monkeypatch):
    from harpagon.runtime.wire import frames

    image = jpeg()
    monkeypatch.setattr(frames, "MAX_FRAME_BYTES", len(image) - 1)

    async def scenario():
        p = plane()
        return p, await call(handlers(TritonServicer(p))["ModelInfer"].unary_unary, bytes_request("big", image))

    p, (reply, ctx) = run_virtual(asyncio.wait_for(scenario(), 10))
    assert reply is None and ctx.status[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert f"'FRAME': frame data is {len(image)} bytes, more than {len(image) - 1}" in ctx.status[1]
    assert not p.client.calls
