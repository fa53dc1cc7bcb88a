"""The frontend's data plane: admits a frame, runs it through its app's DAG on the planned workers,
and answers its sink modules' outputs.

A frame enters at the app's source module; a module runs once all its parents are done, parallel
branches run concurrently, and each module gets its requests for the frame from frontend/pipeline.py
(which knows how a frame becomes a module's requests). Every frame carries its deadline
(arrival + the app's SLO): a frame still in the DAG past it is dropped at its next hop with
DEADLINE_EXCEEDED and counted, each batch's call to its worker carries the latest deadline of the
frames in it (or the tuple's stall limit, sooner, where another worker could take the batch over), and
a frame whose results come back past its deadline is answered DEADLINE_EXCEEDED,
never counted as a success.

Per module, requests go through :class:`harpagon.dispatch.ModuleDispatcher` (the code the simulator
runs) on the event loop's clock: split among tuples by smooth weighted round-robin, one open batch
per tuple, shipped whole to the tuple's next worker when full or when its flush timer runs out.
Workers are reached through an injected :class:`WorkerClient`.

Failures and stalls (the policy: frontend/failover.py). A worker call that fails with UNAVAILABLE
(the worker died, refused the connection, answered a malformed reply), or that takes longer than its
tuple's stall limit, is sent again to another worker of the same tuple, at most once per worker, with
the batch's frames still before their deadline (the others are answered DEADLINE_EXCEEDED); the worker
is then suspect for a while, and batches the dispatcher sends it meanwhile go to the tuple's next
worker. The dispatcher itself (shared with the simulator) never learns of it. INTERNAL is tried once
elsewhere too; a worker whose INTERNALs another worker answers well several times in a row is made
suspect, logged once per hold and counted per worker (`harpagon_frontend_worker_internal_errors`,
`harpagon_frontend_worker_internal_suspects`; the controller is not told: the frontend's reports carry
no per-worker health). Faults that are the request's are answered at once, never retried.

Frames. The frontend does not touch pixels: a frame goes to every `frame` module's workers as it came
(an `EncodedFrame`: JPEG or PNG bytes, or raw UINT8 pixels with their height and width, checked at the
servicer; a numpy frame from an in-process caller is made a raw one once, by pipeline.as_frame), and
the worker decodes and resizes it inside the batch, on its device (:func:`batch_of`). A frame a worker
could not read is an error of its item alone (`WorkerReply.errors`): that frame is answered
INVALID_ARGUMENT and counted failed, the batch's other frames are answered as usual.

Admission. Each app holds at most :func:`admission_limit` frames in flight; a frame beyond it is
refused at once with RESOURCE_EXHAUSTED, before anything is decoded or dispatched, so that an
overloaded frontend spends next to nothing on the frames it cannot serve in time. Refused frames
still count as offered (:attr:`AppCounters.offered`, what the rate reports say): the controller plans
for the rate clients send, not the rate a shrunken plan lets in.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harpagon.dispatch.batcher import TIMER_SLACK_MS
from harpagon.dispatch.module import ModuleDispatcher, Shipped
from harpagon.runtime.frontend.failover import SUSPECT_S, Failover, Outstanding, Suspects, stall_limit_s
from harpagon.runtime.frontend.loopwatch import LoopWatch
from harpagon.runtime.frontend.peers import Owners, Peers, Unreachable
from harpagon.runtime.frontend.pipeline import Frame, FrameCounter, Image, Item, ItemResult, SinkResult
from harpagon.runtime.frontend.reply import sink_tensors
from harpagon.runtime.frontend.stats import AppCounters, DispatchCounters, FanoutCounts, FrontendTally
from harpagon.runtime.metrics import FrontendMetrics
from harpagon.runtime.records import (
    BatchAnswered,
    BatchRetried,
    BatchShipped,
    FrameAnswered,
    FrameDropped,
    FrameFailed,
    FrameForwarded,
    FrameRefused,
    FrameTaken,
    Hop,
    Recorders,
    RequestDone,
    RequestsFailed,
    SuspectSkipped,
    WorkerInternal,
)
from harpagon.runtime.traces import FrameTrace, Tracing, loop_clock
from harpagon.runtime.wire.clients import GrpcWorkerClient, WorkerClient, WorkerReply
from harpagon.runtime.wire.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RuntimeFault,
    Unavailable,
)
from harpagon.runtime.wire.frames import EncodedFrame
from harpagon.runtime.wire.routes import AppRoute, ModuleRoute, OutputSpec, RoutingTable, StreamRoute

__all__ = ["AppCounters", "DeadlineExceeded", "FrontendDataPlane", "LiveModule", "ResourceExhausted", "Unavailable",
           "admission_limit", "batch_of"]

log = logging.getLogger("harpagon.frontend")

#: What an answer takes to reach its client once the frame is done: serialised, written, on the wire.
#: A frame done later than its deadline less this is answered DEADLINE_EXCEEDED, not OK.
ANSWER_MARGIN_S = 0.005
#: The most frames of an app in flight: `max(ADMIT_FLOOR, ceil(ADMIT_FACTOR × rate × SLO))`. At the
#: planned rate Little's law puts `rate × latency <= rate × SLO` frames in flight; 4 times that absorbs
#: bursts (Poisson arrivals, a client's catch-up) and a worker retry, while a frame admitted beyond it
#: would queue behind 4 SLOs' worth of frames and miss its own deadline anyway. The floor keeps slow or
#: tight apps (1 frame/s, 50 ms) usable by a few concurrent clients.
ADMIT_FACTOR = 4.0
ADMIT_FLOOR = 8
#: A worker client that ignores its timeout is given up this long after it.
CLIENT_GRACE_S = 0.1


def admission_limit(app: AppRoute, factor: float = ADMIT_FACTOR, floor: int = ADMIT_FLOOR) -> int:
    """The most frames of `app` the frontend holds in flight at once (see ADMIT_FACTOR)."""
    return max(floor, math.ceil(factor * app.rate * app.slo_ms / 1000.0))


def _check_reply(address: str, reply: WorkerReply, n: int) -> None:
    """A malformed reply (not n items per output and per crops edge, an error of an item it does not
    hold) is the worker's fault: UNAVAILABLE."""
    if any(not 0 <= i < n for i in reply.errors):
        raise Unavailable(f"worker {address} answered errors for items {sorted(reply.errors)} of a batch of {n}")
    if any(len(o) != n for o in reply.outputs) or any(len(c.counts) != n for c in reply.crops.values()):
        crops = f" (crops for {[len(c.counts) for c in reply.crops.values()]})" if reply.crops else ""
        raise Unavailable(f"worker {address} answered {[len(o) for o in reply.outputs]} items{crops} "
                          f"for a batch of {n}")


