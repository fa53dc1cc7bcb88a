"""A thin Triton / KServe v2 gRPC servicer (`inference.GRPCInferenceService`) over the frontend's
data plane. Each application is a model: its input `FRAME` is one UINT8 [H, W, 3] frame; its outputs
are, per sink module and per output of that module, `<module>_<i>` with the module's requests for
the frame as the first dimension. Stubs are those shipped in `tritonclient`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as rpc

from harpagon import __version__
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.wire.errors import InvalidArgument, RuntimeFault
from harpagon.runtime.wire.rpc import aio_server, status_code

INPUT = "FRAME"
EXTENSIONS = ["model_configuration", "statistics"]
_TRITON_TYPES = {"uint8": "UINT8", "int64": "INT64", "float32": "FP32", "float16": "FP16", "int32": "INT32",
                 "float64": "FP64"}


class TritonServicer(rpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: FrontendDataPlane):
        self.plane = plane

    async def _abort(self, context: grpc.aio.ServicerContext, exc: RuntimeFault) -> None:
        await context.abort(status_code(exc), str(exc))

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

    async def _known(self, name: str, context) -> None:
        """Metadata is answered for any configured app; otherwise the status `infer` would give."""
        if self.plane.definition(name) is None:
            try:
                self.plane.check(name)
            except RuntimeFault as exc:
                await self._abort(context, exc)

    async def ModelMetadata(self, request, context):
        await self._known(request.name, context)
        return pb.ModelMetadataResponse(
            name=request.name, versions=["1"], platform="harpagon",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name=INPUT, datatype="UINT8",
                                                           shape=list(self.plane.frame_shape))],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name=f"{s}_0", datatype="FP32", shape=[-1, -1])
                     for s in self.plane.sinks(request.name)],
        )

    async def ModelConfig(self, request, context):
        await self._known(request.name, context)
        config = mc.ModelConfig(
            name=request.name, platform="harpagon", max_batch_size=0,
            input=[mc.ModelInput(name=INPUT, data_type=mc.TYPE_UINT8, dims=list(self.plane.frame_shape))],
            output=[mc.ModelOutput(name=f"{s}_0", data_type=mc.TYPE_FP32, dims=[-1, -1])
                    for s in self.plane.sinks(request.name)],
        )
        return pb.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request, context):
        stats = []
        for name in sorted(self.plane.table.apps):
            if request.name and request.name != name:
                continue
            c = self.plane.counters[name]
            ok = pb.StatisticDuration(count=c.success, ns=c.success_ns)
            counted = pb.StatisticDuration(count=c.success)  # the stages perf_analyzer expects, all counted
            stats.append(pb.ModelStatistics(
                name=name, version="1", inference_count=c.success, execution_count=c.success,
                inference_stats=pb.InferStatistics(success=ok, fail=pb.StatisticDuration(count=c.failed + c.dropped),
                                                   queue=counted, compute_input=counted, compute_infer=ok,
                                                   compute_output=counted)))
        return pb.ModelStatisticsResponse(model_stats=stats)

    # --- inference ----------------------------------------------------------------------------

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        frame = self._frame(request)
        outputs = await self.plane.infer(request.model_name, frame)
        response = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for module, per_request in outputs.items():
            for i in range(len(per_request[0]) if per_request else 1):
                arr = (np.stack([r[i] for r in per_request]) if per_request
                       else np.zeros((0, 0), np.float32))
                response.outputs.append(pb.ModelInferResponse.InferOutputTensor(
                    name=f"{module}_{i}", datatype=_TRITON_TYPES[arr.dtype.name], shape=list(arr.shape)))
                response.raw_output_contents.append(np.ascontiguousarray(arr).tobytes())
        return response

    def _frame(self, request: pb.ModelInferRequest) -> np.ndarray:
        if len(request.inputs) != 1 or request.inputs[0].name != INPUT:
            raise InvalidArgument(f"expected one input named {INPUT!r}, got {[i.name for i in request.inputs]}")
        spec = request.inputs[0]
        if spec.datatype != "UINT8":
            raise InvalidArgument(f"input {INPUT!r} must be UINT8, got {spec.datatype}")
        shape = tuple(spec.shape)
        if len(shape) != 3 or shape[2] != 3 or any(d < 1 for d in shape):
            raise InvalidArgument(f"input {INPUT!r} must be one [H, W, 3] frame, got {list(shape)}")
        size = shape[0] * shape[1] * shape[2]
        if request.raw_input_contents:
            frame = np.frombuffer(request.raw_input_contents[0], np.uint8)
        else:  # typed contents: UINT8 travels as uint32 values
            frame = np.asarray(spec.contents.uint_contents, dtype=np.uint32)
            if frame.size and frame.max() > 255:
                raise InvalidArgument(f"input {INPUT!r} holds values above 255")
            frame = frame.astype(np.uint8)
        if frame.size != size:
            raise InvalidArgument(f"{frame.size} values do not fill a UINT8 frame of shape {list(shape)}")
        return frame.reshape(shape)

    async def ModelInfer(self, request, context):
        try:
            return await self._infer(request)
        except RuntimeFault as exc:
            await self._abort(context, exc)

    async def ModelStreamInfer(self, request_iterator: AsyncIterator, context) -> AsyncIterator:
        replies: asyncio.Queue = asyncio.Queue()
        pending: set[asyncio.Task] = set()

        async def one(request: pb.ModelInferRequest) -> None:
            try:
                replies.put_nowait(pb.ModelStreamInferResponse(infer_response=await self._infer(request)))
            except Exception as exc:  # every request of a stream gets a response; the stream goes on
                message = str(exc) if isinstance(exc, RuntimeFault) else f"internal error: {type(exc).__name__}: {exc}"
                replies.put_nowait(pb.ModelStreamInferResponse(
                    error_message=message, infer_response=pb.ModelInferResponse(id=request.id)))

        async def read() -> None:
            async for request in request_iterator:
                task = asyncio.ensure_future(one(request))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*list(pending))
            replies.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:
            reader.cancel()


async def start(plane: FrontendDataPlane, port: int, host: str = "127.0.0.1") -> tuple[grpc.aio.Server, int]:
    server, bound = aio_server(host, port)
    rpc.add_GRPCInferenceServiceServicer_to_server(TritonServicer(plane), server)
    # the standard health service says SERVING exactly when ServerReady is true (a readiness probe)
    checker = health.aio.HealthServicer()
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    await checker.set("", serving if plane.ready else not_serving)
    plane.on_ready = lambda ready: asyncio.ensure_future(checker.set("", serving if ready else not_serving))
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    await server.start()
    return server, bound
