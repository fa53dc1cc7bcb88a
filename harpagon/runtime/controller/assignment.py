"""Turn a plan into per-worker configurations and a frontend routing table (pure).

Each tuple of `n` workers of hardware `h` gets `n` distinct live workers of that kind; a worker runs
one tuple, or every tuple of one shared GPU (the plan's `gpu` id), whose modules it hosts side by side
and runs first in, first out. Workers are taken in a stable order (by id), and a worker that already
ran the same module keeps it, so re-plans move as little as possible.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harpagon.config import models, pipeline
from harpagon.config.schema import App, CropFilter, Workload
from harpagon.dispatch.module import TupleSpec
from harpagon.model.latency import Fanout
from harpagon.model.plan import Plan, TuplePlan
from harpagon.planner.streams import Streams, app_of
from harpagon.runtime.wire.modules import CropEdge, ModuleSpec, worker_module_name
from harpagon.runtime.wire.routes import (
    TOP_K,
    AppModule,
    AppRoute,
    ModuleRoute,
    OutputSpec,
    RoutingTable,
    StreamRoute,
)


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


def assign(plan: Plan, workload: Workload, workers: Sequence[WorkerInfo], input_shape: tuple[int, ...] | None,
           version: int, previous: Mapping[str, tuple[ModuleSpec, ...]] | None = None,
           configured: Workload | None = None, fanout: Fanout = "deterministic", streams: Streams | None = None,
           addresses: Mapping[str, str] | None = None) -> Assignment:
    """Give each tuple distinct live workers of its hardware, moving as little as possible: first every
    tuple keeps the workers that already run its module, then the remaining places are filled with
    idle workers before workers whose module the new plan no longer keeps on them (so losing one
    worker moves one tuple, not a cascade of them).

    `input_shape` is the image every frame and crop is resized to (None: each module's model's own,
    config/pipeline.input_shape); a `features` module takes its parents' joined outputs instead.
    Emulated detectors find as many objects per frame as the `configured` apps' scales say (the world
    they emulate; default `workload`'s), drawn by `fanout`, whatever scale the plan was made for.

    With `streams` shared among several frontends, `workload` holds the streams (planner/streams.py):
    the module routes are the streams', and each app's route lists its streams and their owners, at
    the owners' `addresses` (frontend id -> its Triton port)."""
    previous = previous or {}
    ran = {w.id: {s.name for s in previous.get(w.id, ())} for w in workers}
    tuples = [(ap, mp, t, worker_module_name(f"{ap.name}/{mp.name}", t.batch))
              for ap in plan.apps for mp in ap.modules for t in mp.tuples]
    # what takes workers: a tuple of its own, or the tuples of one shared GPU together (one worker)
    units: list[list[int]] = []
    shared: dict[str, list[int]] = {}
    for i, (_, _, t, _) in enumerate(tuples):
        if t.gpu is None:
            units.append([i])
        elif t.gpu in shared:
            shared[t.gpu].append(i)
        else:
            units.append(shared.setdefault(t.gpu, [i]))
    free: dict[str, list[WorkerInfo]] = defaultdict(list)
    for w in sorted(workers, key=lambda w: w.id):
        free[w.hardware].append(w)
    chosen: list[list[WorkerInfo]] = []
    for unit in units:  # 1. workers that already run the unit's module (one of them, on a shared GPU) keep it
        t = tuples[unit[0]][2]
        names = {tuples[i][3] for i in unit}
        keep = [w for w in free[t.hardware] if names & ran[w.id]][: t.workers]
        free[t.hardware] = [w for w in free[t.hardware] if w not in keep]
        chosen.append(keep)
    for u, unit in enumerate(units):  # 2. the rest: idle workers first, by id
        ap, mp, t, _ = tuples[unit[0]]
        pool = sorted(free[t.hardware], key=lambda w: (bool(ran[w.id]), w.id))
        need = t.workers - len(chosen[u])
        if len(pool) < need:
            what = f"shared GPU {t.gpu}" if t.gpu is not None else f"{ap.name}/{mp.name}"
            raise ValueError(f"plan needs {t.workers} {t.hardware} workers for {what}, "
                             f"{len(chosen[u]) + len(pool)} left")
        chosen[u] += pool[:need]
        free[t.hardware] = pool[need:]
    workers_of = {i: chosen[u] for u, unit in enumerate(units) for i in unit}
    modules: dict[str, tuple[ModuleSpec, ...]] = {w.id: () for w in workers}
    apps = {a.name: a for a in workload.apps}
    parts: dict[tuple[str, str], list[tuple[TuplePlan, tuple[WorkerInfo, ...], str]]] = defaultdict(list)
    world = {a.name: a for a in (configured or workload).apps}
    for i, (ap, mp, t, name) in enumerate(tuples):
        ws = workers_of[i]
        app = apps[ap.name]
        weights = app.module(mp.name).weights  # relative to the worker's weights folder
        spec = ModuleSpec(name, mp.model, t.batch, pipeline.input_shape(app, mp.name, input_shape), weights,
                          budget_ms=mp.budget_ms,
                          crops=crop_edges(world.get(app_of(ap.name), app), mp.name, input_shape, fanout),
                          decode_ms=workload.decode_ms(app, app.module(mp.name), t.hardware))
        for w in ws:  # a shared GPU's worker hosts its tuples' modules side by side
            modules[w.id] = (*modules[w.id], spec) if t.gpu is not None else (spec,)
        parts[(ap.name, mp.name)].append((t, tuple(sorted(ws, key=lambda w: w.id)), name))
    routes = {key: ModuleRoute(key[1], pipeline.input_shape(apps[key[0]], key[1], input_shape),
                               tuple(TupleSpec.of(t) for t, _, _ in ts),
                               tuple(tuple(w.address for w in ws) for _, ws, _ in ts), tuple(n for _, _, n in ts),
                               tuple(_latency(t) for t, _, _ in ts))
              for key, ts in parts.items()}
    if streams is None or not streams.split:
        served = {a.name: app_route(apps[a.name]) for a in plan.apps}
    else:
        planned = {a.name for a in plan.apps}
        served = {a.name: app_route(a, tuple(StreamRoute(s.name, s.frontend, (addresses or {}).get(s.frontend, ""),
                                                         s.rate) for s in mine))
                  for a in streams.source.apps if (mine := [s for s in streams.of(a.name) if s.name in planned])}
    return Assignment(modules, RoutingTable(version, plan.dispatch, served, routes))


