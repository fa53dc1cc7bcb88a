"""Serving-process CPU per frame by frame kind: raw UINT8 frames against JPEG frames, both forwarded to
the worker as sent (which decodes and resizes them), side by side in one run.

A client process sends ModelInfer requests over gRPC on 127.0.0.1 to a frontend server in this
process (the Triton servicer over the data plane: parsing, admission, the frame's requests,
batch-aware dispatch, the reply). Its worker is a stand-in in the same process that serialises each
batch as the gRPC worker client does and answers at once (no device, no second hop), so the CPU this
process spends is the frontend's own per frame, gRPC included. Usage:

    python scripts/bench_frame_kinds.py [--frames 400] [--in-flight 4] [--input 3,224,224]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.servicer import start
from harpagon.runtime.wire.clients import WorkerReply
from harpagon.runtime.wire.frames import encode_frame, frames_request, synthetic_frame
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable
from harpagon.runtime.wire.tensors import from_numpy
from harpagon.v1 import worker_pb2 as wpb


class SerialisingWorker:
    """Serialises each batch as the gRPC worker client does, and answers a classifier's zeros at once."""

    async def infer(self, address, module, batch, timeout_s=None) -> WorkerReply:
        if isinstance(batch, np.ndarray):
            wpb.InferRequest(module=module, input=from_numpy(batch)).SerializeToString()
        else:
            frames_request(module, batch)
        return WorkerReply([np.zeros((len(batch), 1000), np.float32)], 0.0, 0.0)

    async def close(self) -> None:
        pass


def request(kind: str, frame: np.ndarray) -> bytes:
    r = pb.ModelInferRequest(model_name="cam")
    if kind == "raw":
        r.inputs.append(pb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=list(frame.shape)))
        r.raw_input_contents.append(frame.tobytes())
    else:
        data = encode_frame(frame, "jpeg").data
        r.inputs.append(pb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="BYTES", shape=[1]))
        r.raw_input_contents.append(len(data).to_bytes(4, "little") + data)
    return r.SerializeToString()


async def serve_frames(kind: str, hw: tuple[int, int], frames: int, shape: tuple[int, int, int],
                       in_flight: int) -> tuple[float, float, int]:
    """Serving-process CPU ms per frame and frames/s, with a client process sending `frames` requests
    (`in_flight` at a time) over gRPC on 127.0.0.1."""
    app = app_route(App.model_validate({"name": "cam", "rate": 1e4, "slo_ms": 1e4,
                                        "modules": [{"name": "m", "model": "resnet50"}]}))
    route = ModuleRoute("m", shape, (TupleSpec(1, 1, 1e4, 0.0, 0.0),), (("w",),), ("m@b1",))
    plane = FrontendDataPlane(RoutingTable(1, "batch-aware", {"cam": app}, {("cam", "m"): route}),
                              frame_shape=(*hw, 3), client=SerialisingWorker())
    server, port = await start(plane, 0)
    try:
        cmd = [sys.executable, __file__, "--client", str(port), kind, str(hw[0]), str(hw[1]), str(frames),
               str(in_flight)]
        warm = await asyncio.create_subprocess_exec(*cmd[:5], str(hw[0]), str(hw[1]), "20", str(in_flight),
                                                    stdout=asyncio.subprocess.DEVNULL)
        await warm.wait()
        cpu, wall = time.process_time(), time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        ok, size = (int(x) for x in out.split())
        if ok != frames:
            raise RuntimeError(f"{ok} of {frames} frames answered OK")
    finally:
        await server.stop(None)
        await plane.close()
    return cpu / frames * 1000.0, frames / wall, size


def client(port: int, kind: str, h: int, w: int, frames: int, in_flight: int) -> None:
    """Send `frames` copies of one frame request, `in_flight` at a time; print how many were OK and the
    request's size."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    data = request(kind, synthetic_frame(h, w))
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20),
                                                              ("grpc.max_receive_message_length", 64 << 20)]) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer", request_serializer=None,
                              response_deserializer=pb.ModelInferResponse.FromString)
        service_pb2_grpc  # noqa: B018 - the service's path is the one its stubs use
        ok = 0
        pending = []
        for i in range(frames):
            pending.append(call.future(data, timeout=30))
            if len(pending) >= in_flight or i == frames - 1:
                for f in pending:
                    try:
                        f.result()
                        ok += 1
                    except grpc.RpcError:
                        pass
                pending = []
    print(ok, len(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--input", default="3,224,224", help="the module's input C,H,W")
    ap.add_argument("--client", nargs=6, metavar=("PORT", "KIND", "H", "W", "FRAMES", "IN_FLIGHT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        port, kind, h, w, n, k = args.client
        client(int(port), kind, int(h), int(w), int(n), int(k))
        return
    shape = tuple(int(x) for x in args.input.split(","))
    print(f"serving-process CPU per frame over gRPC on 127.0.0.1, module input {list(shape)}, "
          f"{args.frames} frames each, {args.in_flight} in flight, worker answering at once (no device)")
    print("| frame | kind | request bytes | server CPU ms per frame | frames/s |\n|---|---|---:|---:|---:|")
    for hw in ((8, 8), (480, 640), (720, 1280)):
        for kind in ("raw", "jpeg"):
            ms, rate, size = asyncio.run(serve_frames(kind, hw, args.frames, shape, args.in_flight))
            print(f"| {hw[0]}x{hw[1]} | {kind} | {size:,} | {ms:.2f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
