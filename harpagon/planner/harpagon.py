"""The Harpagon planner: a pure function from a workload and settings to a frozen Plan.

Levels (MODEL.md, "Planner levels"):

1. batch-aware dispatch, which enters through its latency formula;
2. module scheduling (:mod:`.module_scheduler`): main + residual tuples with dummy sizing;
3. latency splitting (:mod:`.splitter`): latency-cost efficiency, refined by an exact split over
   the same cost curves (a Pareto dynamic program on trees, branch and bound on other DAGs).

A module's cost curve steps exactly at the tightest budget its tuples need (their threshold
latency), so the splitter never gives a module budget it cannot turn into a lower cost; what one
module cannot use stays with the app for the others. The latency reassigner
(:mod:`.reassigner`) then sets the final budgets and hands the slack left over to the modules
that pad with dummies.

Hardware counts are shared by all apps (see :func:`plan`); an app that cannot be served is refused
with the reason and the rest are planned.

Under the `constant` and `poisson` promises (MODEL.md v2, the default) the same levels run on
latencies that hold under real arrivals (:mod:`.queueing`: the timer-padding capacity rule, bursts
and a queueing allowance); then the plan is replayed and, while the replay finds an app late, the
modules found late are repaired (a larger allowance, more headroom) and the app re-planned. The
`fluid` promise is the version-1 planner, unchanged.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from harpagon.config.schema import App, Module, Workload
from harpagon.model.latency import REL_TOL, Dispatch, Settings, collection_ms, options_for, real_requests
from harpagon.model.plan import AppPlan, Plan, Promise, Refusal, Replayed, workers_cost
from harpagon.planner import queueing, sharing
from harpagon.planner.bound import app_bound, lower_bound
from harpagon.planner.module_scheduler import Choice, Mode, ModuleScheduler
from harpagon.planner.queueing import EPSILON_SHARE, Arrival
from harpagon.planner.reassigner import build_app_plan
from harpagon.planner.splitter import (
    Split,
    fastest_path,
    split_cost,
    split_even,
    split_greedy,
    split_search,
    split_tree,
)


@dataclass(frozen=True, slots=True)
class PlannerOptions:
    """Switches for the planner's levels (all on for Harpagon; the ablations turn one off)."""

    multi_tuple: bool = True
    """Allow a residual tuple beside the main one (else one tuple per module)."""
    exact_split: bool = True
    """Refine the greedy split with an exact one over the same cost curves (see :mod:`.splitter`)."""
    split: Literal["efficiency", "even"] = "efficiency"
    """How the SLO is split: by latency-cost efficiency, or evenly along the longest path."""
    dispatch: Dispatch = "batch-aware"
    """The dispatch policy the plan assumes (its latency formula)."""
    dummies: bool = True
    """Pad slow tuples with dummy requests (else a tuple collects at its real rate only)."""
    sharing: bool = True
    """Let light tuples (and the idle part of others), of any modules and apps, share GPUs (:mod:`.sharing`)."""
    replay: bool = True
    """Under a `constant` or `poisson` promise, replay the plan and repair it until the replay bears
    the promise out (`harpagon plan --no-replay` turns this off: the model part only)."""
    replay_frames: int = 10_000
    """Frames per app of each replay (at least)."""
    replay_seconds: float = 60.0
    """Seconds of each app's frames in a judging replay, when that is more frames than `replay_frames`
    (MODEL.md's steady state: a tuple loaded just past its capacity looks fine for a second). The
    levels are screened on `replay_frames` alone; the plan returned is judged on both."""
    seed: int = 0
    """Seed of the Poisson replay."""

    @property
    def mode(self) -> Mode:
        return Mode(self.dispatch, self.dummies)

    @property
    def full(self) -> bool:
        """Every level on (the promise levers are built for Harpagon's own mode)."""
        return self.multi_tuple and self.mode.padded_batch_aware


log = logging.getLogger(__name__)

#: Replays with repair before the planner gives up on a promise (and says so in the plan).
REPAIR_ROUNDS = 8
#: Plans made to settle the bursts a module gets from its parents' batches, before any replay.
BURST_ROUNDS = 3

#: app -> its model: module -> Arrival (planned with `max_utilization` times their `cap`); or None
#: (fluid); or a float (fluid, that factor on max_utilization); or (SLO factor, utilisation factor)
#: (fluid, planned for a tighter SLO)
Arrivals = Mapping[str, Mapping[str, Arrival] | float | tuple[float, float] | None]