def batch_of(items: Sequence[Item]) -> np.ndarray | list[EncodedFrame]:
    """What a worker is sent for a batch's items: a `frame` module's frames as a list (the worker
    decodes and resizes them), crops or features (arrays) as one tensor. A module's requests are all
    of one kind: its input's."""
    frames = [x for x in items if isinstance(x, EncodedFrame)]
    if not frames:
        return np.stack(items)  # type: ignore[arg-type]
    if len(frames) != len(items):
        raise Internal(f"a batch mixes {len(frames)} frames with {len(items) - len(frames)} tensors")
    return frames


@dataclass(slots=True)
class _Request:
    item: Item
    future: asyncio.Future
    deadline: float  # loop time (s) past which the frame is late


class LiveModule:
    """One module's dispatcher on the event loop, shipping batches to its workers."""

    def __init__(self, route: ModuleRoute, dispatch: str, client: WorkerClient, app: str = "",
                 record: Callable[[object], None] = lambda r: None, suspects: Suspects | None = None,
                 outstanding: Outstanding | None = None):
        self.route = route
        self.suspects = suspects if suspects is not None else Suspects()
        self.outstanding = outstanding if outstanding is not None else Outstanding()
        self.stall_s = tuple(stall_limit_s(ms) for ms in route.latency_ms)
        self.app = app
        self.record = record
        self.client = client
        self.dispatcher: ModuleDispatcher[_Request] = ModuleDispatcher(route.tuples, dispatch)  # type: ignore[arg-type]
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None
        self.tasks: set[asyncio.Task] = set()

    def now_ms(self) -> float:
        return self.loop.time() * 1000.0

    def submit(self, item: Item, deadline: float) -> asyncio.Future:
        fut = self.loop.create_future()
        t0 = self.loop.time()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception() or self._done(t0))
        self._ship(self.dispatcher.add(_Request(item, fut, deadline), t0 * 1000.0))
        self._arm()
        return fut

    def _done(self, t0: float) -> None:
        self.record(RequestDone(self.app, self.route.module, (self.loop.time() - t0) * 1000.0))

    def _arm(self) -> None:
        due = self.dispatcher.deadline()
        if due == self._due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._due = due
        self._timer = None if due is None else self.loop.call_at((due + TIMER_SLACK_MS) / 1000.0, self._on_timer)

    def _on_timer(self) -> None:
        now, due = self.now_ms(), self._due
        self._timer, self._due = None, None
        # a flush timer that fires late (a busy event loop) delays its batch like transport does
        self._ship(self.dispatcher.poll(now), max(0.0, now - due - TIMER_SLACK_MS) if due is not None else 0.0)
        self._arm()

    def _ship(self, shipped: list[Shipped[_Request]], late_ms: float = 0.0) -> None:
        for s in shipped:
            b = s.batch
            self.record(BatchShipped(self.app, self.route.module, len(b.items), b.dummies, b.shipped_ms - b.opened_ms))
            task = self.loop.create_task(self._send(s, late_ms if s.batch.reason == "timer" else 0.0))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _answer(self, requests: list[_Request], error: RuntimeFault) -> None:
        left = [r for r in requests if not r.future.done()]
        for r in left:
            r.future.set_exception(error)
        if left:
            self.record(RequestsFailed(self.app, self.route.module, len(left)))

    async def _call(self, address: str, name: str, batch: np.ndarray | list[EncodedFrame],
                    timeout_s: float) -> WorkerReply:
        async with asyncio.timeout(timeout_s + CLIENT_GRACE_S):  # in case a client ignores its timeout
            return await self.client.infer(address, name, batch, timeout_s=timeout_s)

    async def _send(self, s: Shipped[_Request], late_ms: float = 0.0) -> None:
        """Send a batch (with failover); whatever happens, every frame of it gets an answer: a bug or a
        cancellation here must not leave futures unresolved (their frames would hold admission slots
        and never be answered)."""
        why = "cancelled"
        try:
            await self._send_batch(s, late_ms)
            why = ""
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            log.exception("module %r: sending a batch failed", self.route.module)
        finally:
            left = [r for r in s.batch.items if not r.future.done()]
            if left:
                self._answer(left, Internal(f"module {self.route.module!r}: its batch was lost ({why or 'no answer'})"))

    async def _send_batch(self, s: Shipped[_Request], late_ms: float) -> None:
        name = self.route.names[s.tuple_index]
        failover, address = self._failover(s)
        requests = s.batch.items
        while True:
            sent = self.loop.time()
            remaining = max(r.deadline for r in requests) - sent
            if remaining <= 0:  # every frame of the batch is late already: no call
                self._answer(requests, DeadlineExceeded(f"module {self.route.module!r}: frames past their deadline "
                                                        f"before their batch reached a worker"))
                return
            ahead = self.outstanding.start(address)
            try:
                try:
                    reply = await self._call(address, name, batch_of([r.item for r in requests]),
                                             failover.timeout(address, remaining, sent, ahead))
                finally:
                    self.outstanding.done(address)
                _check_reply(address, reply, len(requests))
            except Exception as exc:  # noqa: BLE001 - each request gets an answer, whatever went wrong
                retry = self._failed(failover, address, exc, sent, requests)
                if retry is None:
                    return
                requests, address = retry
                continue
            break
        if (internal_at := failover.answered(address)) is not None:  # another worker answered the frames
            self._blame(internal_at, address)  # it failed: a strike against it
        self._answered(requests, reply, sent, late_ms)

    def _failover(self, s: Shipped[_Request]) -> tuple[Failover, str]:
        """The batch's failover over its tuple's workers, the dispatcher's choice first, then the others in
        turn; and the worker it goes to first (another where that one is suspect)."""
        k = s.tuple_index
        addrs = self.route.workers[k]
        ring = list(dict.fromkeys(addrs[(s.worker + i) % len(addrs)] for i in range(len(addrs))))
        failover = Failover(ring, self.suspects, self.stall_s[k])
        address = failover.pick(self.loop.time())
        assert address is not None
        if address != ring[0]:
            self.record(SuspectSkipped(self.app, self.route.module))
        return failover, address

    def _failed(self, failover: Failover, address: str, exc: Exception, sent: float,
                requests: list[_Request]) -> tuple[list[_Request], str] | None:
        """A call failed: the requests to send again and the worker to send them to, or None once every
        request is answered (the error, or DEADLINE_EXCEEDED for a frame already late)."""
        module = self.route.module
        now = self.loop.time()
        failure = failover.failed(address, exc, sent, now)
        error = failure.error
        if failure.hold is not None:
            log.warning("worker %s is suspect for %g s: %s", address, failure.hold, error)
        if isinstance(error, Internal):
            self.record(WorkerInternal(self.app, module, address))
        nxt = failover.pick(now) if failure.retry else None
        if nxt is None:
            tried = len(failover.tried)
            tried_note = f" (tried {tried} workers)" if tried > 1 else ""
            self._answer(requests, type(error)(f"module {module!r}: {error}{tried_note}"))
            return None
        pending = [r for r in requests if not r.future.done()]  # the others' frames are gone (cancelled)
        self._answer([r for r in pending if r.deadline <= now],
                     DeadlineExceeded(f"module {module!r}: frame past its deadline after {error}"))
        live = [r for r in pending if r.deadline > now]
        if not live:
            return None
        self.record(BatchRetried(self.app, module))
        return live, nxt

    def _answered(self, requests: list[_Request], reply: WorkerReply, sent: float, late_ms: float) -> None:
        """A worker answered the batch: its measurements, and each request its result (INVALID_ARGUMENT
        for a frame the worker could not read)."""
        rpc_ms = (self.loop.time() - sent) * 1000.0
        transport = max(0.0, rpc_ms - reply.queue_ms - reply.exec_ms)
        self.record(BatchAnswered(self.app, self.route.module, transport, late_ms, reply.queue_ms, reply.exec_ms))
        for i, why in sorted(reply.errors.items()):
            self._answer([requests[i]], InvalidArgument(f"module {self.route.module!r}: the frame could not be "
                                                        f"read: {why}"))
        for i, r in enumerate(requests):
            if not r.future.done():
                r.future.set_result(ItemResult([o[i] for o in reply.outputs],
                                               {child: c.of(i) for child, c in reply.crops.items()}))

    def _blame(self, address: str, answered_by: str) -> None:
        """`address` answered INTERNAL to frames `answered_by` answered well: strike it, and make it suspect
        (logged once per hold) after INTERNAL_STRIKES in a row."""
        strikes, hold = self.suspects.blame(address, self.loop.time())
        if hold is None:
            return
        self.record(WorkerInternal(self.app, self.route.module, address, suspect=True))
        log.warning("worker %s is suspect for %g s: %d INTERNAL answers in a row for module %r, each to frames "
                    "another worker answered (latest %s); a broken device?", address, hold, strikes,
                    self.route.module, answered_by)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._ship(self.dispatcher.flush(self.now_ms()))
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


