"""The worker's gRPC server: a thin servicer over :class:`WorkerDataPlane`, GPU metrics through
nvidia-ml-py when there is a GPU, and registration with the controller plus heartbeats."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from harpagon.runtime.logs import banner
from harpagon.runtime.metrics import WorkerMetrics, serve_metrics
from harpagon.runtime.wire.errors import InvalidArgument
from harpagon.runtime.wire.frames import EncodedFrame
from harpagon.runtime.wire.modules import ModuleSpec, config_to_proto
from harpagon.runtime.wire.rpc import abort_on_fault, health_server, sync_channel, thread_server
from harpagon.runtime.wire.tensors import from_numpy, to_numpy
from harpagon.runtime.wire.tls import TlsFiles
from harpagon.runtime.worker import registry
from harpagon.runtime.worker.data_plane import WorkerDataPlane
from harpagon.v1 import controller_pb2 as cpb
from harpagon.v1 import controller_pb2_grpc as crpc
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc

log = logging.getLogger("harpagon.worker")


def _registry_shape(model: str) -> tuple[int, ...]:
    return registry.entry(model).input


def _nvml_handle(pynvml: Any, index: int) -> Any:
    """NVML's handle of CUDA device `index`. NVML numbers every GPU of the machine, CUDA only the visible
    ones (CUDA_VISIBLE_DEVICES=2,3 makes NVML's 2 CUDA's 0), so the device is found by its UUID, which
    both share; by index only when torch cannot say."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    except Exception as exc:  # no torch (an emulated image), an old torch, a MIG slice NVML names otherwise
        log.debug("GPU %d found by index, not UUID: %s", index, exc)
        return pynvml.nvmlDeviceGetHandleByIndex(index)


class GpuMetrics:
    """GPU utilisation and memory through NVML, labelled by the GPU's UUID as Triton labels them; no
    figures (so no series at all, not zeros) on a machine without a GPU."""

    def __init__(self, device: str):
        self.handle: Any = None
        self.uuid = ""
        if not device.startswith("cuda"):
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            self.handle = _nvml_handle(pynvml, index)
            uuid = pynvml.nvmlDeviceGetUUID(self.handle)
            self.uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
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
            metrics.gpu_utilization.labels(gpu.uuid).set(figures["gpu_utilization"])
            metrics.gpu_memory_used.labels(gpu.uuid).set(figures["gpu_memory_used_bytes"])
        time.sleep(2.0)


class WorkerServicer(rpc.WorkerServicer):
    def __init__(self, plane: WorkerDataPlane):
        self.plane = plane
        self.metrics = GpuMetrics(plane.executor.device)

    def ApplyConfig(self, request: pb.ApplyConfigRequest, context: grpc.ServicerContext) -> pb.ApplyConfigResponse:
        with abort_on_fault(context):
            specs = [ModuleSpec.from_proto(m, _registry_shape) for m in request.config.modules]
            changed = self.plane.apply(request.config.version, specs)
            return pb.ApplyConfigResponse(version=self.plane.version, changed=changed)

    def Infer(self, request: pb.InferRequest, context: grpc.ServicerContext) -> pb.InferResponse:
        with abort_on_fault(context):
            remaining = context.time_remaining()  # the frontend always sets a deadline (without one: huge)
            deadline = time.monotonic() + remaining if remaining is not None else None
            if request.frames and request.HasField("input"):
                raise InvalidArgument(f"module {request.module!r}: a batch is `input` or `frames`, got both "
                                      f"({len(request.frames)} frames)")
            batch = ([EncodedFrame.from_proto(f) for f in request.frames] if request.frames
                     else to_numpy(request.input))
            result = self.plane.infer(request.module, batch, deadline)
            return pb.InferResponse(id=request.id, outputs=[from_numpy(o) for o in result.outputs],
                                    queue_ms=result.queue_ms, exec_ms=result.exec_ms, batch=result.batch,
                                    dummies=result.dummies,
                                    crops=[c.to_proto(child) for child, c in result.crops.items()],
                                    errors=[pb.ItemError(item=i, message=m) for i, m in sorted(result.errors.items())])

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthResponse:
        ex = self.plane.executor
        return pb.HealthResponse(ready=True, config_version=self.plane.version, device=ex.device,
                                 hardware=ex.hardware, emulated=ex.emulated)

    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsResponse:
        return pb.StatsResponse(modules=module_stats(self.plane), emulated=self.plane.executor.emulated,
                                **self.metrics.read())