def plan(workload: Workload, settings: Settings | None = None, options: PlannerOptions | None = None,
         *, name: str = "harpagon") -> Plan:
    """Plan every app of the workload for the promise of `settings.arrivals` (see the module doc);
    apps that cannot be served are listed in `Plan.refused`.

    Under a promise, each app keeps the cheapest of its levels (`FAMILIES`: the fluid formulas, also
    for tighter SLOs, and an optimistic and the default arrival model, each at any utilisation cap)
    whose plan keeps its promise in a replay (with `PROMISE_MARGIN` for sampling noise), found
    cheapest first (:class:`_Search`). An app late in the plan of all apps together (hardware
    counts) moves to its next level; apps that none keeps are repaired round by round from the
    default level."""
    settings = settings or Settings()
    options = options or PlannerOptions()
    if settings.fluid:
        return replace(_shared(_plan(workload, settings, options, name, None), workload, settings, options),
                       promise=Promise("fluid", settings.attainment, fanout=settings.fanout))
    if not options.full:  # an ablation: the fluid levels, judged by the replay
        p = _shared(_plan(workload, settings, options, name, None), workload, settings, options)
        if not options.replay or not p.apps:
            return p
        replays = _Replays(workload, settings, options)
        replays.run(p)
        return replace(p, promise=Promise(settings.arrivals, settings.attainment, replays.replayed(p), settings.fanout))
    base = {a.name: initial_arrivals(a, settings) for a in workload.apps}
    memo: dict = {}
    if not options.replay:
        p, _ = _settled(workload, settings, options, name, base, memo)
        return replace(p, promise=Promise(settings.arrivals, settings.attainment, fanout=settings.fanout))
    # Per app, its levels cheapest first, each screened, then replayed for `replay_frames`, until one keeps
    # the promise; then the plan of all apps is judged at the steady-state horizon.
    runs: dict = {}  # every replay run, by what it reads: the judging reuses the screening where it can
    replays = _Replays(workload, settings, options, steady=False, runs=runs)
    judging = _Replays(workload, settings, options, runs=runs)
    searches = {a.name: _Search(a, workload, settings, options, name, base[a.name], memo, replays, judging)
                for a in workload.apps}
    chosen: dict[str, Any] = {}
    why_not: dict[str, str] = {}  # per app that no level keeps, what the fastest plans tried kept
    for app in workload.apps:
        first = next(searches[app.name], None)
        if first is None:
            fallback = _tightened_fallback(app, workload, settings, options, name, replays, why_not)
            first = fallback[0] if fallback else searches[app.name].default or base[app.name]
        chosen[app.name] = first
    p, arrivals = _settled(workload, settings, options, name, chosen, memo)
    best = None
    replays = judging
    for _ in range(REPAIR_ROUNDS):
        replays.run(p, screen=False)  # a late app's repair reads its replay
        judged = replace(p, promise=Promise(settings.arrivals, settings.attainment, replays.replayed(p),
                                            settings.fanout))
        if best is None or _better(judged, best):
            best = judged
        late = [ap for ap in p.apps if not replays.kept(ap)]
        if not late:
            return _said(_cheapest_shared(_shared_if_kept(judged, workload, settings, options, replays), workload,
                                          settings, options, name, replays), why_not)
        # Together (hardware counts) an app may fare worse than alone: its next level first, then repair.
        arrivals = dict(arrivals)
        fix = []
        for ap in late:
            if (following := next(searches[ap.name], None)) is not None:
                arrivals[ap.name] = following
            else:
                fix.append(ap)
                if not isinstance(arrivals[ap.name], Mapping):
                    arrivals[ap.name] = base[ap.name]
        if fix:
            arrivals.update(repair({ap.name: arrivals[ap.name] for ap in fix},
                                   [(ap, *replays.stats(ap)) for ap in fix], workload, settings))
        p, arrivals = _settled(workload, settings, options, name, arrivals, memo)
    assert best is not None
    log.warning("the replay does not bear out the %s promise for every app after %d repairs", settings.arrivals,
                REPAIR_ROUNDS)
    return _said(best, why_not)


def _said(p: Plan, why_not: Mapping[str, str]) -> Plan:
    """`p` with each refusal that the replay decided saying what the fastest plans tried kept."""
    if not any(r.app in why_not and why_not[r.app] for r in p.refused):
        return p
    return replace(p, refused=tuple(Refusal(r.app, f"{r.reason}; {why_not[r.app]}") if why_not.get(r.app) else r
                                    for r in p.refused))


def _shared(p: Plan, workload: Workload, settings: Settings, options: PlannerOptions) -> Plan:
    """The plan with light tuples on shared GPUs when that is cheaper (the switch on)."""
    return sharing.share(p, workload, settings) if options.sharing and p.apps else p


def _shared_if_kept(p: Plan, workload: Workload, settings: Settings, options: PlannerOptions,
                    replays: _Replays) -> Plan:
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
        for r in (_short(replays), replays):  # a short screen, then the steady state
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


#: Tries at a plan with shared GPUs that keeps the promise (each leaves the late apps unshared).
SHARE_ROUNDS = 4
#: Shared plans also tried under a promise: every app planned by the fluid formulas for its SLO times
#: the first factor with the second on `max_utilization`, then shared, as the levels above do for one
#: app; each replayed (a short screen first), cheapest first, the first kept taken if it is cheaper.
SHARE_LEVELS: tuple[tuple[float, float], ...] = tuple((f, u) for f in (1.0, 0.85, 0.7)
                                                      for u in (1.0, 0.95, 0.9, 0.85, 0.8, 0.7))
#: Frames per app of the screening replay of a shared level.
SCREEN_FRAMES = 2000


