"""ModuleSpec: what a worker is told to run, and its codec (harpagon.v1.ModuleConfig) both ways."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harpagon.runtime.wire.errors import FailedPrecondition, InvalidArgument
from harpagon.v1 import worker_pb2 as pb


def worker_module_name(prefix: str, batch: int) -> str:
    """A module's name on its workers: its app/module and its batch size, so that a re-plan that only
    changes the batch loads the new one beside the old one instead of replacing it under requests
    still routed by the old table."""
    return f"{prefix}@b{batch}"


@dataclass(frozen=True)
class ModuleSpec:
    """A validated module configuration."""

    name: str
    model: str
    batch: int
    input_shape: tuple[int, ...]
    weights: str | None = None
    half: bool = False
    budget_ms: float = field(default=0.0, compare=False)
    """The module's latency budget, for reporting only: two specs that differ only in it are the same
    module (a re-plan that moves a budget reloads nothing)."""

    def to_proto(self) -> pb.ModuleConfig:
        return pb.ModuleConfig(name=self.name, model=self.model, batch=self.batch, input_shape=list(self.input_shape),
                               weights=self.weights or "", half=self.half, budget_ms=self.budget_ms)

    @staticmethod
    def from_proto(m: pb.ModuleConfig, default_shape: Callable[[str], tuple[int, ...]] | None = None) -> ModuleSpec:
        """Decode and validate; `default_shape(model)` fills an empty input shape (a worker's registry)
        and raises KeyError for a model it does not know."""
        if not m.name:
            raise InvalidArgument("a module has no name")
        where = f"module {m.name!r}"
        if m.batch < 1:
            raise InvalidArgument(f"{where}: batch must be >= 1, got {m.batch}")
        shape = tuple(m.input_shape)
        if not shape and default_shape is not None:
            try:
                shape = tuple(default_shape(m.model))
            except KeyError as exc:
                raise FailedPrecondition(f"{where}: {exc.args[0]}") from None
        if len(shape) != 3 or any(d < 1 for d in shape):
            raise InvalidArgument(f"{where}: input_shape must be [channels, height, width] > 0, got {list(shape)}")
        return ModuleSpec(m.name, m.model, int(m.batch), shape, m.weights or None, bool(m.half), float(m.budget_ms))


def config_to_proto(version: int, specs: tuple[ModuleSpec, ...] | list[ModuleSpec]) -> pb.WorkerConfig:
    return pb.WorkerConfig(version=version, modules=[s.to_proto() for s in specs])
