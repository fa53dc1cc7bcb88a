"""Shared fakes: `FakeWorkers`, a WorkerClient without a network.

It records every `apply` and every `infer` (and every reply) in one ordered event log, so tests can
check what happened before what, and answers `infer` deterministically from the input: per item of
the batch, the mean of its pixels (`expected_output`; a raw frame's, at its full size; 0 for a JPEG or
PNG frame), so a test can check that each request got ITS frame's result. Per address, it can be made slow, failing, malformed, or silent:

    fake = FakeWorkers()
    fake.latency["w1"] = 0.05                  # answers after 50 ms (asyncio.sleep)
    fake.failing["w2"] = Unavailable("down")   # raises it (a class or an instance; errors.py)
    fake.malformed.add("w3")                   # answers one item too many
    fake.silent.add("w4")                      # never answers: DeadlineExceeded once timeout_s elapses
    fake.latency["w6"] = 30.0                  # stalled (SIGSTOP): the same, at a stall limit's timeout_s
    fake.failing_apply["w5"] = Unavailable("no GPU")
    fake.frame_errors[b"..."] = "truncated"   # an encoded frame with these bytes is an error of its item

A call whose latency reaches its `timeout_s` raises DeadlineExceeded when the timeout elapses, as
the gRPC client does (a `timeout_s` of 0 or less raises at once; None never times out).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import selectors
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from harpagon.runtime.wire.clients import WorkerReply
from harpagon.runtime.wire.errors import DeadlineExceeded, FailedPrecondition
from harpagon.runtime.wire.frames import EncodedFrame
from harpagon.runtime.wire.modules import ModuleSpec


def expected_output(item: np.ndarray) -> float:
    """What FakeWorkers answers for one item of a batch: the mean of its pixels."""
    return float(np.asarray(item, dtype=np.float64).mean())


@dataclass(frozen=True)
class Apply:
    seq: int
    address: str
    version: int
    modules: tuple[str, ...]  # module names, in the order given
    specs: tuple[ModuleSpec, ...]
    t: float  # loop time (s)


@dataclass(frozen=True)
class Call:
    seq: int
    address: str
    module: str
    size: int  # items in the batch (real requests only: dummies are not sent)
    t: float  # loop time (s) the call was made
    timeout_s: float | None
    items: tuple[float, ...]  # expected_output of each item, in batch order
    batch: object = field(default=None, compare=False, repr=False)  # as sent: a tensor or a list of frames


@dataclass(frozen=True)
class Reply:
    """A call that answered (successfully or not): `call` is the Call's seq."""

    seq: int
    call: int
    address: str
    module: str
    t: float
    error: str | None = None  # the fault's class name, None when it answered with outputs


@dataclass(frozen=True)
class Mark:
    """Anything a test wants placed in the event log (e.g. a routes push)."""

    seq: int
    what: str
    data: object = None


