"""The frontend's routing table: for every module of every app, its tuples, their workers and the
module's final name on them. The controller computes it from the plan and the live inventory and
pushes it (in process, or streamed with this codec); it is plain data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.model.latency import Dispatch
from harpagon.v1 import worker_pb2 as pb


@dataclass(frozen=True)
class ModuleRoute:
    module: str
    input_shape: tuple[int, ...]  # [C, H, W] the workers expect
    tuples: tuple[TupleSpec, ...]
    workers: tuple[tuple[str, ...], ...]  # per tuple, the address of each of its workers
    names: tuple[str, ...]  # per tuple, the module's name on its workers
    latency_ms: tuple[float, ...] = ()
    """Per tuple, its planned latency ℓ (MODEL.md; 0: unknown). The frontend derives from it how long a
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


@dataclass(frozen=True)
class RoutingTable:
    version: int
    dispatch: Dispatch
    apps: dict[str, App]
    routes: dict[tuple[str, str], ModuleRoute]  # (app, module)

    @staticmethod
    def empty() -> RoutingTable:
        """The table before the first plan: nothing routed."""
        return RoutingTable(0, "batch-aware", {}, {})


def to_proto(table: RoutingTable, refused: dict[str, str]) -> pb.Routes:
    """The table as the controller streams it to frontends."""
    apps = json.dumps([a.model_dump() for a in table.apps.values()])
    modules = [
        pb.ModuleRoute(app=app, module=r.module, input_shape=list(r.input_shape),
                       tuples=[pb.TupleRoute(batch=t.batch, rate=t.rate, dummy_rate=t.dummy_rate, wait_ms=t.wait_ms,
                                             addresses=list(addrs), worker_module=name, latency_ms=latency)
                               for t, addrs, name, latency in zip(r.tuples, r.workers, r.names, r.latency_ms,
                                                                  strict=True)])
        for (app, _), r in sorted(table.routes.items())
    ]
    return pb.Routes(version=table.version, dispatch=table.dispatch, apps_json=apps, modules=modules,
                     refused=refused)


def from_proto(routes: pb.Routes) -> tuple[RoutingTable, dict[str, str]]:
    apps = {a["name"]: App.model_validate(a) for a in json.loads(routes.apps_json or "[]")}
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
