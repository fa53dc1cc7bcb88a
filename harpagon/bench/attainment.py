"""Cost at equal attainment: any planner, made to keep the Poisson promise by tightening its inputs.

Planners made for the fluid model (the baselines, the ablations, `harpagon-fluid`) promise nothing
about real arrivals, so comparing their costs with a plan that keeps the Poisson promise (docs/model.md,
"What a plan promises") compares unequal things. The wrapper here puts every planner on the same
footing, Harpagon's default included, and treats them all alike:

1. plan at a grid of tightened inputs: every app's SLO times a factor (`SLO_FACTORS`) and the
   planner setting `max_utilization` times a cap (`UTILIZATIONS`); refused (any app) or failed
   plans are dropped, and so are plans that cannot be deployed (more GPUs of a kind than its
   `count`, or a shared GPU's models over its memory: `check_resources`; a planner that ignores
   counts gets no extra GPUs from the wrapper), and plans the replay cannot tell apart are kept once;
2. give every candidate the real SLOs (the replay judges an app against its `AppPlan.slo_ms`), sort
   them by cost, and replay them in that order: a short screen (`SCREEN_FRAMES` per app), then the
   full replay (`PROMISE_FRAMES` per app or `PROMISE_SECONDS` of its frames, whichever is more,
   constant and Poisson arrivals, the bench's seed);
3. keep the first, i.e. the cheapest, candidate that keeps the promise: every frame within the SLO
   under constant arrivals and each app's Poisson attainment at least `settings.attainment`.

Its cost is the planner's cost at equal attainment, `nan` when no candidate keeps the promise. A
cheaper candidate that fails the screen is skipped even if a full replay might have kept it, so the
result can be a little dear, never a plan that fails the full replay.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace

from harpagon.config.schema import Workload
from harpagon.model.latency import REL_TOL, Settings, options_for
from harpagon.model.plan import Plan, check_resources
from harpagon.planner.harpagon import tightened
from harpagon.planner.registry import Planner
from harpagon.sim import PROMISE_FRAMES, PROMISE_SECONDS, simulate
from harpagon.sim.sweep import linked

SLO_FACTORS = (1.0, 0.85, 0.7, 0.55, 0.4, 0.3)
UTILIZATIONS = (1.0, 0.85, 0.7, 0.5, 0.35, 0.25)
SCREEN_FRAMES = 2_000

log = logging.getLogger(__name__)

#: A lower bound on the cost of the plans a planner can make for these inputs (inf: it refuses an app).
Floor = Callable[[Workload, Settings], float]
#: A grid point: (SLO factor, utilisation cap).
Point = tuple[float, float]


@dataclass(frozen=True)
class Attained:
    """The cheapest candidate that keeps the promise, and what finding it took."""

    cost: float
    """Its cost per hour; nan when no candidate keeps the promise."""
    plan: Plan | None
    """It, with the real SLOs; None when none keeps the promise."""
    point: Point | None
    """The grid point it was planned at (the first one, when several gave the same plan)."""
    planned: int
    """Grid points planned (a plan given by the caller counts)."""
    candidates: int
    """Distinct plans that serve every app."""
    screens: int
    """Candidates replayed for the screen."""
    replays: int
    """Candidates replayed in full (not counting verdicts the caller already knew)."""
    plan_s: float
    replay_s: float
    unfit: int = 0
    """Plans dropped because they cannot be deployed (hardware counts, GPU memory)."""


def with_real_slos(plan: Plan, workload: Workload) -> Plan:
    """The plan judged against the workload's SLOs, whatever SLOs it was planned for."""
    slo = {a.name: a.slo_ms for a in workload.apps}
    return replace(plan, apps=tuple(replace(ap, slo_ms=slo[ap.name]) for ap in plan.apps))


def replay_key(plan: Plan) -> Hashable:
    """Everything the replay reads of a plan besides its SLOs: two plans with one key replay alike."""
    return (plan.dispatch, plan.settings.safety, plan.settings.overhead_ms, tuple(
        (ap.name, ap.rate, tuple(
            (mp.name, tuple((t.hardware, t.batch, t.workers, t.rate, t.dummy_rate, t.gpu,
                             t.cycle_ms if t.gpu is not None else None) for t in mp.tuples))
            for mp in ap.modules))
        for ap in plan.apps))