@dataclass
class FakeWorkers:
    """An in-memory WorkerClient (see the module docstring)."""

    latency: dict[str, float] = field(default_factory=dict)
    """Seconds each address takes to answer an infer (default 0: the next loop iteration)."""
    failing: dict[str, BaseException | type[BaseException]] = field(default_factory=dict)
    """Addresses whose infer raises this (after their latency)."""
    malformed: set[str] = field(default_factory=set)
    """Addresses whose infer answers one item more than the batch holds."""
    silent: set[str] = field(default_factory=set)
    """Addresses whose infer never answers (DeadlineExceeded when its timeout elapses)."""
    failing_apply: dict[str, BaseException | type[BaseException]] = field(default_factory=dict)
    """Addresses whose apply raises this."""
    apply_latency: dict[str, float] = field(default_factory=dict)
    reported_queue_ms: dict[str, float] = field(default_factory=dict)
    """`queue_ms` each address reports in its replies (default 0)."""
    reported_exec_ms: dict[str, float] = field(default_factory=dict)
    """`exec_ms` each address reports (default: its latency, in ms)."""
    frame_errors: dict[bytes, str] = field(default_factory=dict)
    """Encoded frames (by their data) a worker cannot read: each answered as an error of its item
    (`WorkerReply.errors`) with this message, the batch's other items as usual."""
    require_loaded: bool = False
    """Fail an infer (FailedPrecondition) for a module its address was not configured with (only for
    addresses that got an apply)."""
    events: list[Apply | Call | Reply | Mark] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    closed: bool = False
    _seq: itertools.count = field(default_factory=itertools.count)

    # --- views of the log ----------------------------------------------------------------------

    @property
    def applies(self) -> list[Apply]:
        return [e for e in self.events if isinstance(e, Apply)]

    @property
    def calls(self) -> list[Call]:
        return [e for e in self.events if isinstance(e, Call)]

    @property
    def replies(self) -> list[Reply]:
        return [e for e in self.events if isinstance(e, Reply)]

    def calls_to(self, module: str | None = None, address: str | None = None) -> list[Call]:
        return [c for c in self.calls if (module is None or c.module == module)
                and (address is None or c.address == address)]

    def reply_to(self, call: Call) -> Reply | None:
        return next((r for r in self.replies if r.call == call.seq), None)

    def config(self, address: str) -> tuple[int, tuple[str, ...]] | None:
        """The (version, module names) last applied to an address (None: never configured)."""
        got = [a for a in self.applies if a.address == address]
        return (got[-1].version, got[-1].modules) if got else None

    def specs(self, address: str) -> tuple[ModuleSpec, ...]:
        """The modules last applied to an address, what a worker there reports it runs (none: never
        configured)."""
        got = [a for a in self.applies if a.address == address]
        return got[-1].specs if got else ()

    def mark(self, what: str, data: object = None) -> Mark:
        m = Mark(next(self._seq), what, data)
        self.events.append(m)
        return m

    # --- WorkerClient ----------------------------------------------------------------------------

    @staticmethod
    def outputs(batch: np.ndarray) -> list[np.ndarray]:
        """The deterministic answer to a batch: one output, [n, 1] float32, each item's pixel mean."""
        means = np.asarray(batch, dtype=np.float64).reshape(len(batch), -1).mean(axis=1)
        return [means.astype(np.float32)[:, None]]

    @staticmethod
    def _now() -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return math.nan

    async def infer(self, address: str, module: str, batch: np.ndarray | Sequence[EncodedFrame],
                    timeout_s: float | None = None) -> WorkerReply:
        sent = batch
        errors: dict[int, str] = {}
        if not isinstance(batch, np.ndarray):  # frames: a raw one answered its pixels' mean, an encoded one 0
            errors = {i: self.frame_errors[f.data] for i, f in enumerate(batch) if f.data in self.frame_errors}
            batch = np.array([[expected_output(np.frombuffer(f.data, np.uint8)) if f.encoding == "raw" else 0.0]
                              for f in batch], np.float64).reshape(len(batch), 1)
        call = Call(next(self._seq), address, module, len(batch), self._now(), timeout_s,
                    tuple(expected_output(item) for item in batch), sent)
        self.events.append(call)

        def answered(error: BaseException | None = None) -> None:
            self.events.append(Reply(next(self._seq), call.seq, address, module, self._now(),
                                     None if error is None else type(error).__name__))

        delay = math.inf if address in self.silent else self.latency.get(address, 0.0)
        if timeout_s is not None and delay >= timeout_s:  # what the gRPC client does at its deadline
            await asyncio.sleep(max(0.0, timeout_s))
            error = DeadlineExceeded(f"worker {address}: no answer before the deadline")
            answered(error)
            raise error
        if math.isinf(delay):  # silent and no deadline: hangs, as a call without a deadline would
            await asyncio.Event().wait()
        await asyncio.sleep(delay)
        fault = self.failing.get(address)
        if fault is None and self.require_loaded and (cfg := self.config(address)) is not None \
                and module not in cfg[1]:
            fault = FailedPrecondition(f"worker {address}: module {module!r} is not loaded")
        if fault is not None:
            error = fault() if isinstance(fault, type) else fault
            answered(error)
            raise error
        outputs = self.outputs(batch)
        if address in self.malformed:
            outputs = [np.concatenate([o, o[:1]]) for o in outputs]
        answered()
        return WorkerReply(outputs, self.reported_queue_ms.get(address, 0.0),
                           self.reported_exec_ms.get(address, delay * 1000.0), errors=errors)

    async def apply(self, address: str, version: int, specs: Sequence[ModuleSpec], timeout_s: float) -> int:
        specs = tuple(specs)
        self.events.append(Apply(next(self._seq), address, version, tuple(s.name for s in specs), specs,
                                 self._now()))
        await asyncio.sleep(self.apply_latency.get(address, 0.0))
        fault = self.failing_apply.get(address)
        if fault is not None:
            raise fault() if isinstance(fault, type) else fault
        return version

    def forget(self, address: str) -> None:
        self.forgotten.append(address)

    async def close(self) -> None:
        self.closed = True


__all__ = ["Apply", "Call", "FakeWorkers", "Mark", "Reply", "VirtualClockLoop", "expected_output", "run_virtual"]


T = TypeVar("T")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of sleeping.

    For code that does no I/O: time moves only when every task waits for a timer, by exactly that
    timer's delay, so a test of timeouts, flush timers or back-offs runs in microseconds and always
    sees the same interleaving (the simulator's virtual clock, for the live code). Work handed to an
    executor (`asyncio.to_thread` too) runs at once, inline, and takes no virtual time: a thread's
    real duration would otherwise decide how far the clock jumps meanwhile."""

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self._now = 0.0
        # timers within the clock's resolution run together: keep it below the flush timers' slack
        self._clock_resolution = 1e-12
        select = self._selector.select

        def jump(timeout: float | None = None):
            events = select(0)
            if not events and timeout:
                self._now += timeout
            return events

        self._selector.select = jump

    def time(self) -> float:
        return self._now

    def stall(self, seconds: float) -> None:
        """The loop is blocked for `seconds` (a long callback, a paused process): the clock moves on and
        nothing runs meanwhile; timers that fell due run late, together, once the caller yields."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"stall seconds must be a finite number >= 0, got {seconds!r}")
        self._now += seconds

    def run_in_executor(self, executor: Any, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.create_future()
        try:
            future.set_result(func(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh :class:`VirtualClockLoop` (its clock starts at 0)."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
