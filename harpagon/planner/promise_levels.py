"""Planning under a promise about real arrivals (`constant`, `poisson`): each app at the cheapest of its
levels whose plan keeps the promise in a replay, then the plan of all apps judged together and, while
the replay finds an app late, that app moved to its next level or its arrival models repaired.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from harpagon.config.schema import App, Workload
from harpagon.model.latency import PLAN_TOL, REL_TOL, Settings
from harpagon.model.plan import AppPlan, Plan, Promise, Refusal
from harpagon.planner.allocation import allocate
from harpagon.planner.arrivals import initial_arrivals, repair_arrivals, with_bursts, workload_app
from harpagon.planner.bound import app_bound
from harpagon.planner.levels import Level, Levels
from harpagon.planner.replays import PROMISE_MARGIN, Replays
from harpagon.planner.shared_levels import cheapest_shared, shared_if_kept

if TYPE_CHECKING:
    from harpagon.planner.harpagon import PlannerOptions

log = logging.getLogger(__name__)

#: Replays with repair before the planner gives up on a promise (and says so in the plan).
REPAIR_ROUNDS = 8
#: Plans made to settle the bursts a module gets from its parents' batches, before any replay.
BURST_ROUNDS = 3


@dataclass(frozen=True)
class Family:
    """Levels alike but for their cap, which :class:`LevelSearch` plans at any cap."""

    slo_factor: float = 1.0
    """The app's SLO times this."""
    modelled: bool = False
    """Planned by the arrival models of :func:`.arrivals.initial_arrivals` (else the fluid formulas)."""
    optimistic: bool = False
    """Those models counting on no jitter and half the allowance."""

    def at(self, cap: float, base: Level) -> Level:
        """The family's level at `cap`; `base`: the app's level of initial arrival models."""
        level = Level(self.slo_factor, cap)
        if not self.modelled:
            return level
        return level.with_arrivals({m: replace(a, jitter=False, kappa=0.5) if self.optimistic else a
                                    for m, a in base.arrivals})


#: The model's families of levels, each planned at any utilisation cap (a factor on `max_utilization`,
#: from 1 down to MIN_CAP): the fluid formulas for the app's SLO times a factor, and arrival models:
#: optimistic (no jitter, half the allowance) and the default (at cap 1: where a repair starts). In this
#: order, which breaks ties in cost.
FAMILIES: tuple[Family, ...] = (Family(), Family(modelled=True, optimistic=True), Family(modelled=True),
                                Family(0.85), Family(0.7))
#: The default arrival model (at cap 1: where a repair starts).
DEFAULT_FAMILY = FAMILIES[2]
#: The least utilisation cap tried (below, an app no level keeps goes to `_tightened_fallback`).
MIN_CAP = 0.05
#: Below a family's lowest cap tried, the next one is this factor lower...
CAP_STEP = 0.5
#: ...and between two caps whose plans differ, their geometric mean is tried, until they are this close
#: (a ratio): a plan made only within a narrower band of caps may be missed.
CAP_RESOLUTION = 1.005
#: The last resort for an app that no level keeps: fluid levels for a tighter SLO (factor) and with less
#: of each worker (cap), tried in order of cost.
FALLBACK_SLO = (1.0, 0.85, 0.7, 0.55, 0.4, 0.3)
FALLBACK_UTILIZATION = (1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1)


def plan_promise(workload: Workload, settings: Settings, options: PlannerOptions, name: str) -> Plan:
    """Each app at the cheapest of its levels (`FAMILIES`: the fluid formulas, also for tighter SLOs,
    and an optimistic and the default arrival model, each at any utilisation cap) whose plan keeps its
    promise in a replay (with `PROMISE_MARGIN` for sampling noise), found cheapest first
    (:class:`LevelSearch`). An app late in the plan of all apps together (hardware counts) moves to its
    next level; apps that none keeps are repaired round by round from the default level."""
    base = {a.name: Level.modelled(initial_arrivals(a, settings)) for a in workload.apps}
    memo: dict = {}
    if not options.replay:
        p, _ = settled(workload, settings, options, name, base, memo)
        return replace(p, promise=Promise(settings.arrivals, settings.attainment, fanout=settings.fanout))
    # Per app, its levels cheapest first, each screened, then replayed for `replay_frames`, until one keeps
    # the promise; then the plan of all apps is judged at the steady-state horizon.
    runs: dict = {}  # every replay run, by what it reads: the judging reuses the screening where it can
    replays = Replays(workload, settings, options, steady=False, runs=runs)
    judging = Replays(workload, settings, options, runs=runs)
    searches = {a.name: LevelSearch(a, workload, settings, options, name, base[a.name], memo, replays, judging)
                for a in workload.apps}
    chosen: dict[str, Level] = {}
    why_not: dict[str, str] = {}  # per app that no level keeps, what the fastest plans tried kept
    for app in workload.apps:
        first = next(searches[app.name], None)
        if first is None:
            first = _tightened_fallback(app, workload, settings, options, name, replays, why_not) \
                or searches[app.name].default or base[app.name]
        chosen[app.name] = first
    p, levels = settled(workload, settings, options, name, chosen, memo)
    return _said(_judged(p, levels, searches, base, workload, settings, options, name, memo, judging), why_not)


