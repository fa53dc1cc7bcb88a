"""What the frontend measures, per app and per module, kept across re-plans (a module's routes change;
its history does not). Samples are bounded windows of the latest figures, in milliseconds.

:class:`FrontendTally` is the data plane's own recorder (runtime/records.py): it turns the plane's
records into these counters, which ModelStatistics, the rate reports, the demo and the bench read.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from harpagon.runtime.records import (
    BatchAnswered,
    BatchRetried,
    BatchShipped,
    FrameAnswered,
    FrameDropped,
    FrameFailed,
    FrameForwarded,
    FrameRefused,
    FrameTaken,
    Hop,
    RequestDone,
    RequestsFailed,
    SuspectSkipped,
    WorkerInternal,
)

#: Latest samples kept per series (metrics keep histograms of everything).
WINDOW = 100_000
#: Hop-overhead samples held for the next report to the controller.
REPORT_WINDOW = 2_000

FanoutCounts = dict[tuple[str, str], tuple[int, int]]
"""Per (app, module): frames that reached it and the requests it got for them (its measured fan-out)."""


def _window() -> deque[float]:
    return deque(maxlen=WINDOW)


@dataclass
class DispatchCounters:
    frames: int = 0  # frames that reached the module: `requests / frames` is its measured fan-out
    requests: int = 0
    batches: int = 0
    dummies: int = 0
    failed: int = 0  # requests whose batch failed at a worker (after any retry)
    retries: int = 0  # batches sent again to another worker of their tuple (a worker failed or stalled)
    suspect_skips: int = 0  # batches sent to another worker because the dispatcher's choice was suspect
    internal_errors: int = 0  # batches a worker answered INTERNAL (the first retried on another worker)
    internal_suspects: int = 0  # times a worker was made suspect for INTERNAL answers others did not give
    latency_ms: deque[float] = field(default_factory=_window)  # per request: submitted -> result
    prepare_ms: deque[float] = field(default_factory=_window)  # per request: runnable -> submitted (resize, queue)
    collect_ms: deque[float] = field(default_factory=_window)  # per batch: first request in -> shipped
    transport_ms: deque[float] = field(default_factory=_window)  # per batch: RPC less worker queue and execution
    timer_late_ms: deque[float] = field(default_factory=_window)  # per batch: flush timer fired this late (0: full)
    worker_queue_ms: deque[float] = field(default_factory=_window)  # per batch, as the worker reported
    exec_ms: deque[float] = field(default_factory=_window)  # per batch, as the worker reported

    @staticmethod
    def percentile(samples: deque[float], q: float) -> float:
        return float(np.percentile(np.fromiter(samples, float), q)) if samples else float("nan")


@dataclass
class AppCounters:
    frames: int = 0
    success: int = 0
    failed: int = 0
    dropped: int = 0
    success_ns: int = 0
    refused: int = 0  # refused at once (RESOURCE_EXHAUSTED): not among `frames`
    unserved: int = 0  # refused at once because the app is not routed (UNAVAILABLE): not among `frames`
    forwarded: int = 0  # sent on to the frontend owning the app's stream, which counts them: not among `frames`
    owner_unreachable: int = 0  # not sent on (the owner could not be reached): served here, among `frames`

    @property
    def offered(self) -> int:
        """Frames clients sent, admitted or not: the rate the controller plans for. Counting only the
        admitted ones, a plan shrunk in a lull would measure no more than it admits and never grow."""
        return self.frames + self.refused + self.unserved


class FrontendTally:
    """Per app and per (app, module) counters from the data plane's records, plus what the next rate
    report takes: each module's fan-out and the hop overheads (for the controller's calibration)."""

    def __init__(self) -> None:
        self.apps: defaultdict[str, AppCounters] = defaultdict(AppCounters)
        self.modules: defaultdict[tuple[str, str], DispatchCounters] = defaultdict(DispatchCounters)
        self.hops: deque[float] = deque(maxlen=REPORT_WINDOW)
        self.fanout: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._on: dict[type, Callable] = {
            Hop: self._hop, RequestDone: self._request_done, RequestsFailed: self._requests_failed,
            BatchShipped: self._shipped, BatchAnswered: self._answered, BatchRetried: self._retried,
            SuspectSkipped: self._skipped, WorkerInternal: self._internal, FrameTaken: self._taken,
            FrameRefused: self._refused, FrameAnswered: self._frame_answered, FrameDropped: self._dropped,
            FrameFailed: self._failed, FrameForwarded: self._forwarded,
        }

    def record(self, r: object) -> None:
        on = self._on.get(type(r))
        if on is not None:
            on(r)

    def serve(self, modules: Iterable[tuple[str, str]]) -> None:
        """Modules now routed have figures (zeros until their first record), so every served module
        shows in `stats()` and the reports, traffic or not."""
        for key in modules:
            self.modules.setdefault(key, DispatchCounters())

    def take_fanout(self) -> FanoutCounts:
        out, self.fanout = self.fanout, defaultdict(lambda: [0, 0])
        return {k: (v[0], v[1]) for k, v in out.items()}

    def take_hops(self) -> list[float]:
        hops = list(self.hops)
        self.hops.clear()
        return hops

    # per module

    def _hop(self, r: Hop) -> None:
        key = (r.app, r.module)
        seen = self.fanout[key]
        seen[0] += 1
        seen[1] += r.requests
        c = self.modules[key]
        c.frames += 1
        c.requests += r.requests
        c.prepare_ms.extend([r.prepare_ms] * r.requests)

    def _request_done(self, r: RequestDone) -> None:
        self.modules[(r.app, r.module)].latency_ms.append(r.latency_ms)

    def _requests_failed(self, r: RequestsFailed) -> None:
        self.modules[(r.app, r.module)].failed += r.count

    def _shipped(self, r: BatchShipped) -> None:
        c = self.modules[(r.app, r.module)]
        c.batches += 1
        c.dummies += r.dummies
        c.collect_ms.append(r.collect_ms)

    def _answered(self, r: BatchAnswered) -> None:
        c = self.modules[(r.app, r.module)]
        c.transport_ms.append(r.transport_ms)
        c.timer_late_ms.append(r.timer_late_ms)
        c.worker_queue_ms.append(r.worker_queue_ms)
        c.exec_ms.append(r.exec_ms)
        self.hops.append(r.transport_ms + r.timer_late_ms)  # the hop's overhead (docs/model.md `overhead_ms`)

    def _retried(self, r: BatchRetried) -> None:
        self.modules[(r.app, r.module)].retries += 1

    def _skipped(self, r: SuspectSkipped) -> None:
        self.modules[(r.app, r.module)].suspect_skips += 1

    def _internal(self, r: WorkerInternal) -> None:
        c = self.modules[(r.app, r.module)]
        if r.suspect:
            c.internal_suspects += 1
        else:
            c.internal_errors += 1

    # per frame

    def _taken(self, r: FrameTaken) -> None:
        self.apps[r.app].frames += 1

    def _forwarded(self, r: FrameForwarded) -> None:
        c = self.apps[r.app]
        if r.served_here:
            c.owner_unreachable += 1
        else:
            c.forwarded += 1

    def _refused(self, r: FrameRefused) -> None:
        c = self.apps[r.app]
        if r.overloaded:
            c.refused += 1
        else:
            c.unserved += 1

    def _frame_answered(self, r: FrameAnswered) -> None:
        c = self.apps[r.app]
        c.success += 1
        c.success_ns += int(r.seconds * 1e9)

    def _dropped(self, r: FrameDropped) -> None:
        self.apps[r.app].dropped += 1

    def _failed(self, r: FrameFailed) -> None:
        self.apps[r.app].failed += 1