def _cheapest_shared(p: Plan, workload: Workload, settings: Settings, options: PlannerOptions, name: str,
                     steady: _Replays) -> Plan:
    """`p` (kept), or a cheaper plan with shared GPUs whose replay (all apps at once) keeps the promise
    too: made with every app at one of SHARE_LEVELS, or with each app at the cheapest level at which it
    kept its promise in those levels' screening replays."""
    if not options.sharing or not options.replay or not p.apps or p.refused:
        return p
    # Levels often make the same app plans: each is replayed once per horizon.
    short = _short(steady)

    def replayed(q: Plan, replays: _Replays) -> _Replays:
        replays.run(q, decide=True)
        return replays

    found: dict[tuple[AppPlan, ...], Plan] = {}
    kept_at: dict[str, list[tuple[float, tuple[float, float]]]] = {a.name: [] for a in workload.apps}
    alone = len(workload.apps) == 1  # then the levels' screens serve only to find a plan cheaper than `p`
    for level in SHARE_LEVELS:
        if alone and lower_bound(tightened(workload, level[0]), replace(
                settings, max_utilization=settings.max_utilization * level[1])) >= p.cost_per_hour * (1 - 1e-9):
            continue  # no plan made at this level could be cheaper
        q, base = _shared_at({a.name: level for a in workload.apps}, workload, settings, options, name)
        if q is None or (alone and q.cost_per_hour >= p.cost_per_hour * (1 - 1e-9)):
            continue
        replays = replayed(q, short)
        for ap, mine in zip(q.apps, base.apps, strict=True):
            if replays.kept(ap):
                kept_at[ap.name].append((workers_cost([mine], workload), level))
        if q.cost_per_hour < p.cost_per_hour * (1 - 1e-9) and all(replays.kept(ap) for ap in q.apps):
            found.setdefault(q.apps, q)
    if all(kept_at.values()):  # each app at its own cheapest level that kept it
        mixed = {a: min(levels)[1] for a, levels in kept_at.items()}
        q, _ = _shared_at(mixed, workload, settings, options, name)
        if q is not None and q.cost_per_hour < p.cost_per_hour * (1 - 1e-9):
            found.setdefault(q.apps, q)
    for q in sorted(found.values(), key=lambda q: q.cost_per_hour):  # stable: the levels' order on ties
        for replays in (short, steady):
            replayed(q, replays)
            if not all(replays.kept(ap) for ap in q.apps):
                break
        else:
            log.info("shared GPUs at fluid levels: $%.3f/h instead of $%.3f/h, kept by the replay",
                     q.cost_per_hour, p.cost_per_hour)
            return replace(q, promise=Promise(settings.arrivals, settings.attainment, replays.replayed(q),
                                              settings.fanout))
    return p


def tightened(workload: Workload, factor: float) -> Workload:
    """The workload with every app's SLO times `factor`."""
    if factor == 1.0:
        return workload
    return workload.model_copy(update={"apps": tuple(a.model_copy(update={"slo_ms": a.slo_ms * factor})
                                                     for a in workload.apps)})


def _short(steady: _Replays) -> _Replays:
    """Screening replays of `SCREEN_FRAMES` per app beside `steady` (one per plan: its apps replayed once)."""
    if steady.short is None:
        opts = replace(steady.options, replay_frames=min(SCREEN_FRAMES, steady.options.replay_frames))
        steady.short = _Replays(steady.workload, steady.settings, opts, steady=False, runs=steady.runs)
    return steady.short


def _shared_at(levels: Mapping[str, tuple[float, float]], workload: Workload, settings: Settings,
               options: PlannerOptions, name: str) -> tuple[Plan | None, Plan]:
    """Every app planned by the fluid formulas at its level (SLO factor, utilisation factor), then its
    light tuples shared within the tightened SLOs (at the least utilisation of the levels); the shared
    plan (None if an app is refused) and the unshared one."""
    base = _plan(workload, settings, options, name, dict(levels))
    if base.refused:
        return None, base
    factor = {a: f for a, (f, _) in levels.items()}
    fluid = replace(settings, arrivals="fluid", max_utilization=settings.max_utilization * min(u for _, u in levels.values()))
    tight = workload.model_copy(update={"apps": tuple(a.model_copy(update={"slo_ms": a.slo_ms * factor[a.name]})
                                                      for a in workload.apps)})
    q = sharing.share(replace(base, apps=tuple(replace(ap, slo_ms=ap.slo_ms * factor[ap.name]) for ap in base.apps)),
                      tight, fluid)
    slo = {a.name: a.slo_ms for a in workload.apps}  # each app's own, exactly (not divided back)
    return replace(q, apps=tuple(replace(ap, slo_ms=slo[ap.name]) for ap in q.apps)), base


#: The last resort for an app that no level keeps: the fluid formulas for a tighter SLO (factor) and
#: with less of each worker (factor on `max_utilization`), tried in order of cost.
FALLBACK_SLO = (1.0, 0.85, 0.7, 0.55, 0.4, 0.3)
FALLBACK_UTILIZATION = (1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1)


def _tightened_fallback(app: App, workload: Workload, settings: Settings, options: PlannerOptions, name: str,
                        replays: _Replays, why_not: dict[str, str]) -> list[tuple[float, float]]:
    """Models (SLO factor, utilisation factor) under which the app alone keeps its promise, cheapest
    first: plans at every tightened point (down to a tenth of each worker: more workers at smaller
    batches, the fastest plans the formulas make), replayed in order of cost until one keeps the
    promise. When none does, `why_not[app]` says what the best of them kept."""
    alone = workload.model_copy(update={"apps": (app,)})
    found: dict[AppPlan, tuple[float, tuple[float, float]]] = {}
    for f in FALLBACK_SLO:
        for u in FALLBACK_UTILIZATION:
            p = _plan(alone, settings, options, name, {app.name: (f, u)})
            if p.apps and p.apps[0] not in found:
                found[p.apps[0]] = (p.cost_per_hour, (f, u))
    best: tuple | None = None
    for ap, (cost, model) in sorted(found.items(), key=lambda x: x[1][0]):
        replays.run(replace(Plan.build(name, options.dispatch, settings, (ap,), (), alone), apps=(ap,)))
        if replays.kept(ap):
            return [model]
        got = replays.stats(ap)
        if got is not None:
            const, pois = got
            score = (const.over_slo == 0, (pois or const).attainment, -cost)
            if best is None or score > best[0]:
                best = (score, model, cost, const, pois)
    if best is None:
        why_not[app.name] = (f"none of the {len(found)} plans tried (fluid formulas for SLO x1 to x0.3, utilisation "
                             "x1 to x0.1) passes the steady-state screen" if found else "")
    else:
        _, (f, u), cost, const, pois = best
        what = [f"{pois.attainment:.2%} within the SLO under Poisson arrivals (promised {settings.attainment:.0%})"
                if pois is not None else "",
                "every frame within it with constant arrivals" if const.over_slo == 0 else
                f"{const.over_slo:.2%} of frames late with constant arrivals"]
        why_not[app.name] = (f"the best of {len(found)} plans tried (the fluid formulas for SLO x{f:g} at utilisation "
                             f"x{u:g}, ${cost:.3f}/h, P99 {(pois or const).p99_ms:.1f} ms) keeps "
                             + ", ".join(w for w in what if w) + " in the replay")
    return []


