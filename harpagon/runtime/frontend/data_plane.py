"""The frontend's data plane: runs a frame through its app's DAG on the planned workers.

A frame enters at the app's source module; each module gets `floor((f + 1) s) - floor(f s)`
requests for the app's f-th frame (its scale s, as the planner assumes), each the frame resized to
the module's input; a module runs once all its parents are done, parallel branches run
concurrently, and the reply holds the sink modules' outputs. Every frame carries its deadline
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
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from harpagon.config import pipeline
from harpagon.config.schema import App
from harpagon.dispatch.batcher import TIMER_SLACK_MS
from harpagon.dispatch.module import ModuleDispatcher, Shipped
from harpagon.model.latency import requests_for
from harpagon.runtime.frontend.failover import SUSPECT_S, Failover, Suspects, stall_limit_s
from harpagon.runtime.frontend.loopwatch import LoopWatch
from harpagon.runtime.frontend.stats import REPORT_WINDOW, ModuleStats
from harpagon.runtime.metrics import FrontendMetrics
from harpagon.runtime.wire.clients import GrpcWorkerClient, WorkerClient, WorkerReply
from harpagon.runtime.wire.errors import (
    DeadlineExceeded,
    Internal,
    NotFound,
    ResourceExhausted,
    RuntimeFault,
    Unavailable,
)
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable

__all__ = ["DeadlineExceeded", "FrontendDataPlane", "LiveModule", "ResourceExhausted", "Unavailable",
           "admission_limit", "resize", "sample"]

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


def admission_limit(app: App, factor: float = ADMIT_FACTOR, floor: int = ADMIT_FLOOR) -> int:
    """The most frames of `app` the frontend holds in flight at once (see ADMIT_FACTOR)."""
    return max(floor, math.ceil(factor * app.rate * app.slo_ms / 1000.0))


@lru_cache(maxsize=64)
def _sampling(height: int, width: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rows = (np.arange(h) * height // h).clip(0, height - 1)
    cols = (np.arange(w) * width // w).clip(0, width - 1)
    return rows, cols


def sample(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """A [H, W, C] frame resized to [h, w, C] (nearest neighbour)."""
    rows, cols = _sampling(frame.shape[0], frame.shape[1], h, w)
    return frame.take(rows, 0).take(cols, 1)  # two takes: several times faster than one 2-d fancy index


def resize(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A [H, W, C] uint8 frame as a [C, h, w] module input (nearest neighbour)."""
    c, h, w = shape
    out = sample(frame, h, w)
    if out.shape[2] != c:
        out = np.resize(out, (h, w, c))
    return np.ascontiguousarray(out.transpose(2, 0, 1))


@dataclass(slots=True)
class _Frame:
    app: App
    seq: int  # the app's frame number: how many requests each module gets for it
    frame: np.ndarray
    deadline: float  # loop time (s)
    inputs: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)  # one resize per input shape
    results: dict[str, list[_Out]] = field(default_factory=dict)  # per module done
    detections: dict[str, Detections] = field(default_factory=dict)  # per detector done


@dataclass(slots=True)
class ItemResult:
    """One request's result: its outputs and, from a detector, its crops per child module (the
    detection indices they were cut from, and the crops)."""

    outputs: list[np.ndarray]
    crops: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass(slots=True)
class _Out:
    """A module's request for a frame, done: its key (the request's index for frame-level requests, the
    detection's index for object-level ones) and its result."""

    key: int
    result: ItemResult


@dataclass(slots=True)
class Detections:
    """A detector's detections of one frame, boxes in the client's frame pixels."""

    boxes: np.ndarray  # [D, 4] x1, y1, x2, y2
    scores: np.ndarray  # [D]
    labels: np.ndarray  # [D]


@dataclass(slots=True)
class SinkResult:
    """A sink module's results for one frame: per request its outputs, and the objects they are of.
    `detector` is None for frame-level requests (`keys` are then request indices)."""

    requests: list[list[np.ndarray]]
    keys: list[int]
    detector: str | None = None
    detections: Detections | None = None
    """The detector's detections of the frame (object-level sinks): request i is of detection keys[i]."""

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, i: int) -> list[np.ndarray]:
        """Request i's outputs."""
        return self.requests[i]


