"""One open batch at a time: fill in arrival order, ship whole when full or when the oldest request
has waited the planned collection time; missing slots are dummies (docs/model.md, "Plans").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

#: Callers fire flush timers this much after their deadline, so a request arriving at the very
#: deadline (to floating-point precision) still joins the batch (docs/model.md: arrivals before timers at
#: equal times); the simulator and the live frontend both do.
TIMER_SLACK_MS = 1e-6


@dataclass
class Batch(Generic[T]):
    """A shipped batch: real items in arrival order, padded with dummies up to `size`."""

    items: list[T]
    size: int
    worker: int
    opened_ms: float
    shipped_ms: float
    reason: Literal["full", "timer", "flush"]

    @property
    def dummies(self) -> int:
        return self.size - len(self.items)


@dataclass
class BatchCollector(Generic[T]):
    """Collects one batch of `size` for a group of `workers` workers, shipped round-robin.

    `wait_ms` is the planned collection time `1000 (b - 1) / (r + δ)`; infinite means ship only when
    full (no timer). The collector never reads a clock: callers pass `now` in milliseconds."""

    size: int
    wait_ms: float
    workers: int = 1
    _items: list[T] = field(default_factory=list)
    _opened: float = 0.0
    _next_worker: int = 0
    _timed: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        if self.size < 1 or self.workers < 1 or not self.wait_ms >= 0:
            raise ValueError(f"bad collector: size={self.size} workers={self.workers} wait_ms={self.wait_ms}")
        self._timed = not math.isinf(self.wait_ms)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T, now: float) -> Batch[T] | None:
        """Add a request; return the batch if this filled it (or if its timer had already run out)."""
        if not self._items:
            self._opened = now
        self._items.append(item)
        if len(self._items) >= self.size:
            return self._ship(now, "full")
        return self.poll(now)

    def deadline(self) -> float | None:
        """When the open batch must ship (None when nothing is open or there is no timer)."""
        if not self._items or not self._timed:
            return None
        return self._opened + self.wait_ms

    def poll(self, now: float) -> Batch[T] | None:
        """Ship the open batch if its oldest request has waited `wait_ms`."""
        due = self.deadline()
        if due is not None and now >= due - 1e-9:
            return self._ship(now, "timer")
        return None

    def flush(self, now: float) -> Batch[T] | None:
        """Ship whatever is open now (on drain or reconfiguration)."""
        return self._ship(now, "flush") if self._items else None

    def _ship(self, now: float, reason: Literal["full", "timer", "flush"]) -> Batch[T]:
        batch = Batch(self._items, self.size, self._next_worker, self._opened, now, reason)
        self._items = []
        self._next_worker = (self._next_worker + 1) % self.workers
        return batch