def _judged(p: Plan, levels: Levels, searches: Mapping[str, LevelSearch], base: Levels, workload: Workload,
            settings: Settings, options: PlannerOptions, name: str, memo: dict, replays: Replays) -> Plan:
    """The plan judged at the steady-state horizon; while an app is late there, it moves to its next
    level, or (none left) its arrival models are repaired (REPAIR_ROUNDS rounds, then the best judged).
    A plan that keeps the promise is then offered shared GPUs (:mod:`.shared_levels`)."""
    best = None
    for _ in range(REPAIR_ROUNDS):
        replays.run(p, screen=False)  # a late app's repair reads its replay
        judged = replace(p, promise=Promise(settings.arrivals, settings.attainment, replays.replayed(p),
                                            settings.fanout))
        if best is None or _better(judged, best):
            best = judged
        late = [ap for ap in p.apps if not replays.kept(ap)]
        if not late:
            return cheapest_shared(shared_if_kept(judged, workload, settings, options, replays), workload,
                                   settings, options, name, replays)
        # Together (hardware counts) an app may fare worse than alone: its next level first, then repair.
        levels = dict(levels)
        fix = []
        for ap in late:
            if (following := next(searches[ap.name], None)) is not None:
                levels[ap.name] = following
            else:
                fix.append(ap)
                if levels[ap.name].fluid:
                    levels[ap.name] = base[ap.name]
        if fix:
            levels.update(repair_arrivals({ap.name: levels[ap.name] for ap in fix},
                                          [(ap, *replays.stats(ap)) for ap in fix], workload, settings))
        p, levels = settled(workload, settings, options, name, levels, memo)
    assert best is not None
    log.warning("the replay does not bear out the %s promise for every app after %d repairs", settings.arrivals,
                REPAIR_ROUNDS)
    return best


def _said(p: Plan, why_not: Mapping[str, str]) -> Plan:
    """`p` with each refusal that the replay decided saying what the fastest plans tried kept."""
    if not any(r.app in why_not and why_not[r.app] for r in p.refused):
        return p
    return replace(p, refused=tuple(Refusal(r.app, f"{r.reason}; {why_not[r.app]}") if why_not.get(r.app) else r
                                    for r in p.refused))


def _better(a: Plan, b: Plan) -> bool:
    """Of two judged plans, the one whose worst app fares better (kept first, then cheaper)."""
    ka = bool(a.promise and a.promise.kept)
    kb = bool(b.promise and b.promise.kept)
    if ka != kb:
        return ka
    ra, rb = a.promise.replayed, b.promise.replayed  # type: ignore[union-attr]
    return (ra.constant_all_within, ra.min_app_attainment) > (rb.constant_all_within, rb.min_app_attainment)


def settled(workload: Workload, settings: Settings, options: PlannerOptions, name: str,
            levels: Levels, memo: dict | None = None) -> tuple[Plan, Levels]:
    """Plan, then re-plan while the bursts the plan's batches make differ from those its arrival models
    assumed."""
    memo = {} if memo is None else memo
    p = allocate(workload, settings, options, name, levels, memo)
    for _ in range(BURST_ROUNDS):
        seen = {a.name: levels[a.name].with_arrivals(with_bursts(workload_app(workload, a.name), a,
                                                                 levels[a.name].models, settings))
                for a in p.apps if not levels[a.name].fluid}
        if all(seen[n] == levels[n] for n in seen):
            break
        levels = {**levels, **seen}
        p = allocate(workload, settings, options, name, levels, memo)
    return p, levels