@dataclass(slots=True)
class _Request:
    item: np.ndarray
    future: asyncio.Future
    deadline: float  # loop time (s) past which the frame is late


class LiveModule:
    """One module's dispatcher on the event loop, shipping batches to its workers."""

    def __init__(self, route: ModuleRoute, dispatch: str, client: WorkerClient, stats: ModuleStats,
                 app: str = "", metrics: FrontendMetrics | None = None,
                 on_hop: Callable[[float], None] | None = None, suspects: Suspects | None = None):
        self.route = route
        self.suspects = suspects if suspects is not None else Suspects()
        self.stall_s = tuple(stall_limit_s(ms) for ms in route.latency_ms)
        self.labels = (app, route.module)
        self.metrics = metrics
        self.stats = stats
        self.client = client
        self.on_hop = on_hop
        self.dispatcher: ModuleDispatcher[_Request] = ModuleDispatcher(route.tuples, dispatch)  # type: ignore[arg-type]
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None
        self.tasks: set[asyncio.Task] = set()

    def now_ms(self) -> float:
        return self.loop.time() * 1000.0

    def submit(self, item: np.ndarray, deadline: float) -> asyncio.Future:
        fut = self.loop.create_future()
        t0 = self.loop.time()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception() or self._done(t0))
        self.stats.requests += 1
        self._ship(self.dispatcher.add(_Request(item, fut, deadline), t0 * 1000.0))
        self._arm()
        return fut

    def _done(self, t0: float) -> None:
        ms = (self.loop.time() - t0) * 1000.0
        self.stats.latency_ms.append(ms)
        if self.metrics:
            self.metrics.module_latency.labels(*self.labels).observe(ms / 1000.0)

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
            self.stats.batches += 1
            self.stats.dummies += s.batch.dummies
            self.stats.collect_ms.append(s.batch.shipped_ms - s.batch.opened_ms)
            if self.metrics:
                self.metrics.module_batches.labels(*self.labels).inc()
                self.metrics.module_requests.labels(*self.labels).inc(len(s.batch.items))
                self.metrics.module_dummies.labels(*self.labels).inc(s.batch.dummies)
            task = self.loop.create_task(self._send(s, late_ms if s.batch.reason == "timer" else 0.0))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _answer(self, requests: list[_Request], error: RuntimeFault) -> None:
        for r in requests:
            if not r.future.done():
                self.stats.failed += 1
                r.future.set_exception(error)

    async def _call(self, address: str, name: str, batch: np.ndarray, timeout_s: float) -> WorkerReply:
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
        k = s.tuple_index
        addrs = self.route.workers[k]
        name = self.route.names[k]
        module = self.route.module
        # the dispatcher's choice first, then the tuple's other workers in turn
        ring = list(dict.fromkeys(addrs[(s.worker + i) % len(addrs)] for i in range(len(addrs))))
        failover = Failover(ring, self.suspects, self.stall_s[k])
        address = failover.pick(self.loop.time())
        assert address is not None
        if address != ring[0]:
            self.stats.suspect_skips += 1
            if self.metrics:
                self.metrics.suspect_skips.labels(*self.labels).inc()
        requests = s.batch.items
        while True:
            sent = self.loop.time()
            remaining = max(r.deadline for r in requests) - sent
            if remaining <= 0:  # every frame of the batch is late already: no call
                self._answer(requests, DeadlineExceeded(f"module {module!r}: frames past their deadline before "
                                                        f"their batch reached a worker"))
                return
            try:
                reply = await self._call(address, name, np.stack([r.item for r in requests]),
                                         failover.timeout(address, remaining, sent))
                if any(len(o) != len(requests) for o in reply.outputs) or any(
                        len(c.counts) != len(requests) for c in reply.crops.values()):
                    crops = f" (crops for {[len(c.counts) for c in reply.crops.values()]})" if reply.crops else ""
                    raise Unavailable(f"worker {address} answered {[len(o) for o in reply.outputs]} items{crops} "
                                      f"for a batch of {len(requests)}")
            except Exception as exc:  # noqa: BLE001 - each request gets an answer, whatever went wrong
                now = self.loop.time()
                failure = failover.failed(address, exc, sent, now)
                error = failure.error
                if failure.hold is not None:
                    log.warning("worker %s is suspect for %g s: %s", address, failure.hold, error)
                if isinstance(error, Internal):
                    self.stats.internal_errors += 1
                    if self.metrics:
                        self.metrics.worker_internal_errors.labels(address).inc()
                nxt = failover.pick(now) if failure.retry else None
                if nxt is not None:
                    live = []
                    for r in requests:
                        if r.future.done():  # its frame is gone (cancelled)
                            continue
                        if r.deadline <= now:
                            self.stats.failed += 1
                            r.future.set_exception(DeadlineExceeded(
                                f"module {module!r}: frame past its deadline after {error}"))
                        else:
                            live.append(r)
                    if not live:
                        return
                    self.stats.retries += 1
                    if self.metrics:
                        self.metrics.retries.labels(*self.labels).inc()
                    requests, address = live, nxt
                    continue
                tried = len(failover.tried)
                tried_note = f" (tried {tried} workers)" if tried > 1 else ""
                self._answer(requests, type(error)(f"module {module!r}: {error}{tried_note}"))
                return
            break
        if (internal_at := failover.answered(address)) is not None:  # another worker answered the frames
            self._blame(internal_at, address)  # it failed: a strike against it
        rpc_ms = (self.loop.time() - sent) * 1000.0
        transport = max(0.0, rpc_ms - reply.queue_ms - reply.exec_ms)
        self.stats.transport_ms.append(transport)
        self.stats.timer_late_ms.append(late_ms)
        self.stats.worker_queue_ms.append(reply.queue_ms)
        self.stats.exec_ms.append(reply.exec_ms)
        if self.on_hop is not None:  # the hop's overhead as the planner models it (MODEL.md `overhead_ms`)
            self.on_hop(transport + late_ms)
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
        self.stats.internal_suspects += 1
        if self.metrics:
            self.metrics.worker_internal_suspects.labels(address).inc()
        log.warning("worker %s is suspect for %g s: %d INTERNAL answers in a row for module %r, each to frames "
                    "another worker answered (latest %s); a broken device?", address, hold, strikes,
                    self.route.module, answered_by)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._ship(self.dispatcher.flush(self.now_ms()))
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class AppCounters:
    frames: int = 0
    success: int = 0
    failed: int = 0
    dropped: int = 0
    success_ns: int = 0
    refused: int = 0  # refused at once (RESOURCE_EXHAUSTED): not among `frames`
    unserved: int = 0  # refused at once because the app is not routed (UNAVAILABLE): not among `frames`

    @property
    def offered(self) -> int:
        """Frames clients sent, admitted or not: the rate the controller plans for. Counting only the
        admitted ones, a plan shrunk in a lull would measure no more than it admits and never grow."""
        return self.frames + self.refused + self.unserved


