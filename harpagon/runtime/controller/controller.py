"""The controller: workers register and heartbeat; it plans against the live inventory and pushes
per-worker configurations and the frontend's routes, and re-plans when a worker joins, leaves or
misses its heartbeats. With several frontends it shares the apps among them as streams
(planner/streams.py): a frontend that starts or stops watching the routes triggers a re-plan.

A re-plan moves modules without dropping requests: workers first get the union of what they run
and what they will run (new modules load and warm up before anything unloads), then the frontend
switches routes and drains batches opened under the old ones, and only then do workers drop what
they no longer run.

With a `serve.fleet`, hardware counts are a quota: each plan is made within the quota first, and the
workers it needs (plus spares, held up by the scale-down delay: fleet.py) are the desired
fleet, which the injected `scaler` (`harpagon serve`'s local one) or an external one (KEDA on
`harpagon_fleet_desired_workers`) starts and stops. While workers are short, the plan is made with
those registered. A worker going away (SIGTERM) says so (`leave`): the controller re-plans without it
and only then pushes it an empty configuration, so that a scale-down loses no frame.

It cannot be wedged by its peers: every push has a deadline, a worker that does not answer one (or
stops heartbeating, or refuses `max_refusals` pushes in a row) is dropped and the plan is made without
it, failed re-plans retry with bounded backoff, a live worker's id and address cannot be taken over,
and a starved event loop is not blamed on the workers. Configuration versions carry the
controller's epoch (its start time), and a worker's registration says what it runs, so a restarted
controller adopts the running state instead of unloading modules that frontends still route to.

Its tunables are one :class:`ControllerConfig`; it reads time through one injected clock (the event
loop's by default), and the watchers and the calibration judge at the `now` it reads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol

from harpagon.config.schema import FrameFormat, ServeConfig, Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import Plan
from harpagon.planner.harpagon import PlannerOptions
from harpagon.planner.harpagon import plan as harpagon_plan
from harpagon.planner.streams import SPLIT_RATE, Streams, app_of, split_streams
from harpagon.runtime.controller.assignment import Assignment, WorkerInfo, assign, live_workload
from harpagon.runtime.controller.calibration import Calibrator
from harpagon.runtime.controller.config import ControllerConfig
from harpagon.runtime.controller.fleet import FleetPolicy, fits
from harpagon.runtime.controller.watches import FanoutWatch, RateWatch
from harpagon.runtime.lifecycle import die_with_parent
from harpagon.runtime.metrics import ControllerMetrics
from harpagon.runtime.promise import describe, target
from harpagon.runtime.wire.clients import GrpcWorkerClient, WorkerClient
from harpagon.runtime.wire.errors import DeadlineExceeded, Unavailable
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.wire.routes import RoutingTable

log = logging.getLogger("harpagon.controller")

RoutesSink = Callable[[RoutingTable, dict[str, str]], Awaitable[None]]


def loop_time() -> float:
    """The running event loop's clock, the one the controller's sleeps and push deadlines run on (a
    virtual one in tests); outside a loop, `time.monotonic`, which a default loop's clock reads."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def epoch_version(now: float | None = None) -> int:
    """The first configuration version of a controller started now: its start time in seconds in the
    high 32 bits, so a restarted controller's versions are newer than its predecessor's."""
    # wall time, not the controller's clock: versions must grow across controllers and restarts
    return int(time.time() if now is None else now) << 32


#: How far ahead of this controller's clock another controller's may have been.
MAX_CLOCK_AHEAD_S = 86_400.0


def latest_version(now: float | None = None) -> int:
    """The newest configuration version any controller could have pushed by now (a clock up to
    MAX_CLOCK_AHEAD_S ahead, every version of its epoch): what a worker may claim to run."""
    # wall time, as in epoch_version
    return epoch_version((time.time() if now is None else now) + MAX_CLOCK_AHEAD_S) + (1 << 32) - 1


def _kept(frontend: str, what: str, report: dict, ok: Callable[[Any, Any], bool], rule: str) -> dict:
    """The entries of a frontend's report that pass `ok`; the others are logged (naming `rule`) and
    dropped: a bad report must not crash or steer the planner."""
    kept = {k: v for k, v in report.items() if ok(k, v)}
    if len(kept) < len(report):
        log.warning("frontend %s: %s dropped from its report (%s): %s", frontend, what, rule,
                    {k: v for k, v in report.items() if k not in kept})
    return kept


def _warm_up() -> None:
    """Run in the planner process at start: its imports are paid before the first plan needs it."""
    import harpagon.planner.harpagon  # noqa: F401


def settings_of(serve: ServeConfig) -> Settings:
    """The planner settings a `serve` section asks for."""
    return Settings(serve.safety, serve.overhead_ms, serve.max_utilization, serve.arrivals, serve.attainment,
                    serve.fanout)


class Scaler(Protocol):
    """Starts and stops workers to match the desired fleet (`harpagon serve`'s local one); called on the
    controller's loop after every plan and every heartbeat period, so it must not block."""

    def scale(self, desired: Mapping[str, int], idle: Mapping[str, list[str]]) -> None:
        """`desired` workers per hardware kind; `idle`: per kind, the ids of registered workers that run
        nothing (the ones to stop first)."""


