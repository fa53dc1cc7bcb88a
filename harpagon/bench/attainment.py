"""Cost at equal attainment: any planner, made to keep the Poisson promise by tightening its inputs.

Planners made for the fluid model (the baselines, the ablations, `harpagon-fluid`) promise nothing
about real arrivals, so comparing their costs with a plan that keeps the Poisson promise (MODEL.md,
"What a plan promises") compares unequal things. The wrapper here puts every planner on the same
footing, Harpagon's default included, and treats them all alike:

1. plan at a grid of tightened inputs: every app's SLO times a factor (`SLO_FACTORS`) and the
   planner setting `max_utilization` times a cap (`UTILIZATIONS`); refused (any app) or failed
   plans are dropped, and plans the replay cannot tell apart are kept once;
2. give every candidate the real SLOs (the replay judges an app against its `AppPlan.slo_ms`), sort
   them by cost, and replay them in that order: a short screen (`SCREEN_FRAMES` per app), then the
   full replay (`PROMISE_FRAMES` per app, constant and Poisson arrivals, the bench's seed);
3. keep the first, i.e. the cheapest, candidate that keeps the promise: every frame within the SLO
   under constant arrivals and each app's Poisson attainment at least `settings.attainment`.

Its cost is the planner's cost at equal attainment, `nan` when no candidate keeps the promise. A
cheaper candidate that fails the screen is skipped even if a full replay might have kept it, so the
result can be a little dear, never a plan that fails the full replay.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import Plan
from harpagon.sim import PROMISE_FRAMES, simulate

SLO_FACTORS = (1.0, 0.85, 0.7, 0.55, 0.4, 0.3)
UTILIZATIONS = (1.0, 0.85, 0.7)
SCREEN_FRAMES = 2_000

Planner = Callable[[Workload, Settings], Plan]
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


def tightened(workload: Workload, factor: float) -> Workload:
    """The workload with every app's SLO times `factor`."""
    if factor == 1.0:
        return workload
    apps = tuple(a.model_copy(update={"slo_ms": a.slo_ms * factor}) for a in workload.apps)
    return workload.model_copy(update={"apps": apps})


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


def keeps_promise(plan: Plan, workload: Workload, *, frames: int, seed: int, attainment: float) -> bool:
    """Every frame within the SLO with constant arrivals and, only then, each app's Poisson attainment
    at least `attainment` (the Poisson replay is skipped once the constant one fails)."""
    if any(a.over_slo > 0.0 for a in simulate(plan, workload, "constant", frames=frames, seed=seed).apps):
        return False
    return all(a.attainment >= attainment
               for a in simulate(plan, workload, "poisson", frames=frames, seed=seed).apps)


def at_equal_attainment(planner: Planner, workload: Workload, settings: Settings, *, seed: int = 1,
                        frames: int = PROMISE_FRAMES, screen_frames: int = SCREEN_FRAMES,
                        slo_factors: Sequence[float] = SLO_FACTORS, utilizations: Sequence[float] = UTILIZATIONS,
                        given: Mapping[Point, Plan] | None = None,
                        verdicts: MutableMapping[Hashable, bool] | None = None) -> Attained:
    """The cheapest plan of `planner` over the tightened grid that keeps the Poisson promise of
    `settings.attainment` in a replay of `frames` per app with Poisson seed `seed` (see the module doc).

    `given` holds plans the caller already made at some grid points (not planned again), `verdicts`
    full-replay verdicts it already knows by `replay_key` of the plan with real SLOs (read, and
    written with what this call learns): both save time and change no result."""
    given = given or {}
    verdicts = {} if verdicts is None else verdicts
    plan_s = replay_s = 0.0
    planned = screens = replays = 0
    found: dict[Hashable, tuple[float, int, Point, Plan]] = {}
    for i, point in enumerate((f, u) for f in slo_factors for u in utilizations):
        factor, cap = point
        planned += 1
        p = given.get(point)
        if p is None:
            t0 = time.perf_counter()
            try:
                p = planner(tightened(workload, factor),
                            replace(settings, max_utilization=settings.max_utilization * cap))
            except Exception:  # a planner that fails on a tightened input offers no candidate there
                p = None
            plan_s += time.perf_counter() - t0
        if p is None or p.refused or {ap.name for ap in p.apps} != {a.name for a in workload.apps}:
            continue
        real = with_real_slos(p, workload)
        found.setdefault(replay_key(real), (real.cost_per_hour, i, point, real))
    ordered = sorted(found.items(), key=lambda kv: kv[1][:2])
    best: tuple[Point, Plan] | None = None
    for key, (_, _, point, real) in ordered:
        kept = verdicts.get(key)
        if kept is None:
            t0 = time.perf_counter()
            screens += 1
            if keeps_promise(real, workload, frames=screen_frames, seed=seed, attainment=settings.attainment):
                replays += 1
                kept = verdicts[key] = keeps_promise(real, workload, frames=frames, seed=seed,
                                                     attainment=settings.attainment)
            replay_s += time.perf_counter() - t0
        if kept:
            best = (point, real)
            break
    return Attained(best[1].cost_per_hour if best else math.nan, best[1] if best else None,
                    best[0] if best else None, planned, len(found), screens, replays, plan_s, replay_s)