class FrontendDataPlane:
    """Apps in, sink outputs out. Create and use it on one event loop.

    `configured` holds the apps of the configuration being served: until the controller routes
    (or refuses) each of them the plane is not ready, and a frame for one of them is UNAVAILABLE
    (retry), not NOT_FOUND. A remote frontend learns them from its first routing table.

    `admit_factor` and `admit_floor` set each app's bound on frames in flight (:func:`admission_limit`);
    `suspect_s` the longest a worker that failed or stalled is avoided (:class:`Suspects`)."""

    def __init__(self, table: RoutingTable | None = None, frame_shape: tuple[int, int, int] = (480, 640, 3),
                 metrics: FrontendMetrics | None = None, client: WorkerClient | None = None,
                 configured: dict[str, App] | None = None, admit_factor: float = ADMIT_FACTOR,
                 admit_floor: int = ADMIT_FLOOR, suspect_s: float = SUSPECT_S):
        self.frame_shape = frame_shape
        self.admit_factor = admit_factor
        self.admit_floor = admit_floor
        self.suspects = Suspects(suspect_s)
        self.watch = LoopWatch()
        """The event loop's own stalls: frames taken after one are charged the time they waited unseen."""
        self.in_flight: dict[str, int] = defaultdict(int)
        """Frames of each app admitted and not answered yet."""
        self.metrics = metrics
        self.client: WorkerClient = client or GrpcWorkerClient()
        self.counters: dict[str, AppCounters] = defaultdict(AppCounters)
        self.refused: dict[str, str] = {}
        self.configured: dict[str, App | None] | None = dict(configured) if configured is not None else None
        self.routed = False  # a routing table from the controller is in force
        self._stats: dict[tuple[str, str], ModuleStats] = defaultdict(ModuleStats)
        self._hops: deque[float] = deque(maxlen=REPORT_WINDOW)
        self._fanout: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._seq: dict[str, int] = defaultdict(int)
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
        self.modules = {key: LiveModule(route, table.dispatch, self.client, self._stats[key], key[0], self.metrics,
                                        self._hops.append, self.suspects)
                        for key, route in table.routes.items()}
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

    # --- readiness --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Every configured app is served or refused with its reason (Triton's ServerReady)."""
        if not self.routed or self.configured is None:
            return False
        return all(a in self.table.apps or a in self.refused for a in self.configured)

    def has_app(self, name: str) -> bool:
        """The app is routed now (Triton's ModelReady)."""
        return name in self.table.apps

    def check(self, name: str) -> App:
        """The app's definition if it is served now; else why not, as the status a client acts on:
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

    def definition(self, name: str) -> App | None:
        """The app's definition if it is served or configured (for metadata before it is routed)."""
        return self.table.apps.get(name) or (self.configured or {}).get(name)

    def sinks(self, app: str) -> list[str]:
        a = self.definition(app)
        if a is None:
            raise NotFound(f"app {app!r} is not served")
        return [m.name for m in a.modules if not a.children[m.name]]

    # --- measurements -----------------------------------------------------------------------

    def stats(self) -> dict[tuple[str, str], ModuleStats]:
        """Per (app, module), cumulative across re-plans."""
        return dict(self._stats)

    def reset_stats(self) -> None:
        """Start the per-module figures afresh (a benchmark after its warm-up)."""
        self._stats.clear()
        for key, m in self.modules.items():
            m.stats = self._stats[key]

    def take_fanout(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (app, module), the frames that reached it and the requests it got for them, since the
        last call: its measured fan-out, for the controller to compare with its planned scale."""
        out, self._fanout = self._fanout, defaultdict(lambda: [0, 0])
        return {k: (v[0], v[1]) for k, v in out.items()}

    def take_hops(self) -> list[float]:
        """Hop overheads (ms) measured since the last call, for the controller's calibration."""
        hops = list(self._hops)
        self._hops.clear()
        return hops

    # --- inference --------------------------------------------------------------------------

    def limit(self, app: App) -> int:
        """The most frames of `app` held in flight at once."""
        return admission_limit(app, self.admit_factor, self.admit_floor)

    def admit(self, app_name: str) -> App:
        """The app's definition if a frame for it would be admitted now; else the status (NOT_FOUND,
        UNAVAILABLE, or RESOURCE_EXHAUSTED when its frames in flight are at their bound, counted as
        refused). Cheap: callers ask before decoding a frame. `infer` asks again (the same answer when
        nothing awaited in between). A configured app's frame refused is counted as offered."""
        try:
            app = self.check(app_name)
        except Unavailable:
            if self.configured is not None and app_name in self.configured:
                self.counters[app_name].unserved += 1
            raise
        n = self.in_flight[app_name]
        if n >= self.limit(app):
            self.counters[app_name].refused += 1
            if self.metrics:
                self.metrics.refused.labels(app_name).inc()
                self.metrics.failure.labels(app_name, "overloaded").inc()
            raise ResourceExhausted(f"app {app_name!r}: overloaded, {n} frames in flight (the most for its "
                                    f"{app.rate:g} frames/s at {app.slo_ms:g} ms); retry later")
        return app

    async def infer(self, app_name: str, frame: np.ndarray, remaining_s: float | None = None) -> dict[str, SinkResult]:
        """Run one frame; returns each sink module's results. The frame is due at its SLO, or earlier
        when its client's own deadline (`remaining_s` from now) is."""
        app = self.admit(app_name)
        self.in_flight[app_name] += 1
        try:
            return await self._infer(app, app_name, frame, remaining_s)
        finally:
            self.in_flight[app_name] -= 1

    async def _infer(self, app: App, app_name: str, frame: np.ndarray,
                     remaining_s: float | None = None) -> dict[str, SinkResult]:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        seq = self._seq[app_name]
        self._seq[app_name] += 1
        counters = self.counters[app_name]
        counters.frames += 1
        now = loop.time()
        self.watch.start(loop)
        # due at its SLO from when it may have arrived (earlier than now after a stall of this loop), or
        # at its client's deadline if that is earlier
        deadline = self.watch.arrival(now) + app.slo_ms / 1000.0
        if remaining_s is not None:
            deadline = min(deadline, now + remaining_s)
        f = _Frame(app, seq, frame, deadline)
        tasks: dict[str, asyncio.Task] = {}
        try:
            if len(app.paths) == 1:  # a chain: one hop after another, no task per module
                for module in app.paths[0]:
                    await self._hop(f, module)
            else:  # parallel branches run concurrently; a module starts once all its parents are done
                async def run(module: str) -> None:
                    parents = app.module(module).after
                    if parents:
                        await asyncio.gather(*(tasks[p] for p in parents))
                    await self._hop(f, module)

                for module in app.topological:
                    tasks[module] = loop.create_task(run(module))
                await asyncio.gather(*tasks.values())
        except DeadlineExceeded:
            self._dropped(app_name)
            raise
        except Exception as exc:
            counters.failed += 1
            if self.metrics:
                self.metrics.failure.labels(app_name, type(exc).__name__).inc()
            raise
        finally:
            for t in tasks.values():
                if not t.done():
                    t.cancel()
        # a late result is not a success: the client gets the status. The answer still has to get out,
        # through this loop (as late as it runs now) and onto the wire
        now = loop.time()
        if now + self.watch.lag(now) + ANSWER_MARGIN_S > f.deadline:
            self._dropped(app_name)
            raise DeadlineExceeded(f"app {app_name!r}: frame answered past its {app.slo_ms:g} ms deadline")
        elapsed = time.perf_counter() - start
        counters.success += 1
        counters.success_ns += int(elapsed * 1e9)
        if self.metrics:
            self.metrics.success.labels(app_name).inc()
            self.metrics.duration_us.labels(app_name).inc(elapsed * 1e6)
            self.metrics.latency.labels(app_name).observe(elapsed)
        objects = app.objects
        out = {}
        for sink in self.sinks(app_name):
            done = f.results[sink]
            detector = objects[sink]
            out[sink] = SinkResult([o.result.outputs for o in done], [o.key for o in done], detector,
                                   f.detections.get(detector) if detector else None)
        return out

    def _dropped(self, app_name: str) -> None:
        self.counters[app_name].dropped += 1
        if self.metrics:
            self.metrics.dropped.labels(app_name).inc()
            self.metrics.failure.labels(app_name, "deadline").inc()

    def _requests(self, f: _Frame, module: str, live: LiveModule) -> tuple[list[int], list[np.ndarray]]:
        """The module's requests for a frame whose parents are done (config/pipeline.py): keys and items."""
        m = f.app.module(module)
        shape = live.route.input_shape
        if m.input == "frame":
            n = requests_for(f.seq, m.scale)
            if n == 0:
                return [], []
            item = f.inputs.get(shape)
            if item is None:
                item = f.inputs[shape] = resize(f.frame, shape)
            return list(range(n)), [item] * n
        if m.input == "crops":  # one per kept detection, cut by the detector's worker
            keys: list[int] = []
            items: list[np.ndarray] = []
            for parent in f.results[m.after[0]]:
                cut = parent.result.crops.get(module)
                if cut is None:
                    raise Unavailable(f"app {f.app.name!r}: the worker of {m.after[0]!r} cut no crops for {module!r} "
                                      f"(its configuration predates the edge); retry")
                detection, crops = cut
                if len(crops) and tuple(crops.shape[1:]) != shape:
                    raise Unavailable(f"app {f.app.name!r}: crops for {module!r} of shape {list(crops.shape[1:])}, "
                                      f"its workers take {list(shape)}; retry")
                keys += [int(d) for d in detection]
                items += list(crops)
            return keys, items
        # features: the parents' outputs joined per key; a frame-level parent's one request joins every object
        per_parent = [{o.key: o.result.outputs[0] for o in f.results[p]} for p in m.after]
        objects = f.app.objects
        object_level = [i for i, p in enumerate(m.after) if objects[p] is not None]
        keyed = [per_parent[i] for i in object_level] or per_parent
        keys = sorted(set.intersection(*(set(d) for d in keyed)))
        items = []
        for k in keys:
            parts = [d[k] if (i in object_level or not object_level) else next(iter(d.values()), None)
                     for i, d in enumerate(per_parent)]
            if any(p is None for p in parts):  # a frame-level parent without its request this frame
                return [], []
            items.append(np.concatenate([np.asarray(p, np.float32).ravel() for p in parts]))
        return keys, items

    async def _hop(self, f: _Frame, module: str) -> None:
        """One module's requests for a frame whose parents are done: dispatched, then their results."""
        loop = asyncio.get_running_loop()
        runnable = loop.time()
        app = f.app
        if runnable > f.deadline:
            raise DeadlineExceeded(f"app {app.name!r}: frame past its {app.slo_ms:g} ms deadline before {module!r}")
        live = self.modules.get((app.name, module))  # the routes in force at this hop
        if live is None:
            raise Unavailable(f"app {app.name!r} is no longer served")
        keys, items = self._requests(f, module, live)
        seen = self._fanout[(app.name, module)]
        seen[0] += 1
        seen[1] += len(items)
        live.stats.frames += 1
        if not items:
            f.results[module] = []
            return
        live.stats.prepare_ms.extend([(loop.time() - runnable) * 1000.0] * len(items))
        if len(items) == 1:
            results = [await live.submit(items[0], f.deadline)]
        else:
            results = list(await asyncio.gather(*(live.submit(x, f.deadline) for x in items)))
        f.results[module] = [_Out(k, r) for k, r in zip(keys, results, strict=True)]
        if pipeline.task_of(app.module(module)) == "detect" and len(results[0].outputs) >= 3:
            for r in results:  # boxes in the client's frame pixels, for the reply
                r.outputs[0] = _to_frame(r.outputs[0], live.route.input_shape, f.frame.shape)
            boxes, scores, labels = results[0].outputs[:3]
            f.detections[module] = Detections(boxes, np.asarray(scores, np.float32), np.asarray(labels, np.int64))

    async def close(self) -> None:
        self.watch.stop()
        for m in self.modules.values():
            await m.close()
        await self.client.close()


def _to_frame(boxes: np.ndarray, input_shape: tuple[int, ...], frame_shape: tuple[int, ...]) -> np.ndarray:
    """A detector's boxes [.., 4] from its input's pixels ([C, h, w]) to the frame's ([H, W, C])."""
    sy, sx = frame_shape[0] / input_shape[1], frame_shape[1] / input_shape[2]
    return (np.asarray(boxes, np.float32) * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)

