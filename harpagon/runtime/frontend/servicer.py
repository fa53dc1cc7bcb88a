"""A thin Triton / KServe v2 gRPC servicer (`inference.GRPCInferenceService`) over the frontend's
data plane. Each application is a model: its input `FRAME` is one UINT8 [H, W, 3] frame, or one BYTES
element holding a JPEG or PNG image (how Triton clients send images: a numpy `object_` array of one
`bytes`); its outputs
are its sink modules' results, with the module's requests for the frame as the first dimension and,
below a `crops` edge, the detection each request is of (frontend/reply.py). Stubs are those shipped in `tritonclient`.

Triton's metadata gives an input one datatype, so ModelMetadata and ModelConfig declare `FRAME` as
UINT8 [-1, -1, 3] (what load generators such as perf_analyzer send), and the BYTES form is documented
here and in the README. A second, optional input for images would be Triton-truer, but tools that
fill every declared input would then send both. An encoded image is checked from its header at once
(`wire/frames.py: check`: unknown encoding, unreadable or truncated header, past its size or pixel
bounds: INVALID_ARGUMENT) and forwarded to the workers as it came, never decoded here; a UINT8 frame
is forwarded as a raw frame of its bytes (`EncodedFrame(data, "raw", H, W)`), never resized here: the
workers decode and resize frames inside their batches.

The service is registered with handlers of its own (:func:`handlers`), not the generated ones: a
request that does not parse reaches the servicer as :class:`Undecodable`, so a unary call is answered
INVALID_ARGUMENT and a stream answers that message with an error response and goes on (Triton's
stream semantics) instead of the call dying with a transport error. Every unary call ends with a
status: a fault with its own code, anything unexpected with INTERNAL (and a log line), never UNKNOWN.
Requests are bounded (MAX_* below) and answered INVALID_ARGUMENT past them, naming the field; a
request bigger than the configured frame allows (:func:`message_limit`) is refused by gRPC with
RESOURCE_EXHAUSTED before Python reads any of it.

Big requests cost the event loop what gRPC's own copy of them costs, little more: the frame's bytes
are cut out of the message before it is parsed (:class:`InferCall`) and kept as views of it, copied
once, into the worker's request (wire/frames.frames_request), typed contents of a big frame are
converted off the loop, and a request holding more than MAX_FIELDS_BYTES outside its raw tensors is
refused RESOURCE_EXHAUSTED unparsed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as rpc

from harpagon import __version__
from harpagon.runtime.frontend import peers, reply
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.wire import frames
from harpagon.runtime.wire.errors import InvalidArgument, ResourceExhausted, RuntimeFault
from harpagon.runtime.wire.rpc import aio_server, status_code
from harpagon.runtime.wire.tensors import cut_bytes_field
from harpagon.runtime.wire.tls import TlsFiles

log = logging.getLogger("harpagon.frontend")

INPUT = "FRAME"
#: The health service name that is SERVING as long as the frontend runs (a liveness or startup probe);
#: the default service "" says whether it is ready (every configured app routed or refused).
LIVENESS = "liveness"
#: The largest request the client port reads follows the configured frame (:func:`message_limit`):
#: gRPC refuses a bigger one with RESOURCE_EXHAUSTED before Python sees it. Reading a 60 MB body held
#: the event loop for 0.35-3 s, so that one client sending such bodies back to back failed most other
#: clients' frames. The limit is at least MESSAGE_FLOOR, whatever the configured frame: a raw 1080p
#: frame (6.2 MB) fits with room to spare, since clients often send their camera's frames as they are
#: (their workers resize them to their modules' inputs); read back to back, 16 MiB requests cost other clients'
#: frames tens of milliseconds, not their deadlines (scripts/bench_big_messages.py).
MESSAGE_FLOOR = 16 << 20
#: Calls waiting in gRPC for the event loop to take them (the loop takes one at a time) are bounded by
#: gRPC alone, and it answers the calls past its bound CANCELLED (by default past 1,000 waiting, with
#: a rising probability, all past 3,000), a status that tells an overloaded client nothing:
#: perf_analyzer aborts on it (with a bound of 256 it did at 1,000 frames/s on 2 cores). So the bound
#: is set far above what overload brings, as a backstop for memory only (a waiting call holds a few
#: kilobytes, and no more of its message than HTTP/2 flow control lets in); overload is answered by
#: admission (the data plane's in-flight bound: RESOURCE_EXHAUSTED at once, before a frame is decoded),
#: a frame that waited past its deadline with DEADLINE_EXCEEDED (the loop charges its own delays,
#: frontend/loopwatch.py), and a call that outlives its client's deadline by gRPC itself. gRPC also
#: drops a call that waited 30 s unseen, far past any SLO: only a frontend that stopped taking calls
#: at all keeps one waiting that long.
MAX_WAITING_CALLS = 1 << 14
#: Room in a request for all but the frame's bytes: names, id, parameters, shape.
MESSAGE_SLACK = 64 << 10
#: Requests at least this big have the frame's bytes cut out before parsing (see InferCall); smaller
#: ones are parsed whole (their copies cost less than the cut).
CUT_MIN_BYTES = 64 << 10
#: The most bytes a request may hold outside its raw tensors. Protobuf parses those on the event loop
#: (typed contents at about 14 ms a megabyte), so a bigger request is refused RESOURCE_EXHAUSTED
#: unparsed; 2 MiB holds a 640x480 frame's typed contents (at most 1.8 MB), a bigger frame goes raw.
MAX_FIELDS_BYTES = 2 << 20
#: Typed contents of more values than this are converted off the event loop (about 40 ms a million
#: values), a slice at a time so that the loop takes its turns in between.
TYPED_OFF_LOOP = 1 << 16
_RAW_FIELD = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
SERVICE = "inference.GRPCInferenceService"
EXTENSIONS = ["model_configuration", "statistics"]
_CONFIG_TYPES = {"FP32": mc.TYPE_FP32, "INT64": mc.TYPE_INT64, "INT32": mc.TYPE_INT32, "BYTES": mc.TYPE_STRING}
#: Longest model name and request id accepted (they are echoed in replies and errors).
MAX_NAME = 256
MAX_ID = 256
#: Largest frame side accepted (8K video is 7680 x 4320).
#: A raw frame's bytes are bounded apart, as the workers bound them (frames.MAX_FRAME_BYTES, 32 MiB):
#: 4K UHD (3840 x 2160, 24 MiB raw) fits, a raw 4096 x 4096 (48 MiB) does not.
MAX_SIDE = 4096


def message_limit(frame_shape: Sequence[int]) -> int:
    """The largest request (bytes) the client port accepts when clients send frames of `frame_shape`:
    one such frame's UINT8 bytes plus MESSAGE_SLACK, and never less than MESSAGE_FLOOR. (Typed
    contents are bounded apart, by MAX_FIELDS_BYTES.)"""
    return max(MESSAGE_FLOOR, math.prod(frame_shape) + MESSAGE_SLACK)


def client_port_options(frame_shape: Sequence[int]) -> list[tuple[str, int]]:
    """The client port's gRPC options beyond the shared ones (harpagon.runtime.wire.rpc): the message
    limit, and the bound on calls waiting for the event loop to take them (see MAX_WAITING_CALLS)."""
    return [("grpc.max_receive_message_length", message_limit(frame_shape)),
            ("grpc.server.max_pending_requests", MAX_WAITING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_WAITING_CALLS)]


@dataclass(frozen=True, slots=True)
class InferCall:
    """A ModelInferRequest as read off the wire: `request` (without its raw tensors when they were cut
    out) and `raw`, those tensors, as views of the message's bytes rather than copies (parsing copies a
    bytes field into the message, and reading it copies it again: for a 50 MB frame, two stalls of the
    event loop of about 27 ms each on an idle machine, far longer on a busy one)."""

    request: pb.ModelInferRequest
    raw: Sequence[bytes | memoryview]
    data: bytes | None = None
    """The message as it came (what a frame forwarded to another frontend is sent as, unparsed)."""


@dataclass(frozen=True, slots=True)
class Oversized:
    """A ModelInferRequest holding more than MAX_FIELDS_BYTES outside its raw tensors, left unparsed;
    the servicer answers it RESOURCE_EXHAUSTED."""

    size: int

    @property
    def message(self) -> str:
        return (f"the request holds {self.size} bytes outside raw_input_contents, more than the "
                f"{MAX_FIELDS_BYTES} accepted: send a frame this big in raw_input_contents")


def decode_infer(data: bytes) -> InferCall | Undecodable | Oversized:
    """A ModelInferRequest's bytes as an InferCall (a big one's frame cut out, not copied), or what
    the servicer refuses it as."""
    try:
        if len(data) < CUT_MIN_BYTES:
            request = pb.ModelInferRequest.FromString(data)
            return InferCall(request, request.raw_input_contents, data)
        cut = cut_bytes_field(data, _RAW_FIELD)
        rest, raw = cut if cut is not None else (data, [])
        if len(rest) > MAX_FIELDS_BYTES:
            return Oversized(len(rest))
        if cut is None:  # not plain at its top level: the parser decides
            request = pb.ModelInferRequest.FromString(data)
            return InferCall(request, request.raw_input_contents, data)
        return InferCall(pb.ModelInferRequest.FromString(rest), raw, data)
    except Exception as exc:  # noqa: BLE001 - DecodeError, or whatever else bad bytes raise
        return Undecodable(f"{type(exc).__name__}: {exc}", len(data))


def _typed_frame(values: Iterable[int], size: int) -> bytes:
    """UINT8 typed contents (uint32 values) as a frame's bytes, a slice at a time (see TYPED_OFF_LOOP)."""
    it = iter(values)
    out = bytearray()
    try:
        for _ in range(0, size, TYPED_OFF_LOOP):
            out += bytes(itertools.islice(it, TYPED_OFF_LOOP))  # refuses values above 255
    except ValueError:
        raise InvalidArgument(f"input {INPUT!r} holds values above 255") from None
    return bytes(out)