def module_stats(plane: WorkerDataPlane, recent: dict[str, list[float]] | None = None,
                 recent_decode: dict[str, list[float]] | None = None) -> list[pb.ModuleStats]:
    """Cumulative counters per module, with `recent` execution times and `recent_decode` decode times
    per frame (heartbeats carry them)."""
    recent, recent_decode = recent or {}, recent_decode or {}
    return [pb.ModuleStats(module=name, recent_exec_ms=recent.get(name, ()), recent_decode_ms=recent_decode.get(name, ()),
                           **vars(c))
            for name, c in sorted(plane.counters().items())]


def start(plane: WorkerDataPlane, port: int, host: str = "127.0.0.1", threads: int = 32,
          unix_socket: str | None = None, tls: TlsFiles | None = None) -> tuple[grpc.Server, str]:
    """Start the Worker service on host:port (0 picks a free one) or on a Unix socket (a worker on the
    frontend's host: hops are a little faster than over loopback TCP, docs/benchmarks/live.md);
    returns the server and the address peers dial. With `tls`, only the controller may configure
    it and only frontends may send it batches."""
    server, address = thread_server(host, port, threads, unix_socket, tls)
    rpc.add_WorkerServicer_to_server(WorkerServicer(plane), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)  # SERVING
    server.start()
    return server, address


#: A heartbeat the controller has not answered in this long failed (it judges workers after 3 missed).
HEARTBEAT_TIMEOUT_S = 2.0
#: Registration is retried this often while the controller is unreachable.
RETRY_S = 0.25


class ControllerLink:
    """Registers with the controller and heartbeats until stopped; registers again when forgotten,
    unless it is leaving (:meth:`leave`)."""

    def __init__(self, controller: str, address: str, plane: WorkerDataPlane, worker_id: str | None = None,
                 tls: TlsFiles | None = None):
        self.controller = controller
        self.address = address
        self.plane = plane
        self.worker_id = worker_id or f"worker-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.channel = sync_channel(controller, tls, "controller")
        self.stub = crpc.ControllerStub(self.channel)
        self._stop = threading.Event()
        self._leaving = threading.Event()
        self._left = threading.Event()
        """The controller let this worker go (it forgot it while it was leaving)."""
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _register(self) -> float:
        ex = self.plane.executor
        # what it runs goes along: a restarted controller adopts it rather than unloading routed modules
        running = config_to_proto(self.plane.version, list(self.plane.specs))
        reply = self.stub.Register(cpb.RegisterRequest(worker_id=self.worker_id, address=self.address,
                                                      hardware=ex.hardware, device=ex.device,
                                                      emulated=ex.emulated, running=running), timeout=5)
        log.info("registered with the controller at %s as %s", self.controller, self.worker_id)
        return max(0.05, reply.heartbeat_ms / 1000.0)

    def _loop(self) -> None:
        period = None
        down_since: float | None = None  # the controller unreachable since (monotonic): said once, then when back
        while not self._stop.is_set():
            try:
                if period is None:
                    period = self._register()
                    if self._leaving.is_set():  # a restarted controller must not plan with it again
                        self._say_leaving()
                elif not self.stub.Heartbeat(cpb.HeartbeatRequest(worker_id=self.worker_id,
                                                                 config_version=self.plane.version,
                                                                 modules=module_stats(
                                                                     self.plane, self.plane.take_recent(),
                                                                     self.plane.take_recent_decode())),
                                             timeout=HEARTBEAT_TIMEOUT_S).known:
                    if self._leaving.is_set():  # let go: nothing routes here any more
                        self._left.set()
                        return
                    period = None
                    continue
                if down_since is not None:
                    log.info("controller %s reachable again after %.1f s", self.controller,
                             time.monotonic() - down_since)
                    down_since = None
            except grpc.RpcError as exc:
                if down_since is None:  # once per outage: a retry every RETRY_S would flood the log
                    log.warning("controller %s unreachable: %s; retrying every %g s", self.controller, exc.code(),
                                RETRY_S)
                    down_since = time.monotonic()
                else:
                    log.debug("controller %s still unreachable: %s", self.controller, exc.code())
                period = None
            # after a failure, try again soon: a restarted controller plans once every live worker is back
            self._stop.wait(period or RETRY_S)

    def _say_leaving(self) -> bool:
        """Tell the controller this worker is going away; True when it may stop at once."""
        done = self.stub.Leave(cpb.LeaveRequest(worker_id=self.worker_id), timeout=HEARTBEAT_TIMEOUT_S).done
        if done:
            self._left.set()
        return done

    def leave(self, timeout_s: float) -> bool:
        """Going away: tell the controller, then wait (up to `timeout_s`) until it has re-planned without
        this worker and pushed it an empty configuration, or let it go. Heartbeats go on meanwhile, so
        that it is not evicted while it still serves. True when it was let go in time."""
        self._leaving.set()
        end = time.monotonic() + timeout_s
        told = warned = False
        since = self.plane.version  # drained: a newer configuration than this, with nothing in it
        while time.monotonic() < end and not self._left.is_set():
            if not told:
                try:
                    told = True
                    since = self.plane.version
                    if self._say_leaving():
                        break
                    log.info("leaving: waiting up to %.0f s for the controller to move %d modules elsewhere",
                             end - time.monotonic(), len(self.plane.specs))
                except grpc.RpcError as exc:  # unreachable: the heartbeat loop says it again once registered
                    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # a controller that cannot re-plan around it
                        log.warning("leaving: controller %s does not know Leave; stopping without it", self.controller)
                        return False
                    told = False
                    if not warned:  # once: a retry every RETRY_S would flood the log
                        warned = True
                        log.warning("leaving: controller %s unreachable (%s); serving on meanwhile, retrying every "
                                    "%g s", self.controller, exc.code(), RETRY_S)
            if self._drained(told, since):  # the empty configuration came: nothing routes here
                break
            self._left.wait(0.05 if told else RETRY_S)
        gone = self._left.is_set() or self._drained(told, since)
        if not gone:
            log.warning("leaving: the controller did not move this worker's modules within %.0f s; stopping anyway",
                        timeout_s)
        return gone

    def _drained(self, told: bool, since: int) -> bool:
        return told and self.plane.version > since and not self.plane.specs

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.channel.close()


