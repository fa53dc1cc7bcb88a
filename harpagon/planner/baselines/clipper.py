"""Clipper (Crankshaw et al., "Clipper: a low-latency online prediction serving system", NSDI 2017).

Clipper has no cost planner; as one it would be deployed like this: the SLO split evenly along each
module's longest path, the adaptive (AIMD) batch size at its fixed point, the largest profiled
batch whose `d(b)` alone fits the budget (AIMD backs off only on measured latency, which does not
see the time a batch spends collecting), `ceil(λ / T(b))` replicas, and one hardware kind per app
(the cheapest that profiles every model of it). Requests go to replicas one by one (request-level).
Because collection time is ignored, its plans can break their budgets: the plan reports the
latency the request-level formula predicts, and the feasibility check counts the violations.
"""

from __future__ import annotations

import math

from harpagon.config.schema import App, Workload
from harpagon.model.latency import PLAN_TOL, Settings
from harpagon.model.plan import AppPlan, Plan, Refusal, TuplePlan
from harpagon.planner.baselines.common import assemble, by_hardware, path_shares, request_level_tuple


def _app_on(app: App, workload: Workload, hw: str, s: Settings) -> AppPlan | None:
    budgets = path_shares(app)
    tuples: dict[str, list[TuplePlan]] = {}
    for m in app.modules:
        options = by_hardware(workload, app, m, s).get(hw)
        if not options:
            return None
        fit = [o for o in options if o.d_ms + s.overhead_ms <= budgets[m.name] * (1 + PLAN_TOL)]
        o = fit[-1] if fit else options[0]
        lam = app.module_rate(m)
        n = math.ceil(lam / (o.throughput * s.max_utilization) - PLAN_TOL)
        tuples[m.name] = [request_level_tuple(o, n, lam, s)]
    return assemble(app, budgets, tuples)


def plan(workload: Workload, settings: Settings | None = None) -> Plan:
    s = settings or Settings()
    prices = workload.hardware_by_name
    apps, refused = [], []
    for app in workload.apps:
        candidates = [p for h in workload.hardware if (p := _app_on(app, workload, h.name, s)) is not None]
        if not candidates:
            refused.append(Refusal(app.name, "no single hardware kind profiles every model of the app"))
            continue
        apps.append(min(candidates, key=lambda p: sum(t.workers * prices[t.hardware].price_per_hour
                                                      for m in p.modules for t in m.tuples)))
    return Plan.build("clipper", "request-level", s, tuple(apps), tuple(refused), workload)
