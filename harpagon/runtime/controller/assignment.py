"""Turn a plan into per-worker configurations and a frontend routing table (pure).

Each tuple of `n` workers of hardware `h` gets `n` distinct live workers of that kind; a worker runs
one tuple. Workers are taken in a stable order (by id), and a worker that already ran the same
module keeps it, so re-plans move as little as possible.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harpagon.config.schema import Workload
from harpagon.dispatch.module import TupleSpec
from harpagon.model.plan import Plan
from harpagon.runtime.wire.modules import ModuleSpec, worker_module_name
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    address: str
    hardware: str
    device: str
    emulated: bool


@dataclass(frozen=True)
class Assignment:
    modules: dict[str, tuple[ModuleSpec, ...]]  # worker id -> what it runs (empty: idle)
    table: RoutingTable


def assign(plan: Plan, workload: Workload, workers: Sequence[WorkerInfo], input_shape: tuple[int, ...],
           version: int, previous: Mapping[str, tuple[ModuleSpec, ...]] | None = None) -> Assignment:
    previous = previous or {}
    free: dict[str, list[WorkerInfo]] = defaultdict(list)
    for w in sorted(workers, key=lambda w: w.id):
        free[w.hardware].append(w)
    modules: dict[str, tuple[ModuleSpec, ...]] = {w.id: () for w in workers}
    routes: dict[tuple[str, str], ModuleRoute] = {}
    apps = {a.name: a for a in workload.apps}
    for ap in plan.apps:
        for mp in ap.modules:
            key = f"{ap.name}/{mp.name}"
            specs, addrs, names, latency = [], [], [], []
            for t in mp.tuples:
                pool = free[t.hardware]
                # workers that already serve this module first
                name = worker_module_name(key, t.batch)
                pool.sort(key=lambda w: not any(s.name == name for s in previous.get(w.id, ())))
                if len(pool) < t.workers:
                    raise ValueError(f"plan needs {t.workers} {t.hardware} workers for {key}, {len(pool)} left")
                chosen, free[t.hardware] = pool[: t.workers], pool[t.workers:]
                spec = ModuleSpec(name, mp.model, t.batch, tuple(input_shape), budget_ms=mp.budget_ms)
                for w in chosen:
                    modules[w.id] = (spec,)
                specs.append(TupleSpec.of(t))
                addrs.append(tuple(w.address for w in chosen))
                names.append(name)
                latency.append(t.latency_ms if math.isfinite(t.latency_ms) and t.latency_ms > 0 else 0.0)  # 0: unknown
            routes[(ap.name, mp.name)] = ModuleRoute(mp.name, tuple(input_shape), tuple(specs), tuple(addrs),
                                                     tuple(names), tuple(latency))
    table = RoutingTable(version, plan.dispatch, {a.name: apps[a.name] for a in plan.apps}, routes)
    return Assignment(modules, table)


def live_workload(workload: Workload, workers: Sequence[WorkerInfo]) -> Workload:
    """The workload with each hardware kind's count set to the live workers of that kind."""
    counts: dict[str, int] = defaultdict(int)
    for w in workers:
        counts[w.hardware] += 1
    hardware = tuple(h.model_copy(update={"count": min(counts.get(h.name, 0), h.count if h.count is not None
                                                       else counts.get(h.name, 0))}) for h in workload.hardware)
    return workload.model_copy(update={"hardware": hardware})
