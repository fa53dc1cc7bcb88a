"""GPU sharing in Harpagon's plans: light tuples, of any modules and apps, packed onto shared GPUs,
so that a low-rate app or a module's residual load does not pay for a whole GPU.

A shared GPU runs the batches of its tuples first in, first out (docs/model.md, the replay, rule 4). Each
of its tuples keeps batch-aware collection with the GPU's duty cycle `C` as its flush timer: it ships
when full or when its oldest request has waited `C`, with a batch `b` that holds a cycle's requests
(`r C / 1000 <= b`), so it ships once a cycle. The GPU keeps up when one batch of each tuple fits in
a cycle: `Σ d(b) <= C × max_utilization`. A tuple's latency is `C + d(b) + overhead` (docs/model.md's
shared tuple) plus, under a promise about real arrivals, a queue allowance `Σ d(b)` (one batch of
every tuple ahead of its own); there, a batch also holds one burst of its requests (a parent's batch
of frames), and a bursty tuple's batches count twice in the cycle (a full batch, then the timer's).
The models on one GPU must fit its memory (:mod:`harpagon.model.memory`, where profiles state it).

Which tuples share is the SLO split again: per module, the GPU time of its ways to run (as planned,
or a fresh choice made for sharing) at every latency, over which the planner's own splitter picks
each module's latency (:func:`candidates`). Packing is greedy (largest load first, each tuple onto
the GPU it leaves most occupied, at the longest cycle that fits every member's latency, as Nexus's
squishy bin packing does); the tuples it leaves alone are then paired where their apps' paths have
the latency to spare (:func:`repair_packing`: the split costs each tuple alone, so it may give two
tuples latencies whose cycles just miss each other). The result is kept only if it is cheaper than
the plan it starts from and within the hardware counts; under a promise the planner keeps it only if
its replay keeps the promise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from harpagon.config.schema import App, Workload
from harpagon.model import memory
from harpagon.model.latency import PLAN_TOL, Dispatch, Option, Settings, options_for, tuple_latency
from harpagon.model.plan import AppPlan, ModulePlan, Plan, TuplePlan, over_counts, path_latency
from harpagon.planner.module_scheduler import CostCurve
from harpagon.planner.splitter import split_greedy, split_search, split_tree

#: The duty cycles tried for a GPU, from the longest its members' budgets allow down by this factor...
CYCLE_STEP = 0.92
#: ...to this (ms): shorter cycles buy latency with batches too small to share a GPU well.
MIN_CYCLE_MS = 0.5
#: The latencies at which a module's ways to run are costed grow by this factor (from its fastest).
CAP_STEP = 1.08
#: Under a promise about real arrivals, saturated workers beside a shared residual run at this share
#: of their capacity (see `main_load`).
PROMISE_LOAD = 0.8


@dataclass
class Member:
    """A tuple that may move onto a shared GPU: `rate` of one module, within `budget_ms`."""

    app: str
    module: str
    model: str
    index: int  # the tuple's index in its module
    hardware: str
    rate: float
    budget_ms: float
    """The most latency it may have: its module's, plus its part of its app's slack."""
    options: list[Option]  # of `hardware`, batches ascending
    main: TuplePlan | None = None
    """When the member is a residual: the saturated tuple beside it (None: none, or the member is a
    whole tuple of the plan)."""
    whole_module: bool = False
    """The member and `main` replace all of its module's tuples (a sharing-aware choice for the
    module), not only the tuple at `index`."""

    burst: int = 1
    """Requests released together (a parent's batch of frames, times the module's scale per parent
    request); under a promise a batch holds at least one burst, and a bursty member may ship twice in
    a cycle (a full batch, then the timer's), so its batches count twice in the GPU's cycle."""

    def batch_for(self, cycle_ms: float, promise: bool = False) -> Option | None:
        """The smallest profiled batch that holds one cycle's requests, and under a promise one burst
        (None: none does)."""
        need = max(1, math.ceil(cycle_ms * self.rate / 1000.0 - PLAN_TOL), self.burst if promise else 1)
        return next((o for o in self.options if o.batch >= need), None)

    def busy_ms(self, o: Option, promise: bool) -> float:
        """GPU time the member's batches take in one cycle."""
        return o.d_ms * (2 if promise and self.burst > 1 else 1)


@dataclass
class SharedGpu:
    """A shared GPU: its members and the duty cycle they run at."""

    hardware: str
    members: list[Member] = field(default_factory=list)
    cycle_ms: float = 0.0
    busy_ms: float = 0.0


def shared_latency(cycle_ms: float, o: Option, busy_ms: float, settings: Settings) -> float:
    """A shared tuple's latency: a cycle's collection, its batch, the hop, and under a promise the wait
    for the GPU's other batches of the cycle (its queue allowance)."""
    return cycle_ms + o.d_ms + settings.overhead_ms + queue_allowance(busy_ms, settings)


Fits = Callable[[float, float, list[Option]], bool]
"""Whether members' latencies hold at a (cycle, busy time, batch of each member)."""


def _first_fit(members: Sequence[Member], top: float, settings: Settings, workload: Workload | None,
               latencies_hold: Fits) -> tuple[float, float] | None:
    """The longest cycle up to `top` at which one batch of each member fits in `C × max_utilization`,
    their latencies hold and their models fit the GPU's memory; and its busy time per cycle."""
    promise = not settings.fluid
    for cycle in _cycles(members, top):
        chosen = [m.batch_for(cycle, promise) for m in members]
        if any(o is None for o in chosen):
            continue
        picked: list[Option] = chosen  # type: ignore[assignment]
        busy = sum(m.busy_ms(o, promise) for m, o in zip(members, picked, strict=True))
        if (busy <= cycle * settings.max_utilization * (1 + PLAN_TOL) and latencies_hold(cycle, busy, picked)
                and (workload is None or _fits_memory(workload, members, picked))):
            return cycle, busy
    return None


def fit(members: Sequence[Member], settings: Settings, workload: Workload | None = None) -> tuple[float, float] | None:
    """The longest duty cycle (ms) at which `members` share one GPU, and its busy time per cycle; None
    if there is none. Each member's latency (`shared_latency`) stays within its budget, one batch of
    each fits in `C × max_utilization`, and their models fit the GPU's memory."""
    def within_budgets(cycle: float, busy: float, chosen: list[Option]) -> bool:
        return all(shared_latency(cycle, o, busy, settings) <= m.budget_ms * (1 + PLAN_TOL)
                   for m, o in zip(members, chosen, strict=True))

    return _first_fit(members, min(m.budget_ms for m in members) - settings.overhead_ms, settings, workload,
                      within_budgets)


def _cycles(members: Sequence[Member], top: float) -> list[float]:
    """The duty cycles worth trying, longest first, from `top` down to MIN_CYCLE_MS: a geometric grid
    (CYCLE_STEP), and each cycle at which a member's batch just holds a cycle's requests (`1000 b / r`),
    the longest at that batch (the grid alone may miss a window of a percent in which the members'
    batches fit a cycle: at 300 frames/s, batches of 2 at 6.62 to 6.67 ms)."""
    grid = set()
    cycle = top
    while cycle >= MIN_CYCLE_MS:
        grid.add(cycle)
        cycle *= CYCLE_STEP
    grid.update(c for m in members if m.rate > 0 for o in m.options
                if MIN_CYCLE_MS <= (c := 1000.0 * o.batch / m.rate) <= top)
    return sorted(grid, reverse=True)


def main_load(settings: Settings) -> float:
    """The load of a saturated worker beside a shared residual: its capacity in the fluid model; under a
    promise about real arrivals, PROMISE_LOAD of it (a worker at full load queues without bound)."""
    return settings.max_utilization * (1.0 if settings.fluid else PROMISE_LOAD)


def main_allowance(o: Option, settings: Settings) -> float:
    """Queueing allowance of such a worker: none in the fluid model; under a promise, a batch's worth
    of waiting per PROMISE_LOAD / (1 - PROMISE_LOAD) batches ahead (the replay has the last word)."""
    return 0.0 if settings.fluid else o.d_ms * PROMISE_LOAD / (1.0 - PROMISE_LOAD)


def queue_allowance(busy_ms: float, settings: Settings) -> float:
    """A shared tuple's allowance for the batches ahead of its own at the GPU: one of every tuple of the
    GPU (`busy_ms`) under a promise about real arrivals; none in the fluid model, whose shared tuples
    take `C + d(b) + overhead` (docs/model.md)."""
    return 0.0 if settings.fluid else busy_ms


def _fits_memory(workload: Workload, members: Sequence[Member], chosen: Sequence[Option | None]) -> bool:
    return memory.fits(workload, members[0].hardware, [(m.model, o.batch) for m, o in zip(members, chosen,
                                                                                          strict=True) if o])


def candidates(plan: Plan, workload: Workload, settings: Settings, fresh_off: frozenset[str] = frozenset(),
               keep: frozenset[tuple[str, str]] = frozenset()) -> list[Member]:
    """The plan's tuples that could share a GPU, and the latency each may take.

    Per module, two ways to run it, each costed by the GPU time it takes (a shared GPU's part counted
    as its share): as planned (its single-worker tuples, and the idle part of its multi-worker ones,
    on a shared GPU), or a fresh choice made for sharing (saturated workers at one (hardware, batch)
    and the rest on a shared GPU), at any latency. The app's SLO is then split again over these cost
    curves (the planner's own splitter, :mod:`.splitter`): a module running as planned keeps at least
    its planned latency, and every path stays within the SLO."""
    out: list[Member] = []
    apps = {a.name: a for a in workload.apps}
    for ap in plan.apps:
        app = apps[ap.name]
        curves: dict[str, CostCurve] = {}
        ways: dict[str, list[list[Member]]] = {}
        bursts = _bursts(app, ap)
        for mp in ap.modules:
            per_hw: dict[str, list[Option]] = {}
            for o in options_for(workload, app, app.module(mp.name), settings):
                per_hw.setdefault(o.hardware, []).append(o)
            budgets, costs, chosen = [], [], []
            if (ap.name, mp.name) in keep:  # as planned, at its planned latency, nothing shared
                kept = sum(t.workers * workload.hardware_by_name[t.hardware].price_per_hour for t in mp.tuples)
                curves[mp.name] = CostCurve(np.array([mp.predicted_latency_ms]), np.array([kept]))
                ways[mp.name] = [[]]
                continue
            for cap in _caps(mp, per_hw, app.slo_ms, settings):
                best = _as_planned(ap.name, mp, per_hw, cap, settings, plan.dispatch, workload,
                                   bursts[mp.name])
                fresh = _fresh(ap.name, mp, {h: o for h, o in per_hw.items() if h not in fresh_off}, cap,
                               settings, plan.dispatch, workload, bursts[mp.name])
                if fresh is not None and (best is None or fresh[0] < best[0] * (1 - PLAN_TOL)):
                    best = (fresh[0], [fresh[1]])
                if best is not None and (not costs or best[0] < costs[-1] * (1 - PLAN_TOL)):
                    budgets.append(cap)
                    costs.append(best[0])
                    chosen.append(best[1])
            curves[mp.name] = CostCurve(np.array(budgets), np.array(costs))
            ways[mp.name] = chosen
        split = split_tree(app, curves) if app.is_tree else None
        if split is None:
            greedy = split_greedy(app, curves)
            split = split_search(app, curves, greedy)
        for name, i in split.items():
            out += ways[name][i]
    return out


def _bursts(app: App, ap: AppPlan) -> dict[str, int]:
    """Per module, the requests released at once: `ceil(scale)` per frame at the source; below, a
    parent's largest batch of requests, each bringing `scale / the parent's scale` of them."""
    batch = {mp.name: max(t.batch for t in mp.tuples) for mp in ap.modules}
    out = {}
    for m in app.modules:
        if not m.after:
            out[m.name] = max(1, math.ceil(m.scale - PLAN_TOL))
        else:
            out[m.name] = max(max(1, math.ceil(batch[p] * m.scale / app.module(p).scale - PLAN_TOL)) for p in m.after)
    return out


def _caps(mp: ModulePlan, per_hw: dict[str, list[Option]], slo_ms: float, settings: Settings) -> list[float]:
    """Latencies at which a module's ways to run are costed: its planned latency, and a geometric
    grid from its fastest option to the SLO."""
    fastest = min(o.d_ms for opts in per_hw.values() for o in opts) + settings.overhead_ms
    grid = {mp.predicted_latency_ms}
    cap = fastest
    while cap < slo_ms:
        grid.add(cap)
        cap *= CAP_STEP
    grid.add(slo_ms)
    return sorted(grid)


def _as_planned(app: str, mp: ModulePlan, per_hw: dict[str, list[Option]], cap: float, settings: Settings,
                dispatch: Dispatch, workload: Workload, burst: int = 1) -> tuple[float, list[Member]] | None:
    """The module as planned, its light tuples (and the idle part of its others) shared, at latency
    `cap` (None below its planned latency): estimated $/h and the members (of `burst`)."""
    if cap < mp.predicted_latency_ms * (1 - PLAN_TOL):
        return None
    mine, kept = [], 0.0
    for k, t in enumerate(mp.tuples):
        opts = per_hw[t.hardware]
        price = workload.hardware_by_name[t.hardware].price_per_hour
        if t.gpu is None and t.workers == 1:
            mine.append(Member(app, mp.name, mp.model, k, t.hardware, t.rate, cap, opts, burst=burst))
        elif t.gpu is None and (main := _split(t, opts, settings, dispatch, cap)) is not None:
            mine.append(Member(app, mp.name, mp.model, k, t.hardware, t.rate - main.rate, cap, opts, main,
                               burst=burst))
        else:
            kept += t.workers * price
    return kept + sum(_shared_cost(m, settings, workload) for m in mine), mine


def _shared_cost(m: Member, settings: Settings, workload: Workload) -> float:
    """$/h of the GPU time `m` would take on a shared GPU, at its best batch within its budget
    (a saturated `main` beside it counted whole): `d(b) / C` of a GPU at the longest cycle `C` its
    latency allows (under a promise, less its queue allowance)."""
    price = workload.hardware_by_name[m.hardware].price_per_hour
    best = math.inf
    for o in m.options:
        room = m.budget_ms - o.d_ms - settings.overhead_ms - queue_allowance(o.d_ms, settings)
        cycle = min(1000.0 * o.batch / m.rate, room)
        if cycle >= o.d_ms:
            best = min(best, price * o.d_ms / (cycle * settings.max_utilization))
    return best + (m.main.workers * price if m.main is not None else 0.0)


def _fresh(app: str, mp: ModulePlan, per_hw: dict[str, list[Option]], cap: float, settings: Settings,
           dispatch: Dispatch, workload: Workload, burst: int = 1) -> tuple[float, Member] | None:
    """A sharing-aware choice for the whole module: `n` saturated workers of one (hardware, batch)
    within `cap`, and the rest of its rate as a member of a shared GPU of that hardware; its
    estimated $/h and the member (None if no choice fits a GPU alone, with its `burst`: a choice that
    does not would be dropped by the packing, its module left as planned beyond the latency the split
    gave it)."""
    best: tuple[float, Member] | None = None
    for hw, opts in per_hw.items():
        for o in opts:
            per_worker = o.throughput * main_load(settings)
            n = math.floor(mp.rate / per_worker * (1 + 1e-12))
            rest = mp.rate - n * per_worker
            main = None
            if n:
                wait = main_allowance(o, settings)
                lat = tuple_latency(dispatch, o.batch, o.d_ms, n, n * per_worker, 0.0, settings.overhead_ms) + wait
                if lat > cap * (1 + PLAN_TOL):
                    continue
                main = TuplePlan(hw, o.batch, n, n * per_worker, 0.0, lat, queue_ms=wait)
            if rest <= PLAN_TOL * mp.rate:
                continue  # nothing to share: the plan's own choice covers whole workers
            m = Member(app, mp.name, mp.model, 0, hw, rest, cap, opts, main, whole_module=True, burst=burst)
            cost = _shared_cost(m, settings, workload)
            if math.isfinite(cost) and (best is None or cost < best[0]) and fit([m], settings, workload) is None:
                continue  # it must fit a GPU of its own at least: its module's latency is split on it
            if best is None or cost < best[0]:
                best = (cost, m)
    return best


def _split(t: TuplePlan, options: list[Option], settings: Settings, dispatch: Dispatch, cap_ms: float
           ) -> TuplePlan | None:
    """What stays of a multi-worker tuple whose last worker is partly idle once that worker's share
    moves to a shared GPU: one worker fewer, each at full capacity (`T(b) × max_utilization`), if its
    latency stays within `cap_ms` (collection slows at the lower rate); None when nothing is idle."""
    o = next((x for x in options if x.batch == t.batch), None)
    if o is None or t.dummy_rate > 0:
        return None
    per_worker = o.throughput * main_load(settings)
    keep = (t.workers - 1) * per_worker
    if keep <= 0 or t.rate - keep <= PLAN_TOL * t.rate:
        return None
    wait = max(t.queue_ms, main_allowance(o, settings))
    latency = tuple_latency(dispatch, t.batch, o.d_ms, t.workers - 1, keep, 0.0, settings.overhead_ms) + wait
    if latency > cap_ms * (1 + PLAN_TOL):
        return None
    return replace(t, workers=t.workers - 1, rate=keep, latency_ms=latency, queue_ms=wait)


def _load(m: Member) -> float:
    o = m.options[0]
    return m.rate * o.d_ms / o.batch  # ms of GPU time per second at batch 1's efficiency


def pack(members: Sequence[Member], settings: Settings, workload: Workload | None = None) -> list[SharedGpu]:
    """Greedy packing: each member, heaviest first, joins the GPU of its hardware it leaves most
    occupied (a new one if it fits none)."""
    gpus: list[SharedGpu] = []
    for m in sorted(members, key=_load, reverse=True):
        best: tuple[float, SharedGpu, float, float] | None = None
        for g in gpus:
            if g.hardware != m.hardware:
                continue
            got = fit([*g.members, m], settings, workload)
            if got is not None and (best is None or got[1] / got[0] > best[0]):
                best = (got[1] / got[0], g, *got)
        if best is not None:
            _, g, g.cycle_ms, g.busy_ms = best
            g.members.append(m)
        elif (got := fit([m], settings, workload)) is not None:
            gpus.append(SharedGpu(m.hardware, [m], *got))
    # a GPU left with one tuple of the plan is no GPU shared (the tuple stays as planned); one left with a
    # module's fresh choice stays (its module's latency was split on that choice)
    return [g for g in gpus if len(g.members) > 1 or g.members[0].whole_module]


Slots = dict[tuple[str, str], dict[int, float]]
"""Per (app, module), the latency of each of its tuples (by index in the plan; -1: a module's fresh
choice, which replaces them all)."""


def _latencies(plan: Plan, gpus: Sequence[SharedGpu], settings: Settings) -> Slots:
    """Each module's tuple latencies once `gpus` are in place."""
    slots = {(ap.name, mp.name): {k: t.latency_ms for k, t in enumerate(mp.tuples)} for ap in plan.apps
             for mp in ap.modules}
    for g in gpus:
        _place(slots, g.members, g.cycle_ms, g.busy_ms, settings)
    return slots


def _place(slots: Slots, members: Sequence[Member], cycle_ms: float, busy_ms: float, settings: Settings) -> None:
    """Set the latencies of `members` in `slots`, sharing a GPU at `cycle_ms`."""
    for m in members:
        o = m.batch_for(cycle_ms, not settings.fluid)
        assert o is not None
        latency = max(shared_latency(cycle_ms, o, busy_ms, settings), m.main.latency_ms if m.main else 0.0)
        mine = slots[(m.app, m.module)]
        if m.whole_module:
            mine.clear()
        mine[-1 if m.whole_module else m.index] = latency


def fit_paths(members: Sequence[Member], slots: Slots, apps: dict[str, App], settings: Settings,
              workload: Workload | None = None) -> tuple[float, float] | None:
    """As :func:`fit`, with each member's latency bounded by its app's paths (the other modules at their
    latencies in `slots`) instead of by the budget the split gave it."""
    touched = {m.app for m in members}

    def paths_hold(cycle: float, busy: float, chosen: list[Option]) -> bool:
        trial = {k: dict(slots[k]) for k in {(m.app, m.module) for m in members}}
        _place(trial, members, cycle, busy, settings)
        return all(path_latency(apps[a], {x.name: max((trial.get((a, x.name)) or slots[(a, x.name)]).values())
                                          for x in apps[a].modules}) <= apps[a].slo_ms * (1 + PLAN_TOL)
                   for a in touched)

    return _first_fit(members, max(apps[a].slo_ms for a in touched) - settings.overhead_ms, settings, workload,
                      paths_hold)


def repair_packing(gpus: list[SharedGpu], leftovers: Sequence[Member], plan: Plan, workload: Workload,
                   settings: Settings) -> list[SharedGpu]:
    """The tuples the packing left on GPUs of their own, moved onto shared GPUs where their apps' paths
    allow it: each onto the shared GPU it leaves most occupied, or beside another such tuple, one GPU
    saved each time. The split's budgets are estimates made for each tuple alone; an app's slack left over
    (multi-app grid, multi/10: `fuse` at 300 frames/s got 3 ms, too little to share a cycle with
    `people`, on a path 16 ms short of its SLO) may let two of them meet after all."""
    apps = {a.name: a for a in workload.apps}
    slots = _latencies(plan, gpus, settings)
    alone = [m for m in sorted(leftovers, key=_load, reverse=True) if not m.whole_module]
    while alone:
        m = alone.pop(0)
        best: tuple[float, SharedGpu | Member, float, float] | None = None
        for other in [*gpus, *alone]:
            if other.hardware != m.hardware:
                continue
            together = [*other.members, m] if isinstance(other, SharedGpu) else [other, m]
            got = fit_paths(together, slots, apps, settings, workload)
            if got is not None and (best is None or got[1] / got[0] > best[0]):
                best = (got[1] / got[0], other, *got)
        if best is None:
            continue
        _, other, cycle, busy = best
        if isinstance(other, SharedGpu):
            other.members.append(m)
            other.cycle_ms, other.busy_ms = cycle, busy
            gpu = other
        else:
            alone.remove(other)
            gpu = SharedGpu(m.hardware, [other, m], cycle, busy)
            gpus.append(gpu)
        _place(slots, gpu.members, cycle, busy, settings)  # only this GPU's latencies changed
    return gpus


def share(plan: Plan, workload: Workload, settings: Settings, prefix: str = "gpu",
          keep: frozenset[tuple[str, str]] = frozenset()) -> Plan:
    """The plan with its light tuples packed onto shared GPUs: the cheapest such plan within the
    hardware counts, or the plan itself unless one is cheaper. Fresh choices may crowd a kind past its
    count; they are then kept off that kind, and off every kind, in turn. A shared plan with an app's
    path over its SLO is never returned, whatever packing step made it. `keep`: (app, module) pairs
    left as planned."""
    tries = [_shared_plan(plan, workload, settings, prefix, frozenset(), keep)]
    over = over_counts(tries[0], workload)
    if over:
        limited = frozenset(h.name for h in workload.hardware if h.count is not None)
        tries += [_shared_plan(plan, workload, settings, prefix, off, keep) for off in {frozenset(over), limited}]
    fit = [q for q in tries if not over_counts(q, workload) and within_slos(q)]
    best = min(fit, key=lambda q: q.cost_per_hour, default=plan)
    return best if best.cost_per_hour < plan.cost_per_hour * (1 - PLAN_TOL) else plan


def within_slos(plan: Plan) -> bool:
    """Every app's predicted latency (its slowest path) within its SLO."""
    return all(ap.predicted_latency_ms <= ap.slo_ms * (1 + PLAN_TOL) for ap in plan.apps)


def _shared_plan(plan: Plan, workload: Workload, settings: Settings, prefix: str, fresh_off: frozenset[str],
                 keep: frozenset[tuple[str, str]]) -> Plan:
    members = candidates(plan, workload, settings, fresh_off, keep)
    gpus = pack(members, settings, workload)
    packed = {id(m) for g in gpus for m in g.members}
    gpus = repair_packing(gpus, [m for m in members if id(m) not in packed], plan, workload, settings)
    if not gpus:
        return plan
    moved: dict[tuple[str, str, int], tuple[TuplePlan, ...]] = {}
    for i, g in enumerate(gpus):
        for m in g.members:
            o = m.batch_for(g.cycle_ms, not settings.fluid)
            assert o is not None
            shared = TuplePlan(m.hardware, o.batch, 1, m.rate, 0.0, shared_latency(g.cycle_ms, o, g.busy_ms, settings),
                               gpu=f"{prefix}-{i}", cycle_ms=g.cycle_ms, queue_ms=queue_allowance(g.busy_ms, settings))
            moved[(m.app, m.module, -1 if m.whole_module else m.index)] = (
                (shared,) if m.main is None else (m.main, shared))
    apps = []
    apps_by_name = {a.name: a for a in workload.apps}
    for ap in plan.apps:
        modules = []
        for mp in ap.modules:
            tuples = moved.get((ap.name, mp.name, -1)) or tuple(
                x for k, t in enumerate(mp.tuples) for x in moved.get((ap.name, mp.name, k), (t,)))
            latency = max(t.latency_ms for t in tuples)  # within the part of the slack it was given
            modules.append(replace(mp, tuples=tuples, predicted_latency_ms=latency,
                                   budget_ms=max(mp.budget_ms, latency)))
        latency = path_latency(apps_by_name[ap.name], {m.name: m.predicted_latency_ms for m in modules})
        apps.append(AppPlan(ap.name, ap.rate, ap.slo_ms, latency, tuple(modules)))
    return Plan.build(plan.planner, plan.dispatch, plan.settings, tuple(apps), plan.refused, workload)
