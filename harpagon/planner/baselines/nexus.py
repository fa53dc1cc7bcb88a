"""Nexus (Shen et al., "Nexus: a GPU cluster engine for accelerating DNN-based video analysis",
SOSP 2019; code `uwsampl/nexus`).

- Request-level dispatch: each request goes to a backend on its own.
- SLO split over a tree by the complex-query dynamic program (`scheduler/complex_query.cpp`): the
  SLO is cut into `SEGMENTS` steps, each node's cost at `j` steps is its rate over its best
  throughput under the half-latency rule, and `dp[v][t] = min_k cost_v(k) + Σ_children dp[c][t - k]`.
  Apps with joins (not trees) get the even split along their longest path.
- Per module, the largest batch with `2 d(b) ≤ budget` ("half of the time will spend in batching",
  `ModelProfile::GetMaxBatch`), on the hardware kind with the best throughput per dollar there;
  `floor(λ / T(b_max))` saturated GPUs at that batch.
- The residual rate at the largest `b ≤ b_max` with `1000 (b - 1) / r + d(b) ≤ budget`, with duty
  cycle `min(budget - d(b), 1000 b / r)` (`BackendDelegate::ComputeBatchSize`), then squishy bin
  packing of all residual sessions of the same hardware kind onto shared GPUs (see
  :func:`.common.squishy_pack`).

Mapping to docs/model.md: `overhead_ms` stands for Nexus's pre/post-processing and network allowance and
is subtracted from every budget; `safety` for its profile multiplier (Nexus's default is 1.15). A
shared GPU's tuples carry its id and duty cycle, and the GPU is paid once.
"""

from __future__ import annotations

import math

from harpagon.config.schema import App, Workload
from harpagon.model.latency import PLAN_TOL, Option, Settings
from harpagon.model.plan import Plan, Refusal, TuplePlan
from harpagon.planner.baselines.common import (
    Session,
    by_hardware,
    packed_plan,
    path_shares,
    request_level_tuple,
)

#: Steps the SLO is cut into by the complex-query dynamic program.
SEGMENTS = 100


def _max_batch(options: list[Option], budget: float, overhead: float) -> Option | None:
    """Largest batch meeting the half-latency rule (batch 1 if only `d(1)` fits)."""
    fit = [o for o in options if 2 * o.d_ms + overhead <= budget * (1 + PLAN_TOL)]
    if fit:
        return fit[-1]
    first = options[0]
    return first if first.d_ms + overhead <= budget * (1 + PLAN_TOL) else None


def _best_hardware(per_hw: dict[str, list[Option]], budget: float, s: Settings) -> Option | None:
    """The saturated configuration with the most throughput per dollar at this budget."""
    best = None
    for options in per_hw.values():
        o = _max_batch(options, budget, s.overhead_ms)
        if o is not None and (best is None or o.throughput / o.price > best.throughput / best.price):
            best = o
    return best


def split_tree_dp(app: App, per_hw: dict[str, dict[str, list[Option]]], s: Settings) -> dict[str, float] | None:
    """Nexus's complex-query split for a tree, in dollars per hour (fractional GPUs)."""
    step = app.slo_ms / SEGMENTS
    cost: dict[str, list[float]] = {}
    for m in app.modules:
        row = [math.inf] * (SEGMENTS + 1)
        for j in range(1, SEGMENTS + 1):
            o = _best_hardware(per_hw[m.name], j * step, s)
            if o is not None:
                row[j] = app.module_rate(m) / (o.throughput * s.max_utilization) * o.price
        cost[m.name] = row

    memo: dict[str, list[int]] = {}

    def solve(v: str) -> list[float]:
        """dp[t]: least cost of v's subtree in t steps (non-increasing in t); memo[v][t]: v's own steps."""
        kids = [solve(c) for c in app.children[v]]
        dp = [math.inf] * (SEGMENTS + 1)
        arg = [0] * (SEGMENTS + 1)
        for t in range(1, SEGMENTS + 1):
            for k in range(1, t + 1 if not kids else t):
                total = cost[v][k] + sum(kid[t - k] for kid in kids)
                if total < dp[t]:
                    dp[t], arg[t] = total, k
        memo[v] = arg
        return dp

    if math.isinf(solve(app.source)[SEGMENTS]):
        return None
    budgets: dict[str, float] = {}

    def take(v: str, t: int) -> None:
        k = memo[v][t]
        budgets[v] = k * step
        for c in app.children[v]:
            take(c, t - k)

    take(app.source, SEGMENTS)
    return budgets


def plan(workload: Workload, settings: Settings | None = None) -> Plan:
    s = settings or Settings()
    refused: list[Refusal] = []
    sessions: list[Session] = []
    planned: list[tuple[App, dict[str, float], dict[str, list[TuplePlan]]]] = []
    for app in workload.apps:
        per_hw = {m.name: by_hardware(workload, app, m, s) for m in app.modules}
        budgets = split_tree_dp(app, per_hw, s) if app.is_tree else path_shares(app)
        if budgets is None:
            refused.append(Refusal(app.name, f"no split of the SLO of {app.slo_ms:g} ms meets Nexus's batching rule"))
            continue
        tuples: dict[str, list[TuplePlan]] = {m.name: [] for m in app.modules}
        app_sessions = []
        ok = True
        for m in app.modules:
            lam, budget = app.module_rate(m), budgets[m.name]
            o = _best_hardware(per_hw[m.name], budget, s)
            if o is None:
                ok = False
                break
            cap = o.throughput * s.max_utilization
            full = math.floor(lam / cap * (1 + PLAN_TOL))
            if full:
                tuples[m.name].append(request_level_tuple(o, full, full * cap, s))
            rest = lam - full * cap
            if rest <= PLAN_TOL * lam:
                continue
            options = per_hw[m.name][o.hardware]
            fit = [x for x in options if x.batch <= o.batch
                   and 1000.0 * (x.batch - 1) / rest + x.d_ms + s.overhead_ms <= budget * (1 + PLAN_TOL)]
            if not fit:
                ok = False
                break
            r = fit[-1]
            duty = min(budget - r.d_ms - s.overhead_ms, 1000.0 * r.batch / rest)
            app_sessions.append(Session(app.name, m.name, options, rest, o.batch, duty, budget))
        if not ok:
            refused.append(Refusal(app.name, "some module meets no batch within its share of the SLO"))
            continue
        sessions.extend(app_sessions)
        planned.append((app, budgets, tuples))

    return packed_plan("nexus", workload, s, planned, sessions, refused)