class RegistrationRefused(ValueError):
    """A registration the controller will not take now (the servicer answers FAILED_PRECONDITION)."""


@dataclass
class _Worker:
    info: WorkerInfo
    last_seen: float
    modules: tuple[ModuleSpec, ...] = ()
    refusals: int = 0
    """Configurations refused in a row."""
    leaving: bool = False
    """It said it is going away: no plan uses it, and once nothing routes to it it is let go."""


@dataclass
class Controller:
    """Plans against the registered workers and moves them and the frontends to each plan (see the
    module's docstring); the servicer calls it, `start` runs its loops."""

    workload: Workload
    settings: Settings
    input_shape: tuple[int, ...] | None
    """`serve.input_shape`: one image size for every frame and crop module (None: each model's own)."""
    push_routes: RoutesSink
    """Puts a routing table in force at the frontends (and, in process, returns once the batches
    opened under the old one are done)."""
    config: ControllerConfig = field(default_factory=ControllerConfig)
    metrics: ControllerMetrics | None = None
    clock: Callable[[], float] = loop_time
    """What the controller reads time with (seconds): heartbeats, quarantines, the wait for the first
    plan, and the `now` the watchers and the calibration judge at. Its sleeps run on the event loop's
    clock, which the default reads."""
    client: WorkerClient = field(default_factory=GrpcWorkerClient)
    """How the controller talks to workers (gRPC; a fake in unit tests)."""
    plan: Plan | None = field(init=False, default=None)
    version: int = field(init=False, default_factory=epoch_version)
    """The latest configuration version pushed (epoch in the high bits, see :func:`epoch_version`)."""
    plans: int = field(init=False, default=0)
    planned_workers: int = field(init=False, default=0)
    planned_at: float = field(init=False, default=float("-inf"))
    calibrator: Calibrator | None = field(init=False, default=None)
    rates: RateWatch = field(init=False)
    """When measured rates move the plan (policy and its state)."""
    fanout: FanoutWatch = field(init=False)
    """When measured fan-out moves the plan (policy and its state)."""
    evicted: int = field(init=False, default=0)
    """Workers dropped so far (missed heartbeats, or no answer to a push)."""
    _workers: dict[str, _Worker] = field(init=False, default_factory=dict)
    _dirty: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(init=False, default_factory=list)
    _pool: ProcessPoolExecutor | None = field(init=False, default=None)
    _checked_at: float = field(init=False, default=float("-inf"))
    _reconciling: bool = field(init=False, default=False)
    _stopped: bool = field(init=False, default=False)
    """No more plans: a worker leaving now is let go at once (nothing would re-plan around it)."""
    _registered_at: float = field(init=False, default=float("-inf"))
    _quarantined: dict[str, float] = field(init=False, default_factory=dict)  # worker id -> until (its clock)
    frontends: dict[str, str] = field(init=False, default_factory=dict)
    """The frontends the plan shares the apps among: id -> where the others forward frames to."""
    streams: Streams | None = field(init=False, default=None)
    """The streams of the plan in force."""
    scaler: Scaler | None = None
    """Starts and stops workers to match the desired fleet (None: nobody, or someone reading the metric)."""
    fleet: FleetPolicy | None = field(init=False, default=None)
    """The desired fleet (with a `serve.fleet`)."""
    left: int = field(init=False, default=0)
    """Workers let go after they said they were leaving."""
    _frames_of: dict[str, FrameFormat] = field(init=False, default_factory=dict)
    """Worker module name -> the frames it decodes (its app's declared `frame`), for the modules of the
    routes in force that take them: their decode times are calibrated per megapixel."""

    def __post_init__(self) -> None:
        apps = self.workload.apps
        self.rates = RateWatch({a.name: a.rate for a in apps}, self.config.watches)
        self.fanout = FanoutWatch({(a.name, m.name): m.scale for a in apps for m in a.modules}, self.config.watches)
        if self.config.calibration is not None:
            self.calibrator = Calibrator(self.workload, self.settings, self.config.calibration)
        serve = self.workload.serve
        if serve is not None and serve.fleet is not None:
            self.fleet = FleetPolicy(serve.fleet, {h.name: h.count for h in self.workload.hardware})

    @property
    def dirty(self) -> bool:
        """A re-plan is pending."""
        return self._dirty.is_set()

    @property
    def settled(self) -> bool:
        """No re-plan pending or under way."""
        return not self._dirty.is_set() and not self._reconciling

    # --- registration (called by the servicer) ------------------------------------------------

    def register(self, info: WorkerInfo, running: tuple[ModuleSpec, ...] = (), running_version: int = 0) -> None:
        """A worker joins (or rejoins); `running` is what it serves now, which is kept where the next
        plan keeps it (a restarted controller adopts the running state). Raises ValueError for an id
        that a live worker at another address holds, or an address a live worker of another id holds:
        nobody takes over a live worker's frames (any holder of the worker certificate could otherwise
        evict any worker, again and again). A worker restarted at its address replaces its old self
        once that one has missed its heartbeats. Raises RegistrationRefused for a worker removed for
        refusing its configurations, for `quarantine_s`."""
        now = self.clock()
        self._admit(info, now)
        self._adopt_version(info.id, running_version)
        old = self._workers.get(info.id)
        if old is not None and old.info == info and old.modules == running:
            old.last_seen = now  # registered again after a missed heartbeat: nothing changed, nothing to plan
            log.info("worker %s registered again; unchanged", info.id)
            return
        if old is not None and old.info.address != info.address:
            self.client.forget(old.info.address)
        self._workers[info.id] = _Worker(info, now, running)
        self._registered_at = now
        self.rates.lift()  # more hardware: rates it could not serve may be served now
        log.info("worker %s joined: %s %s at %s%s%s", info.id, info.hardware, info.device, info.address,
                 " (EMULATED)" if info.emulated else "",
                 f", running {[s.name for s in running]}" if running else "")
        self._dirty.set()

    def frontend_joined(self, frontend: str, address: str) -> None:
        """A frontend watches the routes and takes forwarded frames at `address`: the next plan shares
        the apps with it."""
        if self.frontends.get(frontend) == address:
            return
        self.frontends[frontend] = address
        log.info("frontend %s joined at %s (%d frontends)", frontend, address, len(self.frontends))
        if len(self.frontends) > 1:  # one frontend serves every app itself: nothing to re-plan
            self._dirty.set()

    def frontend_left(self, frontend: str) -> None:
        """A frontend stopped watching the routes: the next plan shares the apps without it (until then
        the others serve its streams themselves when forwarding to it fails)."""
        if self.frontends.pop(frontend, None) is None:
            return
        log.info("frontend %s left (%d frontends)", frontend, len(self.frontends))
        if self.streams is not None and self.streams.split:  # the plan in force shares the apps
            self._dirty.set()

    def _admit(self, info: WorkerInfo, now: float) -> None:
        """Refuse a quarantined worker, or one that would take over a live worker's id or address;
        drop a dead worker at its address (its predecessor)."""
        until = self._quarantined.get(info.id)
        if until is not None:
            if now < until:
                raise RegistrationRefused(f"worker {info.id!r} refused {self.config.max_refusals} configurations "
                                          f"in a row: not taken back for another {until - now:.0f} s")
            del self._quarantined[info.id]
        timeout = self.config.heartbeat_timeout_s
        old = self._workers.get(info.id)
        if old is not None and old.info.address != info.address and now - old.last_seen < timeout:
            raise ValueError(f"worker id {info.id!r} is held by a live worker at {old.info.address}")
        for wid, w in list(self._workers.items()):
            if wid != info.id and w.info.address == info.address:
                if now - w.last_seen < timeout:
                    raise ValueError(f"address {info.address} is held by live worker {wid!r}")
                self._evict(w, f"replaced by worker {info.id} registering at its address")

    def _adopt_version(self, worker_id: str, running_version: int) -> None:
        """Versions only grow at a worker: never push one older than what it runs (a clock behind the
        previous controller's, or a restart within the same second); but a version from further in the
        future than any clock skew is a lie or a bug (2^64 - 1 made every later push overflow)."""
        if running_version > latest_version():
            log.warning("worker %s reports running configuration %d, beyond any controller's epoch (%d): "
                        "ignored", worker_id, running_version, latest_version())
        else:
            self.version = max(self.version, running_version)

    def _evict(self, w: _Worker, why: str) -> None:
        """Drop `w` if it is still the registered worker of its id (it may have registered again)."""
        if self._workers.get(w.info.id) is not w:
            return
        del self._workers[w.info.id]
        log.warning("worker %s at %s removed: %s", w.info.id, w.info.address, why)
        self.client.forget(w.info.address)
        self.evicted += 1
        if self.metrics is not None:
            self.metrics.evicted.inc()
        self._dirty.set()

    def leave(self, worker_id: str) -> bool:
        """A worker is going away. True: it may stop now (unknown, or it runs nothing and no re-plan is
        under way that could give it something); else the next plan is made without it, and it is
        pushed an empty configuration once the frontends route elsewhere."""
        w = self._workers.get(worker_id)
        if w is None:
            return True
        if not w.leaving:
            log.info("worker %s at %s is leaving%s", worker_id, w.info.address,
                     "" if not w.modules else f": re-planning without it ({len(w.modules)} modules)")
        w.leaving = True
        if self._stopped or (not w.modules and not self._reconciling):
            self._let_go(w)
            return True
        self._dirty.set()
        return False

    def _let_go(self, w: _Worker) -> None:
        """A leaving worker that nothing routes to any more goes."""
        if self._workers.get(w.info.id) is w:
            del self._workers[w.info.id]
            self.client.forget(w.info.address)
            self.left += 1
            if self.metrics is not None:
                self.metrics.left.inc()
            log.info("worker %s left", w.info.id)

    def heartbeat(self, worker_id: str, recent_exec_ms: dict[str, list[float]] | None = None,
                  recent_decode_ms: dict[str, list[float]] | None = None) -> bool:
        """A worker is alive; `recent_exec_ms` holds, per module it runs, its batches' execution times
        since its last heartbeat (the calibration compares them with the profile), `recent_decode_ms`
        its batches' frame decode times per frame (compared with the hardware's decode figure)."""
        w = self._workers.get(worker_id)
        if w is None:
            return False
        now = self.clock()
        w.last_seen = now
        if self.calibrator is not None and (recent_exec_ms or recent_decode_ms):
            specs = {s.name: s for s in w.modules}
            for name, samples in (recent_exec_ms or {}).items():
                spec = specs.get(name)
                if spec is not None and samples:
                    self.calibrator.observe_batches(now, spec.model, w.info.hardware, spec.batch, samples)
            for name, samples in (recent_decode_ms or {}).items():
                if (frame := self._frames_of.get(name)) is not None and name in specs and samples:
                    self.calibrator.observe_decode(now, w.info.hardware, frame.encoding,
                                                   [ms / frame.megapixels for ms in samples])
            self._check_calibration(now)
        return True

    def observe_hops(self, overhead_ms: list[float]) -> None:
        """Hop overheads (ms) a frontend measured since its last report."""
        if self.calibrator is not None and overhead_ms:
            now = self.clock()
            self.calibrator.observe_hops(now, overhead_ms)
            self._check_calibration(now)

    def _check_calibration(self, now: float) -> None:
        """Re-plan with the measured figures when they drift from those of the plan in force: judged
        at most once per `calibration_check_s`, over what the plan in force served, not within
        `min_epoch_s` of it, and not while a re-plan is pending or under way."""
        cal = self.calibrator
        if cal is None or now - self._checked_at < self.config.calibration_check_s:
            return
        self._checked_at = now
        measured = cal.measured(now)
        if self.metrics:
            for (model, hardware), e in measured.exec.items():
                self.metrics.exec_factor.labels(model, hardware, "measured").set(e.factor)
            for (hardware, encoding), e in measured.decode.items():
                self.metrics.decode_factor.labels(hardware, encoding, "measured").set(e.factor)
            if measured.overhead_ms is not None:
                self.metrics.hop_overhead.labels("measured").set(measured.overhead_ms / 1000)
        if self.plan is None or not self.settled or now - self.planned_at < self.config.watches.min_epoch_s:
            return  # judged against the plan in force only, once it has served a while
        calibration = cal.calibrated(now, measured)
        if calibration.reasons:
            log.info("measured figures drifted from those the plan in force assumed; re-planning with them: %s",
                     "; ".join(calibration.reasons))
            cal.adopt(calibration, now)
            if self.metrics:
                self.metrics.recalibrations.inc()
            self._dirty.set()

    def observe_rates(self, frontend: str, rates: dict[str, float], window_s: float = 1.0) -> None:
        """Frames per second each app was offered at one frontend over the last `window_s`; re-plan when
        they move the plan (:meth:`RateWatch.decide`)."""
        now = self.clock()
        kept = self._valid_rates(frontend, rates, window_s)
        if kept is None:
            return
        self.rates.observe(now, frontend, kept, window_s)
        if self.metrics:
            self._frontend_metrics()
        if not self.config.follow_rates or self.plan is None:
            return
        move = self.rates.decide(now)
        if move is None:
            return
        if move.moved:
            log.info("measured rates left the band around the planned ones: %s",
                     {k: round(v, 1) for k, v in move.moved.items()})
        if move.idle:
            log.info("apps %s got no frame for %g s: planned at their configured rates again", list(move.idle),
                     self.config.watches.idle_reset_s)
        self.rates.adopt(move)
        self._dirty.set()

    def _frontend_metrics(self) -> None:
        """The frontends reporting (their reports not expired) and each one's latest rates; the series
        of a frontend gone quiet go with it."""
        assert self.metrics is not None
        latest = {name: kept[-1][1] for name, kept in self.rates.reports.items()}
        self.metrics.frontends.set(len(latest))
        shown = {(s.labels["frontend"], s.labels["app"]) for metric in self.metrics.frontend_rate.collect()
                 for s in metric.samples}
        for frontend, app in shown - {(f, a) for f, rates in latest.items() for a in rates}:
            self.metrics.frontend_rate.remove(frontend, app)
        for frontend, rates in latest.items():
            for app, rate in rates.items():
                self.metrics.frontend_rate.labels(frontend, app).set(rate)

    def _valid_rates(self, frontend: str, rates: dict[str, float], window_s: float) -> dict[str, float] | None:
        """The report's rates of configured apps that are finite, >= 0 and at most `max_rate_factor` times
        the configured rate; None (the whole report ignored) for a window that is not in (0, 60] s. What
        is dropped is logged: a bad report must not crash or steer the planner."""
        if not (isinstance(window_s, int | float) and 0 < window_s <= 60):
            log.warning("frontend %s: rate report ignored: window %r s is not in (0, 60]", frontend, window_s)
            return None
        configured = {a.name: a.rate for a in self.workload.apps}
        factor = self.config.max_rate_factor
        kept = _kept(frontend, "rates", rates, lambda app, rate: (
            app in configured and isinstance(rate, int | float) and math.isfinite(rate)
            and 0 <= rate <= factor * configured[app]),
            f"not a configured app, or not a finite rate in [0, {factor:g} x the configured one]")
        return {app: float(rate) for app, rate in kept.items()}

    def observe_fanout(self, frontend: str, counts: dict[tuple[str, str], tuple[int, int]]) -> None:
        """Per (app, module), the frames that reached the module at one frontend since its last report
        and the requests it got for them; re-plan when a module's scale moves the plan
        (:meth:`FanoutWatch.decide`)."""
        now = self.clock()
        self.fanout.observe(now, frontend, self._valid_fanout(frontend, counts))
        if self.plan is None:
            return
        view = self.fanout.decide(now, self.config.follow_fanout)
        if self.metrics:
            for (app, module), got in view.measured.items():
                self.metrics.module_scale.labels(app, module, "measured").set(got)
        if view.moved:
            log.info("measured fan-out left the band around the planned scales for %g s; re-planning with it: {%s}",
                     self.config.watches.rate_hold_s,
                     ", ".join(f"{a}/{m}: {p:.3g} -> {g:.3g}" for (a, m), (p, g) in view.moved.items()))
            self.fanout.adopt(view.moved)
            self._dirty.set()

    def _valid_fanout(self, frontend: str, counts: dict[tuple[str, str], tuple[int, int]]
                      ) -> dict[tuple[str, str], tuple[int, int]]:
        """The report's counts of configured modules that are whole numbers >= 0, with at most `max_fanout`
        requests per frame and at most the frames of `max_rate_factor` times the app's configured rate
        over a minute (a report covers a beacon period). What is dropped is logged: a bad report must
        not crash or steer the planner."""
        configured = {(a.name, m.name): a.rate for a in self.workload.apps for m in a.modules}
        factor, most = self.config.max_rate_factor, self.config.max_fanout

        def ok(key: tuple[str, str], value: object) -> bool:
            if key not in configured or not isinstance(value, tuple) or len(value) != 2:
                return False
            frames, requests = value
            return (isinstance(frames, int) and isinstance(requests, int)
                    and 0 <= frames <= factor * configured[key] * 60 and 0 <= requests <= most * frames)

        return _kept(frontend, "fan-out", counts, ok, f"not a configured module, or not whole counts >= 0 with at "
                                                      f"most {most} requests per frame")

    def _planned_workload(self) -> Workload:
        """The workload with each app at the rate it was last measured at and each module at the scale it
        was last measured at (the configured ones before)."""
        apps = []
        for a in self.workload.apps:
            update: dict[str, object] = {}
            if a.name in self.rates.planned:
                update["rate"] = self.rates.planned[a.name]
            if any((a.name, m.name) in self.fanout.scales for m in a.modules):
                update["modules"] = tuple(m.model_copy(update={"scale": self.fanout.scale((a.name, m.name))})
                                          for m in a.modules)
            apps.append(a.model_copy(update=update) if update else a)
        return self.workload.model_copy(update={"apps": tuple(apps)})

    @property
    def workers(self) -> list[WorkerInfo]:
        """The workers plans are made with (not those leaving); a snapshot (list() copies the dict in
        one step: safe to read from another thread)."""
        return [w.info for w in list(self._workers.values()) if not w.leaving]

    @property
    def running(self) -> dict[str, tuple[str, ...]]:
        """What each worker runs, by worker id (its modules' names; a shared GPU's worker hosts several)."""
        return {w.info.id: tuple(s.name for s in w.modules) for w in list(self._workers.values())}

    # --- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._reconcile_loop()), asyncio.ensure_future(self._watch())]
        if self.config.planning == "process":  # start the planner process now, not at the first plan (a second of imports)
            self._planner().submit(_warm_up)

    async def stop(self) -> None:
        """Stop planning. Workers leaving now (a whole local cluster stopped by one SIGTERM to its process
        group) are let go at once rather than waiting out their drain timeout for a plan that never comes."""
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in [w for w in self._workers.values() if w.leaving]:
            self._let_go(w)
        await self.client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _make_plan(self, workload: Workload, options: PlannerOptions, settings: Settings | None = None) -> Plan:
        """Plan off the event loop: heartbeats share it (and, in `serve`, the GIL with the frontend)."""
        settings = settings or self.settings
        if self.config.planning == "thread":
            return await asyncio.to_thread(harpagon_plan, workload, settings, options)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._planner(), harpagon_plan, workload,
                                                                    settings, options)
        except BrokenProcessPool:
            self._pool = None  # the planner process died: the retry starts a new one
            raise

    def _planner(self) -> ProcessPoolExecutor:
        if self._pool is None:  # spawn, not fork: the gRPC runtime of this process does not survive a fork
            # The planner process dies with this one, kill -9 included (and so does multiprocessing's
            # resource tracker, which exits once the planner, the last holder of its pipe, is gone). It
            # is started by the thread that submits, this loop's: it lives as long as the pool.
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=die_with_parent, initargs=(os.getpid(),))
        return self._pool

    async def _watch(self) -> None:
        """Forget workers that miss their heartbeats. When this loop itself was starved (an overloaded
        event loop, a paused process), heartbeats waited in it too: the time it lost
        is credited to every worker rather than blamed on them."""
        period = self.config.heartbeat_s
        while True:
            due = self.clock() + period
            await asyncio.sleep(period)
            now = self.clock()
            if now - due > period / 2:
                for w in self._workers.values():
                    w.last_seen = max(w.last_seen, min(now, w.last_seen + (now - due)))
            limit = now - self.config.heartbeat_timeout_s
            for w in list(self._workers.values()):
                if w.last_seen < limit:
                    self._evict(w, f"missed {self.config.missed_heartbeats} heartbeats")
            self._scale(now)

    def _scale(self, now: float) -> None:
        """Export the desired fleet and hand it to the scaler (a scale-down delay may end between plans)."""
        if self.fleet is None or self.plan is None:
            return
        desired = self.fleet.desired(now)
        registered = Counter(w.hardware for w in self.workers)
        if self.metrics:
            prices = {h.name: h.price_per_hour for h in self.workload.hardware}
            for kind, n in desired.items():
                self.metrics.fleet_desired.labels(kind).set(n)
                self.metrics.fleet_workers.labels(kind).set(registered.get(kind, 0))
            self.metrics.fleet_cost.labels("planned").set(self.plan.cost_per_hour)
            self.metrics.fleet_cost.labels("allocated").set(sum(prices.get(k, 0.0) * n for k, n in registered.items()))
        if self.scaler is not None:
            idle: dict[str, list[str]] = {}
            for w in list(self._workers.values()):
                if not w.modules and not w.leaving:
                    idle.setdefault(w.info.hardware, []).append(w.info.id)
            try:
                self.scaler.scale(desired, idle)
            except Exception:  # a scaler's failure must not stop heartbeats being judged
                log.exception("the scaler failed; the fleet stays as it is until the next try")

    async def _await_expected_workers(self) -> None:
        c = self.config
        end = self.clock() + c.expect_timeout_s  # registrations that never pause do not stop planning
        if c.expect_workers <= 0:  # a lull in registrations: every running worker is back
            while (not self._workers or self.clock() - self._registered_at < c.lull_s) and self.clock() < end:
                await asyncio.sleep(c.poll_s)
            return
        log.info("waiting up to %.0f s for %d workers to register before planning", c.expect_timeout_s,
                 c.expect_workers)
        while len(self._workers) < c.expect_workers and self.clock() < end:
            await asyncio.sleep(c.poll_s)
        if len(self._workers) < c.expect_workers:
            log.warning("%d of %d workers registered within %.0f s: planning with them", len(self._workers),
                        c.expect_workers, c.expect_timeout_s)
        else:
            log.info("%d workers registered", len(self._workers))

    async def _reconcile_loop(self) -> None:
        await self._await_expected_workers()
        first, most = self.config.retry_s
        backoff = first
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.config.coalesce_s)  # let a burst of joins settle into one re-plan
            try:
                await self.replan()
                backoff = first
            except Exception as exc:
                log.warning("re-plan failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, backoff)
                log.debug("re-plan failure", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(most, backoff * 2)

    async def replan(self) -> None:
        """The pending re-plan, made now (one turn of the loop): what asks for another meanwhile leaves
        it pending, and so does a failure."""
        self._dirty.clear()
        self._reconciling = True
        try:
            await self.reconcile()
        except Exception:
            self._dirty.set()
            raise
        finally:
            self._reconciling = False

    async def reconcile(self) -> None:
        """Plan against the live workers, then move the system to the plan: plan -> assign -> apply ->
        commit."""
        workers = self.workers
        gone = [w for w in self._workers.values() if w.leaving]  # pushed nothing once routes leave them
        started = time.perf_counter()  # the planner's real time, logged: not the controller's clock
        plan, streams, live, workload, settings = await self._plan(workers)
        planning_s = time.perf_counter() - started
        self.plans += 1
        served = {app_of(a.name) for a in plan.apps}  # an app is refused when every stream of it is
        refused = {app_of(r.app): r.reason for r in plan.refused if app_of(r.app) not in served}
        for app, reason in refused.items():
            log.warning("app %s cannot be served: %s", app, reason)
        previous = {w.info.id: w.modules for w in self._workers.values()}
        # emulated detectors keep finding what the configuration says, whatever scales the plan assumes
        assignment = assign(plan, live, workers, self.input_shape, self.version + 2, previous,
                            configured=self.workload, fanout=settings.fanout, streams=streams,
                            addresses=self.frontends)
        await self._apply_assignment(assignment, previous, refused, gone)
        self.streams = streams
        self._commit(plan, workers, workload, settings, refused, planning_s)
        self._scale(self.clock())

    async def _plan(self, workers: list[WorkerInfo]) -> tuple[Plan, Streams, Workload, Workload, Settings]:
        """The plan for `workers`, the streams it serves, the live workload of those streams, and what it
        was planned with. An app the inventory cannot serve at a measured rate above its configured one
        is planned at its configured rate instead: served, with admission refusing the rest, rather than
        not at all."""
        workload, settings = self._inputs()
        streams = self._streams(workload, settings)
        plan, live = await self._plan_within(streams.workload, workers, settings)
        beyond = {app: r.reason for r in plan.refused
                  if self.rates.rate(app := app_of(r.app)) > self.rates.configured[app]}
        if not beyond:
            return plan, streams, live, workload, settings
        for app, reason in beyond.items():
            log.warning("app %s cannot be served at its measured %.1f frames/s (%s): planned at its configured "
                        "%g frames/s, admission refuses the rest", app, self.rates.rate(app), reason,
                        self.rates.configured[app])
            self.rates.unservable(app, self.rates.rate(app))
        workload, settings = self._inputs()
        streams = self._streams(workload, settings)
        plan, live = await self._plan_within(streams.workload, workers, settings)
        return plan, streams, live, workload, settings

    async def _plan_within(self, workload: Workload, workers: list[WorkerInfo], settings: Settings
                           ) -> tuple[Plan, Workload]:
        """The plan for `workers` and the live workload it serves. With a fleet, the plan within the
        quota sets the desired fleet, and is the plan when the workers hold it; while they are short,
        an app that only the quota can serve keeps the rate the plan in force served it at (admission
        refuses the rest) rather than being refused until new workers join."""
        live = live_workload(workload, workers)
        if self.fleet is None:
            return await self._make_plan(live, self._options(), settings), live
        quota = await self._make_plan(workload, self._options(), settings)
        needed = quota.workers_by_hardware()
        self.fleet.observe(self.clock(), needed)
        have = Counter(w.hardware for w in workers)
        short = not fits(needed, have)
        if self.metrics is not None:
            self.metrics.fleet_short.set(1 if short else 0)
        if not short:
            return quota, live
        log.info("fleet short: the plan needs %s workers, %s are registered; planning with them until more join",
                 dict(sorted(needed.items())), dict(sorted(have.items())))
        plan = await self._make_plan(live, self._options(), settings)
        lost = {app_of(r.app) for r in plan.refused} - {app_of(r.app) for r in quota.refused}
        served = _app_rates(self.plan.apps if self.plan is not None else ())
        rates = _app_rates(live.apps)
        kept = {app: served[app] / rates[app] for app in lost if 0 < served[app] < rates[app]}
        if not kept:
            return plan, live
        log.warning("fleet short: apps %s planned at the rates the plan in force served them at until more workers "
                    "join; admission refuses the rest", sorted(kept))
        live = live.model_copy(update={"apps": tuple(
            a.model_copy(update={"rate": a.rate * kept[app_of(a.name)]}) if app_of(a.name) in kept else a
            for a in live.apps)})
        return await self._make_plan(live, self._options(), settings), live

    def _streams(self, workload: Workload, settings: Settings) -> Streams:
        """The apps shared among the frontends; a forwarded frame costs one more hop."""
        serve = self.workload.serve
        return split_streams(workload, list(self.frontends), serve.split_rate if serve else SPLIT_RATE,
                             settings.overhead_ms)

    def _inputs(self) -> tuple[Workload, Settings]:
        """What to plan with: the configuration at the measured rates and scales, and the measured
        figures in force (the configured ones until they drift)."""
        workload, settings = self._planned_workload(), self.settings
        if self.calibrator is not None:
            workload, settings = self.calibrator.planned.apply(workload, settings)
        return workload, settings

    def _options(self) -> PlannerOptions:
        """Always replayed (and repaired) before it is pushed: the plan carries what its replay measured."""
        serve = self.workload.serve
        return PlannerOptions(dispatch=serve.dispatch if serve else "batch-aware", replay=True,
                              sharing=serve.sharing if serve else True)

    async def _apply_assignment(self, assignment: Assignment, previous: dict[str, tuple[ModuleSpec, ...]],
                                refused: dict[str, str], gone: Sequence[_Worker] = ()) -> None:
        """Move the workers and the frontends to `assignment` without dropping a request; the `gone`
        workers (leaving, left out of the plan) unload everything last and are let go."""
        # 1. everything old and new loaded
        await self._push({wid: tuple({s.name: s for s in (*previous.get(wid, ()), *mods)}.values())
                          for wid, mods in assignment.modules.items()})
        # 2. the frontend routes by the new plan and drains the old routes
        await self.push_routes(assignment.table, refused)
        apps = {a.name: a for a in self.workload.apps}
        self._frames_of = {name: a.frame for (app, module), route in assignment.table.routes.items()
                           if (a := apps.get(app_of(app))) is not None and a.frame is not None
                           and a.module(module).input == "frame" for name in route.names}
        final = {**assignment.modules, **{w.info.id: () for w in gone}}
        removed = any({s.name for s in previous.get(wid, ())} - {s.name for s in mods} for wid, mods in final.items())
        if removed and self.config.drain_s > 0:  # batches opened under the old routes finish before their modules go
            await asyncio.sleep(self.config.drain_s)
        # 3. workers drop what they no longer run
        await self._push(final)
        for w in gone:
            self._let_go(w)

    def _commit(self, plan: Plan, workers: list[WorkerInfo], workload: Workload, settings: Settings,
                refused: dict[str, str], planning_s: float) -> None:
        """The plan is in force: remember it, judge drift against it from now on, export and log it."""
        self.plan = plan
        self.planned_workers = len(workers)
        self.in_force(self.clock())
        if self.metrics:
            self._plan_metrics(plan, workers, workload, settings, refused)
        log.info("plan %d in force: $%.3f/h, %d workers, apps %s%s, %s; planned in %.1f s", self.version,
                 plan.cost_per_hour, sum(plan.workers_by_hardware().values()), [a.name for a in plan.apps],
                 f", refused {sorted(refused)}" if refused else "", describe(plan.promise), planning_s)
        if self.streams is not None and self.streams.split:
            log.info("plan %d shares the apps among %d frontends: %s", self.version, len(self.streams.frontends),
                     ", ".join(f"{s.name} at {s.frontend}" for s in self.streams.streams))
        if plan.promise is not None and plan.promise.kept is False:
            log.warning("plan %d does not keep its promise: its replay falls short (%s)", self.version,
                        describe(plan.promise))

    def _plan_metrics(self, plan: Plan, workers: list[WorkerInfo], workload: Workload, settings: Settings,
                      refused: dict[str, str]) -> None:
        m = self.metrics
        assert m is not None
        m.replans.inc()
        m.cost.set(plan.cost_per_hour)
        m.refused.set(len(refused))
        m.workers.clear()
        for hw in {w.hardware for w in workers}:
            m.workers.labels(hw).set(sum(w.hardware == hw for w in workers))
        promise_metrics(m, plan)
        m.keep_modules({(a.name, mod.name) for a in workload.apps for mod in a.modules})
        for a in workload.apps:
            for mod in a.modules:
                m.module_scale.labels(a.name, mod.name, "planned").set(mod.scale)
        if self.calibrator is not None:
            planned = self.calibrator.planned
            for p in workload.profiles:
                m.exec_factor.labels(p.model, p.hardware, "planned").set(planned.factor(p.model, p.hardware))
            for h in workload.hardware:
                for enc in h.decode_ms_per_mpixel:
                    m.decode_factor.labels(h.name, enc, "planned").set(planned.decode_factor(h.name, enc))
            m.hop_overhead.labels("planned").set(settings.overhead_ms / 1000)

    def in_force(self, at: float) -> None:
        """The plan is in force since `at`: rates, fan-out and the calibration's figures are judged
        afresh against it, over what it serves from then on."""
        self.planned_at = at
        self.rates.in_force(at)
        self.fanout.in_force(at)
        if self.calibrator is not None:
            self.calibrator.adopt(self.calibrator.planned, at)

    async def _push(self, modules: dict[str, tuple[ModuleSpec, ...]]) -> None:
        """Apply each worker's configuration, all at once, each with a deadline. A worker that does
        not answer (or is dropped for missed heartbeats meanwhile) leaves the inventory, and the
        re-plan fails so that the next one is made without it."""
        self.version += 1
        targets = [(w, specs) for wid, specs in modules.items() if (w := self._workers.get(wid)) is not None]
        results = await asyncio.gather(*(self._apply(w, specs) for w, specs in targets), return_exceptions=True)
        failed = []
        for (w, specs), result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(f"{w.info.id}: {result}")
                self._refused(w, result)
            else:  # what a worker runs is what it accepted
                w.modules = specs
                w.refusals = 0
        if failed:
            raise RuntimeError(f"workers did not take their configuration: {'; '.join(failed)}")

    def _refused(self, w: _Worker, error: BaseException) -> None:
        """A worker that did not answer a push leaves; one that refused it too often in a row is removed
        and kept out for `quarantine_s`."""
        if isinstance(error, Unavailable | DeadlineExceeded | asyncio.TimeoutError):
            self._evict(w, f"no answer to configuration {self.version}: {error}")
            return
        w.refusals += 1
        if w.refusals >= self.config.max_refusals:
            quarantine_s = self.config.quarantine_s
            self._quarantined[w.info.id] = self.clock() + quarantine_s
            self._evict(w, f"refused {w.refusals} configurations in a row (the latest: {error}); "
                           f"its registrations are refused for {quarantine_s:g} s")

    async def _apply(self, w: _Worker, specs: tuple[ModuleSpec, ...]) -> int:
        """One push, abandoned as soon as the worker is dropped (it stopped heartbeating)."""
        call = asyncio.ensure_future(self.client.apply(w.info.address, self.version, specs,
                                                       self.config.apply_timeout_s))
        try:
            while True:
                done, _ = await asyncio.wait({call}, timeout=self.config.heartbeat_s)
                if done:
                    return call.result()
                if self._workers.get(w.info.id) is not w:
                    raise Unavailable(f"worker {w.info.id} was dropped while configuring it")
        finally:
            call.cancel()


def _app_rates(apps) -> Counter[str]:
    """Frames per second per app, its streams (`app#i`) added up."""
    rates: Counter[str] = Counter()
    for a in apps:
        rates[app_of(a.name)] += a.rate
    return rates


def promise_metrics(m: ControllerMetrics, plan: Plan) -> None:
    """Export the plan's promise and its replay, labelled by the arrivals the promise is about (none for
    fluid)."""
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