def _independent(plan: Plan) -> list[Plan]:
    """The plan cut into one plan per group of apps that meet on shared GPUs (:func:`linked`): each
    replays alike alone or with the others (its own workers and its own Poisson streams)."""
    groups = dict.fromkeys(linked(plan).values())  # distinct, in plan order
    return [replace(plan, apps=apps) for apps in groups]


def keeps_promise(plan: Plan, workload: Workload, *, frames: int, seed: int, attainment: float,
                  suspects: list[str] | None = None, seconds: float = 0.0) -> bool:
    """Every frame within the SLO with constant arrivals and each app's Poisson attainment at least
    `attainment`. Apps that share no GPU are replayed one by one, `suspects` (app names, e.g. those that
    failed before; updated) first, and the replay stops at the first app that fails; the constant
    replay of a part comes first and its Poisson replay runs only when it passes."""
    suspects = [] if suspects is None else suspects
    parts = sorted(_independent(plan), key=lambda p: min(
        (suspects.index(ap.name) for ap in p.apps if ap.name in suspects), default=len(suspects)))
    for part in parts:
        constant = simulate(part, workload, "constant", frames=frames, seed=seed, seconds=seconds)
        bad = [a.name for a in constant.apps if a.over_slo > 0.0]
        if not bad:
            bad = [a.name for a in simulate(part, workload, "poisson", frames=frames, seed=seed, seconds=seconds).apps
                   if a.attainment < attainment]
        if bad:
            suspects[:0] = [n for n in bad if n not in suspects]
            return False
    return True


def whole_worker_floor(workload: Workload, settings: Settings) -> float:
    """A lower bound on the cost of any plan of whole workers, one tuple set per module, that passes
    docs/model.md's fluid check for these inputs (Harpagon's plans, whatever their promise): inf when some
    app's SLO is below its fastest path (every such planner refuses it). Per module, at least one
    worker, and workers enough for the module's rate at `max_utilization`, at the best price per
    request of the options fast enough for the app's SLO. Not a bound for GPU-sharing plans."""
    total = 0.0
    for app in workload.apps:
        usable = {}
        for m in app.modules:
            usable[m.name] = [o for o in options_for(workload, app, m, settings)
                              if o.d_ms + settings.overhead_ms <= app.slo_ms * (1 + REL_TOL)]
        fastest = {m: min((o.d_ms for o in opts), default=math.inf) + settings.overhead_ms
                   for m, opts in usable.items()}
        if max(sum(fastest[m] for m in path) for path in app.paths) > app.slo_ms * (1 + REL_TOL):
            return math.inf
        for m in app.modules:
            opts = usable[m.name]
            total += max(min(o.price for o in opts),
                         app.module_rate(m) / settings.max_utilization * min(o.price / o.throughput for o in opts))
    return total


def optimum_floor(workload: Workload, settings: Settings) -> float:
    """The exhaustive optimum of the fluid model (docs/model.md): the least cost of any plan of whole
    workers that passes the fluid check for these inputs (inf when it refuses an app). Sharper than
    :func:`whole_worker_floor`, and dearer to compute."""
    from harpagon.planner.registry import OPTIMUM

    p = OPTIMUM(workload, settings)
    return math.inf if p.refused or len(p.apps) != len(workload.apps) else p.cost_per_hour


