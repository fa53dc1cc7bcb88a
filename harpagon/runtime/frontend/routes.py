"""The frontend's routing table: for every module of every app, its tuples and their workers.

The controller computes it from the plan and the live inventory and pushes it; it is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.model.latency import Dispatch


@dataclass(frozen=True)
class ModuleRoute:
    module: str
    worker_module: str  # the module's name on its workers, e.g. "traffic/detect"
    input_shape: tuple[int, ...]  # [C, H, W] the workers expect
    tuples: tuple[TupleSpec, ...]
    workers: tuple[tuple[str, ...], ...]  # per tuple, the address of each of its workers

    def __post_init__(self) -> None:
        if len(self.tuples) != len(self.workers) or any(
                len(addrs) != t.workers for t, addrs in zip(self.tuples, self.workers, strict=True)):
            raise ValueError(f"module {self.module!r}: every tuple needs one address per worker")


@dataclass(frozen=True)
class RoutingTable:
    version: int
    dispatch: Dispatch
    apps: dict[str, App]
    routes: dict[tuple[str, str], ModuleRoute]  # (app, module)
