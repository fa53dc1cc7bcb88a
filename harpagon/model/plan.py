"""The frozen Plan a planner returns, its JSON form (docs/model.md), and the feasibility check.

The check recomputes every promise from the plan's numbers and the workload's profiles with the
formulas of :mod:`harpagon.model.latency`; it trusts nothing the planner reported.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from harpagon.config.schema import App, Workload
from harpagon.model import memory
from harpagon.model.latency import (
    REL_TOL,
    Arrivals,
    Dispatch,
    Fanout,
    Settings,
    capacity,
    row_latency,
    tuple_latency,
    within,
)


@dataclass(frozen=True, slots=True)
class TuplePlan:
    """`n` workers of hardware `h` at batch `b`, serving real rate `r` plus dummy rate `δ`.

    Plans of the baselines that share GPUs between modules (Nexus, Scrooge) mark a tuple that
    runs on a shared GPU with the GPU's id in `gpu` and its duty cycle in `cycle_ms`: such a tuple
    has `workers == 1`, the GPU runs one batch of each of its tuples per cycle, a request waits
    at most one cycle for its batch, so `ℓ = cycle + d(b) + overhead`, and the GPU is paid once."""

    hardware: str
    batch: int
    workers: int
    rate: float
    dummy_rate: float
    latency_ms: float
    gpu: str | None = None
    cycle_ms: float | None = None
    queue_ms: float = 0.0
    """Allowance for waiting at a busy worker under the promised arrivals (bursts, random arrivals);
    part of `latency_ms`. Always 0 in the fluid model (docs/model.md v1)."""


@dataclass(frozen=True, slots=True)
class ModulePlan:
    name: str
    model: str
    rate: float
    budget_ms: float
    predicted_latency_ms: float
    tuples: tuple[TuplePlan, ...]


@dataclass(frozen=True, slots=True)
class AppPlan:
    name: str
    rate: float
    slo_ms: float
    predicted_latency_ms: float
    modules: tuple[ModulePlan, ...]

    def module(self, name: str) -> ModulePlan:
        return next(m for m in self.modules if m.name == name)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An app the planner could not serve, and why (one line)."""

    app: str
    reason: str


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay of the plan measured (docs/model.md, "the replay")."""

    frames: int
    """Frames replayed per app (the least over the apps)."""
    seed: int
    min_app_attainment: float
    """Least fraction of an app's frames within its SLO, under Poisson arrivals."""
    constant_all_within: bool
    """Every frame of every app within its SLO under constant arrivals."""
    apps: tuple[tuple[str, float], ...] = ()
    """Each app's attainment under Poisson arrivals."""
    seconds: float = 0.0
    """The horizon asked for besides `frames`: at least this many seconds of each app's frames."""


@dataclass(frozen=True, slots=True)
class Promise:
    """The promise a plan is made for and, when it was replayed, what the replay measured."""

    arrivals: Arrivals
    attainment: float
    replayed: Replayed | None = None
    fanout: Fanout = "deterministic"
    """The fan-out the Poisson replay was judged under (`settings.fanout`)."""

    @property
    def kept(self) -> bool | None:
        """Whether the replay bears the promise out (None: not replayed; the fluid promise is not
        about arrivals, so it is never judged here)."""
        r = self.replayed
        if r is None or self.arrivals == "fluid":
            return None
        if self.arrivals == "constant":
            return r.constant_all_within
        return r.constant_all_within and r.min_app_attainment >= self.attainment

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"arrivals": self.arrivals}
        if self.arrivals == "poisson":
            out["attainment"] = self.attainment
        if self.fanout != "deterministic":  # absent at the default, so plans print as before
            out["fanout"] = self.fanout
        r = self.replayed
        if r is not None:
            out["replayed"] = {"frames": r.frames, "seed": r.seed, "min_app_attainment": r.min_app_attainment,
                               "constant_all_within": r.constant_all_within,
                               "apps": {name: a for name, a in r.apps}}
            if r.seconds:
                out["replayed"]["seconds"] = r.seconds
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Promise:
        r = data.get("replayed")
        replayed = None if r is None else Replayed(r["frames"], r["seed"], r["min_app_attainment"],
                                                   r["constant_all_within"], tuple(r.get("apps", {}).items()),
                                                   r.get("seconds", 0.0))
        return Promise(data["arrivals"], data.get("attainment", 0.99), replayed,
                       data.get("fanout", "deterministic"))