def app_route(app: App, streams: tuple[StreamRoute, ...] = ()) -> AppRoute:
    """What the frontend serves `app` by, the registry's facts resolved here, once per routing table:
    the frontend reads no registry, and no frame derives them again."""
    return AppRoute(app.name, app.rate, app.slo_ms, tuple(_app_module(app, name) for name in app.topological),
                    streams)


def _app_module(app: App, name: str) -> AppModule:
    m = app.module(name)
    task = pipeline.task_of(m)
    labels = models.registry().label_names(m.model) if task == "detect" else ()
    return AppModule(name, m.after, m.input, m.scale, task, app.objects[name], labels,
                     () if app.children[name] else _sink_outputs(app, name))


#: A detector's outputs per request: boxes, scores and labels of its MAX_DETECTIONS detections.
_DETECTOR_OUTPUTS = (("FP32", (pipeline.MAX_DETECTIONS, 4)), ("FP32", (pipeline.MAX_DETECTIONS,)),
                    ("INT64", (pipeline.MAX_DETECTIONS,)))


def _sink_outputs(app: App, sink: str) -> tuple[OutputSpec, ...]:
    """A sink module's reply tensors (frontend/reply.py)."""
    m = app.module(sink)
    task, size = pipeline.task_of(m), pipeline.output_size(m)
    if task == "detect":
        out = [OutputSpec(f"{sink}_{i}", t, (-1, *d)) for i, (t, d) in enumerate(_DETECTOR_OUTPUTS)]
    else:
        out = [OutputSpec(f"{sink}_0", "FP32", (-1, size or -1))]
    if task == "classify":
        k = min(TOP_K, size) if size else -1
        out += [OutputSpec(f"{sink}_top_class", "INT64", (-1, k)), OutputSpec(f"{sink}_top_score", "FP32", (-1, k))]
    detector = app.objects[sink]
    if detector is not None:
        out += [OutputSpec(f"{sink}_detection", "INT32", (-1,)), OutputSpec(f"{sink}_box", "FP32", (-1, 4)),
                OutputSpec(f"{sink}_score", "FP32", (-1,)), OutputSpec(f"{sink}_label", "INT64", (-1,))]
        if models.registry().label_names(app.module(detector).model):
            out.append(OutputSpec(f"{sink}_label_name", "BYTES", (-1,)))
    return tuple(out)


def crop_edges(app: App, module: str, image: tuple[int, ...] | None, fanout: Fanout) -> tuple[CropEdge, ...]:
    """A detector's crops edges: one per child that takes its crops, cut to the child's input."""
    out = []
    for child in app.children[module]:
        c = app.module(child)
        if c.input != "crops":
            continue
        f = c.crops or CropFilter()
        out.append(CropEdge(child, pipeline.input_shape(app, child, image), pipeline.crop_labels(app, child),
                            f.min_score, f.max or 0, c.scale, fanout == "poisson"))
    return tuple(out)


def _latency(t: TuplePlan) -> float:
    """The tuple's planned latency for the routes (0: unknown)."""
    return t.latency_ms if math.isfinite(t.latency_ms) and t.latency_ms > 0 else 0.0


def live_workload(workload: Workload, workers: Sequence[WorkerInfo]) -> Workload:
    """The workload with each hardware kind's count set to the live workers of that kind."""
    counts: dict[str, int] = defaultdict(int)
    for w in workers:
        counts[w.hardware] += 1
    hardware = tuple(h.model_copy(update={"count": min(counts.get(h.name, 0), h.count if h.count is not None
                                                       else counts.get(h.name, 0))}) for h in workload.hardware)
    return workload.model_copy(update={"hardware": hardware})
