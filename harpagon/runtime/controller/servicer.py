"""The controller's gRPC face: a thin servicer over :class:`Controller`, and the hub that streams
routing tables to remote frontends."""

from __future__ import annotations

import asyncio
import logging

import grpc

from harpagon.runtime.controller.assignment import WorkerInfo
from harpagon.runtime.controller.controller import Controller, RegistrationRefused
from harpagon.runtime.wire.errors import RuntimeFault
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.wire.routes import RoutingTable, to_proto
from harpagon.v1 import controller_pb2 as cpb
from harpagon.v1 import controller_pb2_grpc as crpc

log = logging.getLogger("harpagon.controller")


class RoutesHub:
    """Streams the routing table to remote frontends: the current one on connect, then each new one."""

    def __init__(self) -> None:
        self.current: cpb.Routes | None = None
        self.watchers: set[asyncio.Queue] = set()

    async def push(self, table: RoutingTable, refused: dict[str, str]) -> None:
        """Publish; the controller waits (`ControllerConfig.drain_s`) before unloading what old routes used."""
        self.current = to_proto(table, refused)
        for q in self.watchers:
            q.put_nowait(self.current)

    async def watch(self):
        q: asyncio.Queue = asyncio.Queue()
        if self.current is not None:
            q.put_nowait(self.current)
        self.watchers.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self.watchers.discard(q)


class ControllerServicer(crpc.ControllerServicer):
    def __init__(self, controller: Controller, hub: RoutesHub | None = None):
        self.controller = controller
        self.hub = hub
        self._watches: dict[str, int] = {}
        """Open route streams per frontend id (a frontend re-connecting may briefly hold two)."""

    async def WatchRoutes(self, request, context):
        if self.hub is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this controller pushes routes to an embedded frontend")
        me, address = request.frontend_id, request.address
        if len(me) > 256 or len(address) > 512:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "frontend_id (<= 256 chars) and address "
                                                                 "(<= 512 chars) too long")
        log.info("frontend %s watches routes%s", me, f" (it takes forwarded frames at {address})" if address else "")
        member = bool(me and address)  # one that takes no forwarded frames is not given apps of its own
        if member:
            self._watches[me] = self._watches.get(me, 0) + 1
            self.controller.frontend_joined(me, address)
        try:
            async for routes in self.hub.watch():
                yield routes
        finally:
            if member:
                self._watches[me] -= 1
                if not self._watches[me]:
                    del self._watches[me]
                    self.controller.frontend_left(me)

    async def ReportRates(self, request, context):
        self.controller.observe_rates(request.frontend_id, dict(request.app_rates), request.window_s or 1.0)  # unset: 1 s
        self.controller.observe_hops(list(request.hop_overhead_ms))
        fanout: dict[tuple[str, str], tuple[int, int]] = {}
        for f in request.fanout:  # a module named twice: its counts add up
            frames, requests = fanout.get((f.app, f.module), (0, 0))
            fanout[(f.app, f.module)] = (frames + f.frames, requests + f.requests)
        self.controller.observe_fanout(request.frontend_id, fanout)
        return cpb.RatesReply()

    async def Register(self, request, context):
        if not request.worker_id or not request.address or len(request.worker_id) > 256 or len(request.address) > 512:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"a registration needs a worker_id (<= 256 chars) and an address (<= 512 chars), "
                                f"got {request.worker_id[:300]!r} at {request.address[:600]!r}")
        try:
            running = tuple(ModuleSpec.from_proto(m, lambda model: ()) for m in request.running.modules)
        except RuntimeFault as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"running configuration: {exc}")
        try:
            self.controller.register(WorkerInfo(request.worker_id, request.address, request.hardware,
                                                request.device, request.emulated), running,
                                     int(request.running.version))
        except RegistrationRefused as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return cpb.RegisterResponse(heartbeat_ms=self.controller.config.heartbeat_ms)

    async def Heartbeat(self, request, context):
        recent = {m.module: list(m.recent_exec_ms) for m in request.modules if m.recent_exec_ms}
        decode = {m.module: list(m.recent_decode_ms) for m in request.modules if m.recent_decode_ms}
        return cpb.HeartbeatResponse(known=self.controller.heartbeat(request.worker_id, recent, decode))

    async def Leave(self, request, context):
        return cpb.LeaveResponse(done=self.controller.leave(request.worker_id))
