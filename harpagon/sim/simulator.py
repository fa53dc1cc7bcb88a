"""The replay (docs/model.md v2): a discrete-event simulation of a plan, the same for every planner.

The dispatchers are those of :mod:`harpagon.dispatch` (the live frontend runs the same code) driven
by a virtual clock; a worker runs its batches one at a time, first in first out, for exactly `d(b)` ms
(the profile's `mean + std` times `safety`: the planner's worst case), and `overhead_ms` is added to
every request after its batch finishes, without occupying the worker. A module gets
`floor((f + 1) s) - floor(f s)` requests for frame `f` (scale `s`), all released at once when every
parent has finished the frame; a frame is done when every module has finished it. Under Poisson fan-out
(`fanout="poisson"`, an extension of docs/model.md v2) every module but the source instead gets a draw from
Poisson(s) for each frame, independent per module and frame and seeded. At equal times,
batch completions come first, then arrivals (of frames, and of requests released by a parent), then
flush timers.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from harpagon.config.schema import App, Module, Workload
from harpagon.dispatch.batcher import TIMER_SLACK_MS
from harpagon.dispatch.module import ModuleDispatcher, Shipped, TupleSpec
from harpagon.model.latency import PLAN_TOL, REL_TOL, Fanout, module_latencies, poisson_requests, requests_for
from harpagon.model.plan import Plan
from harpagon.sim.sweep import shared_apps, sweep, sweepable

#: The arrival patterns a replay runs (the promises' `Arrivals` less `fluid`, which no replay has).
ReplayArrivals = Literal["constant", "poisson"]

#: Event kinds in the order docs/model.md gives them at equal times.
_COMPLETION, _ARRIVAL, _TIMER = 0, 1, 2


@dataclass(frozen=True)
class ModuleReplay:
    """One module of an app as the replay ran it."""

    name: str
    requests: int
    max_ms: float
    """Longest time from the moment a request was ready for this module (its parents done) to its result."""
    predicted_ms: float
    """The plan's promise for this module (`overhead_ms` is part of both)."""
    batches: int
    dummies: int
    latencies: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    """Per frame that reached the module: from its release to its last result (ms)."""

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.latencies, q)) if len(self.latencies) else 0.0


@dataclass(frozen=True)
class AppStats:
    name: str
    slo_ms: float
    frames: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    over_slo: float
    """Fraction of frames whose end-to-end latency exceeded the SLO."""
    modules: tuple[ModuleReplay, ...]

    late_se: float = 0.0
    """Standard error of `over_slo` by batch means (20 consecutive batches of frames): how far another
    seed's replay may land."""

    @property
    def attainment(self) -> float:
        """Fraction of frames within the SLO."""
        return 1.0 - self.over_slo

    def module(self, name: str) -> ModuleReplay:
        return next(m for m in self.modules if m.name == name)


@dataclass(frozen=True)
class SimResult:
    arrivals: ReplayArrivals
    apps: tuple[AppStats, ...]
    fanout: Fanout = "deterministic"

    def app(self, name: str) -> AppStats:
        return next(a for a in self.apps if a.name == name)

    @property
    def over_slo(self) -> float:
        """Fraction of all frames over their app's SLO."""
        frames = sum(a.frames for a in self.apps)
        return sum(a.over_slo * a.frames for a in self.apps) / frames if frames else 0.0


def arrival_times(rate: float, frames: int, arrivals: ReplayArrivals, rng: random.Random) -> list[float]:
    """Frame arrival times in ms: evenly spaced, or a Poisson process of the same rate."""
    if arrivals == "constant":
        return [1000.0 * k / rate for k in range(frames)]
    out, t = [], 0.0
    for _ in range(frames):
        out.append(t)
        t += rng.expovariate(rate) * 1000.0
    return out


@dataclass
class _Worker:
    """A worker runs its queue of batches one at a time, in arrival order."""

    key: tuple
    busy_until: float = 0.0
    queue: deque[tuple[str, str, Shipped, float]] = field(default_factory=deque)  # app, module, batch, d(b)


