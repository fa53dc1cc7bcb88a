"""ModuleSpec: what a worker is told to run, and its codec (harpagon.v1.ModuleConfig) both ways."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harpagon.runtime.wire.errors import FailedPrecondition, InvalidArgument
from harpagon.v1 import worker_pb2 as pb

#: Most planned milliseconds to decode one frame (an emulated device sleeps it per frame).
MAX_DECODE_MS = 10_000.0


def worker_module_name(prefix: str, batch: int) -> str:
    """A module's name on its workers: its app/module and its batch size, so that a re-plan that only
    changes the batch loads the new one beside the old one instead of replacing it under requests
    still routed by the old table."""
    return f"{prefix}@b{batch}"


@dataclass(frozen=True)
class CropEdge:
    """A detector's `crops` edge (harpagon.v1.CropEdge): which detections become the child's requests."""

    child: str
    shape: tuple[int, ...]
    labels: tuple[int, ...] = ()
    min_score: float = 0.5
    max_crops: int = 0
    """0: every kept detection."""
    scale: float = 1.0
    """Emulated detectors: the mean count of detections per item."""
    poisson: bool = False
    """Emulated detectors: Poisson(scale) counts instead of the deterministic rule."""

    def keeps(self, label: int, score: float) -> bool:
        return score >= self.min_score and (not self.labels or label in self.labels)

    def to_proto(self) -> pb.CropEdge:
        return pb.CropEdge(child=self.child, labels=list(self.labels), min_score=self.min_score,
                           max_crops=self.max_crops, shape=list(self.shape), scale=self.scale, poisson=self.poisson)

    @staticmethod
    def from_proto(e: pb.CropEdge, where: str) -> CropEdge:
        if not e.child:
            raise InvalidArgument(f"{where}: a crops edge has no child")
        shape = tuple(e.shape)
        if len(shape) != 3 or any(d < 1 for d in shape):
            raise InvalidArgument(f"{where}: crops for {e.child!r}: shape must be [channels, height, width] > 0, "
                                  f"got {list(shape)}")
        if not (0.0 <= e.min_score <= 1.0) or not (0.0 <= e.scale <= 1000.0):
            raise InvalidArgument(f"{where}: crops for {e.child!r}: min_score must be in [0, 1] and scale in "
                                  f"[0, 1000], got {e.min_score} and {e.scale}")
        return CropEdge(e.child, shape, tuple(int(x) for x in e.labels), float(e.min_score), int(e.max_crops),
                        float(e.scale), bool(e.poisson))


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
    crops: tuple[CropEdge, ...] = ()
    """A detector's crops edges (empty for every other module)."""
    decode_ms: float = 0.0
    """The planned time to decode and resize one frame of this module, charged by an emulated device
    per frame of a batch sent as frames (real devices spend what they spend)."""

    def to_proto(self) -> pb.ModuleConfig:
        return pb.ModuleConfig(name=self.name, model=self.model, batch=self.batch, input_shape=list(self.input_shape),
                               weights=self.weights or "", half=self.half, budget_ms=self.budget_ms,
                               crops=[e.to_proto() for e in self.crops], decode_ms=self.decode_ms)

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
        if not 1 <= len(shape) <= 3 or any(d < 1 for d in shape):
            raise InvalidArgument(f"{where}: input_shape must be [channels, height, width] (an image) or [n] (a "
                                  f"feature vector), each > 0, got {list(shape)}")
        crops = tuple(CropEdge.from_proto(e, where) for e in m.crops)
        if len({e.child for e in crops}) != len(crops):
            raise InvalidArgument(f"{where}: crops edges name a child twice: {[e.child for e in crops]}")
        if not 0.0 <= m.decode_ms <= MAX_DECODE_MS:  # NaN fails too
            raise InvalidArgument(f"{where}: decode_ms must be in [0, {MAX_DECODE_MS}], got {m.decode_ms}")
        return ModuleSpec(m.name, m.model, int(m.batch), shape, m.weights or None, bool(m.half), float(m.budget_ms),
                          crops, float(m.decode_ms))


def config_to_proto(version: int, specs: tuple[ModuleSpec, ...] | list[ModuleSpec]) -> pb.WorkerConfig:
    return pb.WorkerConfig(version=version, modules=[s.to_proto() for s in specs])
