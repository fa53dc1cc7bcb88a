"""A lower bound on the cost of any plan of a workload, GPU sharing included: the yardstick below
every planner (the exhaustive optimum of :mod:`.optimum` does not cover sharing, so it is no floor
for planners that share GPUs).

**The fractional relaxation.** Each request of module `m` (rate `λ_m`) is served by some option
`(h, b)`; a worker of `h` running batches of `b` serves at most `T(b) u` requests/s (`u` =
`max_utilization`), so a request/s served on it costs at least `p_h / (T(b) u)` $/h. An option is
usable only if its batch latency alone fits: `d(b) + overhead_ms <= SLO`.

**The path rule (what :func:`bound` returns).** Each module's latency `P_m` is at least
`d(b) + overhead_ms` of every option it uses, and every source-to-sink path has `Σ P_m <= SLO`. So
an app costs at least `min Σ_m λ_m c_m(P_m)` over budgets `P_m` that fit every path, where `c_m(B)`
is the least per-request price of the options with `d(b) + overhead_ms <= B`. `c_m` steps only at
the options' latencies, so the minimum is over one option per module from its Pareto front (latency
up, price per request down); a depth-first search with pruning solves it exactly. When the search
would run past `MAX_NODES` (large apps), the app falls back to the single-module rule (every module
at its cheapest option whose latency alone fits the SLO), which is weaker and still valid.

**Why it is a lower bound (any plan that passes docs/model.md's fluid check).** A worker's price covers
the requests it serves at no less than `p_h / (T(b) u)` each: a group of `n` workers carries at most
`n T(b) u` requests/s; a shared GPU (`gpu`, `cycle_ms`) runs one batch of each tuple per cycle with
`Σ d(b) <= cycle u`, so `Σ (r + δ) d(b) / b <= 1000 u`, i.e. its tuples' `Σ r / (T(b) u) <= 1` and
its one price covers them all, whatever modules and apps they belong to. Every tuple's latency is at
least `d(b) + overhead_ms` (collection time and `queue_ms` are non-negative), so the budgets `P_m`
of any feasible plan satisfy the path constraints and each of its tuples is an option allowed at
`P_m`; summing over tuples gives at least `Σ_m λ_m c_m(P_m)`, which is at least the minimum above.
Hardware counts and integrality are ignored (they only raise the true cost); comparisons use the
check's relative tolerance (`REL_TOL`) in the plan's favour, so a bound never exceeds a plan the
check accepts, up to that same tolerance on capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harpagon.config.schema import App, Workload
from harpagon.model.latency import REL_TOL, Option, Settings, options_for

#: Nodes of the per-app search before it falls back to the single-module rule.
MAX_NODES = 200_000


@dataclass(frozen=True, slots=True)
class ModuleBound:
    """One module's share of its app's bound."""

    module: str
    rate: float
    option: Option | None
    """The option the bound charges it at (None: no option fits the SLO)."""
    per_request: float
    """$/h per request/s of that option: `p_h / (T(b) u)` (inf when none fits)."""
    latency_ms: float
    """`d(b) + overhead_ms` of that option."""

    @property
    def cost(self) -> float:
        return self.rate * self.per_request


@dataclass(frozen=True, slots=True)
class AppBound:
    """One app's bound: `cost` by the path rule (or by the single-module rule where `exact` is False);
    `single` by the single-module rule alone (at most `cost`)."""

    app: str
    cost: float
    single: float
    exact: bool
    modules: tuple[ModuleBound, ...]


@dataclass(frozen=True, slots=True)
class Bound:
    """The workload's bound: the sum of its apps' (inf when some app cannot be served at all)."""

    cost: float
    apps: tuple[AppBound, ...]

    @property
    def single(self) -> float:
        return sum(a.single for a in self.apps)


def lower_bound(workload: Workload, settings: Settings) -> float:
    """The least cost ($/h) any plan serving every app could have (module doc); inf when some app's
    fastest path is over its SLO (every planner refuses it)."""
    return bound(workload, settings).cost


def bound(workload: Workload, settings: Settings) -> Bound:
    """:func:`lower_bound` with its per-app and per-module detail."""
    apps = tuple(app_bound(a, workload, settings) for a in workload.apps)
    return Bound(sum(a.cost for a in apps), apps)


def per_request(o: Option, settings: Settings) -> float:
    """$/h per request/s of a worker of option `o` at full allowed load: `p_h / (T(b) u)`."""
    return o.price / (o.throughput * settings.max_utilization)


def front(options: list[Option], settings: Settings, slo_ms: float) -> list[tuple[float, float, Option]]:
    """The options whose latency alone fits `slo_ms`, reduced to their Pareto front: (latency,
    price per request, option), latency ascending and price per request strictly descending."""
    limit = slo_ms * (1 + REL_TOL)
    pts = sorted(((o.d_ms + settings.overhead_ms, per_request(o, settings), o) for o in options
                  if o.d_ms + settings.overhead_ms <= limit), key=lambda t: t[:2])
    out: list[tuple[float, float, Option]] = []
    for lat, c, o in pts:
        if not out or c < out[-1][1]:
            out.append((lat, c, o))
    return out


def app_bound(app: App, workload: Workload, settings: Settings) -> AppBound:
    """One app's bound: apps share nothing in it (a GPU shared between apps is paid per request too),
    so the workload's is the sum and a plan that refuses some apps is bounded by the others'."""
    fronts = {m.name: front(options_for(workload, app, m, settings), settings, app.slo_ms) for m in app.modules}
    rates = {m.name: app.module_rate(m) for m in app.modules}
    single = tuple(ModuleBound(n, rates[n], f[-1][2] if f else None, f[-1][1] if f else math.inf,
                               f[-1][0] if f else math.inf) for n, f in fronts.items())
    single_cost = sum(m.cost for m in single)
    if not all(fronts.values()):
        return AppBound(app.name, math.inf, math.inf, True, single)
    picked = _path_search(app, fronts, rates, app.slo_ms * (1 + REL_TOL))
    if picked is None:  # the search ran out of nodes: the single-module rule still holds
        return AppBound(app.name, single_cost, single_cost, False, single)
    if not picked:  # no choice fits every path: the fastest path is over the SLO
        return AppBound(app.name, math.inf, single_cost, True, single)
    modules = tuple(ModuleBound(n, rates[n], fronts[n][i][2], fronts[n][i][1], fronts[n][i][0])
                    for n, i in picked.items())
    return AppBound(app.name, max(single_cost, sum(m.cost for m in modules)), single_cost, True, modules)


def _path_search(app: App, fronts: dict[str, list[tuple[float, float, Option]]], rates: dict[str, float],
                 slo: float) -> dict[str, int] | None:
    """The cheapest choice of one front point per module with every path's latency within `slo`:
    index per module; {} when none fits, None when the search exceeds `MAX_NODES`."""
    order = [m.name for m in app.modules]
    paths = list(app.paths)
    on = {n: [k for k, p in enumerate(paths) if n in p] for n in order}
    fastest = {n: fronts[n][0][0] for n in order}
    cheapest = {n: rates[n] * fronts[n][-1][1] for n in order}
    # Least latency the modules after position k still add to each path.
    rest = [[sum(fastest[n] for n in order[k:] if n in p) for p in paths] for k in range(len(order) + 1)]
    floor = [sum(cheapest[n] for n in order[k:]) for k in range(len(order) + 1)]
    used = [0.0] * len(paths)
    idx: dict[str, int] = {}
    best_cost, best = math.inf, {}
    nodes = 0

    def dfs(k: int, cost: float) -> bool:
        nonlocal best_cost, best, nodes
        nodes += 1
        if nodes > MAX_NODES:
            return False
        if cost + floor[k] >= best_cost * (1 - 1e-12):
            return True
        if k == len(order):
            best_cost, best = cost, dict(idx)
            return True
        name = order[k]
        for i in range(len(fronts[name]) - 1, -1, -1):  # cheapest (slowest) first
            lat, c, _ = fronts[name][i]
            if any(used[p] + lat + rest[k + 1][p] > slo for p in on[name]):
                continue
            for p in on[name]:
                used[p] += lat
            idx[name] = i
            ok = dfs(k + 1, cost + rates[name] * c)
            for p in on[name]:
                used[p] -= lat
            del idx[name]
            if not ok:
                return False
        return True

    return best if dfs(0, 0.0) else None