class _Replays:
    """Replays of app plans, each replayed once: an app that shares no GPU alone (apps meet only on
    shared GPUs), an app on shared GPUs together with the apps it meets there (keyed by all of them).

    `steady`: at least `replay_seconds` of each app's frames (the judging horizon); else
    `replay_frames` only (screening the levels). Before any replay, an app with a worker group whose
    expected load is full or more (:func:`queueing.overloaded`) is not kept, and not replayed."""

    def __init__(self, workload: Workload, settings: Settings, options: PlannerOptions, steady: bool = True,
                 runs: dict | None = None):
        self.workload, self.settings, self.options = workload, settings, options
        self.steady = steady
        self.seconds = options.replay_seconds if steady else 0.0
        self.seeds = JUDGE_SEEDS if steady else SCREEN_SEEDS
        self.runs = {} if runs is None else runs
        """Replays of `replay_frames` per app already run, shared between instances: where 60 s of an
        app is fewer frames than that, the judging replay of a screened plan is the screening one."""
        self._stats: dict[tuple, tuple] = {}  # key -> (constant AppStats, Poisson AppStats or None)
        self._screened: dict[tuple, str] = {}  # key -> why it cannot keep its promise
        self._key: dict[AppPlan, tuple] = {}  # each app plan's key in the plan last run: it, and whom it meets
        self.short: _Replays | None = None  # the short screen beside these (:func:`_short`)

    def run(self, p: Plan, screen: bool = True, decide: bool | None = None) -> None:
        """Replay the apps of `p` not replayed yet (with the apps they meet on shared GPUs); `screen`: not
        those the analytic screen finds overloaded. `decide` (default: when not `steady`): stop replaying
        an app's Poisson seeds once its promise is broken whatever the rest show (a candidate's replay;
        the judging of a plan, whose stats a repair reads, replays every seed)."""
        from harpagon.sim.sweep import linked  # the replay is a layer above the model, below the planner

        together = linked(p)
        for ap in p.apps:
            self._key[ap] = (ap, together[ap.name])
        fresh = [ap for ap in p.apps if self._key[ap] not in self._stats
                 and not (screen and self._key[ap] in self._screened)]
        if screen and fresh:
            part = replace(p, apps=tuple(fresh))
            why = {**queueing.overloaded(part, self.workload, poisson=False),
                   **(queueing.overloaded(part, self.workload, poisson=True) if self.settings.arrivals == "poisson"
                      else {})}
            for ap in fresh:
                if ap.name in why:
                    self._screened[self._key[ap]] = why[ap.name]
            fresh = [ap for ap in fresh if self._key[ap] not in self._screened]
        if fresh:
            self._replay(replace(p, apps=tuple(x for x in p.apps if any(x in self._key[ap][1] for ap in fresh))),
                         not self.steady if decide is None else decide)

    def _simulate(self, p: Plan, arrivals: str, seed: int, fanout: str):
        from harpagon.sim import simulate

        frames, seconds = self.options.replay_frames, self.seconds
        counts = tuple(max(frames, math.ceil(ap.rate * seconds - 1e-9)) for ap in p.apps)
        key = (p.apps, arrivals, seed, fanout, counts)  # all the replay reads (settings are the planner's)
        if key in self.runs:
            return self.runs[key]
        got = simulate(p, self.workload, arrivals, frames=frames, seed=seed, fanout=fanout, seconds=seconds)
        if all(c == frames for c in counts):  # only these can be asked for again, by the other horizon
            self.runs[key] = got
        return got

    def _replay(self, p: Plan, decide: bool) -> None:
        seed = self.options.seed
        const = self._simulate(p, "constant", seed, "deterministic")
        # Poisson on several seeds, the worst counting: a heavily loaded app has rare long queues, which
        # one run may miss entirely (and then shows a tiny standard error). These replays have the
        # settings' fan-out (MODEL.md v2's planned counts by default, or Poisson draws: `Settings.fanout`).
        pois: list = []
        for i in range(self.seeds if self.settings.arrivals == "poisson" else 0):
            if decide and all(_decided(const.app(ap.name), [r.app(ap.name) for r in pois], self.settings)
                              for ap in p.apps):
                break  # no further seed can keep these apps
            pois.append(self._simulate(p, "poisson", seed + i * POISSON_SECOND_SEED, self.settings.fanout))
        for ap in p.apps:
            worst = min((r.app(ap.name) for r in pois), key=lambda a: a.attainment) if pois else None
            self._stats[self._key[ap]] = (const.app(ap.name), worst)

    def stats(self, ap: AppPlan) -> tuple | None:
        """(constant AppStats, Poisson AppStats or None) of `ap` in the plan last run; None if screened."""
        return self._stats.get(self._key[ap], None) if ap in self._key else None

    def kept(self, ap: AppPlan) -> bool:
        got = self.stats(ap)
        return got is not None and _app_kept(*got, self.settings)

    def replayed(self, p: Plan) -> Replayed:
        stats = [self._stats[self._key[ap]] for ap in p.apps]
        apps = tuple((ap.name, (pois or const).attainment) for ap, (const, pois) in zip(p.apps, stats, strict=True))
        frames = min((const.frames for const, _ in stats), default=self.options.replay_frames)
        return Replayed(frames, self.options.seed, min((a for _, a in apps), default=1.0),
                        all(const.over_slo == 0 for const, _ in stats), apps, self.seconds)


