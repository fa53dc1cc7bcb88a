"""Pieces the baselines share: per-module option tables, request-level tuples, refusals, and
Nexus's squishy bin packing of residual sessions onto shared GPUs."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from harpagon.config.schema import App, Module, Workload
from harpagon.model.latency import (
    PLAN_TOL,
    Option,
    Settings,
    options_for,
    request_level_latency,
)
from harpagon.model.plan import AppPlan, ModulePlan, Plan, Refusal, TuplePlan, path_latency


def by_hardware(workload: Workload, app: App, module: Module, settings: Settings) -> dict[str, list[Option]]:
    """A module's options per hardware kind, batch sizes ascending."""
    out: dict[str, list[Option]] = defaultdict(list)
    for o in options_for(workload, app, module, settings):
        out[o.hardware].append(o)
    return dict(out)


def request_level_tuple(o: Option, workers: int, rate: float, settings: Settings) -> TuplePlan:
    lat = request_level_latency(o.batch, o.d_ms, workers, rate, settings.overhead_ms)
    return TuplePlan(o.hardware, o.batch, workers, rate, 0.0, lat)


def path_shares(app: App) -> dict[str, float]:
    """The even split: the SLO over the number of modules on the longest path through each module."""
    return {m.name: app.slo_ms / max(len(p) for p in app.paths if m.name in p) for m in app.modules}


def assemble(app: App, budgets: dict[str, float], tuples: dict[str, list[TuplePlan]]) -> AppPlan:
    modules = tuple(
        ModulePlan(m.name, m.model, app.module_rate(m), budgets[m.name],
                   max(t.latency_ms for t in tuples[m.name]), tuple(tuples[m.name]))
        for m in app.modules
    )
    total = path_latency(app, {mp.name: mp.predicted_latency_ms for mp in modules})
    return AppPlan(app.name, app.rate, app.slo_ms, total, modules)


# --- squishy bin packing (Nexus, SOSP'19, `BackendDelegate`/`FindBestBackend`) -------------------


@dataclass
class Session:
    """A residual load to place on a GPU: `rate` of one module at up to batch `max_batch`."""

    app: str
    module: str
    options: list[Option]  # of one hardware kind, batches ascending
    rate: float
    max_batch: int
    duty_ms: float
    budget_ms: float

    def batch_for(self, cycle_ms: float) -> Option | None:
        """The smallest profiled batch that holds one cycle's requests (None above `max_batch`)."""
        need = max(1, math.ceil(cycle_ms * self.rate / 1000.0 - PLAN_TOL))
        for o in self.options:
            if o.batch >= need:
                return o if o.batch <= self.max_batch else None
        return None


@dataclass
class SharedGPU:
    id: str
    hardware: str
    cycle_ms: float
    members: list[Session] = field(default_factory=list)


def _fit(members: list[Session], cycle: float, settings: Settings) -> float | None:
    """Occupancy of a GPU running one batch of each member per `cycle` ms, or None if it does not fit."""
    busy = 0.0
    for s in members:
        o = s.batch_for(cycle)
        if o is None or cycle + o.d_ms + settings.overhead_ms > s.budget_ms * (1 + PLAN_TOL):
            return None
        busy += o.d_ms
    return busy / cycle if busy <= cycle * settings.max_utilization * (1 + PLAN_TOL) else None


def squishy_pack(sessions: list[Session], settings: Settings, prefix: str) -> tuple[list[SharedGPU], list[Session]]:
    """Pack sessions, largest rate first, each onto the GPU it leaves most occupied (a new one if none
    fits). Returns the GPUs and the sessions that fit on no GPU even alone."""
    gpus: list[SharedGPU] = []
    alone_misfits: list[Session] = []
    for s in sorted(sessions, key=lambda s: -s.rate):
        best: tuple[float, SharedGPU, float] | None = None
        for g in gpus:
            if g.hardware != s.options[0].hardware:
                continue
            cycle = min(g.cycle_ms, s.duty_ms)
            occ = _fit([*g.members, s], cycle, settings)
            if occ is not None and (best is None or occ > best[0]):
                best = (occ, g, cycle)
        if best is not None:
            best[1].members.append(s)
            best[1].cycle_ms = best[2]
        elif _fit([s], s.duty_ms, settings) is not None:
            gpus.append(SharedGPU(f"{prefix}{len(gpus)}", s.options[0].hardware, s.duty_ms, [s]))
        else:
            alone_misfits.append(s)
    return gpus, alone_misfits


def own_workers(session: Session, settings: Settings) -> TuplePlan:
    """A session no GPU's duty cycle can hold: request-level workers of its own, at the largest batch
    (up to its maximum) whose latency with `ceil(rate / T)` workers fits its budget."""
    s = settings
    fallback = None
    for o in reversed(session.options):
        if o.batch > session.max_batch:
            continue
        n = max(1, math.ceil(session.rate / (o.throughput * s.max_utilization) - PLAN_TOL))
        t = request_level_tuple(o, n, session.rate, s)
        if t.latency_ms <= session.budget_ms * (1 + PLAN_TOL):
            return t
        fallback = t
    assert fallback is not None
    return fallback


def shared_tuples(gpus: list[SharedGPU], settings: Settings) -> dict[tuple[str, str], TuplePlan]:
    """The tuple of each packed session, keyed by (app, module)."""
    out = {}
    for g in gpus:
        for s in g.members:
            o = s.batch_for(g.cycle_ms)
            assert o is not None
            out[(s.app, s.module)] = TuplePlan(o.hardware, o.batch, 1, s.rate, 0.0,
                                               g.cycle_ms + o.d_ms + settings.overhead_ms,
                                               gpu=g.id, cycle_ms=g.cycle_ms)
    return out


def packed_plan(name: str, workload: Workload, settings: Settings,
                planned: list[tuple[App, dict[str, float], dict[str, list[TuplePlan]]]],
                sessions: list[Session], refused: list[Refusal]) -> Plan:
    """The plan of a packing baseline: its apps' whole-worker tuples plus each residual session, on a
    shared GPU when one can hold it, else on request-level workers of its own."""
    gpus, misfits = squishy_pack(sessions, settings, prefix=f"{name}-gpu-")
    packed = shared_tuples(gpus, settings)
    for sess in misfits:
        packed[(sess.app, sess.module)] = own_workers(sess, settings)
    apps = []
    for app, budgets, tuples in planned:
        for m in app.modules:
            if (app.name, m.name) in packed:
                tuples[m.name].append(packed[(app.name, m.name)])
        apps.append(assemble(app, budgets, tuples))
    return Plan.build(name, "request-level", settings, tuple(apps), tuple(refused), workload)