@dataclass(frozen=True, slots=True)
class Plan:
    planner: str
    dispatch: Dispatch
    settings: Settings
    apps: tuple[AppPlan, ...]
    refused: tuple[Refusal, ...] = ()
    cost_per_hour: float = field(default=math.nan)
    promise: Promise | None = None

    def __post_init__(self) -> None:
        if math.isnan(self.cost_per_hour):
            raise ValueError("cost_per_hour is required; use Plan.build to compute it")

    @staticmethod
    def build(planner: str, dispatch: Dispatch, settings: Settings, apps: tuple[AppPlan, ...],
              refused: tuple[Refusal, ...], workload: Workload) -> Plan:
        """A plan whose cost is the sum of its workers' prices."""
        return Plan(planner, dispatch, settings, apps, refused, workers_cost(apps, workload))

    def workers_by_hardware(self) -> dict[str, int]:
        return workers_by_hardware(self.apps)

    def app(self, name: str) -> AppPlan:
        return next(a for a in self.apps if a.name == name)

    # --- JSON ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "planner": self.planner,
            "dispatch": self.dispatch,
            "cost_per_hour": self.cost_per_hour,
            "settings": self.settings.to_dict(),
            "apps": [
                {
                    "name": a.name, "rate": a.rate, "slo_ms": a.slo_ms,
                    "predicted_latency_ms": a.predicted_latency_ms,
                    "modules": [
                        {
                            "name": m.name, "model": m.model, "rate": m.rate, "budget_ms": m.budget_ms,
                            "predicted_latency_ms": m.predicted_latency_ms,
                            "tuples": [_tuple_dict(t) for t in m.tuples],
                        }
                        for m in a.modules
                    ],
                }
                for a in self.apps
            ],
        }
        if self.refused:
            out["refused"] = [{"name": r.app, "reason": r.reason} for r in self.refused]
        if self.promise is not None:
            out["promise"] = self.promise.to_dict()
        return out

    def to_json(self, indent: int | None = 2) -> str:
        # json writes floats with repr(), the shortest text that reads back to the same double.
        return json.dumps(self.to_dict(), indent=indent)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Plan:
        apps = tuple(
            AppPlan(
                a["name"], a["rate"], a["slo_ms"], a["predicted_latency_ms"],
                tuple(
                    ModulePlan(
                        m["name"], m["model"], m["rate"], m["budget_ms"], m["predicted_latency_ms"],
                        tuple(TuplePlan(t["hardware"], t["batch"], t["workers"], t["rate"], t["dummy_rate"],
                                        t["latency_ms"], t.get("gpu"), t.get("cycle_ms"), t.get("queue_ms", 0.0))
                              for t in m["tuples"]),
                    )
                    for m in a["modules"]
                ),
            )
            for a in data["apps"]
        )
        refused = tuple(Refusal(r["name"], r["reason"]) for r in data.get("refused", ()))
        promise = Promise.from_dict(data["promise"]) if "promise" in data else None
        return Plan(data["planner"], data["dispatch"], Settings(**data["settings"]), apps, refused,
                    data["cost_per_hour"], promise)

    @staticmethod
    def from_json(text: str) -> Plan:
        return Plan.from_dict(json.loads(text))


def _tuple_dict(t: TuplePlan) -> dict[str, Any]:
    out: dict[str, Any] = {"hardware": t.hardware, "batch": t.batch, "workers": t.workers, "rate": t.rate,
                           "dummy_rate": t.dummy_rate, "latency_ms": t.latency_ms}
    if t.gpu is not None:
        out.update(gpu=t.gpu, cycle_ms=t.cycle_ms)
    if t.queue_ms:
        out["queue_ms"] = t.queue_ms
    return out


def workers_by_hardware(apps: tuple[AppPlan, ...] | list[AppPlan]) -> dict[str, int]:
    """Workers (GPUs) per hardware kind; a shared GPU counts once."""
    used: dict[str, int] = defaultdict(int)
    shared: set[str] = set()
    for a in apps:
        for m in a.modules:
            for t in m.tuples:
                if t.gpu is None:
                    used[t.hardware] += t.workers
                elif t.gpu not in shared:
                    shared.add(t.gpu)
                    used[t.hardware] += 1
    return dict(used)


def workers_cost(apps: tuple[AppPlan, ...] | list[AppPlan], workload: Workload) -> float:
    prices = workload.hardware_by_name
    return sum(n * prices[h].price_per_hour for h, n in sorted(workers_by_hardware(apps).items()))


def path_latency(app: App, latency_of: dict[str, float]) -> float:
    """Largest source-to-sink sum of per-module latencies."""
    return max(sum(latency_of[m] for m in path) for path in app.paths)


