"""The replay, module by module: the same model as :class:`~harpagon.sim.simulator.Simulator`, faster.

When no GPU is shared between tuples, a module's dispatch and workers depend only on when its
requests become ready, so the replay needs no global event queue: it walks each app's modules in
topological order, feeds each module's requests to its :class:`~harpagon.dispatch.ModuleDispatcher`
(the live frontend's code) in time order with the flush timers fired between them, and runs each
worker as a first-in first-out queue (a batch starts when it ships or when the worker's previous batch
ends, whichever is later). A frame's ready time at a module is the latest of its parents' done times.

The order of simultaneous events follows docs/model.md (arrivals before flush timers; completions first);
frames ready at the same instant at one module are taken in frame order. The event simulator stays
the reference: it replays shared GPUs and records traces, and a test checks that the two give the same
latencies, batches and attainment.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np

from harpagon.config.schema import App, Module, Workload
from harpagon.dispatch.batcher import TIMER_SLACK_MS
from harpagon.dispatch.module import ModuleDispatcher, Shipped, TupleSpec
from harpagon.model.latency import PLAN_TOL, REL_TOL, Fanout, module_latencies, poisson_requests
from harpagon.model.plan import AppPlan, ModulePlan, Plan


def sweepable(plan: Plan) -> bool:
    """Whether the module-by-module replay applies: no tuple on a shared GPU."""
    return not shared_apps(plan)[0]


def shared_apps(plan: Plan) -> tuple[tuple[AppPlan, ...], tuple[AppPlan, ...]]:
    """The plan's apps with a tuple on a shared GPU, and the others (in plan order)."""
    shared = tuple(ap for ap in plan.apps if any(t.gpu is not None for mp in ap.modules for t in mp.tuples))
    return shared, tuple(ap for ap in plan.apps if ap not in shared)


def linked(plan: Plan) -> dict[str, tuple[AppPlan, ...]]:
    """Per app, the apps it meets on shared GPUs, directly or through others, itself included (in plan
    order): the apps that must be replayed together."""
    group = {ap.name: {ap.name} for ap in plan.apps}
    owner: dict[str, str] = {}
    for ap in plan.apps:
        for gpu in {t.gpu for mp in ap.modules for t in mp.tuples if t.gpu is not None}:
            if gpu in owner and group[owner[gpu]] is not group[ap.name]:
                merged = group[owner[gpu]] | group[ap.name]
                for name in merged:
                    group[name] = merged
            owner.setdefault(gpu, ap.name)
    return {ap.name: tuple(x for x in plan.apps if x.name in group[ap.name]) for ap in plan.apps}


def frame_counts(scale: float, frames: int) -> np.ndarray:
    """`floor((f + 1) s) - floor(f s)` for every frame `f` (docs/model.md replay rule 1), vectorised."""
    f = np.arange(frames + 1, dtype=float)
    edges = np.floor(f * scale + PLAN_TOL)
    return (edges[1:] - edges[:-1]).astype(np.int64)


class ModuleRun:
    """One module's replay: its requests in, each frame's done time out."""

    def __init__(self, mp: ModulePlan, dispatch, d_of: Callable[[int, int], float], overhead_ms: float):
        self.dispatcher: ModuleDispatcher[int] = ModuleDispatcher([TupleSpec.of(t) for t in mp.tuples], dispatch)
        self.free_at = {(k, j): 0.0 for k, t in enumerate(mp.tuples) for j in range(t.workers)}
        self.d_of = d_of
        self.overhead = overhead_ms
        self.batches = 0
        self.dummies = 0

    def run(self, ready: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Done time of every frame given when it is ready and how many requests it brings."""
        done = ready.copy()
        left = counts.copy()
        disp = self.dispatcher
        order = np.lexsort((np.arange(len(ready)), ready))
        times = ready[order].tolist()
        ns = counts[order].tolist()
        frames = order.tolist()
        slack = TIMER_SLACK_MS
        ship = self._ship
        for f, t, n in zip(frames, times, ns, strict=True):
            if n == 0:
                continue
            due = disp.deadline()
            while due is not None and due + slack < t:  # arrivals come before timers at equal times
                ship(disp.poll(due + slack), done, left)
                due = disp.deadline()
            for _ in range(n):
                shipped = disp.add(f, t)
                if shipped:
                    ship(shipped, done, left)
        due = disp.deadline()
        while due is not None:
            ship(disp.poll(due + slack), done, left)
            due = disp.deadline()
        return done

    def _ship(self, shipped: list[Shipped[int]], done: np.ndarray, left: np.ndarray) -> None:
        for s in shipped:
            b = s.batch
            self.batches += 1
            self.dummies += b.size - len(b.items)
            key = (s.tuple_index, s.worker)
            start = max(b.shipped_ms, self.free_at[key])
            finish = start + self.d_of(s.tuple_index, b.size)
            self.free_at[key] = finish
            result = finish + self.overhead if self.overhead > 0 else finish
            for f in b.items:
                left[f] -= 1
                done[f] = max(done[f], result)


def sweep(plan: Plan, workload: Workload, arrivals: str, frames: dict[str, int], seed: int,
          fanout: Fanout = "deterministic"):
    """Replay `plan` (no shared GPU) module by module; returns a :class:`SimResult`."""
    from harpagon.sim.simulator import AppStats, ModuleReplay, SimResult, _batch_means_se, arrival_times

    apps = {a.name: a for a in workload.apps}
    out = []
    for ap in plan.apps:
        app = apps[ap.name]
        n = frames[ap.name]
        rng = random.Random(f"{seed}/{ap.name}")
        arrival = np.array(arrival_times(ap.rate, n, arrivals, rng), dtype=float)
        done: dict[str, np.ndarray] = {}
        stats: dict[str, tuple] = {}
        for name in app.topological:
            module = app.module(name)
            mp = ap.module(name)
            ready = arrival if not module.after else np.maximum.reduce([done[p] for p in module.after])
            if fanout == "poisson" and module.after:
                counts = poisson_requests(module.scale, n, f"{seed}/{ap.name}/{name}").astype(np.int64)
            else:
                counts = frame_counts(module.scale, n)
            run = ModuleRun(mp, plan.dispatch, _latencies(workload, plan, app, module, mp), plan.settings.overhead_ms)
            done[name] = run.run(ready, counts)
            stats[name] = (int(counts.sum()), done[name] - ready, run.batches, run.dummies)
        finished = np.maximum.reduce([done[m.name] for m in app.modules])
        lat = finished - arrival
        lat = lat[np.lexsort((np.arange(n), finished))]  # in the order frames finish, ties by frame
        late = lat > ap.slo_ms * (1 + REL_TOL)
        modules = []
        for mp in ap.modules:
            requests, ml, batches, dummies = stats[mp.name]
            modules.append(ModuleReplay(mp.name, requests, float(ml.max()) if len(ml) else 0.0,
                                       mp.predicted_latency_ms, batches, dummies, ml))
        if not len(lat):
            lat = np.array([math.nan])
        out.append(AppStats(ap.name, ap.slo_ms, n, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                            float(lat.max()), float(np.mean(late)), tuple(modules), _batch_means_se(late)))
    return SimResult(arrivals, tuple(out), fanout)  # type: ignore[arg-type]


def _latencies(workload: Workload, plan: Plan, app: App, module: Module, mp: ModulePlan) -> Callable[[int, int], float]:
    """`d(b)` of each tuple, by tuple index and batch size, under the plan's safety (docs/model.md)."""
    rows = [module_latencies(workload, app, module, t.hardware, plan.settings.safety) for t in mp.tuples]
    return lambda k, b: rows[k][b]