#: The model's families of levels, each planned at any utilisation cap (a factor on `max_utilization`,
#: from 1 down to MIN_CAP): the fluid formulas for the app's SLO times a factor (SLO factor, None), and
#: arrival models (1, overrides of :class:`Arrival`'s defaults): optimistic (no jitter, half the
#: allowance) and the default (at cap 1: where a repair starts). In this order, which breaks ties in cost.
FAMILIES: tuple[tuple[float, dict | None], ...] = (
    (1.0, None), (1.0, {"jitter": False, "kappa": 0.5}), (1.0, {}), (0.85, None), (0.7, None))
#: The least utilisation cap tried (below, an app no level keeps goes to `_tightened_fallback`).
MIN_CAP = 0.05
#: Below a family's lowest cap tried, the next one is this factor lower...
CAP_STEP = 0.5
#: ...and between two caps whose plans differ, their geometric mean is tried, until they are this close
#: (a ratio): a plan made only within a narrower band of caps may be missed.
CAP_RESOLUTION = 1.005
#: The default arrival model at the full cap: where a repair starts.
DEFAULT_LEVEL = (FAMILIES[2], 1.0)


def _structure(ap: AppPlan) -> tuple:
    """What tells two plans of one app apart for the search over caps: each module's tuples' hardware,
    batch and workers (budgets and dummy rates move with the cap continuously)."""
    return tuple((mp.name, tuple((t.hardware, t.batch, t.workers) for t in mp.tuples)) for mp in ap.modules)


class _Search:
    """One app's levels, cheapest first: iterating yields the models (settled: :func:`_settled`) whose
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
                 base: Mapping[str, Arrival], memo: dict, replays: _Replays, judging: _Replays | None = None):
        self.app = app
        self.alone = workload.model_copy(update={"apps": (app,)})
        self.settings, self.options, self.name, self.memo, self.replays = settings, options, name, memo, replays
        self.judging = judging
        self.base = base
        # The bound scales as 1 / cap (every option's price per request does): one per SLO factor.
        self.floor = {f: app_bound(app.model_copy(update={"slo_ms": app.slo_ms * f}), workload, settings).cost
                      for f in {f for f, _ in FAMILIES}}
        self.tried: list[dict[float, tuple[Any, float]]] = [{} for _ in FAMILIES]  # cap -> (structure, cost)
        self.queue: list[tuple] = []  # a heap: (floor, 0, ...) plans to replay, (floor, 1, ...) caps to plan
        self.seen: set[AppPlan] = set()
        self.default: Mapping[str, Arrival] | None = None
        """The default level's model, once planned."""
        self.bounded = True  # the bounds held for every plan so far (a plan below its bound turns them off)
        self.planned = self.replayed = 0  # caps planned and plans taken up for replay (diagnostics)
        for k in range(len(FAMILIES)):
            self._push_cap(k, 1.0, 1.0, 0.0)

    def __iter__(self) -> _Search:
        return self

    def __next__(self) -> Any:
        while self.queue:
            entry = heapq.heappop(self.queue)
            if entry[1] == 0:  # a plan: no cap left to try could give a cheaper one
                _, _, _, _, ap, p, model = entry
                self.replayed += 1
                if self._hopeless(p, ap):
                    continue
                self.replays.run(p)
                if self.replays.kept(ap) or self._kept_in_steady_state(p, ap):
                    return model
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
                math.ceil(ap.rate * self.judging.seconds - 1e-9) <= self.replays.options.replay_frames:
            return False
        if got[1] is not None and got[1].attainment < self.settings.attainment + PROMISE_MARGIN:
            return False
        self.judging.run(p, screen=False)
        return self.judging.kept(ap)

    def _hopeless(self, p: Plan, ap: AppPlan) -> bool:
        """Whether the plan's first SCREEN_FRAMES frames (a short replay on the same seeds) already hold
        more late frames than the whole screening replay may, beyond those a short replay's end can add
        (its last open batches ship on their timers: at most twice the batch sizes of the app's tuples)."""
        short = _short(self.replays)
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
        floor = max(self.floor[FAMILIES[k][0]] / top * (1 - 1e-9), above) if self.bounded else -math.inf
        if math.isfinite(floor) or not self.bounded:
            heapq.heappush(self.queue, (floor, 1, k, -cap))

    def _plan(self, k: int, cap: float) -> None:
        f, model = FAMILIES[k]
        self.planned += 1
        level = (f, cap) if model is None else {m: replace(x, **model, cap=cap) for m, x in self.base.items()}
        p, arrivals = _settled(self.alone, self.settings, self.options, self.name, {self.app.name: level},
                               self.memo)
        settled = arrivals[self.app.name]
        if (FAMILIES[k], cap) == DEFAULT_LEVEL:
            self.default = settled  # type: ignore[assignment]
        ap = p.apps[0] if p.apps else None
        cost = p.cost_per_hour if ap is not None else math.inf
        tried = self.tried[k]
        tried[cap] = (_structure(ap) if ap is not None else None, cost)
        if ap is not None and self.bounded and cost < self.floor[f] / cap * (1 - REL_TOL):
            log.warning("%s: a plan at %s, cap %g, costs %g, below its bound; bounds not used", self.app.name,
                        FAMILIES[k], cap, cost)
            self.bounded = False
        if ap is not None and ap not in self.seen:
            self.seen.add(ap)
            heapq.heappush(self.queue, (cost if self.bounded else -math.inf, 0, k, -cap, ap, p, settled))
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


