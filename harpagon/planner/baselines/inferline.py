"""InferLine (Crankshaw et al., "InferLine: latency-aware provisioning and scaling for prediction
serving pipelines", SoCC 2020, https://arxiv.org/abs/1812.01776).

- Initial configuration (its Algorithm 1): every module at batch 1, one replica, on the hardware with
  the lowest latency; the app is infeasible if that misses the SLO; else a replica goes to the
  bottleneck (least `replicas * T / λ`) until the estimator says feasible.
- Greedy cost reduction (Algorithm 2): each round tries, for every module, IncreaseBatch (the next
  profiled batch), RemoveReplica and DowngradeHW (the next cheaper hardware kind that profiles the
  model, replicas re-derived as `ceil(λ / T)`), and applies the feasible action that leaves the
  cheapest pipeline (IncreaseBatch, being cost-neutral, only when nothing cheaper is feasible). It
  stops when no action is feasible.

Estimator: InferLine's is a discrete-event simulation checked at P99; this is its deterministic
variant, docs/model.md's worst case for request-level dispatch (every replica below capacity, every path
within the SLO). The benchmark replays the resulting plans in the simulator, like every other plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from harpagon.config.schema import App, Workload
from harpagon.model.latency import PLAN_TOL, Option, Settings
from harpagon.model.plan import Plan, Refusal, path_latency
from harpagon.planner.baselines.common import assemble, by_hardware, request_level_tuple

#: Bound on greedy rounds per app (each applied action lowers the cost or raises a batch).
MAX_ROUNDS = 10_000


@dataclass(frozen=True)
class _Config:
    option: Option
    replicas: int


def _feasible(app: App, cfg: dict[str, _Config], s: Settings) -> bool:
    lat = {}
    for m in app.modules:
        c, lam = cfg[m.name], app.module_rate(m)
        if lam > c.replicas * c.option.throughput * s.max_utilization * (1 + PLAN_TOL):
            return False
        lat[m.name] = request_level_tuple(c.option, c.replicas, lam, s).latency_ms
    return path_latency(app, lat) <= app.slo_ms * (1 + PLAN_TOL)


def _cost(cfg: dict[str, _Config]) -> float:
    return sum(c.replicas * c.option.price for c in cfg.values())


def _actions(app: App, cfg: dict[str, _Config], per_hw: dict[str, dict[str, list[Option]]], s: Settings,
             prices: dict[str, float]):
    for m in app.modules:
        c = cfg[m.name]
        options = per_hw[m.name][c.option.hardware]
        bigger = [o for o in options if o.batch > c.option.batch]
        if bigger:
            yield "batch", {**cfg, m.name: replace(c, option=bigger[0])}
        if c.replicas > 1:
            yield "remove", {**cfg, m.name: replace(c, replicas=c.replicas - 1)}
        cheaper = sorted((h for h in per_hw[m.name] if prices[h] < prices[c.option.hardware]),
                         key=lambda h: -prices[h])
        if cheaper:
            opts = per_hw[m.name][cheaper[0]]
            o = ([x for x in opts if x.batch <= c.option.batch] or opts[:1])[-1]
            lam = app.module_rate(m)
            n = max(1, math.ceil(lam / (o.throughput * s.max_utilization) - PLAN_TOL))
            yield "downgrade", {**cfg, m.name: _Config(o, n)}


def plan(workload: Workload, settings: Settings | None = None) -> Plan:
    s = settings or Settings()
    prices = {h.name: h.price_per_hour for h in workload.hardware}
    apps, refused = [], []
    for app in workload.apps:
        per_hw = {m.name: by_hardware(workload, app, m, s) for m in app.modules}
        cfg = {m.name: _Config(min((opts[0] for opts in per_hw[m.name].values()), key=lambda o: o.d_ms), 1)
               for m in app.modules}
        fastest = path_latency(app, {n: c.option.d_ms + s.overhead_ms for n, c in cfg.items()})
        if fastest > app.slo_ms * (1 + PLAN_TOL):
            refused.append(Refusal(app.name, f"SLO {app.slo_ms:g} ms is below its batch-1 path, {fastest:.2f} ms"))
            continue
        while not _feasible(app, cfg, s):  # replicas to the bottleneck (batch 1 latency already fits)
            name = min(cfg, key=lambda n: cfg[n].replicas * cfg[n].option.throughput
                       / app.module_rate(app.module(n)))
            cfg[name] = replace(cfg[name], replicas=cfg[name].replicas + 1)
        for _ in range(MAX_ROUNDS):
            best = None
            for kind, trial in _actions(app, cfg, per_hw, s, prices):
                if not _feasible(app, trial, s):
                    continue
                key = (_cost(trial), kind == "batch")
                if (_cost(trial) < _cost(cfg) - PLAN_TOL or kind == "batch") and (best is None or key < best[0]):
                    best = (key, trial)
            if best is None:
                break
            cfg = best[1]
        budgets = {m.name: request_level_tuple(cfg[m.name].option, cfg[m.name].replicas, app.module_rate(m),
                                               s).latency_ms for m in app.modules}
        tuples = {m.name: [request_level_tuple(cfg[m.name].option, cfg[m.name].replicas, app.module_rate(m), s)]
                  for m in app.modules}
        apps.append(assemble(app, budgets, tuples))
    return Plan.build("inferline", "request-level", s, tuple(apps), tuple(refused), workload)