def _tightened_fallback(app: App, workload: Workload, settings: Settings, options: PlannerOptions, name: str,
                        replays: Replays, why_not: dict[str, str]) -> Level | None:
    """The cheapest fluid level at which the app alone keeps its promise: plans at every tightened SLO
    and cap (down to a tenth of each worker: more workers at smaller batches, the fastest plans the
    formulas make), replayed in order of cost until one keeps the promise. When none does (None),
    `why_not[app]` says what the best of them kept."""
    alone = workload.model_copy(update={"apps": (app,)})
    found: dict[AppPlan, tuple[float, Level]] = {}
    for f in FALLBACK_SLO:
        for u in FALLBACK_UTILIZATION:
            p = allocate(alone, settings, options, name, {app.name: Level(f, u)})
            if p.apps and p.apps[0] not in found:
                found[p.apps[0]] = (p.cost_per_hour, Level(f, u))
    best: tuple | None = None
    for ap, (cost, level) in sorted(found.items(), key=lambda x: x[1][0]):
        replays.run(replace(Plan.build(name, options.dispatch, settings, (ap,), (), alone), apps=(ap,)))
        if replays.kept(ap):
            return level
        got = replays.stats(ap)
        if got is not None:
            const, pois = got
            score = (const.over_slo == 0, (pois or const).attainment, -cost)
            if best is None or score > best[0]:
                best = (score, level, cost, const, pois)
    if best is None:
        why_not[app.name] = (f"none of the {len(found)} plans tried (fluid formulas for SLO x1 to x0.3, utilisation "
                             "x1 to x0.1) passes the steady-state screen" if found else "")
    else:
        _, level, cost, const, pois = best
        what = [f"{pois.attainment:.2%} within the SLO under Poisson arrivals (promised {settings.attainment:.0%})"
                if pois is not None else "",
                "every frame within it with constant arrivals" if const.over_slo == 0 else
                f"{const.over_slo:.2%} of frames late with constant arrivals"]
        why_not[app.name] = (f"the best of {len(found)} plans tried (the fluid formulas for SLO x{level.slo_factor:g} "
                             f"at utilisation x{level.cap:g}, ${cost:.3f}/h, P99 {(pois or const).p99_ms:.1f} ms) "
                             "keeps " + ", ".join(w for w in what if w) + " in the replay")
    return None


def _structure(ap: AppPlan) -> tuple:
    """What tells two plans of one app apart for the search over caps: each module's tuples' hardware,
    batch and workers (budgets and dummy rates move with the cap continuously)."""
    return tuple((mp.name, tuple((t.hardware, t.batch, t.workers) for t in mp.tuples)) for mp in ap.modules)