#: The planner's own replay must show this much more than the promised attainment (sampling noise),
#: and at least `SE_MARGIN` standard errors of its late fraction (by batch means) more.
PROMISE_MARGIN = 0.004
SE_MARGIN = 3.0
#: The planner replays Poisson arrivals on its seed and on `seed + k POISSON_SECOND_SEED`: two seeds when
#: it screens the levels, three when it judges the plan it returns (at the steady-state horizon). On
#: `aws/pose/300fps/x5` two seeds kept a plan that a third (and 3 of 6 others) finds at 96.9-99.4%.
POISSON_SECOND_SEED = 7919
SCREEN_SEEDS, JUDGE_SEEDS = 2, 3


def _app_kept(constant, poisson, settings: Settings) -> bool:
    """An app's promise in a replay: no frame late with constant arrivals, and under `poisson` the
    attainment with `PROMISE_MARGIN` to spare."""
    if constant.over_slo > 0:
        return False
    return poisson is None or poisson.attainment >= settings.attainment + max(PROMISE_MARGIN,
                                                                            SE_MARGIN * poisson.late_se)


def _decided(constant, poisson: list, settings: Settings) -> bool:
    """Whether an app's promise is already broken whatever further Poisson seeds show: a frame late with
    constant arrivals, or a seed whose attainment is below the least any keeping replay shows (the
    worst seed counts, and it must clear `PROMISE_MARGIN` at least)."""
    return constant.over_slo > 0 or any(r.attainment < settings.attainment + PROMISE_MARGIN for r in poisson)


def _better(a: Plan, b: Plan) -> bool:
    """Of two judged plans, the one whose worst app fares better (kept first, then cheaper)."""
    ka = bool(a.promise and a.promise.kept)
    kb = bool(b.promise and b.promise.kept)
    if ka != kb:
        return ka
    ra, rb = a.promise.replayed, b.promise.replayed  # type: ignore[union-attr]
    return (ra.constant_all_within, ra.min_app_attainment) > (rb.constant_all_within, rb.min_app_attainment)


def _settled(workload: Workload, settings: Settings, options: PlannerOptions, name: str,
             arrivals: Arrivals, memo: dict | None = None) -> tuple[Plan, Arrivals]:
    """Plan, then re-plan while the bursts the plan's batches make differ from those assumed."""
    memo = {} if memo is None else memo
    p = _plan(workload, settings, options, name, arrivals, memo)
    for _ in range(BURST_ROUNDS):
        seen = {a.name: with_bursts(workload_app(workload, a.name), a, arrivals[a.name], settings)
                for a in p.apps if isinstance(arrivals[a.name], Mapping)}
        if all(seen[n] == arrivals[n] for n in seen):
            break
        arrivals = {**arrivals, **seen}
        p = _plan(workload, settings, options, name, arrivals, memo)
    return p, arrivals


def workload_app(workload: Workload, name: str) -> App:
    return next(a for a in workload.apps if a.name == name)


def late_share(app: App, settings: Settings) -> dict[str, float]:
    """The fraction of an app's frames each module may make late: the allowed late fraction, halved
    for sampling noise, shared over the modules of the longest path through it."""
    late = (1 - settings.attainment) * EPSILON_SHARE
    return {m.name: late / max(len(p) for p in app.paths if m.name in p) for m in app.modules}


def initial_arrivals(app: App, settings: Settings) -> dict[str, Arrival]:
    """Each module's arrival model before any plan: bursts of a frame's requests only."""
    poisson = settings.arrivals == "poisson"
    share = late_share(app, settings)
    out = {}
    for m in app.modules:
        per_frame = frame_requests(m, settings, share[m.name])
        eps = share[m.name] / per_frame
        out[m.name] = Arrival(poisson=poisson, smooth=not poisson and not m.after and m.scale == 1.0,
                              clump=per_frame, epsilon=eps)
    return out


def frame_requests(module: Module, settings: Settings, late: float) -> int:
    """Most requests one frame brings a module, as the planner counts them: `ceil(s)` (the replay's
    planned counts), or under Poisson fan-out (`settings.fanout`, below the source) the least count
    that a Poisson(s) draw exceeds for at most a fraction `late` of the frames (the module's late share)."""
    if settings.fanout != "poisson" or not module.after:
        return max(1, math.ceil(module.scale - 1e-9))
    k, pmf = 0, math.exp(-module.scale)
    cdf = pmf
    while cdf < 1 - late and k < 10_000:
        k += 1
        pmf *= module.scale / k
        cdf += pmf
    return max(1, k)


def with_bursts(app: App, ap: AppPlan, arrivals: Mapping[str, Arrival],
                settings: Settings | None = None) -> dict[str, Arrival]:
    """Arrival models whose bursts are those the plan makes: a module gets a frame's requests at once,
    for every frame that a parent's batch finishes together (a frame's requests as
    :func:`frame_requests` counts them under `settings`; `ceil(s)` without)."""
    frames_per_batch = {}
    for mp in ap.modules:
        scale = app.module(mp.name).scale
        waits = [(t, collection_ms("batch-aware", t.batch, 1, t.rate + t.dummy_rate)) for t in mp.tuples]
        real = max(float(real_requests(t.batch, t.rate, wait)) for t, wait in waits)
        frames_per_batch[mp.name] = max(1, math.ceil(real / max(1.0, scale) - 1e-9))
    share = late_share(app, settings) if settings is not None else {}
    out = {}
    for m in app.modules:
        together = max((frames_per_batch[p] for p in m.after), default=1)
        per_frame = max(1, math.ceil(m.scale - 1e-9)) if settings is None else \
            frame_requests(m, settings, share[m.name])
        out[m.name] = replace(arrivals[m.name], clump=per_frame * together)
    return out


