"""The controller: workers register and heartbeat; it plans against the live inventory and pushes
per-worker configurations and the frontend's routes, and re-plans when a worker joins, leaves or
misses its heartbeats.

A re-plan moves modules without dropping requests: workers first get the union of what they run
and what they will run (new modules load and warm up before anything unloads), then the frontend
switches routes and drains batches opened under the old ones, and only then do workers drop what
they no longer run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Literal

import grpc

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import Plan
from harpagon.planner.harpagon import PlannerOptions
from harpagon.planner.harpagon import plan as harpagon_plan
from harpagon.runtime.controller.assignment import WorkerInfo, assign, live_workload
from harpagon.runtime.frontend.routes import RoutingTable, to_proto
from harpagon.runtime.metrics import ControllerMetrics
from harpagon.runtime.promise import describe, target
from harpagon.runtime.worker.executor import ModuleSpec
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc

log = logging.getLogger("harpagon.controller")

RoutesSink = Callable[[RoutingTable, dict[str, str]], Awaitable[None]]

#: Re-plan when an app's measured rate leaves this band around its planned rate (as Nexus does).
RATE_BAND = (0.8, 1.1)
#: ...but not more often than this (seconds).
MIN_EPOCH_S = 10.0
#: Rates are judged over the reports since the plan in force, at most this many seconds of them...
RATE_WINDOW_S = 30.0
#: ...and only a move beyond this many standard deviations of a Poisson count at the planned rate
#: counts: under Poisson arrivals (what plans are promised for) a 1 s count of a 40/s app leaves
#: 0.8-1.1x about one second in four, which re-planned the demo twice in 20 s.
RATE_NOISE_Z = 4.0


@dataclass
class _Worker:
    info: WorkerInfo
    stub: rpc.WorkerStub
    channel: grpc.aio.Channel
    last_seen: float
    modules: tuple[ModuleSpec, ...] = ()


@dataclass
class Controller:
    workload: Workload
    settings: Settings
    input_shape: tuple[int, ...]
    push_routes: RoutesSink
    heartbeat_ms: int = 500
    missed_heartbeats: int = 3
    metrics: ControllerMetrics | None = None
    clock: Callable[[], float] = time.monotonic
    plan: Plan | None = None
    version: int = 0
    _workers: dict[str, _Worker] = field(default_factory=dict)
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    plans: int = 0
    planned_workers: int = 0
    planned_at: float = float("-inf")
    _reports: dict[str, deque[tuple[float, dict[str, float], float]]] = field(
        default_factory=dict)  # frontend -> (time, app -> frames/s, window s) of its latest reports
    _measured: dict[str, float] = field(default_factory=dict)  # app -> rate the plan in force was made for
    planning: Literal["process", "thread"] = "process"
    """Where plans are made, off the event loop. The planner's replay is seconds of pure Python: in a
    thread it holds the GIL against the embedded frontend's data plane (scripts/bench_replan.py on the
    demo: frame P99 0.6-1.1 s while planning, against 37 ms in a process), so a planner process does it."""
    _pool: ProcessPoolExecutor | None = None

    @property
    def dirty(self) -> bool:
        """A re-plan is pending."""
        return self._dirty.is_set()

    # --- registration (called by the servicer) ------------------------------------------------

    def register(self, info: WorkerInfo) -> None:
        old = self._workers.pop(info.id, None)
        if old is not None:
            asyncio.ensure_future(old.channel.close())
        channel = grpc.aio.insecure_channel(info.address)
        self._workers[info.id] = _Worker(info, rpc.WorkerStub(channel), channel, time.monotonic())
        log.info("worker %s joined: %s %s at %s%s", info.id, info.hardware, info.device, info.address,
                 " (EMULATED)" if info.emulated else "")
        self._dirty.set()

    def heartbeat(self, worker_id: str) -> bool:
        w = self._workers.get(worker_id)
        if w is None:
            return False
        w.last_seen = time.monotonic()
        return True

    def observe_rates(self, frontend: str, rates: dict[str, float], window_s: float = 1.0) -> None:
        """Frames per second each app got at one frontend over the last `window_s`; re-plan when an
        app's total, over the reports since the plan in force (at most RATE_WINDOW_S of them), leaves
        the band around the rate its plan was made for by more than Poisson noise (at most once per
        MIN_EPOCH_S)."""
        now = self.clock()
        self._reports.setdefault(frontend, deque()).append((now, dict(rates), window_s if window_s > 0 else 1.0))
        for reports in self._reports.values():
            while reports and reports[0][0] < now - RATE_WINDOW_S:
                reports.popleft()
        if self.plan is None or now - self.planned_at < MIN_EPOCH_S:
            return
        total: dict[str, float] = {}
        span = math.inf  # seconds of reports behind the total (the least over the frontends)
        for reports in self._reports.values():
            recent = [(r, w) for t, r, w in reports if t > self.planned_at]
            if not recent:
                continue
            seconds = sum(w for _, w in recent)
            span = min(span, seconds)
            for app in {app for r, _ in recent for app in r}:
                total[app] = total.get(app, 0.0) + sum(r.get(app, 0.0) * w for r, w in recent) / seconds
        moved = {}
        for a in self.workload.apps:
            planned = self._measured.get(a.name, a.rate)
            got = total.get(a.name, 0.0)
            noise = RATE_NOISE_Z * math.sqrt(planned / span)  # std of a Poisson count at the planned rate, per s
            if got > 0 and not RATE_BAND[0] * planned <= got <= RATE_BAND[1] * planned and abs(got - planned) > noise:
                moved[a.name] = got
        if moved:
            log.info("measured rates left the band around the planned ones: %s",
                     {k: round(v, 1) for k, v in moved.items()})
            self._measured.update(moved)
            self._dirty.set()

    def _planned_workload(self) -> Workload:
        """The workload with each app at the rate it was last measured at (its configured rate before)."""
        apps = tuple(a.model_copy(update={"rate": self._measured[a.name]}) if a.name in self._measured else a
                     for a in self.workload.apps)
        return self.workload.model_copy(update={"apps": apps})

    @property
    def workers(self) -> list[WorkerInfo]:
        return [w.info for w in self._workers.values()]

    # --- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._reconcile_loop()), asyncio.ensure_future(self._watch())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self._workers.values():
            await w.channel.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _make_plan(self, workload: Workload, options: PlannerOptions) -> Plan:
        """Plan off the event loop: heartbeats and (in `serve`) the frontend's data plane share it."""
        if self.planning == "thread":
            return await asyncio.to_thread(harpagon_plan, workload, self.settings, options)
        if self._pool is None:  # spawn, not fork: the gRPC runtime of this process does not survive a fork
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, harpagon_plan, workload,
                                                                    self.settings, options)
        except BrokenProcessPool:
            self._pool = None  # the planner process died: the retry starts a new one
            raise

    async def _watch(self) -> None:
        """Forget workers that miss their heartbeats."""
        while True:
            await asyncio.sleep(self.heartbeat_ms / 1000.0)
            limit = time.monotonic() - self.missed_heartbeats * self.heartbeat_ms / 1000.0
            for wid, w in list(self._workers.items()):
                if w.last_seen < limit:
                    log.warning("worker %s missed %d heartbeats: removed", wid, self.missed_heartbeats)
                    del self._workers[wid]
                    await w.channel.close()
                    self._dirty.set()

    async def _reconcile_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.2)  # let a burst of joins settle into one re-plan
            self._dirty.clear()
            try:
                await self.reconcile()
            except Exception:
                log.exception("re-plan failed; retrying")
                self._dirty.set()
                await asyncio.sleep(1.0)

    async def reconcile(self) -> None:
        """Plan against the live workers, then move the system to the plan."""
        workers = self.workers
        live = live_workload(self._planned_workload(), workers)
        dispatch = self.workload.serve.dispatch if self.workload.serve else "batch-aware"
        # always replayed (and repaired) before it is pushed: the plan carries what its replay measured
        started = time.perf_counter()
        plan = await self._make_plan(live, PlannerOptions(dispatch=dispatch, replay=True))
        planning_s = time.perf_counter() - started
        self.plans += 1
        refused = {r.app: r.reason for r in plan.refused}
        for app, reason in refused.items():
            log.warning("app %s cannot be served: %s", app, reason)
        previous = {w.info.id: w.modules for w in self._workers.values()}
        assignment = assign(plan, live, workers, self.input_shape, self.version + 2, previous)
        # 1. everything old and new loaded
        await self._push({wid: tuple({s.name: s for s in (*previous.get(wid, ()), *mods)}.values())
                          for wid, mods in assignment.modules.items()})
        # 2. the frontend routes by the new plan and drains the old routes
        await self.push_routes(assignment.table, refused)
        # 3. workers drop what they no longer run
        await self._push(assignment.modules)
        self.plan = plan
        self.planned_workers = len(workers)
        self.planned_at = self.clock()
        if self.metrics:
            self.metrics.replans.inc()
            self.metrics.cost.set(plan.cost_per_hour)
            self.metrics.refused.set(len(refused))
            self.metrics.workers.clear()
            for hw in {w.hardware for w in workers}:
                self.metrics.workers.labels(hw).set(sum(w.hardware == hw for w in workers))
            self._promise_metrics(plan)
        log.info("plan %d in force: $%.3f/h, %d workers, apps %s%s, %s; planned in %.1f s", self.version,
                 plan.cost_per_hour, sum(plan.workers_by_hardware().values()), [a.name for a in plan.apps],
                 f", refused {sorted(refused)}" if refused else "", describe(plan.promise), planning_s)
        if plan.promise is not None and plan.promise.kept is False:
            log.warning("plan %d does not keep its promise: its replay falls short (%s)", self.version,
                        describe(plan.promise))

    def _promise_metrics(self, plan: Plan) -> None:
        """The plan's promise and its replay, labelled by the arrivals the promise is about (none for fluid)."""
        m = self.metrics
        assert m is not None
        for gauge in (m.promise_target, m.promise_kept, m.promise_attainment):
            gauge.clear()
        p = plan.promise
        if p is None or p.arrivals == "fluid":
            return
        goal = target(p, p.arrivals)
        assert goal is not None
        m.promise_target.labels(p.arrivals).set(goal)
        if p.replayed is not None:
            m.promise_kept.labels(p.arrivals).set(1.0 if p.kept else 0.0)
            for app, attainment in p.replayed.apps:
                m.promise_attainment.labels(app).set(attainment)

    async def _push(self, modules: dict[str, tuple[ModuleSpec, ...]]) -> None:
        self.version += 1
        calls = []
        for wid, specs in modules.items():
            w = self._workers.get(wid)
            if w is None:
                continue
            w.modules = specs
            config = pb.WorkerConfig(version=self.version, modules=[
                pb.ModuleConfig(name=s.name, model=s.model, batch=s.batch, input_shape=list(s.input_shape),
                                weights=s.weights or "", half=s.half, budget_ms=s.budget_ms) for s in specs])
            calls.append(w.stub.ApplyConfig(pb.ApplyConfigRequest(config=config), timeout=300))
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, Exception):
                raise RuntimeError(f"a worker refused its configuration: {result}")