def at_equal_attainment(planner: Planner, workload: Workload, settings: Settings, *, seed: int = 1,
                        frames: int = PROMISE_FRAMES, seconds: float = PROMISE_SECONDS,
                        screen_frames: int = SCREEN_FRAMES,
                        slo_factors: Sequence[float] = SLO_FACTORS, utilizations: Sequence[float] = UTILIZATIONS,
                        given: Mapping[Point, Plan] | None = None,
                        verdicts: MutableMapping[Hashable, bool] | None = None,
                        floors: Sequence[Floor] = ()) -> Attained:
    """The cheapest plan of `planner` over the tightened grid that keeps the Poisson promise of
    `settings.attainment` in a replay of `frames` per app with Poisson seed `seed` (see the module doc).

    Three ways to save time that leave the cost found unchanged: `given` holds plans the caller already
    made at some grid points (not planned again); `verdicts` full-replay verdicts it already knows, by
    `replay_key` of the plan with real SLOs (read, and written with what this call learns); `floors`
    give, for a grid point's inputs, lower bounds on the cost of any plan the planner can make there,
    cheap ones first (e.g. :func:`whole_worker_floor`, then :func:`optimum_floor`): grid points are
    planned in order of their bound, a point's next floor is computed only when it is the next to be
    planned, and a candidate is replayed as soon as no unplanned point can yield a cheaper one, so
    points whose floor exceeds the answer are never planned (among plans of equal cost the one picked
    may differ). A planned cost below its bound disables the floors (and is logged)."""
    given = given or {}
    verdicts = {} if verdicts is None else verdicts
    points = [(f, u) for f in slo_factors for u in utilizations]
    index = {pt: i for i, pt in enumerate(points)}
    inputs = {pt: (tightened(workload, pt[0]), replace(settings, max_utilization=settings.max_utilization * pt[1]))
              for pt in points}
    bound = {pt: floors[0](*inputs[pt]) if floors and pt not in given else -math.inf for pt in points}
    level = dict.fromkeys(points, 0)  # floors applied to each point's bound, less one
    pending = sorted(points, key=lambda pt: (bound[pt], index[pt]))
    apps = {a.name for a in workload.apps}
    pool: dict[Hashable, tuple[float, int, Point, Plan]] = {}  # by replay key: (cost, index, point, plan)
    judged: set[Hashable] = set()
    suspects: list[str] = []  # apps that failed a replay, replayed first next time
    plan_s = replay_s = 0.0
    planned = screens = replays = unfit = 0
    while True:
        waiting = [(v[:2], k) for k, v in pool.items() if k not in judged]
        nxt = bound[pending[0]] if pending else math.inf
        if waiting and min(waiting)[0][0] <= nxt:
            key = min(waiting)[1]
            judged.add(key)
            _, _, point, real = pool[key]
            kept = verdicts.get(key)
            if kept is None:
                t0 = time.perf_counter()
                screens += 1
                if keeps_promise(real, workload, frames=screen_frames, seed=seed, attainment=settings.attainment,
                                 suspects=suspects):
                    replays += 1
                    kept = verdicts[key] = keeps_promise(real, workload, frames=frames, seed=seed, seconds=seconds,
                                                         attainment=settings.attainment, suspects=suspects)
                replay_s += time.perf_counter() - t0
            if kept:
                return Attained(real.cost_per_hour, real, point, planned, len(pool), screens, replays, plan_s,
                                replay_s, unfit)
            continue
        if not pending or nxt == math.inf:
            return Attained(math.nan, None, None, planned, len(pool), screens, replays, plan_s, replay_s, unfit)
        point = pending[0]
        if point not in given and level[point] + 1 < len(floors) and bound[point] > -math.inf:
            level[point] += 1
            bound[point] = max(bound[point], floors[level[point]](*inputs[point]))
            pending.sort(key=lambda pt: (bound[pt], index[pt]))
            continue
        pending.pop(0)
        planned += 1
        p = given.get(point)
        if p is None:
            t0 = time.perf_counter()
            try:
                p = planner(*inputs[point])
            except Exception:  # a planner that fails on a tightened input offers no candidate there
                log.exception("planner failed at SLO x %g, max_utilization x %g", *point)
                p = None
            plan_s += time.perf_counter() - t0
        if p is None or p.refused or {ap.name for ap in p.apps} != apps:
            continue
        if problems := check_resources(p, workload):
            unfit += 1
            log.info("SLO x %g, max_utilization x %g: cannot be deployed (%s)", *point, "; ".join(problems))
            continue
        if p.cost_per_hour < bound[point] * (1 - REL_TOL):
            log.warning("cost %g below its floor %g at %s: floors disabled", p.cost_per_hour, bound[point], point)
            bound = dict.fromkeys(points, -math.inf)
            pending.sort(key=lambda pt: index[pt])
        real = with_real_slos(p, workload)
        key = replay_key(real)
        if key not in pool or (real.cost_per_hour, index[point]) < pool[key][:2]:
            pool[key] = (real.cost_per_hour, index[point], point, real)
