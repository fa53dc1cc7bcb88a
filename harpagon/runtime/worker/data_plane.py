"""The worker's data plane: the modules in force, one device queue, and their statistics.

Batches run one at a time on a single device thread (a GPU runs one kernel stream at a time; this
keeps CPU workers honest too). A new configuration is loaded and warmed up before it replaces the
old one, and batches already running or queued keep the modules they started with, so nothing in
flight is dropped. A configuration that cannot be loaded is rejected with the reason and the
previous one stays in force.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from harpagon.runtime.metrics import WorkerMetrics
from harpagon.runtime.wire.errors import FailedPrecondition, InvalidArgument, NotFound
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.worker.executor import Executor, Runner

log = logging.getLogger("harpagon.worker")

ACCEPTED_DTYPES = ("uint8", "float16", "float32")
#: Execution times kept per module between two heartbeats.
RECENT = 1_000


@dataclass
class ModuleCounters:
    batches: int = 0
    requests: int = 0
    dummies: int = 0
    exec_ms_total: float = 0.0
    queue_ms_total: float = 0.0
    errors: int = 0


@dataclass(frozen=True)
class InferResult:
    outputs: list[np.ndarray]
    queue_ms: float
    exec_ms: float
    batch: int
    dummies: int


@dataclass
class WorkerDataPlane:
    executor: Executor
    metrics: WorkerMetrics | None = None
    _runners: dict[str, Runner] = field(default_factory=dict)
    _version: int = 0
    _specs: tuple[ModuleSpec, ...] = ()
    _counters: dict[str, ModuleCounters] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._device = ThreadPoolExecutor(1, thread_name_prefix="device")
        self._apply_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}

    # --- configuration ----------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    def apply(self, version: int, specs: list[ModuleSpec]) -> bool:
        """Put a configuration in force; False if this version already is. Raises on a stale or
        conflicting version and on modules that cannot be loaded (the old configuration stays)."""
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"configuration {version} names a module twice: {names}")
        with self._apply_lock:
            if version == self._version and version:
                if tuple(specs) != self._specs:
                    raise FailedPrecondition(f"configuration {version} is in force with other modules")
                return False
            if version < self._version:
                raise FailedPrecondition(f"configuration {version} is older than the one in force, {self._version}")
            old = self._runners
            runners = {}
            for spec in specs:
                same = old.get(spec.name)
                if same is not None and same.spec == spec:
                    runners[spec.name] = same
                else:  # load and warm up on the device thread, between batches in flight
                    log.info("loading module %s (%s, batch %d) on %s", spec.name, spec.model, spec.batch,
                             self.executor.device)
                    runners[spec.name] = self._device.submit(self.executor.load, spec).result()
            with self._stats_lock:
                for name in runners:
                    self._counters.setdefault(name, ModuleCounters())
            self._runners, self._specs, self._version = runners, tuple(specs), version
            dropped = sorted(set(old) - set(runners))
            log.info("configuration %d in force: %s%s", version, sorted(runners),
                     f"; unloaded {dropped}" if dropped else "")
            return True

    # --- inference --------------------------------------------------------------------------

    def infer(self, module: str, x: np.ndarray) -> InferResult:
        runner = self._runners.get(module)
        if runner is None:
            raise NotFound(f"module {module!r} is not served here (serving: {sorted(self._runners) or 'none'})")
        spec = runner.spec
        if x.dtype.name not in ACCEPTED_DTYPES:
            raise InvalidArgument(f"module {module!r} takes {', '.join(ACCEPTED_DTYPES)} inputs, got {x.dtype.name}")
        if x.ndim != 1 + len(spec.input_shape) or tuple(x.shape[1:]) != spec.input_shape:
            raise InvalidArgument(f"module {module!r} takes [n, {', '.join(map(str, spec.input_shape))}] inputs, "
                                  f"got {list(x.shape)}")
        n = x.shape[0]
        if not 1 <= n <= spec.batch:
            raise InvalidArgument(f"module {module!r} runs batches of {spec.batch}; got {n} items")
        submitted = time.perf_counter()
        started: list[float] = []

        def run() -> list[np.ndarray]:
            started.append(time.perf_counter())
            return runner(x)

        try:
            outputs = self._device.submit(run).result()
        except Exception:
            with self._stats_lock:
                self._counters[module].errors += 1
            raise
        done = time.perf_counter()
        queue_ms = (started[0] - submitted) * 1000
        exec_ms = (done - started[0]) * 1000
        with self._stats_lock:
            c = self._counters[module]
            c.batches += 1
            c.requests += n
            c.dummies += spec.batch - n
            c.exec_ms_total += exec_ms
            self._recent.setdefault(module, deque(maxlen=RECENT)).append(exec_ms)
            c.queue_ms_total += queue_ms
        if self.metrics:
            m = self.metrics
            m.count.labels(module).inc(n)
            m.exec_count.labels(module).inc()
            m.dummies.labels(module).inc(spec.batch - n)
            m.compute_us.labels(module).inc(exec_ms * 1000)
            m.queue_us.labels(module).inc(queue_ms * 1000)
        return InferResult(outputs, queue_ms, exec_ms, spec.batch, spec.batch - n)

    # --- introspection ----------------------------------------------------------------------

    def take_recent(self) -> dict[str, list[float]]:
        """Execution times (ms) per module since the last call (the latest RECENT of each)."""
        with self._stats_lock:
            recent, self._recent = self._recent, {}
        return {k: list(v) for k, v in recent.items()}

    def counters(self) -> dict[str, ModuleCounters]:
        with self._stats_lock:
            return {k: ModuleCounters(**vars(v)) for k, v in self._counters.items()}

    def close(self) -> None:
        self._device.shutdown(wait=True)
