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
    exec_ms: float  # the model's run: the batch's time on the device less its frames' decode
    decode_ms: float = 0.0  # decoding and resizing its frames (planned apart: docs/model.md)


@dataclass(frozen=True, slots=True)
class BatchExpired:
    """A batch left the device queue past its deadline and was not run."""
    module: str


@dataclass(frozen=True, slots=True)
class BatchFailed:
    """A batch raised on the device."""
    module: str



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



# --- frontend: per module of an app ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hop:
    """A frame reached a module whose parents are done: `requests` requests for it (0: none, its
    fan-out), made ready `prepare_ms` after the hop became runnable."""
    app: str
    module: str
    requests: int
    prepare_ms: float


@dataclass(frozen=True, slots=True)
class RequestDone:
    """A request's result came back, `latency_ms` after it was submitted to its module's dispatcher."""
    app: str
    module: str
    latency_ms: float


@dataclass(frozen=True, slots=True)
class RequestsFailed:
    """`count` requests of one batch were answered with an error (after any retry)."""
    app: str
    module: str
    count: int


@dataclass(frozen=True, slots=True)
class BatchShipped:
    """A batch left its tuple's collector: `items` requests padded with `dummies`, `collect_ms` after
    its first request."""
    app: str
    module: str
    items: int
    dummies: int
    collect_ms: float


@dataclass(frozen=True, slots=True)
class BatchAnswered:
    """A worker answered a batch: the round trip less its queue and execution (`transport_ms`), how late
    its flush timer fired, and the worker's own queue and execution times."""
    app: str
    module: str
    transport_ms: float
    timer_late_ms: float
    worker_queue_ms: float
    exec_ms: float


@dataclass(frozen=True, slots=True)
class BatchRetried:
    """A batch went again to another worker of its tuple (its worker failed, stalled or answered INTERNAL)."""
    app: str
    module: str


@dataclass(frozen=True, slots=True)
class SuspectSkipped:
    """The dispatcher's worker for a batch was suspect: the batch went to another of its tuple."""
    app: str
    module: str


@dataclass(frozen=True, slots=True)
class WorkerInternal:
    """`worker` answered a batch INTERNAL; `suspect`: it has now done so to frames others answered well
    often enough to be avoided for a while."""
    app: str
    module: str
    worker: str
    suspect: bool = False


# --- frontend: per frame of an app ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FrameTaken:
    """A frame was admitted and starts through its app's DAG."""
    app: str


@dataclass(frozen=True, slots=True)
class FrameForwarded:
    """A frame was sent on to the frontend owning its app's stream, which counts and serves it
    (`served_here`: that frontend could not be reached, and the frame was served here instead)."""
    app: str
    served_here: bool = False


@dataclass(frozen=True, slots=True)
class FrameRefused:
    """A frame was refused at once: `overloaded` (its app's frames in flight at their bound,
    RESOURCE_EXHAUSTED) or not (the app is configured but not routed, UNAVAILABLE)."""
    app: str
    overloaded: bool


@dataclass(frozen=True, slots=True)
class FrameAnswered:
    """A frame's results went back within its deadline, `seconds` after it was taken."""
    app: str
    seconds: float


@dataclass(frozen=True, slots=True)
class FrameDropped:
    """A frame was answered DEADLINE_EXCEEDED: late at a hop, or its results came back too late."""
    app: str


@dataclass(frozen=True, slots=True)
class FrameFailed:
    """A frame was answered with another error, named by `reason` (the status's class)."""
    app: str
    reason: str
