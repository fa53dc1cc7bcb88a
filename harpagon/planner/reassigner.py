"""The latency reassigner: final budgets of an app's modules once their tuples are chosen.

Each module first gets the tightest budget its tuples need (their threshold latency with optimal
dummies), which frees whatever the splitter gave it beyond that for the rest of the app. The slack
that is left on the app's paths then goes back to the modules that pad with dummies, most padded
first, each taking only what brings its dummies down: the cost is the same, but the workers run
fewer dummy slots and are idle between batches rather than saturated, which leaves room for jitter.
"""

from __future__ import annotations

from collections.abc import Mapping

from harpagon.config.schema import App
from harpagon.model.latency import Settings
from harpagon.model.plan import AppPlan, ModulePlan, TuplePlan, path_latency
from harpagon.planner.module_scheduler import (
    HARPAGON,
    Choice,
    Mode,
    assign_rates,
    relaxed_budget,
    tight_budget,
)


def build_app_plan(app: App, choices: Mapping[str, Choice], settings: Settings, mode: Mode = HARPAGON) -> AppPlan:
    """The app's plan from its modules' tuple sets: final budgets, shares, dummies and latencies."""
    budgets = {m.name: tight_budget(choices[m.name], app.module_rate(m), settings, mode) for m in app.modules}
    tuples = {m.name: assign_rates(choices[m.name], app.module_rate(m), budgets[m.name], settings, mode)
              for m in app.modules}

    def predicted(name: str) -> float:
        return max(t.latency_ms for t in tuples[name])

    padded = sorted((m for m in app.modules if _dummies(tuples[m.name]) > 0),
                    key=lambda m: -_dummies(tuples[m.name]))
    for m in padded:
        lat = {name: predicted(name) for name in budgets}
        slack = min(app.slo_ms - sum(lat[x] for x in path) for path in app.paths if m.name in path)
        if slack <= 0:
            continue
        # Past this budget the module needs no dummies at all.
        enough = relaxed_budget(choices[m.name], tuples[m.name], settings, mode)
        budgets[m.name] = max(budgets[m.name], min(budgets[m.name] + slack, enough))
        tuples[m.name] = assign_rates(choices[m.name], app.module_rate(m), budgets[m.name], settings, mode)

    modules = tuple(
        ModulePlan(m.name, m.model, app.module_rate(m), min(budgets[m.name], predicted(m.name))
                   if _dummies(tuples[m.name]) == 0 else budgets[m.name], predicted(m.name), tuples[m.name])
        for m in app.modules
    )
    total = path_latency(app, {mp.name: mp.predicted_latency_ms for mp in modules})
    return AppPlan(app.name, app.rate, app.slo_ms, total, modules)


def _dummies(tuples: tuple[TuplePlan, ...]) -> float:
    return sum(t.dummy_rate for t in tuples)