def repair(arrivals: Mapping[str, Mapping[str, Arrival]], late: list[tuple[AppPlan, Any, Any]], workload: Workload,
           settings: Settings) -> dict[str, Mapping[str, Arrival] | None]:
    """New arrival models after a replay. `late`: each late app's plan with its constant and Poisson
    replay stats. A module whose replayed latency exceeds its prediction gets a larger allowance
    (under Poisson), the excess seen with constant arrivals, and more headroom; when none stands
    out, every module of the app gets a larger allowance and more headroom."""
    out: dict[str, Mapping[str, Arrival] | None] = dict(arrivals)
    for ap, const, pois in late:
        app = workload_app(workload, ap.name)
        mods = dict(arrivals[ap.name])
        late_const = const.over_slo > 0
        late_pois = pois is not None and not _app_kept(const, pois, settings)
        share = late_share(app, settings)
        found = False
        for mp in ap.modules:
            over = const.module(mp.name).max_ms - mp.predicted_latency_ms if late_const else 0.0
            if late_pois:
                over = max(over, pois.module(mp.name).quantile(1 - share[mp.name]) - mp.predicted_latency_ms)
            if over > 1e-6 * max(1.0, mp.predicted_latency_ms):
                found = True
                mods[mp.name] = mods[mp.name].repaired(kappa=1.5 if late_pois else 1.0, headroom=0.92,
                                                       extra_ms=over / 2 if late_const else 0.0)
        if not found:
            mods = {m: a.repaired(kappa=1.5, headroom=0.95) for m, a in mods.items()}
        out[ap.name] = mods
    return out


def _plan(workload: Workload, settings: Settings, options: PlannerOptions, name: str,
          arrivals: Arrivals | None, memo: dict | None = None) -> Plan:
    """One planning pass over every app (hardware counts shared).

    Each app is first planned as if it had all the hardware. While together they use more workers of
    a kind than its `count`, the module (of any app) whose move off the excess raises the cost least
    gives it up: its own limit on that kind drops by the excess, and its app is re-planned. When no
    module can move, the last app (in input order) using that kind is refused."""
    inventory: dict[str, int | None] = {h.name: h.count for h in workload.hardware}
    states: dict[str, _AppState] = {}
    refused: list[Refusal] = []
    memo = {} if memo is None else memo  # an app planned with the same model is planned once
    for app in workload.apps:
        model = None if arrivals is None else arrivals[app.name]
        key = (app.name, tuple(sorted(model.items())) if isinstance(model, Mapping) else model)
        if key not in memo:
            mine, planned_app = settings, app
            if isinstance(model, float):  # the fluid formulas with less of each worker
                mine = replace(settings, max_utilization=settings.max_utilization * model)
                model = None
            elif isinstance(model, tuple):  # the fluid formulas for a tighter SLO, with less of each worker
                factor, cap = model
                mine = replace(settings, max_utilization=settings.max_utilization * cap)
                planned_app = app.model_copy(update={"slo_ms": app.slo_ms * factor})
                model = None
            elif isinstance(model, Mapping) and (cap := min(a.cap for a in model.values())) != 1.0:
                mine = replace(settings, max_utilization=settings.max_utilization * cap)  # a level's cap
            state = _AppState.start(planned_app, workload, mine, options, inventory, model)
            memo[key] = (state, _refusal(planned_app, workload, mine, inventory, model)
                         if state.choices is None else None)
        state, refusal = memo[key]
        if refusal is not None:
            refused.append(refusal)
        else:
            states[app.name] = state
    for _ in range(_MAX_ROUNDS):
        over = _excess(_usage(c for st in states.values() for c in st.chosen), inventory)
        if over is None:
            break
        hw, excess = over
        best: tuple[float, str, _AppState] | None = None
        for app_name, st in states.items():
            for trial in st.without(hw, excess):
                delta = trial.cost - st.cost
                if best is None or delta < best[0] - 1e-12:
                    best = (delta, app_name, trial)
        if best is not None:
            states[best[1]] = best[2]
            continue
        last = [a for a, st in states.items() if _usage(st.chosen).get(hw)][-1]
        del states[last]
        refused.append(Refusal(last, f"cannot be placed: hardware counts run out ({hw}: {inventory[hw]} in all, "
                                     f"{excess} too few to serve every app)"))
    else:  # pragma: no cover - every round lowers one module's limit or refuses an app
        raise RuntimeError("hardware allocation did not converge")
    slo = {a.name: a.slo_ms for a in workload.apps}  # an app planned for a tighter SLO keeps its own
    planned = tuple(replace(states[a.name].build(), slo_ms=slo[a.name]) for a in workload.apps if a.name in states)
    order = {a.name: i for i, a in enumerate(workload.apps)}
    return Plan.build(name, options.dispatch, settings, planned,
                      tuple(sorted(refused, key=lambda r: order[r.app])), workload)


#: Bound on allocation rounds (each round strictly lowers one module's limit on one kind).
_MAX_ROUNDS = 100_000