class Simulator:
    """One run of one plan. Use :func:`simulate`."""

    def __init__(self, plan: Plan, workload: Workload, arrivals: ReplayArrivals, frames: dict[str, int],
                 seed: int, fanout: Fanout = "deterministic"):
        self.plan = plan
        self.workload = workload
        self.arrivals = arrivals
        self.fanout = fanout
        self.frames = frames
        self.seed = seed
        self.events: list[tuple[float, int, str, tuple]] = []
        self.seq = 0
        self.apps = {a.name: a for a in workload.apps}
        self.overhead = plan.settings.overhead_ms
        self.dispatchers: dict[tuple[str, str], ModuleDispatcher] = {}
        self.timer_at: dict[tuple[str, str], float | None] = {}
        self.workers: dict[tuple, _Worker] = {}
        self.worker_of: dict[tuple[str, str, int, int], _Worker] = {}
        self.d_of: dict[tuple[str, str, int], Callable[[int], float]] = {}
        for ap in plan.apps:
            for mp in ap.modules:
                key = (ap.name, mp.name)
                self.dispatchers[key] = ModuleDispatcher([TupleSpec.of(t) for t in mp.tuples], plan.dispatch)
                self.timer_at[key] = None
                app, module = self.apps[ap.name], self.apps[ap.name].module(mp.name)
                for k, t in enumerate(mp.tuples):
                    self.d_of[(ap.name, mp.name, k)] = self._d(app, module, t.hardware)
                    for j in range(t.workers):
                        # Tuples on one shared GPU (Nexus-style packing) share one worker.
                        wkey = ("gpu", t.gpu) if t.gpu is not None else (ap.name, mp.name, k, j)
                        if wkey not in self.workers:
                            self.workers[wkey] = _Worker(wkey)
                        self.worker_of[(ap.name, mp.name, k, j)] = self.workers[wkey]
        # Per (app, frame): arrival time, pending parents per module, pending requests per module.
        self.arrival: dict[str, list[float]] = {}
        self.pending_parents: dict[tuple[str, int], dict[str, int]] = {}
        self.pending_requests: dict[tuple[str, int, str], int] = {}
        self.ready_at: dict[tuple[str, int, str], float] = {}
        self.done_modules: dict[tuple[str, int], int] = defaultdict(int)
        self.latencies: dict[str, list[tuple[float, int, float]]] = defaultdict(list)  # (done, frame, latency)
        self.module_latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.scale = {(a.name, m.name): m.scale for a in workload.apps for m in a.modules}
        self.module_requests: dict[tuple[str, str], int] = defaultdict(int)
        # Poisson fan-out: each module's counts, drawn up front from the seed, the app and the module
        # (so they do not depend on the order of events, nor on which other apps are replayed).
        self.counts: dict[tuple[str, str], np.ndarray] = {}
        if fanout == "poisson":
            for ap in plan.apps:
                for m in self.apps[ap.name].modules:
                    if m.after:  # the source gets the frame itself
                        self.counts[(ap.name, m.name)] = poisson_requests(m.scale, frames[ap.name],
                                                                          f"{seed}/{ap.name}/{m.name}")
        self.module_batches: dict[tuple[str, str], int] = defaultdict(int)
        self.module_dummies: dict[tuple[str, str], int] = defaultdict(int)
        self.trace: list[tuple[float, str, str, int, int, tuple, int]] | None = None
        """Set to a list to record every shipped batch: (time, app, module, tuple, worker, frames, size)."""

    def _d(self, app: App, module: Module, hardware: str) -> Callable[[int], float]:
        return module_latencies(self.workload, app, module, hardware, self.plan.settings.safety).__getitem__

    # --- event loop ---------------------------------------------------------------------------

    def push(self, t: float, order: int, kind: str, payload: tuple) -> None:
        """Events run in time order, then in docs/model.md's order of kinds; requests that become ready at
        one instant in frame order (docs/model.md leaves it open; the sweep takes the same), the rest in
        the order they were pushed."""
        self.seq += 1
        tie = payload[1] if kind == "ready" else 0  # (app, frame, module)
        heapq.heappush(self.events, (t, order, tie, self.seq, kind, payload))

    def run(self) -> SimResult:
        for ap in self.plan.apps:
            # One stream per app, from the seed and the app's name: an app's arrivals are the same
            # whichever other apps are replayed with it.
            rng = random.Random(f"{self.seed}/{ap.name}")
            times = arrival_times(ap.rate, self.frames[ap.name], self.arrivals, rng)
            self.arrival[ap.name] = times
            app = self.apps[ap.name]
            for f, t in enumerate(times):
                self.pending_parents[(ap.name, f)] = {m.name: len(m.after) for m in app.modules}
                self.push(t, _ARRIVAL, "ready", (ap.name, f, app.source))
        handlers = {"ready": self._ready, "timer": self._timer, "finish": self._finish, "results": self._results}
        events = self.events
        while events:
            t, _, _, _, kind, payload = heapq.heappop(events)
            handlers[kind](t, *payload)
        return self._result()

    def _ready(self, now: float, app: str, frame: int, module: str) -> None:
        """A module's parents are done for a frame: all its requests reach the dispatcher now."""
        counts = self.counts.get((app, module))
        n = int(counts[frame]) if counts is not None else requests_for(frame, self.scale[(app, module)])
        self.ready_at[(app, frame, module)] = now
        if n == 0:
            self._module_done(now, app, frame, module)
            return
        self.pending_requests[(app, frame, module)] = n
        self.module_requests[(app, module)] += n
        disp = self.dispatchers[(app, module)]
        for _ in range(n):
            self._ship(now, app, module, disp.add(frame, now))
        self._arm(app, module)

    def _timer(self, now: float, app: str, module: str) -> None:
        key = (app, module)
        if self.timer_at[key] is not None and now < self.timer_at[key]:
            return  # a stale timer; a later one is armed
        self.timer_at[key] = None
        self._ship(now, app, module, self.dispatchers[key].poll(now))
        self._arm(app, module)

    def _arm(self, app: str, module: str) -> None:
        key = (app, module)
        due = self.dispatchers[key].deadline()
        if due is not None and self.timer_at[key] != due:
            self.timer_at[key] = due
            self.push(due + TIMER_SLACK_MS, _TIMER, "timer", (app, module))

    def _ship(self, now: float, app: str, module: str, shipped: list[Shipped]) -> None:
        for s in shipped:
            key = (app, module)
            self.module_batches[key] += 1
            self.module_dummies[key] += s.batch.dummies
            if self.trace is not None:
                self.trace.append((now, app, module, s.tuple_index, s.worker, tuple(s.batch.items), s.batch.size))
            w = self.worker_of[(app, module, s.tuple_index, s.worker)]
            w.queue.append((app, module, s, self.d_of[(app, module, s.tuple_index)](s.batch.size)))
            if len(w.queue) == 1:  # it was idle
                self._start(now, w)

    def _start(self, now: float, w: _Worker) -> None:
        w.busy_until = now + w.queue[0][3]
        self.push(w.busy_until, _COMPLETION, "finish", (w.key,))

    def _finish(self, now: float, worker: tuple) -> None:
        w = self.workers[worker]
        app, module, s, _ = w.queue.popleft()
        if w.queue:
            self._start(now, w)
        if self.overhead > 0:  # the hop back: results land later, the worker is already free
            self.push(now + self.overhead, _COMPLETION, "results", (app, module, s.batch.items))
        else:
            self._results(now, app, module, s.batch.items)

    def _results(self, now: float, app: str, module: str, frames: list[int]) -> None:
        for frame in frames:
            key = (app, frame, module)
            self.pending_requests[key] -= 1
            if self.pending_requests[key] == 0:
                self._module_done(now, app, frame, module)

    def _module_done(self, now: float, app: str, frame: int, module: str) -> None:
        key = (app, module)
        self.module_latencies[key].append(now - self.ready_at.pop((app, frame, module)))
        self.pending_requests.pop((app, frame, module), None)
        a = self.apps[app]
        self.done_modules[(app, frame)] += 1
        if self.done_modules[(app, frame)] == len(a.modules):
            self.latencies[app].append((now, frame, now - self.arrival[app][frame]))
            del self.done_modules[(app, frame)]
            del self.pending_parents[(app, frame)]
            return
        pending = self.pending_parents[(app, frame)]
        for child in a.children[module]:
            pending[child] -= 1
            if pending[child] == 0:  # released after every completion at this instant
                self.push(now, _ARRIVAL, "ready", (app, frame, child))

    def _result(self) -> SimResult:
        apps = []
        for ap in self.plan.apps:
            # In the order frames finish, those finishing at one instant by frame (the sweep's order).
            done = sorted(self.latencies[ap.name])
            lat = np.array([x for _, _, x in done]) if done else np.array([math.nan])
            late = lat > ap.slo_ms * (1 + REL_TOL)
            modules = []
            for mp in ap.modules:
                key = (ap.name, mp.name)
                ml = np.array(self.module_latencies[key])
                modules.append(ModuleReplay(mp.name, self.module_requests[key], float(ml.max()) if len(ml) else 0.0,
                                           mp.predicted_latency_ms, self.module_batches[key],
                                           self.module_dummies[key], ml))
            apps.append(AppStats(
                ap.name, ap.slo_ms, len(self.latencies[ap.name]), float(np.percentile(lat, 50)),
                float(np.percentile(lat, 99)), float(lat.max()),
                float(np.mean(late)), tuple(modules), _batch_means_se(late),
            ))
        return SimResult(self.arrivals, tuple(apps), self.fanout)


