"""The frontend's routing table: for every module of every app, its tuples, their workers and the
module's final name on them; and for every app, what the frontend serves it by (:class:`AppRoute`).
The controller computes it from the plan, the apps and the live inventory and pushes it (in process,
or streamed with this codec); it is plain data, so the frontend needs no configuration of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from harpagon.dispatch.module import TupleSpec
from harpagon.model.latency import Dispatch
from harpagon.v1 import controller_pb2 as cpb

#: Best classes a classifier sink's reply gives per request.
TOP_K = 5

Input = Literal["frame", "crops", "features"]


@dataclass(frozen=True)
class ModuleRoute:
    module: str
    input_shape: tuple[int, ...]  # [C, H, W] the workers expect
    tuples: tuple[TupleSpec, ...]
    workers: tuple[tuple[str, ...], ...]  # per tuple, the address of each of its workers
    names: tuple[str, ...]  # per tuple, the module's name on its workers
    latency_ms: tuple[float, ...] = ()
    """Per tuple, its planned latency ℓ (docs/model.md; 0: unknown). The frontend derives from it how long a
    worker may take before it counts as stalled. Empty: unknown for every tuple."""

    def __post_init__(self) -> None:
        if len(self.tuples) != len(self.workers) or len(self.names) != len(self.tuples) or any(
                len(addrs) != t.workers for t, addrs in zip(self.tuples, self.workers, strict=True)):
            raise ValueError(f"module {self.module!r}: every tuple needs a worker module name and one address "
                             f"per worker")
        if not self.latency_ms:
            object.__setattr__(self, "latency_ms", (0.0,) * len(self.tuples))
        else:
            object.__setattr__(self, "latency_ms", tuple(float(x) for x in self.latency_ms))
        if len(self.latency_ms) != len(self.tuples) or not all(0.0 <= x < math.inf for x in self.latency_ms):
            raise ValueError(f"module {self.module!r}: every tuple needs a finite planned latency >= 0 "
                             f"(0: unknown), got {list(self.latency_ms)}")


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One tensor of a sink's reply, as ModelMetadata and ModelConfig describe it."""

    name: str
    datatype: str  # Triton's: FP32, INT64, INT32, BYTES
    dims: tuple[int, ...]  # the first is the module's requests for the frame (-1); -1: varies


@dataclass(frozen=True, slots=True)
class AppModule:
    """A module as the frontend runs it; the registry's facts (task, labels, output sizes) resolved."""

    name: str
    after: tuple[str, ...] = ()  # its parents
    input: Input = "frame"
    scale: float = 1.0
    task: str | None = None  # "classify", "detect"; None: unknown
    objects: str | None = None
    """The detector whose objects its requests are (None: frame-level requests)."""
    labels: tuple[str, ...] = ()
    """A detector's label names (index = label; empty: unknown)."""
    outputs: tuple[OutputSpec, ...] = ()
    """A sink's reply tensors (empty: not a sink)."""


@dataclass(frozen=True, slots=True)
class StreamRoute:
    """One batch collection of an app, owned by one frontend (planner/streams.py)."""

    name: str  # the app's name in the module routes: its own, or `app#i`
    frontend: str  # the owner's id
    address: str  # the owner's Triton port, where other frontends forward its frames ("": none)
    rate: float  # frames per second planned for it