def serve(plane: WorkerDataPlane, port: int, host: str, controller: str | None, grace_s: float = 10.0,
          metrics_port: int | None = None, unix_socket: str | None = None, tls: TlsFiles | None = None,
          advertise: str | None = None, health_port: int | None = None, worker_id: str | None = None,
          drain_timeout_s: float = 60.0) -> None:
    """Serve until SIGTERM or SIGINT. SIGTERM (a scale-down, a rolling update, a node drain) leaves
    first: the controller re-plans without this worker (up to `drain_timeout_s`), so that no frame is
    lost; SIGINT (Ctrl-C, which reaches a whole `harpagon serve` at once, or `serve` stopping its
    workers once its frontend has drained) does not. Then batches in flight finish (up to `grace_s`).
    The worker registers as `advertise` (where peers reach it; default: where it listens)."""
    server, address = start(plane, port, host, unix_socket=unix_socket, tls=tls)
    probes = None
    if health_port is not None:
        probes, at = health_server(host, health_port, health.HealthServicer(), asynchronous=False)
        probes.start()
        log.info("health (plaintext, for probes) on %s:%d", host, at)
    if metrics_port is not None and plane.metrics is not None:
        at = serve_metrics(plane.metrics.registry, metrics_port, host).server_port
        plane.metrics.emulated.set(1 if plane.executor.emulated else 0)
        gpu = GpuMetrics(plane.executor.device)
        if gpu.handle is not None:
            threading.Thread(target=_gpu_gauges, args=(gpu, plane.metrics), daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", host, at)
    ex = plane.executor
    log.info("worker on %s, device %s (hardware %s)%s", address, ex.device, ex.hardware,
             " [EMULATED: batches sleep their profiled latency]" if ex.emulated else "")
    banner(f"worker listening on {address} device={ex.device} hardware={ex.hardware}"
           f"{' EMULATED' if ex.emulated else ''}", "harpagon.worker", address=address, device=ex.device,
           hardware=ex.hardware, emulated=ex.emulated)
    link = ControllerLink(controller, advertise or address, plane, worker_id, tls=tls) if controller else None
    if link:
        link.start()
    stop = threading.Event()
    got: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _: (got.append(signum), stop.set()))
    stop.wait()
    if link and got[0] == signal.SIGTERM:
        link.leave(drain_timeout_s)
    log.info("draining")
    if link:
        link.stop()
    server.stop(grace_s).wait()
    if probes is not None:
        probes.stop(0)
    plane.close()