class FrontendDataPlane:
    """Apps in, sink outputs out. Create and use it on one event loop.

    `configured` holds the apps of the configuration being served: until the controller routes
    (or refuses) each of them the plane is not ready, and a frame for one of them is UNAVAILABLE
    (retry), not NOT_FOUND. A remote frontend learns them from its first routing table.

    `admit_factor` and `admit_floor` set each app's bound on frames in flight (:func:`admission_limit`);
    `suspect_s` the longest a worker that failed or stalled is avoided (:class:`Suspects`).

    Several frontends: `frontend_id` is this one's id in the routes' streams; a frame of an app another
    frontend owns is forwarded to it through `peers` (frontend/peers.py), unless it was forwarded here."""

    def __init__(self, table: RoutingTable | None = None, frame_shape: tuple[int, int, int] = (480, 640, 3),
                 metrics: FrontendMetrics | None = None, client: WorkerClient | None = None,
                 configured: dict[str, AppRoute] | None = None, admit_factor: float = ADMIT_FACTOR,
                 admit_floor: int = ADMIT_FLOOR, suspect_s: float = SUSPECT_S, frontend_id: str = "",
                 peers: Peers | None = None, tracing: Tracing | None = None):
        self.frame_shape = frame_shape
        self.tracing = tracing
        """Per-frame traces (runtime/traces.py); None, the default: none, at no cost."""
        self.admit_factor = admit_factor
        self.admit_floor = admit_floor
        self.suspects = Suspects(suspect_s)
        self.outstanding = Outstanding()
        """Worker calls in flight per worker, over every module: a call behind others may take longer."""
        self.watch = LoopWatch()
        """The event loop's own stalls: frames taken after one are charged the time they waited unseen."""
        self.in_flight: dict[str, int] = defaultdict(int)
        """Frames of each app admitted and not answered yet."""
        self.tally = FrontendTally()
        """The plane's own counters, from its records (ModelStatistics, rate reports, the demo)."""
        self.record = Recorders((self.tally, metrics)).record
        self.client: WorkerClient = client or GrpcWorkerClient()
        self.me = frontend_id
        self.peers = peers or Peers()
        self.owners = Owners({}, frontend_id)
        self.refused: dict[str, str] = {}
        self.configured: dict[str, AppRoute | None] | None = dict(configured) if configured is not None else None
        self.routed = False  # a routing table from the controller is in force
        self._frames = FrameCounter()
        self.modules: dict[tuple[str, str], LiveModule] = {}
        self.table = RoutingTable.empty()
        self.on_ready: Callable[[bool], None] | None = None
        """Told whether the plane is ready after each routing table (the gRPC health service follows it)."""
        if table is not None:  # routed from the start (tests, embedding): its apps are the configuration
            self._install(table)
            self.routed = True
            if self.configured is None:
                self.configured = dict(table.apps)

    def _install(self, table: RoutingTable) -> dict[tuple[str, str], LiveModule]:
        old = self.modules
        self.table = table
        self.owners = Owners(table.apps, self.me)
        self.modules = {key: LiveModule(route, table.dispatch, self.client, key[0], self.record, self.suspects,
                                          self.outstanding)
                        for key, route in table.routes.items()}
        self.tally.serve(table.routes)
        return old

    async def update(self, table: RoutingTable, refused: dict[str, str] | None = None) -> None:
        """Route new frames by `table`; batches already open under the old table ship and finish."""
        old = self._install(table)
        self.refused = dict(refused or {})
        if self.configured is None:
            self.configured = {**dict.fromkeys(self.refused), **table.apps}
        self.routed = True
        if self.on_ready is not None:
            self.on_ready(self.ready)
        for m in old.values():
            await m.close()

    # --- readiness and metadata ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Every configured app is served or refused with its reason (Triton's ServerReady)."""
        if not self.routed or self.configured is None:
            return False
        return all(a in self.table.apps or a in self.refused for a in self.configured)

    def has_app(self, name: str) -> bool:
        """The app is routed now (Triton's ModelReady)."""
        return name in self.table.apps

    def check(self, name: str) -> AppRoute:
        """The app's route if it is served now; else why not, as the status a client acts on:
        NOT_FOUND for a name that is not configured, UNAVAILABLE (retry) for one that is not routed yet
        or cannot be served."""
        app = self.table.apps.get(name)
        if app is not None:
            return app
        if name in self.refused:
            raise Unavailable(f"app {name!r} cannot be served: {self.refused[name]}")
        if self.configured is None:
            raise Unavailable(f"app {name!r}: this frontend has no routes from the controller yet")
        if name in self.configured:
            raise Unavailable(f"app {name!r} is configured but not routed yet (planning); retry")
        raise NotFound(f"app {name!r} is not served (configured: {sorted(self.configured)})")

    def describe(self, name: str) -> AppRoute:
        """The app's route if it is served or configured (metadata before it is routed); else the
        status a frame for it would get."""
        app = self.table.apps.get(name) or (self.configured or {}).get(name)
        return app if app is not None else self.check(name)

    # --- measurements -----------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, AppCounters]:
        """Per app, cumulative."""
        return self.tally.apps

    def app_counters(self, name: str = "") -> list[tuple[str, AppCounters]]:
        """Each served app's counters (one app's, when named), by name (Triton's ModelStatistics)."""
        return [(app, self.counters[app]) for app in sorted(self.table.apps) if not name or name == app]

    def stats(self) -> dict[tuple[str, str], DispatchCounters]:
        """Per (app, module), cumulative across re-plans."""
        return dict(self.tally.modules)

    def reset_stats(self) -> None:
        """Start the per-module figures afresh (a benchmark after its warm-up)."""
        self.tally.modules.clear()
        self.tally.serve(self.modules)

    def take_fanout(self) -> FanoutCounts:
        """Per (app, module), the frames that reached it and the requests it got for them, since the
        last call: its measured fan-out, for the controller to compare with its planned scale."""
        return self.tally.take_fanout()

    def take_hops(self) -> list[float]:
        """Hop overheads (ms) measured since the last call, for the controller's calibration."""
        return self.tally.take_hops()

    # --- inference --------------------------------------------------------------------------

    def limit(self, app: AppRoute) -> int:
        """The most frames of `app` held in flight at once."""
        return admission_limit(app, self.admit_factor, self.admit_floor)

    def admit(self, app_name: str) -> AppRoute:
        """The app's route if a frame for it would be admitted now; else the status (NOT_FOUND,
        UNAVAILABLE, or RESOURCE_EXHAUSTED when its frames in flight are at their bound, counted as
        refused). Cheap: callers ask before decoding a frame. `infer` asks again (the same answer when
        nothing awaited in between). A configured app's frame refused is counted as offered."""
        try:
            app = self.check(app_name)
        except Unavailable:
            if self.configured is not None and app_name in self.configured:
                self.record(FrameRefused(app_name, overloaded=False))
            raise
        n = self.in_flight[app_name]
        if n >= self.limit(app):
            self.record(FrameRefused(app_name, overloaded=True))
            raise ResourceExhausted(f"app {app_name!r}: overloaded, {n} frames in flight (the most for its "
                                    f"{app.rate:g} frames/s at {app.slo_ms:g} ms); retry later")
        return app

    async def infer(self, app_name: str, frame: Image, remaining_s: float | None = None) -> dict[str, SinkResult]:
        """Run one frame ([H, W, 3] UINT8 pixels, or an `EncodedFrame` checked with `frames.check`);
        returns each sink module's results. The frame is due at its SLO, or earlier when its client's
        own deadline (`remaining_s` from now) is."""
        return (await self._admitted(app_name, frame, remaining_s)).sinks()

    async def answer(self, app_name: str, frame: Image, remaining_s: float | None = None,
                     stream: str | None = None) -> list[tuple[OutputSpec, np.ndarray]]:
        """Run one frame (as `infer`): its reply's tensors, sink by sink (frontend/reply.py). `stream`:
        the app's stream it joins (default: as :class:`Owners` picks for a frame served here)."""
        f = await self._admitted(app_name, frame, remaining_s, stream)
        return [t for sink, result in f.sinks().items() for t in sink_tensors(f.app, sink, result)]

    def owner(self, app_name: str) -> StreamRoute | None:
        """Where a frame of `app_name` that came from a client goes: the stream and owner to forward it
        to, or None to serve it here."""
        return self.owners.owner(app_name)

    async def forward(self, app_name: str, to: StreamRoute, request: bytes,
                      remaining_s: float | None) -> bytes | None:
        """The owner's answer to a forwarded frame, serialised (its status raised as a fault); None when
        the owner could not be reached: serve the frame here, in `to`'s stream."""
        app = self.check(app_name)
        timeout = app.slo_ms / 1000.0 if remaining_s is None else min(remaining_s, app.slo_ms / 1000.0)
        try:
            reply = await self.peers.infer(to.address, request, timeout)
        except Unreachable as exc:
            log.warning("app %s: %s; frame served here", app_name, exc)
            self.record(FrameForwarded(app_name, served_here=True))
            return None
        self.record(FrameForwarded(app_name))
        return reply

    async def _admitted(self, app_name: str, image: Image, remaining_s: float | None,
                        stream: str | None = None) -> Frame:
        app = self.admit(app_name)
        self.in_flight[app_name] += 1
        try:
            return await self._infer(app, image, remaining_s, stream)
        finally:
            self.in_flight[app_name] -= 1

    async def _infer(self, app: AppRoute, image: Image, remaining_s: float | None,
                     stream: str | None = None) -> Frame:
        """The frame through its app's DAG, counted: a success only when answered before its deadline."""
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        f = self._frames.frame(app, image)
        self.record(FrameTaken(app.name))
        stream = stream or self.owners.stream(app.name)
        trace = (self.tracing.frame(app.name, app.slo_ms, self.table.version, stream, loop_clock(loop.time))
                 if self.tracing is not None else None)
        now = loop.time()
        self.watch.start(loop)
        # due at its SLO from when it may have arrived (earlier than now after a stall of this loop), or
        # at its client's deadline if that is earlier
        deadline = self.watch.arrival(now) + app.slo_ms / 1000.0
        if remaining_s is not None:
            deadline = min(deadline, now + remaining_s)
        try:
            await self._walk(f, deadline, stream, trace)
        except DeadlineExceeded as exc:
            self._dropped(app.name)
            if trace is not None:
                trace.end("late", exc)
            raise
        except Exception as exc:
            self.record(FrameFailed(app.name, type(exc).__name__))
            if trace is not None:
                trace.end("failed", exc)
            raise
        # a late result is not a success: the client gets the status. The answer still has to get out,
        # through this loop (as late as it runs now) and onto the wire
        now = loop.time()
        if now + self.watch.lag(now) + ANSWER_MARGIN_S > deadline:
            self._dropped(app.name)
            late = DeadlineExceeded(f"app {app.name!r}: frame answered past its {app.slo_ms:g} ms deadline")
            if trace is not None:
                trace.end("late", late)
            raise late
        self.record(FrameAnswered(app.name, time.perf_counter() - start))
        if trace is not None:
            trace.end("answered")
        return f

    async def _walk(self, f: Frame, deadline: float, stream: str, trace: FrameTrace | None = None) -> None:
        """The frame's hops in topological order, on `stream`'s module routes: one after another along a
        chain; otherwise a task per module, each starting once all its parents are done, so that
        parallel branches run concurrently."""
        if f.app.chain:  # no task per module
            for m in f.app.modules:
                await self._hop(f, m.name, deadline, stream, trace)
            return
        loop = asyncio.get_running_loop()
        tasks: dict[str, asyncio.Task] = {}

        async def run(module: str, parents: tuple[str, ...]) -> None:
            if parents:
                await asyncio.gather(*(tasks[p] for p in parents))
            await self._hop(f, module, deadline, stream, trace)

        try:
            for m in f.app.modules:
                tasks[m.name] = loop.create_task(run(m.name, m.after))
            await asyncio.gather(*tasks.values())
        finally:
            for t in tasks.values():
                if not t.done():
                    t.cancel()

    def _dropped(self, app_name: str) -> None:
        self.record(FrameDropped(app_name))

    async def _hop(self, f: Frame, module: str, deadline: float, stream: str, trace: FrameTrace | None = None) -> None:
        """One module's requests for a frame whose parents are done: dispatched, then their results."""
        loop = asyncio.get_running_loop()
        runnable = loop.time()
        app = f.app
        if runnable > deadline:
            raise DeadlineExceeded(f"app {app.name!r}: frame past its {app.slo_ms:g} ms deadline before {module!r}")
        live = self.modules.get((stream, module))  # the routes in force at this hop
        if live is None:
            raise Unavailable(f"app {app.name!r} is no longer served")
        shape = live.route.input_shape
        keys, items = f.requests(module, shape)
        self.record(Hop(app.name, module, len(items), (loop.time() - runnable) * 1000.0))
        if not items:
            f.done(module, [], [], shape)
            return
        hop = trace.hop(module, max(live.route.latency_ms, default=0.0), len(items)) if trace is not None else None
        try:
            if len(items) == 1:
                results = [await live.submit(items[0], deadline)]
            else:
                results = list(await asyncio.gather(*(live.submit(x, deadline) for x in items)))
        except BaseException as exc:
            if hop is not None:
                hop.done(exc)
            raise
        if hop is not None:
            hop.done()
        f.done(module, keys, results, shape)

    async def close(self) -> None:
        self.watch.stop()
        for m in self.modules.values():
            await m.close()
        await self.client.close()
        await self.peers.close()
