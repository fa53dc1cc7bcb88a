"""Latency splitting (level 3): share an app's SLO among its modules, given each module's cost curve.

`split_greedy` is latency-cost efficiency: every module starts at its fastest step; the next slice of
latency goes to the module whose cost drops most per millisecond, among the steps that still fit on
every path through it, until no module can use more. Cost curves are step functions and not convex,
so the greedy looks past the next step to every reachable one.

`split_tree` is exact over the same curves when the app is a tree (no joins): a Pareto frontier of
(latency, cost) per subtree, where siblings combine by the max of their latencies and the sum of
their costs. `split_search` is exact for any DAG: a branch and bound over the curves' steps, with
the greedy split as its first incumbent and a bound on the nodes it visits (it returns the best
split found when the bound is reached). The planner keeps the cheapest split.

A split is a step index per module; budgets are the steps' budgets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from harpagon.config.schema import App
from harpagon.model.latency import PLAN_TOL
from harpagon.planner.module_scheduler import CostCurve

Split = dict[str, int]


def fastest_path(app: App, curves: Mapping[str, CostCurve]) -> tuple[float, tuple[str, ...]]:
    """Latency of the slowest path when every module runs at its fastest step, and that path."""
    best = (-1.0, ())
    for path in app.paths:
        total = sum(float(curves[m].budgets[0]) if len(curves[m]) else math.inf for m in path)
        if total > best[0]:
            best = (total, path)
    return best


def split_cost(split: Split, curves: Mapping[str, CostCurve]) -> float:
    return sum(float(curves[m].costs[i]) for m, i in split.items())


def split_greedy(app: App, curves: Mapping[str, CostCurve], start: Split | None = None) -> Split:
    """Latency-cost efficiency greedy, from `start` (default: every module at its fastest step)."""
    idx = dict(start) if start else {m.name: 0 for m in app.modules}
    paths = app.paths
    on_paths = {m.name: [p for p in paths if m.name in p] for m in app.modules}
    slo = app.slo_ms * (1 + PLAN_TOL)

    def path_sum(path: tuple[str, ...]) -> float:
        return sum(float(curves[m].budgets[idx[m]]) for m in path)

    while True:
        sums = {p: path_sum(p) for p in paths}
        best: tuple[float, str, int] | None = None
        for name, i in idx.items():
            c = curves[name]
            slack = min(slo - sums[p] for p in on_paths[name])
            b0, c0 = float(c.budgets[i]), float(c.costs[i])
            for j in range(i + 1, len(c)):
                extra = float(c.budgets[j]) - b0
                if extra > slack:
                    break
                gain = (c0 - float(c.costs[j])) / max(extra, 1e-12)
                if best is None or gain > best[0]:
                    best = (gain, name, j)
        if best is None:
            return idx
        idx[best[1]] = best[2]


def split_even(app: App, curves: Mapping[str, CostCurve]) -> Split | None:
    """Each module gets the SLO divided by the number of modules on the longest path through it
    (the ablation of latency splitting); None if some module has no step within its share."""
    out = {}
    for m in app.modules:
        share = app.slo_ms / max(len(p) for p in app.paths if m.name in p)
        i = _last_at_most([float(b) for b in curves[m.name].budgets], share * (1 + PLAN_TOL))
        if i < 0:
            return None
        out[m.name] = i
    return out


def split_tree(app: App, curves: Mapping[str, CostCurve]) -> Split | None:
    """Exact minimum-cost split over the curves for a tree-shaped app (None if not a tree)."""
    if not app.is_tree:
        return None
    slo = app.slo_ms * (1 + PLAN_TOL)

    # frontier: list of (latency, cost, choices) with latency ascending and cost strictly descending;
    # choices is a tuple of (module, step index) pairs for the subtree.
    def pareto(points: list[tuple[float, float, tuple]]) -> list[tuple[float, float, tuple]]:
        points.sort(key=lambda t: (t[0], t[1]))
        out: list[tuple[float, float, tuple]] = []
        for p in points:
            if p[0] <= slo and (not out or p[1] < out[-1][1] - 1e-12):
                out.append(p)
        return out

    def subtree(name: str) -> list[tuple[float, float, tuple]]:
        kids = [subtree(k) for k in app.children[name]]
        combined: list[tuple[float, float, tuple]] = [(0.0, 0.0, ())]
        for kid in kids:
            # siblings run in parallel: latency is the max, cost the sum
            merged = []
            for lat_a, cost_a, ch_a in combined:
                for lat_b, cost_b, ch_b in kid:
                    merged.append((max(lat_a, lat_b), cost_a + cost_b, ch_a + ch_b))
            combined = pareto(merged)
        c = curves[name]
        own = [(float(c.budgets[i]) + lat, float(c.costs[i]) + cost, ((name, i),) + ch)
               for i in range(len(c)) for lat, cost, ch in combined]
        return pareto(own)

    front = subtree(app.source)
    if not front:
        return None
    return dict(front[-1][2])


#: Nodes `split_search` may visit before it settles for its incumbent.
SEARCH_NODES = 20_000


def split_search(app: App, curves: Mapping[str, CostCurve], incumbent: Split,
                 max_nodes: int = SEARCH_NODES) -> Split:
    """Branch and bound over every module's steps (exact within `max_nodes`)."""
    order = [m.name for m in app.modules]
    paths = app.paths
    slo = app.slo_ms * (1 + PLAN_TOL)
    budgets = {n: [float(b) for b in curves[n].budgets] for n in order}
    costs = {n: [float(c) for c in curves[n].costs] for n in order}
    best_cost = split_cost(incumbent, curves)
    best = dict(incumbent)
    idx: dict[str, int] = {}
    nodes = 0

    def bound(k: int) -> float:
        """Least cost of the unassigned modules, each given all the slack its paths still have."""
        total = 0.0
        for name in order[k:]:
            room = math.inf
            for p in paths:
                if name in p:
                    used = sum(budgets[m][idx[m]] if m in idx else (budgets[m][0] if m != name else 0.0)
                               for m in p)
                    room = min(room, slo - used)
            steps = budgets[name]
            j = _last_at_most(steps, room)
            if j < 0:
                return math.inf
            total += costs[name][j]
        return total

    def dfs(k: int, cost: float) -> None:
        nonlocal best_cost, best, nodes
        nodes += 1
        if nodes > max_nodes:
            return
        if k == len(order):
            if cost < best_cost - PLAN_TOL:
                best_cost, best = cost, dict(idx)
            return
        if cost + bound(k) >= best_cost - PLAN_TOL:
            return
        name = order[k]
        for i in range(len(budgets[name]) - 1, -1, -1):  # cheapest steps first
            idx[name] = i
            if all(sum(budgets[m][idx[m]] for m in p if m in idx) <= slo for p in paths if name in p):
                dfs(k + 1, cost + costs[name][i])
            del idx[name]

    dfs(0, 0.0)
    return best


def _last_at_most(sorted_values: list[float], limit: float) -> int:
    lo, hi = 0, len(sorted_values)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] <= limit:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1
