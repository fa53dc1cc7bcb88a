"""One planning pass: every app split and chosen at its level, then fitted into the hardware counts
that all apps share (modules give up workers of a kind that runs out, cheapest move first; an app
that cannot be placed is refused with the reason).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from harpagon.config.schema import App, Module, Workload
from harpagon.model.latency import PLAN_TOL, Settings, options_for
from harpagon.model.plan import AppPlan, Plan, Refusal
from harpagon.planner.levels import Level, Levels
from harpagon.planner.module_scheduler import Choice, ModuleScheduler
from harpagon.planner.queueing import Arrival
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

if TYPE_CHECKING:
    from harpagon.planner.harpagon import PlannerOptions

#: Bound on allocation rounds (each round strictly lowers one module's limit on one kind).
_MAX_ROUNDS = 100_000


def allocate(workload: Workload, settings: Settings, options: PlannerOptions, name: str,
             levels: Levels | None = None, memo: dict | None = None) -> Plan:
    """One planning pass over every app at its level (default: `Level()`, the fluid formulas), hardware
    counts shared.

    Each app is first planned as if it had all the hardware. While together they use more workers of
    a kind than its `count`, the module (of any app) whose move off the excess raises the cost least
    gives it up: its own limit on that kind drops by the excess, and its app is re-planned. When no
    module can move, the last app (in input order) using that kind is refused."""
    inventory: dict[str, int | None] = {h.name: h.count for h in workload.hardware}
    states: dict[str, _AppState] = {}
    refused: list[Refusal] = []
    memo = {} if memo is None else memo  # an app planned at the same level is planned once
    for app in workload.apps:
        level = Level() if levels is None else levels[app.name]
        key = (app.name, level)
        if key not in memo:
            memo[key] = _start(app, level, workload, settings, options, inventory)
        state, refusal = memo[key]
        if refusal is not None:
            refused.append(refusal)
        else:
            states[app.name] = state
    states, out_of_counts = _within_counts(states, inventory)
    refused += out_of_counts
    slo = {a.name: a.slo_ms for a in workload.apps}  # an app planned for a tighter SLO keeps its own
    planned = tuple(replace(states[a.name].build(), slo_ms=slo[a.name]) for a in workload.apps if a.name in states)
    order = {a.name: i for i, a in enumerate(workload.apps)}
    return Plan.build(name, options.dispatch, settings, planned,
                      tuple(sorted(refused, key=lambda r: order[r.app])), workload)


def _start(app: App, level: Level, workload: Workload, settings: Settings, options: PlannerOptions,
           inventory: Mapping[str, int | None]) -> tuple[_AppState, Refusal | None]:
    """The app planned at its level as if it had all the hardware, and why it cannot be served if so."""
    planned, mine = level.app(app), level.settings(settings)
    state = _AppState.start(planned, workload, mine, options, inventory, level)
    return state, (_refusal(planned, workload, mine, inventory, level) if state.choices is None else None)


def _within_counts(states: Mapping[str, _AppState], inventory: Mapping[str, int | None]
                   ) -> tuple[dict[str, _AppState], list[Refusal]]:
    """The apps' states once every hardware kind is used within its count, and the apps refused for it."""
    states = dict(states)
    refused = []
    for _ in range(_MAX_ROUNDS):
        over = _excess(_usage(c for st in states.values() for c in st.chosen), inventory)
        if over is None:
            return states, refused
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
    raise RuntimeError("hardware allocation did not converge")  # pragma: no cover - each round lowers a limit


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
    level: Level

    @staticmethod
    def start(app: App, workload: Workload, settings: Settings, options: PlannerOptions,
              inventory: Mapping[str, int | None], level: Level) -> _AppState:
        limits = {m.name: dict(inventory) for m in app.modules}
        schedulers = {m.name: _scheduler(app, m, workload, settings, options, limits[m.name],
                                         level.arrival(m.name))
                      for m in app.modules}
        return _AppState(app, workload, settings, options, limits, schedulers,
                         _split_and_choose(app, schedulers, options), level)

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
                               self.level.arrival(name))
            schedulers = {**self.schedulers, name: sched}
            choices = _split_and_choose(self.app, schedulers, self.options)
            if choices is not None:
                out.append(_AppState(self.app, self.workload, self.settings, self.options,
                                     {**self.limits, name: lim}, schedulers, choices, self.level))
        return out

    def build(self) -> AppPlan:
        assert self.choices is not None
        return build_app_plan(self.app, self.choices, self.settings, self.options.mode)


def _scheduler(app: App, module: Module, workload: Workload, settings: Settings, options: PlannerOptions,
               limits: Mapping[str, int | None], arrival: Arrival | None = None) -> ModuleScheduler:
    return ModuleScheduler(options_for(workload, app, module, settings), app.module_rate(module), settings,
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
    if any(not len(c) for c in curves.values()) or fastest_path(app, curves)[0] > app.slo_ms * (1 + PLAN_TOL):
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
             level: Level) -> Refusal:
    def fastest(tried: Level) -> tuple[float, tuple[str, ...]]:
        curves = {m.name: ModuleScheduler(options_for(workload, app, m, settings), app.module_rate(m), settings,
                                          arrival=tried.arrival(m.name)).curve(float("inf"))
                  for m in app.modules}
        return fastest_path(app, curves)

    tried = [(Level(), "its fastest possible path")]
    if not level.fluid:
        tried.append((level, f"its fastest path that keeps the {settings.arrivals} promise"))
    for model, what in tried:
        ms, path = fastest(model)
        if ms > app.slo_ms * (1 + PLAN_TOL):
            return Refusal(app.name, f"SLO {app.slo_ms:g} ms is below {what}, {ms:.2f} ms ({' -> '.join(path)})")
    left = ", ".join(f"{h}: {n} left" for h, n in inventory.items() if n is not None)
    return Refusal(app.name, f"cannot be placed within the SLO of {app.slo_ms:g} ms: hardware counts run "
                             f"out ({left})")