def _encoded_frame(spec: pb.ModelInferRequest.InferInputTensor, raw: Sequence[bytes | memoryview]
                   ) -> frames.EncodedFrame:
    """A BYTES input of one element (Triton's raw form: a 4-byte little-endian length, then the bytes)
    as a checked JPEG or PNG frame. The element is read as a view of the message, and stays one: its
    one copy is into the worker's request (wire/frames.frames_request)."""
    if not 1 <= len(spec.shape) <= 8 or any(d != 1 for d in spec.shape):
        raise InvalidArgument(f"input {INPUT!r} of BYTES must be one element (shape [1]) holding a JPEG or PNG "
                              f"image, got shape {list(spec.shape)[:8]}")
    if len(raw) > 1:
        raise InvalidArgument(f"raw_input_contents holds {len(raw)} tensors for one input")
    if raw:
        view = memoryview(raw[0])
        if len(view) < 4:
            raise InvalidArgument(f"input {INPUT!r}: a BYTES element starts with its 4-byte length, got "
                                  f"{len(view)} bytes")
        n = int.from_bytes(view[:4], "little")
        if len(view) != 4 + n:
            raise InvalidArgument(f"input {INPUT!r}: one BYTES element of {n} bytes (its length prefix), but "
                                  f"{len(view) - 4} bytes follow the prefix")
        element: bytes | memoryview = view[4:]
    else:
        values = spec.contents.bytes_contents
        if len(values) != 1:
            raise InvalidArgument(f"input {INPUT!r} of BYTES must hold one element, got {len(values)}")
        element = values[0]
    encoding = frames.sniff(element[:8])  # type: ignore[arg-type]
    if encoding is None:
        raise InvalidArgument(f"input {INPUT!r}: a BYTES element must be a JPEG or PNG image, got {len(element)} "
                              f"bytes starting {bytes(element[:8]).hex()}")
    return _checked(frames.EncodedFrame(element, encoding))  # a view of the request, not a copy