@dataclass(frozen=True)
class _AppState:
    """One app's schedulers (each with its own hardware limits) and the choices of its split."""

    app: App
    workload: Workload
    settings: Settings
    options: PlannerOptions
    limits: Mapping[str, Mapping[str, int | None]]
    schedulers: Mapping[str, ModuleScheduler]
    choices: Mapping[str, Choice] | None
    arrivals: Mapping[str, Arrival] | None = None

    @staticmethod
    def start(app: App, workload: Workload, settings: Settings, options: PlannerOptions,
              inventory: Mapping[str, int | None], arrivals: Mapping[str, Arrival] | None = None) -> _AppState:
        limits = {m.name: dict(inventory) for m in app.modules}
        schedulers = {m.name: _scheduler(app, m, workload, settings, options, limits[m.name],
                                         arrivals[m.name] if arrivals else None)
                      for m in app.modules}
        return _AppState(app, workload, settings, options, limits, schedulers,
                         _split_and_choose(app, schedulers, options), arrivals)

    @property
    def chosen(self) -> list[Choice]:
        return list((self.choices or {}).values())

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.chosen) if self.choices is not None else float("inf")

    def without(self, hw: str, excess: int) -> list[_AppState]:
        """Re-plans of this app in which one module uses `excess` fewer workers of `hw`."""
        out = []
        for name, choice in (self.choices or {}).items():
            mine = sum(g.workers for g in choice.groups if g.option.hardware == hw)
            if not mine:
                continue
            lim = {**self.limits[name], hw: max(0, mine - excess)}
            sched = _scheduler(self.app, self.app.module(name), self.workload, self.settings, self.options, lim,
                               self.arrivals[name] if self.arrivals else None)
            schedulers = {**self.schedulers, name: sched}
            choices = _split_and_choose(self.app, schedulers, self.options)
            if choices is not None:
                out.append(_AppState(self.app, self.workload, self.settings, self.options,
                                     {**self.limits, name: lim}, schedulers, choices, self.arrivals))
        return out

    def build(self) -> AppPlan:
        assert self.choices is not None
        return build_app_plan(self.app, self.choices, self.settings, self.options.mode)


def _scheduler(app: App, module: Module, workload: Workload, settings: Settings, options: PlannerOptions,
               limits: Mapping[str, int | None], arrival: Arrival | None = None) -> ModuleScheduler:
    return ModuleScheduler(options_for(workload, module.model, settings), app.module_rate(module), settings,
                           limits, multi_tuple=options.multi_tuple, mode=options.mode, arrival=arrival)


def _excess(used: Mapping[str, int], inventory: Mapping[str, int | None]) -> tuple[str, int] | None:
    """The first hardware kind used beyond its count, and by how many workers."""
    for hw, n in sorted(used.items()):
        cap = inventory.get(hw)
        if cap is not None and n > cap:
            return hw, n - cap
    return None


def _split_and_choose(app: App, schedulers: Mapping[str, ModuleScheduler],
                      options: PlannerOptions) -> dict[str, Choice] | None:
    # No module can get more budget than the SLO less the fastest the others on its paths can be.
    floor = {name: s.fastest_ms for name, s in schedulers.items()}
    reach = {name: app.slo_ms - max(sum(floor[x] for x in p if x != name) for p in app.paths if name in p)
             for name in schedulers}
    curves = {name: s.curve(reach[name]) for name, s in schedulers.items()}
    if any(not len(c) for c in curves.values()) or fastest_path(app, curves)[0] > app.slo_ms * (1 + 1e-9):
        return None
    if options.split == "even":
        even = split_even(app, curves)
        return None if even is None else _choose(schedulers, curves, even)
    split = split_greedy(app, curves)
    if options.exact_split:
        exact = split_tree(app, curves) if app.is_tree else split_search(app, curves, split)
        if exact is not None and split_cost(exact, curves) < split_cost(split, curves):
            split = exact
    return _choose(schedulers, curves, split)


def _choose(schedulers: Mapping[str, ModuleScheduler], curves, split: Split) -> dict[str, Choice]:
    out = {}
    for name, i in split.items():
        choice = schedulers[name].choose(float(curves[name].budgets[i]))
        assert choice is not None, "a curve step is feasible by construction"
        out[name] = choice
    return out


def _usage(choices: Iterable[Choice]) -> dict[str, int]:
    used: dict[str, int] = {}
    for c in choices:
        for g in c.groups:
            used[g.option.hardware] = used.get(g.option.hardware, 0) + g.workers
    return used


def _refusal(app: App, workload: Workload, settings: Settings, inventory: Mapping[str, int | None],
             arrivals: Mapping[str, Arrival] | None = None) -> Refusal:
    def fastest(model: Mapping[str, Arrival] | None) -> tuple[float, tuple[str, ...]]:
        curves = {m.name: ModuleScheduler(options_for(workload, m.model, settings), app.module_rate(m), settings,
                                          arrival=model[m.name] if model else None).curve(float("inf"))
                  for m in app.modules}
        return fastest_path(app, curves)

    tried = [(None, "its fastest possible path")]
    if arrivals is not None:
        tried.append((arrivals, f"its fastest path that keeps the {settings.arrivals} promise"))
    for model, what in tried:
        ms, path = fastest(model)
        if ms > app.slo_ms * (1 + 1e-9):
            return Refusal(app.name, f"SLO {app.slo_ms:g} ms is below {what}, {ms:.2f} ms ({' -> '.join(path)})")
    left = ", ".join(f"{h}: {n} left" for h, n in inventory.items() if n is not None)
    return Refusal(app.name, f"cannot be placed within the SLO of {app.slo_ms:g} ms: hardware counts run "
                             f"out ({left})")