@dataclass(frozen=True)
class AppRoute:
    """An app as the frontend serves it: its admission figures, its DAG and its reply, built once per
    routing table so that no frame re-derives them."""

    name: str
    rate: float  # frames per second
    slo_ms: float
    modules: tuple[AppModule, ...]  # every parent before its children
    streams: tuple[StreamRoute, ...] = ()
    """Its streams when several frontends share the apps (empty: served under its own name by whichever
    frontend gets the frame)."""
    sinks: tuple[str, ...] = field(init=False)
    """The modules no other takes from: the reply holds theirs, in this order."""
    chain: bool = field(init=False)
    """One path from source to sink: the frame's hops run one after another."""
    _by_name: dict[str, AppModule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"app route {self.name!r}"
        if not (math.isfinite(self.rate) and self.rate > 0 and math.isfinite(self.slo_ms) and self.slo_ms > 0):
            raise ValueError(f"{where}: rate and slo_ms must be finite and > 0, got {self.rate}, {self.slo_ms}")
        if not self.modules:
            raise ValueError(f"{where}: no modules")
        seen: set[str] = set()
        for m in self.modules:  # a DAG in order: every parent before its child (no cycle, no unknown parent)
            if m.input not in ("frame", "crops", "features") or not math.isfinite(m.scale) or m.scale < 0:
                raise ValueError(f"{where}: module {m.name!r}: input {m.input!r}, scale {m.scale}")
            if m.name in seen or any(p not in seen for p in m.after):
                raise ValueError(f"{where}: module {m.name!r} repeats, or comes before its parents {list(m.after)}")
            seen.add(m.name)
        names = [st.name for st in self.streams]
        if len(set(names)) != len(names) or not all(math.isfinite(st.rate) and st.rate > 0 for st in self.streams):
            raise ValueError(f"{where}: streams must have distinct names and finite rates > 0, got "
                             f"{[(st.name, st.rate) for st in self.streams]}")
        if sum(not m.after for m in self.modules) != 1:
            raise ValueError(f"{where}: one source module, got {[m.name for m in self.modules if not m.after]}")
        parents = {p for m in self.modules for p in m.after}
        object.__setattr__(self, "sinks", tuple(m.name for m in self.modules if m.name not in parents))
        object.__setattr__(self, "chain", all(len(m.after) <= 1 for m in self.modules)
                           and len(parents) == len(self.modules) - 1)
        object.__setattr__(self, "_by_name", {m.name: m for m in self.modules})

    def module(self, name: str) -> AppModule:
        return self._by_name[name]

    @property
    def stream_names(self) -> tuple[str, ...]:
        """The names its module routes are under: its streams', or its own."""
        return tuple(st.name for st in self.streams) or (self.name,)

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        """Every tensor of the reply, sink by sink."""
        return tuple(o for s in self.sinks for o in self._by_name[s].outputs)


@dataclass(frozen=True)
class RoutingTable:
    version: int
    dispatch: Dispatch
    apps: dict[str, AppRoute]
    routes: dict[tuple[str, str], ModuleRoute]  # (app, module)

    @staticmethod
    def empty() -> RoutingTable:
        """The table before the first plan: nothing routed."""
        return RoutingTable(0, "batch-aware", {}, {})


def to_proto(table: RoutingTable, refused: dict[str, str]) -> cpb.Routes:
    """The table as the controller streams it to frontends."""
    modules = [
        cpb.ModuleRoute(app=app, module=r.module, input_shape=list(r.input_shape),
                       tuples=[cpb.TupleRoute(batch=t.batch, rate=t.rate, dummy_rate=t.dummy_rate, wait_ms=t.wait_ms,
                                             addresses=list(addrs), worker_module=name, latency_ms=latency)
                               for t, addrs, name, latency in zip(r.tuples, r.workers, r.names, r.latency_ms,
                                                                  strict=True)])
        for (app, _), r in sorted(table.routes.items())
    ]
    return cpb.Routes(version=table.version, dispatch=table.dispatch, modules=modules, refused=refused,
                     apps=[_app_to_proto(a) for a in table.apps.values()])


def from_proto(routes: cpb.Routes) -> tuple[RoutingTable, dict[str, str]]:
    """The table a controller streamed; ValueError if it is not one (the frontend keeps its table)."""
    apps = {a.name: _app_from_proto(a) for a in routes.apps}
    if missing := sorted({m.app for m in routes.modules} - {s for a in apps.values() for s in a.stream_names}):
        raise ValueError(f"routes for apps {missing} without their app routes: a controller of another release?")
    table: dict[tuple[str, str], ModuleRoute] = {}
    for m in routes.modules:
        tuples = tuple(TupleSpec(t.batch, len(t.addresses), t.rate, t.dummy_rate,
                                 t.wait_ms if t.HasField("wait_ms") else None) for t in m.tuples)
        table[(m.app, m.module)] = ModuleRoute(m.module, tuple(m.input_shape), tuples,
                                               tuple(tuple(t.addresses) for t in m.tuples),
                                               tuple(t.worker_module for t in m.tuples),
                                               tuple(t.latency_ms if math.isfinite(t.latency_ms) and t.latency_ms > 0
                                                     else 0.0 for t in m.tuples))
    dispatch = routes.dispatch if routes.dispatch in ("batch-aware", "request-level") else "batch-aware"
    return RoutingTable(routes.version, dispatch, apps, table), dict(routes.refused)  # type: ignore[arg-type]


def _app_to_proto(a: AppRoute) -> cpb.AppRoute:
    return cpb.AppRoute(name=a.name, rate=a.rate, slo_ms=a.slo_ms, streams=[
        cpb.StreamRoute(name=s.name, frontend_id=s.frontend, address=s.address, rate=s.rate) for s in a.streams],
        modules=[
        cpb.AppModule(name=m.name, after=list(m.after), input=m.input, scale=m.scale, task=m.task or "",
                     objects=m.objects or "", labels=list(m.labels),
                     outputs=[cpb.OutputSpec(name=o.name, datatype=o.datatype, dims=list(o.dims)) for o in m.outputs])
        for m in a.modules])


def _app_from_proto(a: cpb.AppRoute) -> AppRoute:
    return AppRoute(a.name, a.rate, a.slo_ms, tuple(
        AppModule(m.name, tuple(m.after), m.input, m.scale, m.task or None, m.objects or None,  # type: ignore[arg-type]
                  tuple(m.labels), tuple(OutputSpec(o.name, o.datatype, tuple(o.dims)) for o in m.outputs))
        for m in a.modules), tuple(StreamRoute(s.name, s.frontend_id, s.address, s.rate) for s in a.streams))
