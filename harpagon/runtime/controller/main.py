"""`harpagon controller`: the controller as its own process, for workers and frontends elsewhere."""

from __future__ import annotations

from grpc_health.v1 import health, health_pb2_grpc
from prometheus_client import CollectorRegistry

from harpagon.config.schema import ServeConfig, WorkerGroup, Workload
from harpagon.runtime.controller.controller import Controller, settings_of
from harpagon.runtime.controller.servicer import ControllerServicer, RoutesHub
from harpagon.runtime.lifecycle import until_stopped
from harpagon.runtime.metrics import ControllerMetrics, serve_metrics
from harpagon.runtime.wire.rpc import aio_server
from harpagon.v1 import worker_pb2_grpc as rpc


async def run_controller(workload: Workload, host: str, port: int, metrics_port: int | None) -> None:
    s = workload.serve or ServeConfig(workers=(WorkerGroup(device="cpu"),))  # settings and shapes only
    registry = CollectorRegistry()
    hub = RoutesHub()
    controller = Controller(workload, settings_of(s), tuple(s.input_shape), hub.push,
                            metrics=ControllerMetrics(registry))
    server, bound = aio_server(host, port)
    rpc.add_ControllerServicer_to_server(ControllerServicer(controller, hub), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    await server.start()
    at = serve_metrics(registry, metrics_port, host) if metrics_port is not None else None
    controller.start()
    print(f"controller listening on {host}:{bound}"
          + (f", metrics on http://{host}:{at}/metrics" if at is not None else ""), flush=True)
    await until_stopped()
    await controller.stop()
    await server.stop(2)
