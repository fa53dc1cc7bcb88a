"""Scrooge (Hu, Ghosh, Govindan, "Scrooge: a cost-effective deep learning inference system",
SoCC 2021).

- One `(hardware, batch)` per module, chosen by a mixed-integer program that minimises the cost of
  the pipeline (fractional workers, `λ_m / T(b)` at the hardware's price) under the DAG's latency
  constraints: a completion time `D_m ≥ D_parent + ℓ_m` per edge and `D_sink ≤ SLO`. Each choice's
  latency `ℓ_m` is precomputed with `ceil(λ_m / T(b))` workers under request-level dispatch, so the
  program stays linear. Solved with `scipy.optimize.milp` (HiGHS).
- Placement: `floor(λ_m / T(b))` full workers plus one partial worker per module; the partial
  workers of all modules are packed onto shared GPUs with the duty-cycle check of Nexus
  (:func:`.common.squishy_pack`), each within the latency the program gave its module.
"""

from __future__ import annotations

import math

import numpy as np

from harpagon.config.schema import App, Workload
from harpagon.model.latency import PLAN_TOL, Option, Settings, options_for, request_level_latency
from harpagon.model.plan import Plan, Refusal, TuplePlan
from harpagon.planner.baselines.common import (
    Session,
    by_hardware,
    packed_plan,
    request_level_tuple,
)


def _choices(app: App, workload: Workload, s: Settings) -> dict[str, list[tuple[Option, float, float]]]:
    """Per module: (option, latency with ceil(λ/T) workers, fractional cost) for every option."""
    out = {}
    for m in app.modules:
        lam = app.module_rate(m)
        rows = []
        for o in options_for(workload, app, m, s):
            cap = o.throughput * s.max_utilization
            n = math.ceil(lam / cap - PLAN_TOL)
            rows.append((o, request_level_latency(o.batch, o.d_ms, n, lam, s.overhead_ms), lam / cap * o.price))
        out[m.name] = rows
    return out


def solve(app: App, workload: Workload, s: Settings) -> dict[str, tuple[Option, float]] | None:
    """The program's choice per module (option, latency allowance), or None if infeasible."""
    from scipy.optimize import Bounds, LinearConstraint, milp  # the [bench] extra

    choices = _choices(app, workload, s)
    names = [m.name for m in app.modules]
    # variables: x[m, c] binaries, then D[m] completion times
    index: list[tuple[str, int]] = [(n, i) for n in names for i in range(len(choices[n]))]
    nx, nd = len(index), len(names)
    d_of = {n: nx + k for k, n in enumerate(names)}
    c = np.zeros(nx + nd)
    for j, (n, i) in enumerate(index):
        c[j] = choices[n][i][2]
    rows, lo, hi = [], [], []

    def row() -> np.ndarray:
        return np.zeros(nx + nd)

    for n in names:  # exactly one choice per module
        r = row()
        for j, (m, _) in enumerate(index):
            if m == n:
                r[j] = 1
        rows.append(r)
        lo.append(1)
        hi.append(1)
    for m in app.modules:  # D_m - Σ ℓ x ≥ D_parent (or ≥ 0 at the source)
        for parent in m.after or (None,):
            r = row()
            r[d_of[m.name]] = 1
            for j, (n, i) in enumerate(index):
                if n == m.name:
                    r[j] = -choices[n][i][1]
            if parent is not None:
                r[d_of[parent]] = -1
            rows.append(r)
            lo.append(0)
            hi.append(np.inf)
    integrality = np.r_[np.ones(nx), np.zeros(nd)]
    bounds = Bounds(np.zeros(nx + nd), np.r_[np.ones(nx), np.full(nd, app.slo_ms)])
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=integrality, bounds=bounds)
    if res.x is None:
        return None
    out = {}
    for j, (n, i) in enumerate(index):
        if res.x[j] > 0.5:
            out[n] = (choices[n][i][0], choices[n][i][1])
    return out


def plan(workload: Workload, settings: Settings | None = None) -> Plan:
    s = settings or Settings()
    refused: list[Refusal] = []
    sessions: list[Session] = []
    planned = []
    for app in workload.apps:
        chosen = solve(app, workload, s)
        if chosen is None:
            refused.append(Refusal(app.name, f"no choice of one (hardware, batch) per module meets the SLO of "
                                             f"{app.slo_ms:g} ms"))
            continue
        budgets = {n: lat for n, (_, lat) in chosen.items()}
        tuples: dict[str, list[TuplePlan]] = {m.name: [] for m in app.modules}
        for m in app.modules:
            o, budget = chosen[m.name]
            lam = app.module_rate(m)
            cap = o.throughput * s.max_utilization
            full = math.floor(lam / cap * (1 + PLAN_TOL))
            if full:
                tuples[m.name].append(request_level_tuple(o, full, full * cap, s))
            rest = lam - full * cap
            if rest > PLAN_TOL * lam:
                options = by_hardware(workload, app, m, s)[o.hardware]
                duty = min(budget - o.d_ms - s.overhead_ms, 1000.0 * o.batch / rest)
                sessions.append(Session(app.name, m.name, options, rest, o.batch, max(duty, 1e-9), budget))
        planned.append((app, budgets, tuples))

    return packed_plan("scrooge", workload, s, planned, sessions, refused)