class RoutesHub:
    """Streams the routing table to remote frontends: the current one on connect, then each new one."""

    def __init__(self, drain_s: float = 2.0):
        self.current: pb.Routes | None = None
        self.watchers: set[asyncio.Queue] = set()
        self.drain_s = drain_s

    async def push(self, table: RoutingTable, refused: dict[str, str]) -> None:
        self.current = to_proto(table, refused)
        for q in self.watchers:
            q.put_nowait(self.current)
        if self.watchers:  # remote frontends cannot say when old batches are done: give them time
            await asyncio.sleep(self.drain_s)

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


class ControllerServicer(rpc.ControllerServicer):
    def __init__(self, controller: Controller, hub: RoutesHub | None = None):
        self.controller = controller
        self.hub = hub

    async def WatchRoutes(self, request, context):
        if self.hub is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this controller pushes routes to an embedded frontend")
        log.info("frontend %s watches routes", request.frontend_id)
        async for routes in self.hub.watch():
            yield routes

    async def ReportRates(self, request, context):
        self.controller.observe_rates(request.frontend_id, dict(request.app_rates), request.window_s)
        return pb.RatesReply()

    async def Register(self, request, context):
        self.controller.register(WorkerInfo(request.worker_id, request.address, request.hardware, request.device,
                                            request.emulated))
        return pb.RegisterResponse(heartbeat_ms=self.controller.heartbeat_ms)

    async def Heartbeat(self, request, context):
        return pb.HeartbeatResponse(known=self.controller.heartbeat(request.worker_id))