def _batch_means_se(late: np.ndarray, batches: int = 20) -> float:
    """Standard error of the mean of `late` from the means of consecutive batches (frames close in time
    are correlated: a long queue makes many late at once)."""
    if len(late) < 2 * batches:
        return 0.0
    means = np.array([b.mean() for b in np.array_split(late.astype(float), batches)])
    return float(means.std(ddof=1) / math.sqrt(batches))


Engine = Literal["auto", "events", "sweep"]


def simulate(plan: Plan, workload: Workload, arrivals: ReplayArrivals = "constant", *,
             duration_s: float = 10.0, max_frames: int = 20_000, seed: int = 0, frames: int | None = None,
             fanout: Fanout | None = None, seconds: float = 0.0, engine: Engine = "auto") -> SimResult:
    """Replay a plan at its planned rates for `duration_s` (at most `max_frames` frames per app), or for
    `frames` frames per app when given (and at least `seconds` of each app's frames: docs/model.md's
    steady-state horizon is `frames=10_000, seconds=60`). `fanout`: requests per frame of the modules
    below the source, the planned counts or Poisson draws of the seed (default: the plan's
    `settings.fanout`). `engine`: the event simulator, the module-by-module sweep
    (:mod:`harpagon.sim.sweep`, no shared GPUs), or the sweep wherever it applies (the two agree)."""
    if frames is not None:
        counts = {ap.name: max(frames, math.ceil(ap.rate * seconds - PLAN_TOL)) for ap in plan.apps}
    else:
        counts = {ap.name: max(1, min(max_frames, math.ceil(ap.rate * duration_s))) for ap in plan.apps}
    fan = fanout or plan.settings.fanout
    if engine == "events":
        return Simulator(plan, workload, arrivals, counts, seed, fan).run()
    if engine == "sweep" and not sweepable(plan):
        raise ValueError("the sweep replays plans without shared GPUs only")
    # Apps meet only on shared GPUs (and each app's arrivals come from its own seed): the apps that
    # share none are swept, the others replayed by events, and the results are the same as one run.
    shared, alone = shared_apps(plan)
    stats = {}
    if alone:
        stats.update((a.name, a) for a in sweep(replace(plan, apps=alone), workload, arrivals, counts, seed, fan).apps)
    if shared:
        part = replace(plan, apps=shared)
        stats.update((a.name, a) for a in Simulator(part, workload, arrivals, counts, seed, fan).run().apps)
    return SimResult(arrivals, tuple(stats[ap.name] for ap in plan.apps), fan)