class LevelSearch:
    """One app's levels, cheapest first: iterating yields the levels (settled: :func:`settled`) whose
    plan of the app alone passes the screen and keeps its promise in the screening replay, in order of
    cost (ties: FAMILIES' order, then the higher cap).

    A family's plan is a step function of the utilisation cap (fewer requests per worker, more
    workers), whose cost does not fall as the cap does. Each family is planned at cap 1 first; below its
    lowest cap tried, at a cap CAP_STEP lower; between two caps whose plans differ (hardware, batches,
    workers), at their geometric mean, down to CAP_RESOLUTION: so every plan the family makes at any cap
    down to MIN_CAP is found, bar those of a narrower band, and a search with a lower `max_utilization`
    finds no plan this one does not. Each cap to try stands for the caps from it up to the next one
    tried, and has their floor: the lower bound of :mod:`.bound` on any plan made for its SLO at that
    next cap (no plan costs less, and less still at a lower cap), and the cost of the family's plan
    there (the cost does not fall with the cap). A cap is planned only once no plan found is
    cheaper than its floor, and a plan is replayed only once no cap left to try has a lower floor and
    no cheaper plan is left unreplayed: the first plan kept is the cheapest found, caps whose floor is
    above it are never planned, plans dearer than it never replayed (an app plan that several levels
    make is replayed once)."""

    def __init__(self, app: App, workload: Workload, settings: Settings, options: PlannerOptions, name: str,
                 base: Level, memo: dict, replays: Replays, judging: Replays | None = None):
        self.app = app
        self.alone = workload.model_copy(update={"apps": (app,)})
        self.settings, self.options, self.name, self.memo, self.replays = settings, options, name, memo, replays
        self.judging = judging
        self.base = base
        # The bound scales as 1 / cap (every option's price per request does): one per SLO factor.
        self.floor = {f: app_bound(app.model_copy(update={"slo_ms": app.slo_ms * f}), workload, settings).cost
                      for f in {family.slo_factor for family in FAMILIES}}
        self.tried: list[dict[float, tuple[Any, float]]] = [{} for _ in FAMILIES]  # cap -> (structure, cost)
        self.queue: list[tuple] = []  # a heap: (floor, 0, ...) plans to replay, (floor, 1, ...) caps to plan
        self.seen: set[AppPlan] = set()
        self.default: Level | None = None
        """The default level (DEFAULT_FAMILY at cap 1), settled, once planned."""
        self.bounded = True  # the bounds held for every plan so far (a plan below its bound turns them off)
        self.planned = self.replayed = 0  # caps planned and plans taken up for replay (diagnostics)
        for k in range(len(FAMILIES)):
            self._push_cap(k, 1.0, 1.0, 0.0)

    def __iter__(self) -> LevelSearch:
        return self

    def __next__(self) -> Level:
        while self.queue:
            entry = heapq.heappop(self.queue)
            if entry[1] == 0:  # a plan: no cap left to try could give a cheaper one
                _, _, _, _, ap, p, level = entry
                self.replayed += 1
                if self._hopeless(p, ap):
                    continue
                self.replays.run(p)
                if self.replays.kept(ap) or self._kept_in_steady_state(p, ap):
                    return level
            else:
                self._plan(entry[2], -entry[3])
        raise StopIteration

    def _kept_in_steady_state(self, p: Plan, ap: AppPlan) -> bool:
        """A plan whose screening replay missed the promise by its standard-error margin alone (every
        frame within the SLO with constant arrivals, each seed at least `PROMISE_MARGIN` over the
        promise), judged at the steady-state horizon where that is longer (more frames, a third seed):
        what judges the plan returned, and shared plans, which get no screening replay of this length."""
        got = self.replays.stats(ap)
        if self.judging is None or got is None or got[0].over_slo > 0 or \
                math.ceil(ap.rate * self.judging.seconds - PLAN_TOL) <= self.replays.options.replay_frames:
            return False
        if got[1] is not None and got[1].attainment < self.settings.attainment + PROMISE_MARGIN:
            return False
        self.judging.run(p, screen=False)
        return self.judging.kept(ap)

    def _hopeless(self, p: Plan, ap: AppPlan) -> bool:
        """Whether the plan's first SCREEN_FRAMES frames (a short replay on the same seeds) already hold
        more late frames than the whole screening replay may, beyond those a short replay's end can add
        (its last open batches ship on their timers: at most twice the batch sizes of the app's tuples)."""
        short = self.replays.short()
        if short.options.replay_frames >= self.replays.options.replay_frames:
            return False
        short.run(p)
        got = short.stats(ap)
        if got is None:  # the analytic screen: the full replay would not run either
            return True
        const, pois = got
        ends = 2 * sum(t.batch * (t.workers if p.dispatch == "request-level" else 1)
                       for mp in ap.modules for t in mp.tuples)
        may = self.replays.options.replay_frames * (1 - self.settings.attainment - PROMISE_MARGIN)
        return const.over_slo * const.frames > ends or \
            (pois is not None and pois.over_slo * pois.frames > may + ends)

    def _push_cap(self, k: int, cap: float, top: float, above: float) -> None:
        """Try family `k` at `cap`, to find its plans at the caps from there up to `top` (exclusive),
        which cost at least `above` (its plan at `top`) and the bound at `top`."""
        if not self.bounded:
            heapq.heappush(self.queue, (-math.inf, 1, k, -cap))
            return
        floor = max(self.floor[FAMILIES[k].slo_factor] / top * (1 - PLAN_TOL), above)
        if math.isfinite(floor):
            heapq.heappush(self.queue, (floor, 1, k, -cap))

    def _plan(self, k: int, cap: float) -> None:
        family = FAMILIES[k]
        self.planned += 1
        p, levels = settled(self.alone, self.settings, self.options, self.name,
                            {self.app.name: family.at(cap, self.base)}, self.memo)
        level = levels[self.app.name]
        if family == DEFAULT_FAMILY and cap == 1.0:
            self.default = level
        ap = p.apps[0] if p.apps else None
        cost = p.cost_per_hour if ap is not None else math.inf
        tried = self.tried[k]
        tried[cap] = (_structure(ap) if ap is not None else None, cost)
        if ap is not None and self.bounded and cost < self.floor[family.slo_factor] / cap * (1 - REL_TOL):
            log.warning("%s: a plan at %s, cap %g, costs %g, below its bound; bounds not used", self.app.name,
                        family, cap, cost)
            self.bounded = False
        if ap is not None and ap not in self.seen:
            self.seen.add(ap)
            heapq.heappush(self.queue, (cost if self.bounded else -math.inf, 0, k, -cap, ap, p, level))
        # The caps left to try beside this one: between it and its neighbours where plans differ, and below.
        caps = sorted(tried)
        i = caps.index(cap)
        if i == 0:  # the lowest cap tried
            if cap > MIN_CAP and math.isfinite(cost):
                self._push_cap(k, max(MIN_CAP, cap * CAP_STEP), cap, cost)
        else:
            self._between(k, caps[i - 1], cap)
        if i + 1 < len(caps):
            self._between(k, cap, caps[i + 1])

    def _between(self, k: int, lo: float, hi: float) -> None:
        """Try family `k` between two caps it was planned at, if their plans differ."""
        tried = self.tried[k]
        if tried[lo][0] != tried[hi][0] and hi / lo > CAP_RESOLUTION and math.isfinite(tried[hi][1]):
            self._push_cap(k, math.sqrt(lo * hi), hi, tried[hi][1])
