"""The worker's data plane: the modules in force, one device queue, and their statistics.

Batches run one at a time on a single device thread (a GPU runs one kernel stream at a time; this
keeps CPU workers honest too). A new configuration is loaded and warmed up before it replaces the
old one, and batches already running or queued keep the modules they started with, so nothing in
flight is dropped. A configuration that cannot be loaded is rejected with the reason and the
previous one stays in force.

A batch may carry its deadline (the caller's, a `time.monotonic()` instant): one that leaves the
device queue past it is not run (its caller has given up on it) but answered DEADLINE_EXCEEDED and
counted `expired`, so a backlog behind a slow batch drains at once instead of running for nobody.

A batch is a tensor the caller resized or encoded frames (`wire/frames.py`) the runner decodes on
the device; a frame that cannot be read is an error of its item (`InferResult.errors`), the batch
runs for the others.

Configurations and batches are bounded (MAX_* below): a configuration past them is INVALID_ARGUMENT
before anything is loaded.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from harpagon.runtime.metrics import WorkerMetrics
from harpagon.runtime.records import BatchExpired, BatchFailed, BatchRun, Recorders
from harpagon.runtime.wire.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound
from harpagon.runtime.wire.frames import EncodedFrame, check_envelope
from harpagon.runtime.wire.modules import MAX_DECODE_MS, ModuleSpec
from harpagon.runtime.wire.tensors import Crops
from harpagon.runtime.worker.executor import BatchResult, Executor, Runner

log = logging.getLogger("harpagon.worker")

ACCEPTED_DTYPES = ("uint8", "float16", "float32")
#: Execution times kept per module between two heartbeats.
RECENT = 1_000
#: Bounds of a configuration: modules per worker (a worker runs one tuple; GPU sharing a few dozen),
#: batch size, names, input rank and elements (one item: a 3-channel 8192 x 8192 frame; one batch:
#: 2^28 elements, 256 MiB as uint8 like the largest message, 1 GiB as float32 for the warm-up).
MAX_MODULES = 64
MAX_BATCH = 1024
MAX_NAME = 256
MAX_RANK = 4
MAX_ITEM_ELEMENTS = 3 * 8192 * 8192
MAX_BATCH_ELEMENTS = 1 << 28
#: Crops edges of one detector (children that take its crops).
MAX_CROP_EDGES = 16


def check_spec(spec: ModuleSpec) -> None:
    """Raise InvalidArgument, naming the field and its value, for a module past the bounds."""
    if not spec.name or len(spec.name) > MAX_NAME:
        raise InvalidArgument(f"module name must be 1 to {MAX_NAME} characters, got {len(spec.name)}")
    where = f"module {spec.name!r}"
    if not spec.model or len(spec.model) > MAX_NAME:
        raise InvalidArgument(f"{where}: model must be 1 to {MAX_NAME} characters, got {len(spec.model)}")
    if spec.weights is not None and len(spec.weights) > 4096:
        raise InvalidArgument(f"{where}: weights path must be at most 4096 characters, got {len(spec.weights)}")
    if not 1 <= spec.batch <= MAX_BATCH:
        raise InvalidArgument(f"{where}: batch must be in [1, {MAX_BATCH}], got {spec.batch}")
    shape = spec.input_shape
    if not 1 <= len(shape) <= MAX_RANK or any(d < 1 for d in shape):
        raise InvalidArgument(f"{where}: input_shape must have 1 to {MAX_RANK} dimensions >= 1, got {list(shape)}")
    items = math.prod(shape)
    if items > MAX_ITEM_ELEMENTS:
        raise InvalidArgument(f"{where}: input_shape {list(shape)} holds {items} elements per item, more than "
                              f"{MAX_ITEM_ELEMENTS}")
    if items * spec.batch > MAX_BATCH_ELEMENTS:
        raise InvalidArgument(f"{where}: batch {spec.batch} of input_shape {list(shape)} holds "
                              f"{items * spec.batch} elements, more than {MAX_BATCH_ELEMENTS}")
    if not 0.0 <= spec.decode_ms <= MAX_DECODE_MS:
        raise InvalidArgument(f"{where}: decode_ms must be in [0, {MAX_DECODE_MS}], got {spec.decode_ms}")
    if len(spec.crops) > MAX_CROP_EDGES:
        raise InvalidArgument(f"{where}: crops has {len(spec.crops)} edges, more than {MAX_CROP_EDGES}")
    for edge in spec.crops:
        if not edge.child or len(edge.child) > MAX_NAME:
            raise InvalidArgument(f"{where}: crops child must be 1 to {MAX_NAME} characters, got "
                                  f"{len(edge.child)}")
        if len(edge.shape) != 3 or any(d < 1 for d in edge.shape) or math.prod(edge.shape) > MAX_ITEM_ELEMENTS:
            raise InvalidArgument(f"{where}: crops for {edge.child!r}: shape must be [channels, height, "
                                  f"width] >= 1 of at most {MAX_ITEM_ELEMENTS} elements, got {list(edge.shape)}")


def check_tensor(spec: ModuleSpec, x: np.ndarray) -> None:
    """Raise InvalidArgument for a tensor batch the module cannot take."""
    if x.dtype.name not in ACCEPTED_DTYPES:
        raise InvalidArgument(f"module {spec.name!r} takes {', '.join(ACCEPTED_DTYPES)} inputs, got {x.dtype.name}")
    if x.ndim != 1 + len(spec.input_shape) or tuple(x.shape[1:]) != spec.input_shape:
        raise InvalidArgument(f"module {spec.name!r} takes [n, {', '.join(map(str, spec.input_shape))}] inputs, "
                              f"got {list(x.shape)}")


def check_frames(spec: ModuleSpec, frames: Sequence[EncodedFrame]) -> None:
    """Raise InvalidArgument, naming the item, for a batch of frames malformed as a whole (a frame's
    content, its header and pixels, is checked on the device: a bad one fails only its item)."""
    shape = spec.input_shape
    if len(shape) != 3 or shape[0] != 3:
        raise InvalidArgument(f"module {spec.name!r} takes [n, {', '.join(map(str, shape))}] inputs, not frames "
                              f"(frames decode to [3, h, w])")
    for i, f in enumerate(frames):
        if not isinstance(f, EncodedFrame):
            raise InvalidArgument(f"module {spec.name!r}: item {i} is a {type(f).__name__}, not an EncodedFrame")
        try:
            check_envelope(f)
        except InvalidArgument as exc:
            raise InvalidArgument(f"module {spec.name!r}: item {i}: {exc}") from None


@dataclass
class ModuleCounters:
    batches: int = 0
    requests: int = 0
    dummies: int = 0
    exec_ms_total: float = 0.0
    queue_ms_total: float = 0.0
    errors: int = 0
    expired: int = 0  # batches not run: they left the device queue past their deadline


class WorkerTally:
    """The plane's own recorder: per module, the counters its heartbeats report and the latest
    execution times calibration reads (RECENT of each between two heartbeats). Thread-safe: batches
    are recorded on gRPC threads while the controller link reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, ModuleCounters] = {}
        self._recent: dict[str, deque[float]] = {}
        self._recent_decode: dict[str, deque[float]] = {}  # per batch of frames: its decode time per frame

    def serve(self, modules: list[str]) -> None:
        """Modules now in force start counting (from zero the first time, where they left off after)."""
        with self._lock:
            for name in modules:
                self._counters.setdefault(name, ModuleCounters())

    def record(self, r: object) -> None:
        with self._lock:
            match r:
                case BatchRun(module, items, dummies, queue_ms, exec_ms, decode_ms):
                    c = self._counters[module]
                    c.batches += 1
                    c.requests += items
                    c.dummies += dummies
                    c.exec_ms_total += exec_ms
                    c.queue_ms_total += queue_ms
                    self._recent.setdefault(module, deque(maxlen=RECENT)).append(exec_ms)
                    if decode_ms > 0 and items:
                        self._recent_decode.setdefault(module, deque(maxlen=RECENT)).append(decode_ms / items)
                case BatchExpired(module):
                    self._counters[module].expired += 1
                case BatchFailed(module):
                    self._counters[module].errors += 1

    def counters(self) -> dict[str, ModuleCounters]:
        with self._lock:
            return {k: ModuleCounters(**vars(v)) for k, v in self._counters.items()}

    def take_recent(self) -> dict[str, list[float]]:
        return self._take(self._recent)

    def take_recent_decode(self) -> dict[str, list[float]]:
        return self._take(self._recent_decode)

    def _take(self, held: dict[str, deque[float]]) -> dict[str, list[float]]:
        """`held`'s samples per module, and `held` emptied (one step under the lock: none lost or twice)."""
        with self._lock:
            out = {k: list(v) for k, v in held.items()}
            held.clear()
        return out


