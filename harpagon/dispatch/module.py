"""A module's dispatcher: split its stream among its tuples, then batch per tuple (or per worker).

- batch-aware (Harpagon): one open batch per tuple, filled at the tuple's full rate and shipped to
  the tuple's workers in turn;
- request-level (Nexus-style, for comparison): requests go round-robin to the tuple's workers, and
  each worker collects its own batch at `1/n` of the rate.

Both use the flush timer of docs/model.md, so every request meets its tuple's planned latency whenever
the worker is free when the batch ships.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from harpagon.dispatch.batcher import Batch, BatchCollector
from harpagon.dispatch.wrr import SmoothWRR
from harpagon.model.latency import Dispatch, collection_ms
from harpagon.model.plan import TuplePlan

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TupleSpec:
    """What dispatch needs of a planned tuple."""

    batch: int
    workers: int
    rate: float
    dummy_rate: float = 0.0
    wait_ms: float | None = None
    """Flush timer; by default the planned collection time of docs/model.md. A tuple on a shared GPU
    ships once per duty cycle."""

    @staticmethod
    def of(t: TuplePlan) -> TupleSpec:
        return TupleSpec(t.batch, t.workers, t.rate, t.dummy_rate, t.cycle_ms if t.gpu is not None else None)


@dataclass(frozen=True, slots=True)
class Shipped(Generic[T]):
    """A batch bound for worker `worker` of tuple `tuple_index`."""

    tuple_index: int
    worker: int
    batch: Batch[T]


class ModuleDispatcher(Generic[T]):
    def __init__(self, tuples: Sequence[TupleSpec], dispatch: Dispatch = "batch-aware"):
        if not tuples:
            raise ValueError("a module needs at least one tuple")
        self.tuples = list(tuples)
        self.dispatch = dispatch
        self._split = SmoothWRR([t.rate for t in tuples])
        self._collectors: list[list[BatchCollector[T]]] = []
        self._turn: list[int] = []
        for t in tuples:
            wait = t.wait_ms
            if wait is None:
                wait = collection_ms(dispatch, t.batch, t.workers, t.rate + t.dummy_rate)
            if dispatch == "batch-aware":
                self._collectors.append([BatchCollector(t.batch, wait, t.workers)])
            else:
                self._collectors.append([BatchCollector(t.batch, wait, 1) for _ in range(t.workers)])
            self._turn.append(0)
        self._single = len(self._collectors) == 1 and len(self._collectors[0]) == 1
        self._due: float | None = None
        """The earliest deadline of an open batch, kept as batches open (and recomputed after one ships),
        so that a request polls every collector only when one of them is due: the hot path of the live
        frontend and of the replay, with many tuples or request-level workers."""
        self._due_stale = False

    def add(self, item: T, now: float) -> list[Shipped[T]]:
        """Route one request; returns what ships now (its batch if full, and any batch now due)."""
        k = self._split.next() if len(self._collectors) > 1 else 0
        group = self._collectors[k]
        j = 0
        if len(group) > 1:
            j = self._turn[k]
            self._turn[k] = (j + 1) % len(group)
        # Add first: a request that arrives at its batch's very deadline still joins it.
        c = group[j]
        batch = c.add(item, now)
        if batch is not None:
            self._due_stale = True
            out = [self._shipped(k, j, batch)]
        else:
            out = []
            if len(c) == 1 and not self._due_stale and (d := c.deadline()) is not None \
                    and (self._due is None or d < self._due):
                self._due = d  # a batch opened
        if self._single:  # the collector's own add has polled its timer: there is no other
            return out
        return out + self.poll(now)

    def poll(self, now: float) -> list[Shipped[T]]:
        """Batches whose flush timer has run out."""
        due = self.deadline()
        if due is None or now < due - 1e-9:  # none is due (each collector's own test, on the earliest)
            return []
        return self._take(lambda c: c.poll(now))

    def deadline(self) -> float | None:
        """The earliest time a batch must ship, for the caller's timer."""
        if self._due_stale:
            due = [d for group in self._collectors for c in group if (d := c.deadline()) is not None]
            self._due = min(due) if due else None
            self._due_stale = False
        return self._due

    def flush(self, now: float) -> list[Shipped[T]]:
        """Ship every open batch now (drain)."""
        return self._take(lambda c: c.flush(now))

    def _take(self, take: Callable[[BatchCollector[T]], Batch[T] | None]) -> list[Shipped[T]]:
        out = []
        for k, group in enumerate(self._collectors):
            for j, c in enumerate(group):
                batch = take(c)
                if batch is not None:
                    out.append(self._shipped(k, j, batch))
        if out:
            self._due_stale = True
        return out

    def _shipped(self, k: int, j: int, batch: Batch[T]) -> Shipped[T]:
        worker = batch.worker if self.dispatch == "batch-aware" else j
        return Shipped(k, worker, batch)
