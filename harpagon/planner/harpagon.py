"""The Harpagon planner: a pure function from a workload and settings to a frozen Plan.

Levels (MODEL.md, "Planner levels"):

1. batch-aware dispatch, which enters through its latency formula;
2. module scheduling (:mod:`.module_scheduler`): main + residual tuples with dummy sizing;
3. latency splitting (:mod:`.splitter`): latency-cost efficiency, refined by an exact split over
   the same cost curves when the app is a tree.

The latency reassigner is built into the cost curves: a module's curve steps exactly at the
tightest budget its tuples need (their threshold latency), so the splitter never gives a module
budget it cannot turn into a lower cost; what one module cannot use stays with the app for the
others. The reported `budget_ms` is that tight budget.

Apps are planned one after another in input order against the hardware left over (when hardware
has a `count`); an app that cannot be served is refused with the reason and the rest are planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harpagon.config.schema import App, Workload
from harpagon.model.latency import Settings, options_for
from harpagon.model.plan import AppPlan, ModulePlan, Plan, Refusal, path_latency
from harpagon.planner.module_scheduler import Choice, ModuleScheduler
from harpagon.planner.splitter import Split, fastest_path, split_cost, split_greedy, split_tree

#: Rounds of re-planning an app against what its other modules use, when hardware counts bind.
INVENTORY_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class PlannerOptions:
    """Switches for the planner's levels (all on for Harpagon; the ablations turn one off)."""

    multi_tuple: bool = True
    """Allow a residual tuple beside the main one (else one tuple per module)."""
    exact_tree_split: bool = True
    """Refine the greedy split with the exact tree split when the app has no joins."""


def plan(workload: Workload, settings: Settings | None = None, options: PlannerOptions | None = None,
         *, name: str = "harpagon") -> Plan:
    """Plan every app of the workload; apps that cannot be served are listed in `Plan.refused`."""
    settings = settings or Settings()
    options = options or PlannerOptions()
    left: dict[str, int | None] = {h.name: h.count for h in workload.hardware}
    planned: list[AppPlan] = []
    refused: list[Refusal] = []
    for app in workload.apps:
        result = plan_app(app, workload, settings, options, left)
        if isinstance(result, Refusal):
            refused.append(result)
            continue
        planned.append(result)
        for mp in result.modules:
            for t in mp.tuples:
                if left[t.hardware] is not None:
                    left[t.hardware] -= t.workers  # type: ignore[operator]
    return Plan.build(name, "batch-aware", settings, tuple(planned), tuple(refused), workload)


def plan_app(app: App, workload: Workload, settings: Settings, options: PlannerOptions,
             inventory: Mapping[str, int | None]) -> AppPlan | Refusal:
    """Plan one app against the hardware in `inventory` (None = unlimited)."""
    limits = {m.name: dict(inventory) for m in app.modules}
    for _ in range(INVENTORY_ROUNDS):
        schedulers = {
            m.name: ModuleScheduler(options_for(workload, m.model, settings), app.module_rate(m), settings,
                                    limits[m.name], multi_tuple=options.multi_tuple)
            for m in app.modules
        }
        choices = _split_and_choose(app, schedulers, options)
        if choices is None:
            break
        used = _usage(choices)
        if all(inventory[h] is None or n <= inventory[h] for h, n in used.items()):  # type: ignore[operator]
            return _build(app, schedulers, choices, settings)
        # Hardware counts bind: each module may only use what the others leave, then re-plan.
        for m in app.modules:
            others = _usage({k: c for k, c in choices.items() if k != m.name})
            limits[m.name] = {h: None if cap is None else max(0, cap - others.get(h, 0))
                              for h, cap in inventory.items()}
    return _refusal(app, workload, settings, inventory)


def _split_and_choose(app: App, schedulers: Mapping[str, ModuleScheduler],
                      options: PlannerOptions) -> dict[str, Choice] | None:
    curves = {name: s.curve(app.slo_ms) for name, s in schedulers.items()}
    if any(not len(c) for c in curves.values()) or fastest_path(app, curves)[0] > app.slo_ms * (1 + 1e-9):
        return None
    split = split_greedy(app, curves)
    if options.exact_tree_split:
        exact = split_tree(app, curves)
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


def _usage(choices: Mapping[str, Choice]) -> dict[str, int]:
    used: dict[str, int] = {}
    for c in choices.values():
        for g in c.groups:
            used[g.option.hardware] = used.get(g.option.hardware, 0) + g.workers
    return used


def _build(app: App, schedulers: Mapping[str, ModuleScheduler], choices: Mapping[str, Choice],
           settings: Settings) -> AppPlan:
    modules = []
    for m in app.modules:
        choice = choices[m.name]
        budget = choice.threshold(settings)
        tuples = schedulers[m.name].assign(choice, budget)
        predicted = max(t.latency_ms for t in tuples)
        modules.append(ModulePlan(m.name, m.model, app.module_rate(m), budget, predicted, tuples))
    total = path_latency(app, {mp.name: mp.predicted_latency_ms for mp in modules})
    return AppPlan(app.name, app.rate, app.slo_ms, total, tuple(modules))


def _refusal(app: App, workload: Workload, settings: Settings, inventory: Mapping[str, int | None]) -> Refusal:
    unlimited = {
        m.name: ModuleScheduler(options_for(workload, m.model, settings), app.module_rate(m), settings).curve(
            float("inf"))
        for m in app.modules
    }
    fastest, path = fastest_path(app, unlimited)
    if fastest > app.slo_ms * (1 + 1e-9):
        return Refusal(app.name, f"SLO {app.slo_ms:g} ms is below its fastest possible path, "
                                 f"{fastest:.2f} ms ({' -> '.join(path)})")
    left = ", ".join(f"{h}: {n} left" for h, n in inventory.items() if n is not None)
    return Refusal(app.name, f"cannot be placed within the SLO of {app.slo_ms:g} ms: hardware counts run "
                             f"out ({left})")
