"""The worker's gRPC server: a thin servicer over :class:`WorkerDataPlane`, GPU metrics through
nvidia-ml-py when there is a GPU, and registration with the controller plus heartbeats."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from harpagon.runtime.errors import RuntimeFault
from harpagon.runtime.metrics import WorkerMetrics, serve_metrics
from harpagon.runtime.tensors import from_numpy, to_numpy
from harpagon.runtime.worker.data_plane import WorkerDataPlane
from harpagon.runtime.worker.executor import ModuleSpec
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc

log = logging.getLogger("harpagon.worker")


@contextmanager
def _status(context: grpc.ServicerContext) -> Iterator[None]:
    """Answer a data-plane error with its status code and message (the worker keeps serving)."""
    try:
        yield
    except RuntimeFault as exc:
        context.abort(getattr(grpc.StatusCode, exc.code), str(exc))


class GpuMetrics:
    """GPU utilisation and memory through NVML; every figure is None on a machine without a GPU."""

    def __init__(self, device: str):
        self.handle: Any = None
        if not device.startswith("cuda"):
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:  # NVMLError_LibraryNotFound and friends: no figures, not an error
            log.info("no GPU metrics: %s", exc)

    def read(self) -> dict[str, float]:
        if self.handle is None:
            return {}
        import pynvml

        try:
            util = pynvml.nvmlDeviceGetUtilizationRates(self.handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(self.handle)
        except Exception:
            return {}
        return {"gpu_utilization": util.gpu / 100.0, "gpu_memory_used_bytes": mem.used,
                "gpu_memory_total_bytes": mem.total}


def _gpu_gauges(gpu: GpuMetrics, metrics: WorkerMetrics) -> None:
    while True:
        figures = gpu.read()
        if figures:
            metrics.gpu_utilization.set(figures["gpu_utilization"])
            metrics.gpu_memory_used.set(figures["gpu_memory_used_bytes"])
        time.sleep(2.0)


class WorkerServicer(rpc.WorkerServicer):
    def __init__(self, plane: WorkerDataPlane):
        self.plane = plane
        self.metrics = GpuMetrics(plane.executor.device)

    def ApplyConfig(self, request: pb.ApplyConfigRequest, context: grpc.ServicerContext) -> pb.ApplyConfigResponse:
        with _status(context):
            specs = [ModuleSpec.from_proto(m) for m in request.config.modules]
            changed = self.plane.apply(request.config.version, specs)
            return pb.ApplyConfigResponse(version=self.plane.version, changed=changed)

    def Infer(self, request: pb.InferRequest, context: grpc.ServicerContext) -> pb.InferResponse:
        with _status(context):
            result = self.plane.infer(request.module, to_numpy(request.input))
            return pb.InferResponse(id=request.id, outputs=[from_numpy(o) for o in result.outputs],
                                    queue_ms=result.queue_ms, exec_ms=result.exec_ms, batch=result.batch,
                                    dummies=result.dummies)

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthResponse:
        ex = self.plane.executor
        return pb.HealthResponse(ready=True, config_version=self.plane.version, device=ex.device,
                                 hardware=ex.hardware, emulated=ex.emulated)

    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsResponse:
        modules = [pb.ModuleStats(module=name, **vars(c)) for name, c in sorted(self.plane.counters().items())]
        return pb.StatsResponse(modules=modules, emulated=self.plane.executor.emulated, **self.metrics.read())


def start(plane: WorkerDataPlane, port: int, host: str = "127.0.0.1", threads: int = 32) -> tuple[grpc.Server, int]:
    """Start the Worker service; returns the server and the port it listens on (0 picks a free one)."""
    server = grpc.server(futures.ThreadPoolExecutor(threads, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", 256 << 20),
                                  ("grpc.max_send_message_length", 256 << 20)])
    rpc.add_WorkerServicer_to_server(WorkerServicer(plane), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)  # SERVING
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return server, bound


class ControllerLink:
    """Registers with the controller and heartbeats until stopped; registers again when forgotten."""

    def __init__(self, controller: str, address: str, plane: WorkerDataPlane, worker_id: str | None = None):
        self.controller = controller
        self.address = address
        self.plane = plane
        self.worker_id = worker_id or f"worker-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.channel = grpc.insecure_channel(controller)
        self.stub = rpc.ControllerStub(self.channel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _register(self) -> float:
        ex = self.plane.executor
        reply = self.stub.Register(pb.RegisterRequest(worker_id=self.worker_id, address=self.address,
                                                      hardware=ex.hardware, device=ex.device,
                                                      emulated=ex.emulated), timeout=5)
        log.info("registered with the controller at %s as %s", self.controller, self.worker_id)
        return max(0.05, reply.heartbeat_ms / 1000.0)

    def _loop(self) -> None:
        period = None
        while not self._stop.is_set():
            try:
                if period is None:
                    period = self._register()
                elif not self.stub.Heartbeat(pb.HeartbeatRequest(worker_id=self.worker_id,
                                                                 config_version=self.plane.version),
                                             timeout=5).known:
                    period = None
                    continue
            except grpc.RpcError as exc:
                log.warning("controller %s unreachable: %s", self.controller, exc.code())
                period = None
            self._stop.wait(period or 1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.channel.close()


def serve(plane: WorkerDataPlane, port: int, host: str, controller: str | None, grace_s: float = 10.0,
          metrics_port: int | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then let batches in flight finish (up to `grace_s`)."""
    server, bound = start(plane, port, host)
    if metrics_port is not None and plane.metrics is not None:
        at = serve_metrics(plane.metrics.registry, metrics_port, host)
        plane.metrics.emulated.set(1 if plane.executor.emulated else 0)
        gpu = GpuMetrics(plane.executor.device)
        if gpu.handle is not None:
            threading.Thread(target=_gpu_gauges, args=(gpu, plane.metrics), daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", host, at)
    ex = plane.executor
    log.info("worker on %s:%d, device %s (hardware %s)%s", host, bound, ex.device, ex.hardware,
             " [EMULATED: batches sleep their profiled latency]" if ex.emulated else "")
    print(f"worker listening on {host}:{bound} device={ex.device} hardware={ex.hardware}"
          f"{' EMULATED' if ex.emulated else ''}", flush=True)
    link = ControllerLink(controller, f"{host}:{bound}", plane) if controller else None
    if link:
        link.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("draining")
    if link:
        link.stop()
    server.stop(grace_s).wait()
    plane.close()
