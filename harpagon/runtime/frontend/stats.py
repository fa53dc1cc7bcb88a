"""What the frontend measures per module, kept across re-plans (a module's routes change; its
history does not). Samples are bounded windows of the latest figures, in milliseconds."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

#: Latest samples kept per series (metrics keep histograms of everything).
WINDOW = 100_000
#: Hop-overhead samples held for the next report to the controller.
REPORT_WINDOW = 2_000


def _window() -> deque[float]:
    return deque(maxlen=WINDOW)


@dataclass
class ModuleStats:
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
