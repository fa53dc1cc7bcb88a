"""`harpagon controller`: the controller as its own process, for workers and frontends elsewhere."""

from __future__ import annotations

from grpc_health.v1 import health, health_pb2_grpc
from prometheus_client import CollectorRegistry

from harpagon.config.schema import ServeConfig, WorkerGroup, Workload
from harpagon.runtime.controller.config import ControllerConfig
from harpagon.runtime.controller.controller import Controller, settings_of
from harpagon.runtime.controller.servicer import ControllerServicer, RoutesHub
from harpagon.runtime.lifecycle import until_stopped
from harpagon.runtime.logs import banner
from harpagon.runtime.metrics import ControllerMetrics, serve_metrics
from harpagon.runtime.wire.certmetrics import watch_certificates
from harpagon.runtime.wire.clients import GrpcWorkerClient
from harpagon.runtime.wire.rpc import aio_server, health_server
from harpagon.runtime.wire.tls import TlsFiles
from harpagon.v1 import controller_pb2_grpc as crpc

#: Remote frontends cannot say when batches opened under old routes are done: a re-plan waits this
#: long (s) between switching routes and unloading the modules they no longer use.
DRAIN_S = 2.0


async def run_controller(workload: Workload, host: str, port: int, metrics_port: int | None,
                         tls: TlsFiles | None = None, health_port: int | None = None) -> None:
    """With `tls`, only workers may register and heartbeat and only frontends may watch routes and
    report rates; the controller configures workers under its own certificate."""
    s = workload.serve or ServeConfig(workers=(WorkerGroup(device="cpu"),))  # settings and shapes only
    registry = CollectorRegistry()
    watch_certificates(registry, "controller", tls)
    hub = RoutesHub()
    controller = Controller(workload, settings_of(s), s.input_shape, hub.push,
                            ControllerConfig(drain_s=DRAIN_S), metrics=ControllerMetrics(registry),
                            client=GrpcWorkerClient(tls))
    server, bound = aio_server(host, port, tls)
    crpc.add_ControllerServicer_to_server(ControllerServicer(controller, hub), server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    await server.start()
    probes = None
    if health_port is not None:
        probes, health_at = health_server(host, health_port, checker)
        await probes.start()
    at = serve_metrics(registry, metrics_port, host).server_port if metrics_port is not None else None
    controller.start()
    banner(f"controller listening on {host}:{bound}{' (mutual TLS)' if tls else ''}"
           + (f", metrics on http://{host}:{at}/metrics" if at is not None else "")
           + (f", health on {host}:{health_at}" if probes is not None else ""), "harpagon.controller",
           address=f"{host}:{bound}", tls=bool(tls), metrics_port=at, health_port=health_at if probes is not None else None)
    await until_stopped()
    await controller.stop()
    await server.stop(2)
    if probes is not None:
        await probes.stop(0)
