"""`harpagon frontend`: the Triton-protocol frontend as its own process, fed by a controller.

It watches the controller's routing table (a long-lived gRPC stream, re-opened if it breaks) and
reports each app's frame rate and each module's fan-out every second, so the controller can re-plan
when they move.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable

import grpc
from prometheus_client import CollectorRegistry

from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.peers import Peers
from harpagon.runtime.frontend.servicer import readiness_health, start
from harpagon.runtime.frontend.stats import FanoutCounts
from harpagon.runtime.lifecycle import until_stopped
from harpagon.runtime.logs import banner
from harpagon.runtime.metrics import FrontendMetrics, serve_metrics
from harpagon.runtime.traces import Tracing
from harpagon.runtime.wire.certmetrics import watch_certificates
from harpagon.runtime.wire.clients import GrpcWorkerClient
from harpagon.runtime.wire.routes import from_proto
from harpagon.runtime.wire.rpc import aio_channel, health_server
from harpagon.runtime.wire.tls import TlsFiles
from harpagon.v1 import controller_pb2 as cpb
from harpagon.v1 import controller_pb2_grpc as crpc

log = logging.getLogger("harpagon.frontend")

#: How often frontends report rates (Nexus's beacon is 1 s).
BEACON_S = 1.0


Report = Callable[[dict[str, float], float, list[float], FanoutCounts], Awaitable[None]]


async def rate_beacon(plane: FrontendDataPlane, report: Report, period_s: float = BEACON_S) -> None:
    """Every period, the frames each app was offered since the last one (admitted or refused), per
    second, the hop overheads measured since (the controller calibrates plans with them), and each
    module's fan-out since (the controller re-plans when it leaves the planned scale)."""
    last = {app: c.offered for app, c in plane.counters.items()}
    loop = asyncio.get_running_loop()
    then = loop.time()
    while True:
        await asyncio.sleep(period_s)
        now = loop.time()
        frames = {app: c.offered for app, c in plane.counters.items()}
        rates = {app: (n - last.get(app, 0)) / (now - then) for app, n in frames.items()}
        last, then = frames, now
        try:
            await report(rates, period_s, plane.take_hops(), plane.take_fanout())
        except grpc.aio.AioRpcError as exc:
            log.warning("cannot report rates: %s", exc.code().name)


async def run_frontend(controller: str, host: str, port: int, metrics_port: int | None,
                       frame_shape: tuple[int, int, int], tls: TlsFiles | None = None,
                       client_tls: TlsFiles | None = None, health_port: int | None = None,
                       advertise: str | None = None, frontend_id: str | None = None,
                       tracing: Tracing | None = None) -> None:
    """`tls` authenticates this frontend to the controller and to workers (mutual TLS);
    `client_tls` is plain server TLS on the client-facing Triton port. `advertise` is where the other
    frontends forward frames to (default: host and port; a wildcard host: this machine's name)."""
    registry = CollectorRegistry()
    watch_certificates(registry, "frontend", tls)
    me = frontend_id or f"frontend-{uuid.uuid4().hex[:6]}"
    plane = FrontendDataPlane(None, frame_shape, FrontendMetrics(registry), client=GrpcWorkerClient(tls),
                              frontend_id=me, peers=Peers(client_tls), tracing=tracing)
    # the metrics port first: a port in use stops the start before any server runs
    metrics = serve_metrics(registry, metrics_port, host) if metrics_port is not None else None
    at = metrics.server_port if metrics is not None else None
    checker = await readiness_health(plane)  # one health service, on the Triton port and the probes' port
    try:
        server, bound = await start(plane, port, host, tls=client_tls, checker=checker)
    except BaseException:  # the Triton port in use: nothing of this frontend keeps running
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        raise
    probes = None
    if health_port is not None:
        probes, health_at = health_server(host, health_port, checker)
        await probes.start()
    address = advertise or f"{socket.gethostname() if host in ('0.0.0.0', '::', '') else host}:{bound}"
    channel = aio_channel(controller, tls, "controller")
    stub = crpc.ControllerStub(channel)

    async def watch() -> None:
        while True:
            try:
                async for routes in stub.WatchRoutes(cpb.WatchRoutesRequest(frontend_id=me, address=address)):
                    table, refused = from_proto(routes)
                    await plane.update(table, refused)
                    log.info("routes %d: apps %s%s", table.version, sorted(table.apps),
                             f", refused {sorted(refused)}" if refused else "")
            except grpc.aio.AioRpcError as exc:
                log.warning("controller %s: %s; retrying", controller, exc.code().name)
            await asyncio.sleep(1.0)

    async def report(rates: dict[str, float], window: float, hops: list[float], fanout: FanoutCounts) -> None:
        await stub.ReportRates(cpb.RatesReport(frontend_id=me, app_rates=rates, window_s=window, hop_overhead_ms=hops,
                                              fanout=[cpb.ModuleFanout(app=app, module=module, frames=f, requests=r)
                                                      for (app, module), (f, r) in fanout.items()]), timeout=5)

    tasks = [asyncio.ensure_future(watch()), asyncio.ensure_future(rate_beacon(plane, report))]
    banner(f"frontend listening on {host}:{bound} (Triton gRPC{', TLS' if client_tls else ''}; id {me}, "
           f"peers forward to {address})"
           + (f", metrics on http://{host}:{at}/metrics" if at is not None else "")
           + (f", health on {host}:{health_at}" if probes is not None else ""), "harpagon.frontend",
           address=f"{host}:{bound}", id=me, metrics_port=at, health_port=health_at if probes is not None else None)
    await until_stopped()
    for t in tasks:
        t.cancel()
    await server.stop(5)
    if probes is not None:
        await probes.stop(0)
    await plane.close()
    await channel.close()