def check_plan(plan: Plan, workload: Workload) -> list[str]:
    """Every way the plan breaks docs/model.md's feasibility rules; empty when it is feasible."""
    bad: list[str] = []
    apps = {a.name: a for a in workload.apps}
    planned = {a.name for a in plan.apps} | {r.app for r in plan.refused}
    bad += [f"app {name!r}: neither planned nor refused" for name in apps if name not in planned]

    for ap in plan.apps:
        app = apps.get(ap.name)
        if app is None:
            bad.append(f"app {ap.name!r}: not in the workload")
            continue
        where = f"app {ap.name!r}"
        if not within(abs(ap.rate - app.rate), 0.0) or not within(abs(ap.slo_ms - app.slo_ms), 0.0):
            bad.append(f"{where}: rate/slo_ms {ap.rate}/{ap.slo_ms} differ from the input {app.rate}/{app.slo_ms}")
        got = {m.name for m in ap.modules}
        want = {m.name for m in app.modules}
        if got != want:
            bad.append(f"{where}: modules {sorted(got)} differ from the input {sorted(want)}")
            continue
        predicted: dict[str, float] = {}
        for mp in ap.modules:
            predicted[mp.name] = _check_module(plan, workload, app, mp, bad)
        worst = path_latency(app, predicted)
        if not within(worst, app.slo_ms):
            bad.append(f"{where}: a path takes {worst:.6g} ms, over the SLO of {app.slo_ms:g} ms")
        if not math.isclose(worst, ap.predicted_latency_ms, rel_tol=REL_TOL, abs_tol=1e-9):
            bad.append(f"{where}: reports predicted_latency_ms {ap.predicted_latency_ms}, recomputed {worst}")

    _check_shared_gpus(plan, workload, bad)
    bad += check_resources(plan, workload)
    if all(t.hardware in workload.hardware_by_name for a in plan.apps for m in a.modules for t in m.tuples):
        cost = workers_cost(plan.apps, workload)
        if not math.isclose(cost, plan.cost_per_hour, rel_tol=REL_TOL, abs_tol=1e-9):
            bad.append(f"cost_per_hour {plan.cost_per_hour} differs from the workers' prices, {cost}")
    return bad


def check_resources(plan: Plan, workload: Workload) -> list[str]:
    """The part of :func:`check_plan` that no replay can stand in for: the plan uses no more GPUs of a
    kind than its `count`, and each shared GPU's models fit in its memory; empty when it can be deployed."""
    return _count_problems(plan, workload) + _memory_problems(plan, workload)


def over_counts(plan: Plan, workload: Workload) -> dict[str, tuple[int, int]]:
    """Hardware kinds the plan uses more workers of than their `count`: kind -> (used, count)."""
    out = {}
    for hw, used in workers_by_hardware(plan.apps).items():
        h = workload.hardware_by_name.get(hw)
        if h is not None and h.count is not None and used > h.count:
            out[hw] = (used, h.count)
    return out


def _count_problems(plan: Plan, workload: Workload) -> list[str]:
    return [f"hardware {hw!r}: plan uses {used} workers, only {count} exist"
            for hw, (used, count) in over_counts(plan, workload).items()]


def _memory_problems(plan: Plan, workload: Workload) -> list[str]:
    """Shared GPUs whose models do not fit in the memory of their (first tuple's) hardware."""
    bad = []
    for gpu, tuples in _shared_members(plan, workload).items():
        hardware, loaded = tuples[0][1].hardware, [(model, t.batch) for model, t, _ in tuples]
        if not memory.fits(workload, hardware, loaded):
            bad.append(f"shared GPU {gpu!r}: its models do not fit in memory: "
                       f"{memory.describe(workload, hardware, loaded)}")
    return bad


def _shared_members(plan: Plan, workload: Workload) -> dict[str, list[tuple[str, TuplePlan, float]]]:
    """Per shared GPU, its tuples: each with its module's model and what a request adds to decode its frame."""
    members: dict[str, list[tuple[str, TuplePlan, float]]] = defaultdict(list)
    modules = {(a.name, m.name): (a, m) for a in workload.apps for m in a.modules}
    for ap in plan.apps:
        for mp in ap.modules:
            found = modules.get((ap.name, mp.name))  # None: a module the input lacks (reported apart)
            for t in mp.tuples:
                if t.gpu is not None:
                    decode = workload.decode_ms(*found, t.hardware) if found else 0.0
                    members[t.gpu].append((found[1].model if found else mp.model, t, decode))
    return members


def _check_shared_tuple(t: TuplePlan, where: str, overhead_ms: float, d: float, bad: list[str]) -> float:
    """A tuple on a shared GPU: one batch per duty cycle; returns its latency, `cycle + d(b) + overhead`."""
    if t.workers != 1:
        bad.append(f"{where}: a tuple on shared GPU {t.gpu!r} must have 1 worker, got {t.workers}")
    if t.cycle_ms is None or not t.cycle_ms > 0:
        bad.append(f"{where}: shared GPU {t.gpu!r} needs a positive cycle_ms, got {t.cycle_ms!r}")
        return math.inf
    if not within((t.rate + t.dummy_rate) * t.cycle_ms / 1000.0, t.batch):
        bad.append(f"{where}: {t.rate + t.dummy_rate:.6g}/s brings more than b={t.batch} per {t.cycle_ms:.6g} ms cycle")
    return t.cycle_ms + d + overhead_ms