@dataclass(frozen=True)
class InferResult:
    outputs: list[np.ndarray]
    queue_ms: float
    exec_ms: float
    batch: int
    dummies: int
    crops: dict[str, Crops] = field(default_factory=dict)
    """A detector's crops per child module."""
    errors: dict[int, str] = field(default_factory=dict)
    """Items whose frame could not be read: their outputs are meaningless (batches of frames only)."""


@dataclass
class WorkerDataPlane:
    executor: Executor
    metrics: WorkerMetrics | None = None
    """Prometheus, served on the worker's metrics port: a recorder of the plane's records."""
    _runners: dict[str, Runner] = field(default_factory=dict)
    _version: int = 0
    _specs: tuple[ModuleSpec, ...] = ()

    def __post_init__(self) -> None:
        self._device = ThreadPoolExecutor(1, thread_name_prefix="device")
        self._apply_lock = threading.Lock()
        self._tally = WorkerTally()
        self.record = Recorders((self._tally, self.metrics)).record

    # --- configuration ----------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    @property
    def specs(self) -> tuple[ModuleSpec, ...]:
        """The modules in force (a restarted controller adopts them from the worker's registration)."""
        return self._specs

    def apply(self, version: int, specs: list[ModuleSpec]) -> bool:
        """Put a configuration in force; False if this version already is. Raises on a stale or
        conflicting version and on modules that cannot be loaded (the old configuration stays)."""
        if len(specs) > MAX_MODULES:
            raise InvalidArgument(f"configuration {version} has {len(specs)} modules, more than {MAX_MODULES}")
        for spec in specs:
            check_spec(spec)
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
                if same is not None and same.spec == spec:  # (budgets aside: they are for reporting)
                    same.spec = spec
                    runners[spec.name] = same
                else:  # load and warm up on the device thread, between batches in flight
                    log.info("loading module %s (%s, batch %d) on %s", spec.name, spec.model, spec.batch,
                             self.executor.device)
                    runners[spec.name] = self._device.submit(self.executor.load, spec).result()
            self._tally.serve(list(runners))
            if self.metrics is not None:
                self.metrics.serving(runners)
            self._runners, self._specs, self._version = runners, tuple(specs), version
            dropped = sorted(set(old) - set(runners))
            log.info("configuration %d in force: %s%s", version, sorted(runners),
                     f"; unloaded {dropped}" if dropped else "")
            return True

    # --- inference --------------------------------------------------------------------------

    def infer(self, module: str, x: np.ndarray | Sequence[EncodedFrame], deadline: float | None = None) -> InferResult:
        """Run one batch: a tensor [n, *input_shape], or n encoded frames for a module of [3, h, w]
        inputs (decoded on the device; a frame that cannot be read is an error of its item, in
        `errors`). `deadline` is a `time.monotonic()` instant: a batch that leaves the device
        queue past it is not run and raises DeadlineExceeded (counted `expired`)."""
        if len(module) > MAX_NAME:
            raise InvalidArgument(f"module name must be at most {MAX_NAME} characters, got {len(module)}")
        runner = self._runners.get(module)
        if runner is None:
            raise NotFound(f"module {module!r} is not served here (serving: {sorted(self._runners) or 'none'})")
        spec = runner.spec
        if isinstance(x, np.ndarray):
            check_tensor(spec, x)
        else:
            check_frames(spec, x)
        n = len(x)
        if not 1 <= n <= spec.batch:
            raise InvalidArgument(f"module {module!r} runs batches of {spec.batch}; got {n} items")
        submitted = time.perf_counter()
        started: list[float] = []

        def run() -> BatchResult | None:
            if deadline is not None and time.monotonic() > deadline:
                return None  # its caller has given up on it: the device goes on with the next batch
            started.append(time.perf_counter())
            return runner(x)

        try:
            result = self._device.submit(run).result()
        except Exception:
            self.record(BatchFailed(module))
            raise
        if result is None:
            self.record(BatchExpired(module))
            waited_ms = (time.perf_counter() - submitted) * 1000
            raise DeadlineExceeded(f"module {module!r}: the batch reached the device past its deadline "
                                   f"(queued {waited_ms:.1f} ms); not run")
        done = time.perf_counter()
        queue_ms = (started[0] - submitted) * 1000
        exec_ms = (done - started[0]) * 1000
        # the model's run apart from its frames' decode: calibration compares it with the model's profile
        self.record(BatchRun(module, n, spec.batch - n, queue_ms, max(0.0, exec_ms - result.decode_ms), result.decode_ms))
        return InferResult(result.outputs, queue_ms, exec_ms, spec.batch, spec.batch - n, result.crops,
                           result.errors)

    # --- introspection ----------------------------------------------------------------------

    def take_recent(self) -> dict[str, list[float]]:
        """Execution times (ms) per module since the last call (the latest RECENT of each)."""
        return self._tally.take_recent()

    def take_recent_decode(self) -> dict[str, list[float]]:
        """Per module, each batch of frames' decode time per frame (ms) since the last call (the latest
        RECENT of each)."""
        return self._tally.take_recent_decode()

    def counters(self) -> dict[str, ModuleCounters]:
        return self._tally.counters()

    def close(self) -> None:
        self._device.shutdown(wait=True)
