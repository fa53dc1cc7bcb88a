"""What the data planes record: one frozen record per event, handed to every recorder.

A data plane says what happened once (`record(BatchRun(...))`), and each recorder keeps what it needs:
the plane's own counters (which its heartbeats and reports read), Prometheus (runtime/metrics.py), a
test's list. So the serving code holds no metric objects and no `if metrics:` guards, and a new sink
(traces, a log) is a recorder, not an edit of the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

# --- worker ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BatchRun:
    """A worker ran a batch of `items` real requests padded with `dummies` to its module's batch size."""
    module: str
    items: int
    dummies: int
    queue_ms: float  # waiting for the device
    exec_ms: float


@dataclass(frozen=True, slots=True)
class BatchExpired:
    """A batch left the device queue past its deadline and was not run."""
    module: str


@dataclass(frozen=True, slots=True)
class BatchFailed:
    """A batch raised on the device."""
    module: str


WorkerRecord = BatchRun | BatchExpired | BatchFailed


class Recorder(Protocol):
    def record(self, r: object) -> None:
        """Take one record; a record of a kind it does not keep is ignored."""


class Recorders:
    """Several recorders as one, in order."""

    __slots__ = ("_all",)

    def __init__(self, recorders: Iterable[Recorder | None]):
        self._all = tuple(r for r in recorders if r is not None)

    def record(self, r: object) -> None:
        for recorder in self._all:
            recorder.record(r)