def _check_shared_gpus(plan: Plan, workload: Workload, bad: list[str]) -> None:
    """Each shared GPU: one hardware kind, one cycle, and its batches fit in the cycle (its memory:
    :func:`check_resources`)."""
    u = plan.settings.max_utilization
    for gpu, tuples in _shared_members(plan, workload).items():
        if len({t.hardware for _, t, _ in tuples}) != 1 or len({t.cycle_ms for _, t, _ in tuples}) != 1:
            bad.append(f"shared GPU {gpu!r}: its tuples disagree on hardware or cycle")
            continue
        busy = 0.0
        for model, t, decode in tuples:
            row = workload.profile_rows.get((model, t.hardware), {}).get(t.batch)
            if row is not None:
                busy += row_latency(row, decode, plan.settings.safety)
        cycle = tuples[0][1].cycle_ms or 0.0
        if not within(busy, cycle * u):
            bad.append(f"shared GPU {gpu!r}: batches take {busy:.6g} ms of a {cycle:.6g} ms cycle"
                       f" (max utilization {u:g})")


def _check_module(plan: Plan, workload: Workload, app: App, mp: ModulePlan, bad: list[str]) -> float:
    """Check one module's tuples; return its recomputed predicted latency."""
    s = plan.settings
    module = app.module(mp.name)
    where = f"app {app.name!r} module {mp.name!r}"
    lam = app.module_rate(module)
    if mp.model != module.model:
        bad.append(f"{where}: runs model {mp.model!r}, the input says {module.model!r}")
    if not math.isclose(mp.rate, lam, rel_tol=REL_TOL):
        bad.append(f"{where}: rate {mp.rate} differs from λ_a·s_m = {lam}")
    if not mp.tuples:
        bad.append(f"{where}: has no tuples")
        return math.inf
    shares = sum(t.rate for t in mp.tuples)
    if not math.isclose(shares, lam, rel_tol=REL_TOL):
        bad.append(f"{where}: shares sum to {shares}, not λ_m = {lam}")
    worst = 0.0
    for k, t in enumerate(mp.tuples):
        tw = f"{where} tuple {k} ({t.hardware}, b={t.batch})"
        rows = workload.profile_rows.get((module.model, t.hardware))
        row = rows.get(t.batch) if rows else None
        if row is None:
            bad.append(f"{tw}: batch {t.batch} of {module.model!r} is not profiled on {t.hardware!r}")
            worst = math.inf
            continue
        if not isinstance(t.workers, int) or isinstance(t.workers, bool) or t.workers < 1:
            bad.append(f"{tw}: workers must be an integer >= 1, got {t.workers!r}")
            continue
        if not t.rate > 0:
            bad.append(f"{tw}: real rate must be > 0, got {t.rate}")
            continue
        if t.dummy_rate < 0:
            bad.append(f"{tw}: dummy rate must be >= 0, got {t.dummy_rate}")
        d = row_latency(row, workload.decode_ms(app, module, t.hardware), s.safety)
        if t.gpu is not None:
            lat = _check_shared_tuple(t, tw, s.overhead_ms, d, bad)
        else:
            cap = capacity(t.workers, t.batch, d, s.max_utilization)
            if not within(t.rate + t.dummy_rate, cap):
                bad.append(f"{tw}: load {t.rate + t.dummy_rate:.6g}/s over capacity {cap:.6g}/s")
            lat = tuple_latency(plan.dispatch, t.batch, d, t.workers, t.rate, t.dummy_rate, s.overhead_ms)
        if not (math.isfinite(t.queue_ms) and t.queue_ms >= 0):
            bad.append(f"{tw}: queue_ms must be >= 0, got {t.queue_ms}")
        else:
            lat += t.queue_ms
        if not within(lat, mp.budget_ms):
            bad.append(f"{tw}: latency {lat:.6g} ms over the module budget {mp.budget_ms:.6g} ms")
        if not math.isclose(lat, t.latency_ms, rel_tol=REL_TOL, abs_tol=1e-9):
            bad.append(f"{tw}: reports latency_ms {t.latency_ms}, recomputed {lat}")
        worst = max(worst, lat)
    if math.isfinite(worst) and not math.isclose(worst, mp.predicted_latency_ms, rel_tol=REL_TOL, abs_tol=1e-9):
        bad.append(f"{where}: reports predicted_latency_ms {mp.predicted_latency_ms}, recomputed {worst}")
    return worst
