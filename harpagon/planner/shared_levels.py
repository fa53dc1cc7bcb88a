"""Plans with shared GPUs (:mod:`.sharing`) as the planner takes them: in the fluid model whenever
cheaper; under a promise only when their own replay (all apps at once: a shared GPU's apps meet there)
keeps it, at the levels each app kept its promise at alone or at fluid levels tried for every app.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from harpagon.config.schema import Workload
from harpagon.model.latency import PLAN_TOL, Settings
from harpagon.model.plan import AppPlan, Plan, Promise, workers_cost
from harpagon.planner import sharing
from harpagon.planner.allocation import allocate
from harpagon.planner.bound import lower_bound
from harpagon.planner.levels import Level
from harpagon.planner.replays import Replays

if TYPE_CHECKING:
    from harpagon.planner.harpagon import PlannerOptions

log = logging.getLogger(__name__)

#: Tries at a plan with shared GPUs that keeps the promise (each leaves the late apps unshared).
SHARE_ROUNDS = 4
#: Shared plans also tried under a promise: every app planned at one of these fluid levels, then shared,
#: as the promise's levels are for one app; each replayed (a short screen first), cheapest first, the
#: first kept taken if it is cheaper.
SHARE_LEVELS: tuple[Level, ...] = tuple(Level(f, u) for f in (1.0, 0.85, 0.7)
                                        for u in (1.0, 0.95, 0.9, 0.85, 0.8, 0.7))


def tightened(workload: Workload, factor: float) -> Workload:
    """The workload with every app's SLO times `factor`."""
    if factor == 1.0:
        return workload
    return workload.model_copy(update={"apps": tuple(a.model_copy(update={"slo_ms": a.slo_ms * factor})
                                                     for a in workload.apps)})


def shared(p: Plan, workload: Workload, settings: Settings, options: PlannerOptions) -> Plan:
    """The plan with light tuples on shared GPUs when that is cheaper (the switch on)."""
    return sharing.share(p, workload, settings) if options.sharing and p.apps else p


def shared_if_kept(p: Plan, workload: Workload, settings: Settings, options: PlannerOptions,
                   replays: Replays) -> Plan:
    """The judged plan `p` with light tuples on shared GPUs, if that is cheaper and its own replay (all
    apps at once: a shared GPU's apps meet there) keeps the promise too; else `p`. The apps a replay
    finds late run as planned in the next try (SHARE_ROUNDS tries)."""
    if not options.sharing or not options.replay:
        return p
    keep: set[tuple[str, str]] = set()
    for _ in range(SHARE_ROUNDS):
        q = sharing.share(p, workload, settings, keep=frozenset(keep))
        if q is p:
            return p
        for r in (replays.short(), replays):  # a short screen, then the steady state
            r.run(q, decide=True)
            late = [ap for ap in q.apps if not r.kept(ap)]
            if late:
                break
        if not late:
            return replace(q, promise=Promise(settings.arrivals, settings.attainment, replays.replayed(q),
                                              settings.fanout))
        log.debug("shared GPUs: %s late in the replay; planned unshared in the next try", [ap.name for ap in late])
        keep |= {(ap.name, mp.name) for ap in late for mp in ap.modules}
    return p


def cheapest_shared(p: Plan, workload: Workload, settings: Settings, options: PlannerOptions, name: str,
                    steady: Replays) -> Plan:
    """`p` (kept), or a cheaper plan with shared GPUs whose replay (all apps at once) keeps the promise
    too: made with every app at one of SHARE_LEVELS, or with each app at the cheapest level at which it
    kept its promise in those levels' screening replays."""
    if not options.sharing or not options.replay or not p.apps or p.refused:
        return p
    # Levels often make the same app plans: each is replayed once per horizon.
    short = steady.short()
    found = _kept_in_screens(p, workload, settings, options, name, short)
    for q in sorted(found, key=lambda q: q.cost_per_hour):  # stable: the levels' order on ties
        for replays in (short, steady):
            replays.run(q, decide=True)
            if not all(replays.kept(ap) for ap in q.apps):
                break
        else:
            log.info("shared GPUs at fluid levels: $%.3f/h instead of $%.3f/h, kept by the replay",
                     q.cost_per_hour, p.cost_per_hour)
            return replace(q, promise=Promise(settings.arrivals, settings.attainment, replays.replayed(q),
                                              settings.fanout))
    return p


def _kept_in_screens(p: Plan, workload: Workload, settings: Settings, options: PlannerOptions, name: str,
                     short: Replays) -> list[Plan]:
    """The shared plans cheaper than `p` whose screening replays keep every app's promise, in the order
    SHARE_LEVELS makes them (each distinct plan once): at each of SHARE_LEVELS for every app, then at
    each app's cheapest level that kept it there."""
    found: dict[tuple[AppPlan, ...], Plan] = {}
    kept_at: dict[str, list[tuple[float, float, float]]] = {a.name: [] for a in workload.apps}  # cost, level
    alone = len(workload.apps) == 1  # then the levels' screens serve only to find a plan cheaper than `p`
    for level in SHARE_LEVELS:
        if alone and lower_bound(tightened(workload, level.slo_factor),
                                 level.settings(settings)) >= p.cost_per_hour * (1 - PLAN_TOL):
            continue  # no plan made at this level could be cheaper
        q, base = _shared_at({a.name: level for a in workload.apps}, workload, settings, options, name)
        if q is None or (alone and q.cost_per_hour >= p.cost_per_hour * (1 - PLAN_TOL)):
            continue
        short.run(q, decide=True)
        for ap, mine in zip(q.apps, base.apps, strict=True):
            if short.kept(ap):
                kept_at[ap.name].append((workers_cost([mine], workload), level.slo_factor, level.cap))
        if q.cost_per_hour < p.cost_per_hour * (1 - PLAN_TOL) and all(short.kept(ap) for ap in q.apps):
            found.setdefault(q.apps, q)
    if all(kept_at.values()):  # each app at its own cheapest level that kept it
        mixed = {a: Level(*min(kept)[1:]) for a, kept in kept_at.items()}
        q, _ = _shared_at(mixed, workload, settings, options, name)
        if q is not None and q.cost_per_hour < p.cost_per_hour * (1 - PLAN_TOL):
            found.setdefault(q.apps, q)
    return list(found.values())


def _shared_at(levels: Mapping[str, Level], workload: Workload, settings: Settings, options: PlannerOptions,
               name: str) -> tuple[Plan | None, Plan]:
    """Every app planned at its (fluid) level, then its light tuples shared within the tightened SLOs (at
    the least cap of the levels); the shared plan (None if an app is refused) and the unshared one."""
    base = allocate(workload, settings, options, name, levels)
    if base.refused:
        return None, base
    fluid = replace(settings, arrivals="fluid",
                    max_utilization=settings.max_utilization * min(lv.cap for lv in levels.values()))
    tight = workload.model_copy(update={"apps": tuple(levels[a.name].app(a) for a in workload.apps)})
    q = sharing.share(replace(base, apps=tuple(replace(ap, slo_ms=ap.slo_ms * levels[ap.name].slo_factor)
                                               for ap in base.apps)), tight, fluid)
    slo = {a.name: a.slo_ms for a in workload.apps}  # each app's own, exactly (not divided back)
    return replace(q, apps=tuple(replace(ap, slo_ms=slo[ap.name]) for ap in q.apps)), base