def _checked(frame: frames.EncodedFrame) -> frames.EncodedFrame:
    """`frame` once `frames.check` passes it (its bytes' bound, then its header), as the worker will
    check it; its failure named as the input's."""
    try:
        frames.check(frame)
    except InvalidArgument as exc:
        raise InvalidArgument(f"input {INPUT!r}: {exc}") from None
    return frame


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request message that did not parse; the servicer answers it INVALID_ARGUMENT."""

    error: str
    size: int

    @property
    def message(self) -> str:
        return f"the request ({self.size} bytes) is not a valid message: {self.error}"


def _decoder(cls: Any) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, or whatever else bad bytes raise
            return Undecodable(f"{type(exc).__name__}: {exc}", len(data))

    return decode


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"model_name is {len(name)} characters long, more than {MAX_NAME}")


class TritonServicer(rpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: FrontendDataPlane):
        self.plane = plane

    async def _abort(self, context: grpc.aio.ServicerContext, exc: RuntimeFault) -> None:
        await _abort(context, status_code(exc), str(exc))

    # --- health and metadata ------------------------------------------------------------------

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        """True once every configured app is routed or refused with its reason (as Triton: ready
        means a client may call every model it lists)."""
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.plane.has_app(request.name))

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="harpagon", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request, context):
        """Answered for any configured app, routed or not; otherwise the status a frame would get.
        `FRAME` is declared UINT8 (one datatype per input, as Triton has it); it also takes one BYTES
        element holding a JPEG or PNG image (see the module docstring)."""
        _check_name(request.name)
        app = self.plane.describe(request.name)
        return pb.ModelMetadataResponse(
            name=request.name, versions=["1"], platform="harpagon",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name=INPUT, datatype="UINT8",
                                                           shape=list(self.plane.frame_shape))],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name=o.name, datatype=o.datatype, shape=list(o.dims))
                     for o in app.outputs],
        )

    async def ModelConfig(self, request, context):
        """Answered as ModelMetadata is; `FRAME` is declared UINT8 and also takes one BYTES element
        holding a JPEG or PNG image, as there."""
        _check_name(request.name)
        app = self.plane.describe(request.name)
        config = mc.ModelConfig(
            name=request.name, platform="harpagon", max_batch_size=0,
            input=[mc.ModelInput(name=INPUT, data_type=mc.TYPE_UINT8, dims=list(self.plane.frame_shape))],
            output=[mc.ModelOutput(name=o.name, data_type=_CONFIG_TYPES[o.datatype], dims=list(o.dims))
                    for o in app.outputs],
        )
        return pb.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request, context):
        stats = []
        for name, c in self.plane.app_counters(request.name):
            ok = pb.StatisticDuration(count=c.success, ns=c.success_ns)
            counted = pb.StatisticDuration(count=c.success)  # the stages perf_analyzer expects, all counted
            stats.append(pb.ModelStatistics(
                name=name, version="1", inference_count=c.success, execution_count=c.success,
                inference_stats=pb.InferStatistics(success=ok, fail=pb.StatisticDuration(count=c.failed + c.dropped + c.refused),
                                                   queue=counted, compute_input=counted, compute_infer=ok,
                                                   compute_output=counted)))
        return pb.ModelStatisticsResponse(model_stats=stats)

    # --- inference ----------------------------------------------------------------------------

    async def _infer(self, call: InferCall | pb.ModelInferRequest | Undecodable | Oversized,
                     remaining_s: float | None = None) -> pb.ModelInferResponse | bytes:
        """`remaining_s`: the client's own deadline, if it set one (a frame is due at the earlier of it
        and its SLO). A frame forwarded to the frontend owning its app's stream is answered with the
        owner's response as it came (serialised)."""
        if isinstance(call, Undecodable):
            raise InvalidArgument(call.message)
        if isinstance(call, Oversized):
            raise ResourceExhausted(call.message)
        if isinstance(call, pb.ModelInferRequest):
            call = InferCall(call, call.raw_input_contents)
        request = call.request
        _check_name(request.model_name)
        if len(request.id) > MAX_ID:
            raise InvalidArgument(f"id is {len(request.id)} characters long, more than {MAX_ID}")
        stream = None
        if not peers.was_forwarded(request) and (owner := self.plane.owner(request.model_name)) is not None:
            # another frontend owns the app's stream: its batches fill there (docs/model.md, "Several frontends")
            forwarded = await self.plane.forward(request.model_name, owner, peers.forward_request(call),
                                                 remaining_s)
            if forwarded is not None:
                return forwarded
            stream = owner.name  # the owner is gone: served here, in its stream
        self.plane.admit(request.model_name)  # refuse (unknown app, overload) before decoding the frame
        frame = await self._frame(request, call.raw)
        response = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for spec, arr in await self.plane.answer(request.model_name, frame, remaining_s, stream):
            response.outputs.append(pb.ModelInferResponse.InferOutputTensor(
                name=spec.name, datatype=spec.datatype, shape=list(arr.shape)))
            response.raw_output_contents.append(reply.serialize_bytes(arr) if spec.datatype == "BYTES"
                                                else np.ascontiguousarray(arr).tobytes())
        return response

    async def _frame(self, request: pb.ModelInferRequest, raw: Sequence[bytes | memoryview]) -> frames.EncodedFrame:
        """The request's frame as the workers are sent it: an encoded one as it came, UINT8 pixels as
        a raw frame of their bytes (a view of the request's, not a copy)."""
        if len(request.inputs) != 1:
            raise InvalidArgument(f"expected one input named {INPUT!r}, got {len(request.inputs)} inputs"
                                  + (f": {[i.name[:MAX_NAME] for i in request.inputs]}"
                                     if len(request.inputs) <= 8 else ""))
        spec = request.inputs[0]
        if spec.name != INPUT:
            raise InvalidArgument(f"expected one input named {INPUT!r}, got {[spec.name[:MAX_NAME]]}")
        if spec.datatype == "BYTES":
            return _encoded_frame(spec, raw)
        if spec.datatype != "UINT8":
            raise InvalidArgument(f"input {INPUT!r} must be UINT8 (a frame's pixels) or BYTES (a JPEG or PNG "
                                  f"image), got {spec.datatype[:MAX_NAME]}")
        if len(spec.shape) != 3:
            raise InvalidArgument(f"input {INPUT!r} must be one [H, W, 3] frame, got a shape of rank "
                                  f"{len(spec.shape)}" + (f": {list(spec.shape)}" if len(spec.shape) <= 8 else ""))
        shape = tuple(spec.shape)
        if shape[2] != 3 or any(d < 1 for d in shape):
            raise InvalidArgument(f"input {INPUT!r} must be one [H, W, 3] frame, got {list(shape)}")
        if shape[0] > MAX_SIDE or shape[1] > MAX_SIDE:
            raise InvalidArgument(f"input {INPUT!r}: frame of {shape[0]} x {shape[1]} (H x W) pixels; each side must "
                                  f"be at most {MAX_SIDE}")
        size = shape[0] * shape[1] * shape[2]
        if len(raw) > 1:
            raise InvalidArgument(f"raw_input_contents holds {len(raw)} tensors for one input")
        if raw:
            n = memoryview(raw[0]).nbytes
            if n != size:
                raise InvalidArgument(f"{n} values do not fill a UINT8 frame of shape {list(shape)}")
            data = raw[0]  # uncopied: the worker call writes it into its request (wire/frames.frames_request)
        else:  # typed contents: UINT8 travels as uint32 values
            values = spec.contents.uint_contents
            if len(values) != size:  # before converting them
                raise InvalidArgument(f"{len(values)} values do not fill a UINT8 frame of shape {list(shape)}")
            data = (await asyncio.to_thread(_typed_frame, values, size) if size > TYPED_OFF_LOOP
                    else _typed_frame(values, size))
        return _checked(frames.EncodedFrame(data, "raw", shape[0], shape[1]))

    async def ModelInfer(self, request, context):
        try:
            return await self._infer(request, context.time_remaining())
        except RuntimeFault as exc:  # (start() also guards every unary call; this keeps the method whole)
            await self._abort(context, exc)

    async def ModelStreamInfer(self, request_iterator: AsyncIterator, context) -> AsyncIterator:
        """Every request gets one response, in the order they finish (an error response for one that
        fails, the stream goes on); the stream ends OK once the client's side is done and every request
        answered, or with a status if reading the client's side fails."""
        replies: asyncio.Queue = asyncio.Queue()
        pending: set[asyncio.Task] = set()

        async def one(request: InferCall | pb.ModelInferRequest | Undecodable | Oversized) -> None:
            rid = ("" if isinstance(request, Undecodable | Oversized)
                   else (request.request if isinstance(request, InferCall) else request).id[:MAX_ID])
            try:
                response = await self._infer(request)
                if isinstance(response, bytes):  # forwarded: the owner's answer, serialised
                    response = pb.ModelInferResponse.FromString(response)
                replies.put_nowait(pb.ModelStreamInferResponse(infer_response=response))
            except Exception as exc:  # every request of a stream gets a response; the stream goes on
                if isinstance(exc, RuntimeFault):
                    message = f"{exc.code}: {exc}"
                else:
                    log.exception("stream request %r failed", rid)
                    message = f"INTERNAL: {type(exc).__name__}: {exc}"
                replies.put_nowait(pb.ModelStreamInferResponse(
                    error_message=message, infer_response=pb.ModelInferResponse(id=rid)))

        async def read() -> None:
            failure: BaseException | None = None
            try:
                async for request in request_iterator:
                    task = asyncio.ensure_future(one(request))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the client's side broke:
                failure = exc  # answer what was read, then end with a status
            if pending:  # bounded: each frame has its deadline
                await asyncio.gather(*list(pending), return_exceptions=True)
            replies.put_nowait(failure)  # None: the end

        reader = asyncio.ensure_future(read())
        try:
            while True:
                reply = await replies.get()
                if reply is None:
                    break
                if isinstance(reply, BaseException):
                    if isinstance(reply, RuntimeFault):
                        await context.abort(status_code(reply), str(reply))
                    log.warning("stream reader failed: %s: %s", type(reply).__name__, reply)
                    await context.abort(grpc.StatusCode.INTERNAL,
                                        f"reading the stream failed: {type(reply).__name__}: {reply}")
                yield reply
        finally:
            reader.cancel()
            for task in list(pending):  # the client is gone: its frames need no answer
                task.cancel()


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End the call with a status, unless it has ended already (the client's deadline passed or it
    cancelled: nobody is listening, and gRPC refuses a second status)."""
    if context.done():
        raise asyncio.CancelledError
    try:
        await context.abort(code, details)
    except grpc.aio.AbortError:  # how an abort unwinds the handler
        raise
    except Exception:  # noqa: BLE001 - the call ended under us (gRPC cannot send the status): the same as above
        raise asyncio.CancelledError from None


def _guarded(method: Callable) -> Callable:
    """A unary handler that always ends with a status: a fault's own code, INVALID_ARGUMENT for a
    message that does not parse, INTERNAL (logged) for anything unexpected."""

    async def handler(request, context):
        try:
            if isinstance(request, Undecodable):
                raise InvalidArgument(request.message)
            return await method(request, context)
        except RuntimeFault as exc:
            await _abort(context, status_code(exc), str(exc))
        except (grpc.aio.AbortError, asyncio.CancelledError):  # an abort already made, or the call is gone
            raise
        except Exception as exc:
            log.exception("%s failed", getattr(method, "__name__", "a call"))
            await _abort(context, grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return handler


def _infer_response(response: pb.ModelInferResponse | bytes) -> bytes:
    """A response, or one already serialised (another frontend's answer to a frame forwarded to it)."""
    return response if isinstance(response, bytes) else response.SerializeToString()


def handlers(servicer: TritonServicer) -> dict[str, grpc.RpcMethodHandler]:
    """The service's methods that the servicer implements (others answer UNIMPLEMENTED), each with a
    request decoder that never raises (see :class:`Undecodable`)."""
    out = {}
    for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        if m.name not in vars(TritonServicer):
            continue
        decode = decode_infer if m.input_type.name == "ModelInferRequest" else _decoder(getattr(pb, m.input_type.name))
        encode = (_infer_response if m.output_type.name == "ModelInferResponse"
                  else getattr(pb, m.output_type.name).SerializeToString)
        method = getattr(servicer, m.name)
        if m.client_streaming and m.server_streaming:
            out[m.name] = grpc.stream_stream_rpc_method_handler(method, request_deserializer=decode,
                                                                response_serializer=encode)
        else:
            out[m.name] = grpc.unary_unary_rpc_method_handler(_guarded(method), request_deserializer=decode,
                                                              response_serializer=encode)
    return out


async def readiness_health(plane: FrontendDataPlane) -> health.aio.HealthServicer:
    """The standard health service of a frontend: "" is SERVING exactly when ServerReady is true (a
    readiness probe), LIVENESS whenever the process runs (liveness and startup probes)."""
    checker = health.aio.HealthServicer()
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    await checker.set("", serving if plane.ready else not_serving)
    await checker.set(LIVENESS, serving)
    plane.on_ready = lambda ready: asyncio.ensure_future(checker.set("", serving if ready else not_serving))
    return checker


async def start(plane: FrontendDataPlane, port: int, host: str = "127.0.0.1", tls: TlsFiles | None = None,
                checker: health.aio.HealthServicer | None = None) -> tuple[grpc.aio.Server, int]:
    """Serve clients on host:port (0: any free port); with `tls`, over server TLS (clients need no
    certificate: they are users, not peers of the control plane). `checker`: the plane's
    :func:`readiness_health`, when another server (a plaintext health port) serves it too."""
    server, bound = aio_server(host, port, tls, client_auth=False, options=client_port_options(plane.frame_shape))
    methods = handlers(TritonServicer(plane))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
    if hasattr(server, "add_registered_method_handlers"):  # grpc >= 1.63: the faster registered path
        server.add_registered_method_handlers(SERVICE, methods)
    health_pb2_grpc.add_HealthServicer_to_server(checker or await readiness_health(plane), server)
    await server.start()
    return server, bound
