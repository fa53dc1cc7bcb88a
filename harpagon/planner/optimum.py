"""The exhaustive optimum under docs/model.md: the yardstick for every planner.

Why it is exact (for the model, apps taken independently, hardware counts ignored, as docs/model.md says):

* **Tuple sets.** At a budget `B`, a group of `n` workers of `(h, b)` is feasible with optimal dummies
  iff its threshold `1000 (b - 1) / (n T(b) u) + d(b) + overhead <= B`, whatever share it serves; so
  a module's cheapest tuple set at `B` is the cheapest multiset of feasible groups whose capacities
  sum to at least `λ_m`. Two groups of one `(h, b)` never beat one merged group (the merged one has a
  lower threshold), so there is at most one group per `(h, b)`. :func:`cheapest_groups` solves this
  covering problem exactly by branch and bound (every `(h, b)`, every worker count).
* **Budget splits.** `C_m(B)` is a non-increasing step function that can only step at a group
  threshold. Lowering each module's budget of an optimal split to the threshold where its cost
  curve last stepped keeps the cost and keeps every path within the SLO, so some optimal split uses
  only breakpoints. :func:`optimal_app` enumerates all combinations of breakpoints (depth-first,
  pruned by the path constraints and a cost bound), which is exact for any DAG.
* **Breakpoints.** Worker counts are enumerated until a group costs more than serving the module
  with the cheapest batch-1 (smallest-batch) workers, which are feasible at every budget at which
  anything is, given that each hardware's smallest batch is its fastest row; larger groups can
  never be the cheapest.

It is exponential in the number of modules and meant for small workloads (tests, benchmarks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harpagon.config.schema import App, Workload
from harpagon.model.latency import PLAN_TOL, Option, Settings, group_threshold, min_workers, options_for
from harpagon.model.plan import AppPlan, Plan, Refusal
from harpagon.planner.module_scheduler import Choice, Group
from harpagon.planner.reassigner import build_app_plan

#: Stop enumerating worker counts of one group beyond this (the curve stays finite).
MAX_WORKERS = 4096


def cheapest_groups(options: list[Option], rate: float, budget: float, settings: Settings) -> Choice | None:
    """The exact cheapest tuple set for `rate` at `budget` (None if no option is feasible)."""
    u = settings.max_utilization
    feasible = []
    for o in options:
        n_min = min_workers(o.batch, o.d_ms, u, budget, settings.overhead_ms)
        if n_min is not None:
            feasible.append((o.price / (o.throughput * u), o, n_min, o.throughput * u))
    if not feasible:
        return None
    feasible.sort(key=lambda t: t[0])
    best_cost = math.inf
    best: list[tuple[Option, int]] = []

    def dfs(i: int, left: float, cost: float, chosen: list[tuple[Option, int]]) -> None:
        nonlocal best_cost, best
        if left <= PLAN_TOL * rate:
            if cost < best_cost - 1e-12:
                best_cost, best = cost, list(chosen)
            return
        if i == len(feasible) or cost + left * feasible[i][0] >= best_cost - 1e-12:
            return
        _, o, n_min, cap = feasible[i]
        top = max(n_min, math.ceil(left / cap * (1 - PLAN_TOL)))
        for n in range(top, n_min - 1, -1):
            chosen.append((o, n))
            dfs(i + 1, left - n * cap, cost + n * o.price, chosen)
            chosen.pop()
        dfs(i + 1, left, cost, chosen)

    dfs(0, rate, 0.0, [])
    # The last group takes the remainder (and the dummies); the others run saturated.
    best.sort(key=lambda g: -g[0].throughput * g[1])
    return Choice(tuple(Group(o, n) for o, n in best))


@dataclass(frozen=True)
class ExactCurve:
    """A module's exact cost curve: budgets ascending, costs strictly descending, and the choices."""

    budgets: list[float]
    costs: list[float]
    choices: list[Choice]


def exact_curve(options: list[Option], rate: float, settings: Settings, max_budget: float) -> ExactCurve:
    u, o_ms = settings.max_utilization, settings.overhead_ms
    smallest: dict[str, Option] = {}
    for o in options:
        if o.hardware not in smallest or o.batch < smallest[o.hardware].batch:
            smallest[o.hardware] = o
    ref = max(math.ceil(rate / (o.throughput * u)) * o.price for o in smallest.values())
    points: set[float] = set()
    for o in options:
        top = 1 if o.batch == 1 else min(MAX_WORKERS, max(math.ceil(rate / (o.throughput * u)),
                                                          math.floor(ref / o.price)))
        for n in range(1, top + 1):
            t = group_threshold(o.batch, o.d_ms, n, u, o_ms)
            if t <= max_budget * (1 + PLAN_TOL):
                points.add(t)
    budgets, costs, choices = [], [], []
    for b in sorted(points):
        choice = cheapest_groups(options, rate, b, settings)
        if choice is not None and (not costs or choice.cost < costs[-1] - PLAN_TOL):
            budgets.append(b)
            costs.append(choice.cost)
            choices.append(choice)
    return ExactCurve(budgets, costs, choices)


def optimal_app(app: App, workload: Workload, settings: Settings) -> AppPlan | Refusal:
    """The cheapest plan of one app over all budget splits at breakpoints and all tuple sets."""
    curves = {
        m.name: exact_curve(options_for(workload, app, m, settings), app.module_rate(m), settings, app.slo_ms)
        for m in app.modules
    }
    order = [m.name for m in app.modules]
    paths = app.paths
    slo = app.slo_ms * (1 + PLAN_TOL)
    floor = {n: (c.costs[-1] if c.costs else math.inf) for n, c in curves.items()}
    best_cost = math.inf
    best: dict[str, int] = {}
    idx: dict[str, int] = {}

    def fits() -> bool:
        return all(sum(curves[m].budgets[idx[m]] for m in p if m in idx) <= slo for p in paths)

    def dfs(k: int, cost: float) -> None:
        nonlocal best_cost, best
        if cost + sum(floor[n] for n in order[k:]) >= best_cost - PLAN_TOL:
            return
        if k == len(order):
            best_cost, best = cost, dict(idx)
            return
        name = order[k]
        c = curves[name]
        for i in range(len(c.budgets) - 1, -1, -1):  # cheapest (longest) steps first
            idx[name] = i
            if fits():
                dfs(k + 1, cost + c.costs[i])
            del idx[name]

    dfs(0, 0.0)
    if not best:
        return Refusal(app.name, f"no split of the SLO of {app.slo_ms:g} ms is feasible")
    return build_app_plan(app, {m.name: curves[m.name].choices[best[m.name]] for m in app.modules}, settings)


def optimum(workload: Workload, settings: Settings | None = None) -> Plan:
    """The optimal plan of every app (apps independent, hardware counts ignored)."""
    settings = settings or Settings()
    results = [optimal_app(a, workload, settings) for a in workload.apps]
    apps = tuple(r for r in results if isinstance(r, AppPlan))
    refused = tuple(r for r in results if isinstance(r, Refusal))
    return Plan.build("optimum", "batch-aware", settings, apps, refused, workload)
