"""The frontend's failover policy: which worker of its tuple a batch goes to, what a failed call
means, and which worker is tried next.

Pure: times are passed in (the event loop's), no asyncio, gRPC or logging; `LiveModule` in
data_plane.py makes the calls and logs what this says. A worker call that fails with UNAVAILABLE, or
takes longer than its tuple's stall limit (:func:`stall_limit_s`, stretched for the calls ahead of it at
that worker: :class:`Outstanding`), is tried on another worker of the
tuple, each worker at most once, and the worker is *suspect* for a while (:class:`Suspects`, shared by
every module of a frontend): batches meanwhile go to the tuple's next worker that is not. INTERNAL
(a model that raised, or a broken device) is tried once elsewhere; the worker it came from is blamed
only when another worker then answers the same frames well. Faults that are the request's
(INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION) are never tried again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harpagon.runtime.wire.errors import DeadlineExceeded, Internal, RuntimeFault, Unavailable

#: A worker call counts as stalled once it has taken `max(STALL_FACTOR × ℓ, ℓ + STALL_MARGIN_MS)`,
#: ℓ its tuple's planned latency. ℓ already covers the batch's collection, d(b), the hop overhead and
#: the queueing allowance, so a healthy worker answers well within ℓ; 3 ℓ leaves room for a slower
#: device than profiled (calibration re-plans well before that) and the margin for what does not scale
#: with ℓ (a GC pause, a busy host, a loaded event loop), which would otherwise make a 5 ms tuple look
#: stalled after 15 ms. Only a stuck worker (SIGSTOP, a hung device, a lost connection) goes past it.
STALL_FACTOR = 3.0
STALL_MARGIN_MS = 100.0
#: How long a worker that failed or stalled stays suspect (no batches while its tuple has another
#: worker): :data:`SUSPECT_FIRST_S` the first time, doubled at each failure that follows without a good
#: answer in between, up to :data:`SUSPECT_S`. A worker that only hiccuped (a busy host, a GC pause) is
#: back after half a second, so its tuple runs short of a worker that long rather than 3 s (a 2-worker
#: tuple at 60% load would queue for seconds after that); a dead or stopped worker is tried again after
#: 0.5, 1, 2, 3, 3... s, each try one batch retried elsewhere or lost, until the controller's heartbeats
#: notice it and re-plan.
SUSPECT_FIRST_S = 0.5
SUSPECT_S = 3.0
#: A worker is suspect after this many INTERNAL answers, each to frames another worker of its tuple then
#: answered well, without a good answer of its own in between. One such answer may be a model's rare,
#: non-deterministic failure; three in a row is its device (a broken GPU fails every batch), and costs
#: the tuple only three retries before the worker's back-off starts.
INTERNAL_STRIKES = 3

def stall_limit_s(latency_ms: float) -> float | None:
    """Seconds a worker call of a tuple of planned latency ℓ may take before it counts as stalled
    (None: ℓ unknown, no limit but the frames' deadline)."""
    if not latency_ms > 0 or math.isinf(latency_ms):
        return None
    return max(STALL_FACTOR * latency_ms, latency_ms + STALL_MARGIN_MS) / 1000.0


class Outstanding:
    """Worker calls in flight per worker address, over every module (a shared GPU's worker hosts
    several): a worker runs its batches first in, first out, so a call sent behind `k` others cannot
    answer before they do, and its stall limit stretches to `(k + 1)` times the tuple's. A busy worker
    is slow, not stuck; counted stuck, it was set aside, its tuple ran short, the others queued longer
    and were set aside in turn (the elastic benchmark's minutes at 44% on a loaded host)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def start(self, address: str) -> int:
        """A call to `address` starts; the calls already in flight to it."""
        ahead = self.calls.get(address, 0)
        self.calls[address] = ahead + 1
        return ahead

    def done(self, address: str) -> None:
        left = self.calls.get(address, 0) - 1
        if left > 0:
            self.calls[address] = left
        else:
            self.calls.pop(address, None)


class Suspects:
    """Worker addresses that failed, stalled or kept answering INTERNAL lately (a small circuit breaker
    with exponential back-off, shared by every module that routes to them). Times are the event loop's."""

    def __init__(self, hold_s: float = SUSPECT_S, first_s: float = SUSPECT_FIRST_S):
        self.hold_s = hold_s
        """The longest hold."""
        self.first_s = min(first_s, hold_s)
        self._until: dict[str, float] = {}
        self._strikes: dict[str, int] = {}  # failures since the address last answered well
        self._internal: dict[str, int] = {}  # INTERNAL strikes (see `blame`) since it last answered well

    def mark(self, address: str, now: float) -> float | None:
        """Suspect `address` for its next hold from `now`: that hold (s) if it was not suspect already,
        else None."""
        fresh = not self.suspect(address, now)
        strikes = self._strikes[address] = self._strikes.get(address, 0) + 1
        # the exponent capped: 2.0 ** 1024 overflows, and a dead worker fails ~100 batches a second
        hold = min(self.hold_s, self.first_s * 2.0 ** min(strikes - 1, 60))
        self._until[address] = now + hold
        return hold if fresh else None

    def blame(self, address: str, now: float) -> tuple[int, float | None]:
        """`address` answered INTERNAL to frames another worker then answered well: its INTERNAL strikes
        since it last answered well, and its hold if they reach INTERNAL_STRIKES and it was not suspect
        already (else None)."""
        n = self._internal[address] = self._internal.get(address, 0) + 1
        return n, self.mark(address, now) if n >= INTERNAL_STRIKES else None

    def clear(self, address: str) -> None:
        """It answered: trust it again, and start its back-off and its INTERNAL strikes afresh."""
        if self._strikes or self._internal:
            self._until.pop(address, None)
            self._strikes.pop(address, None)
            self._internal.pop(address, None)

    def suspect(self, address: str, now: float) -> bool:
        until = self._until.get(address)
        if until is None:
            return False
        if now >= until:
            del self._until[address]
            return False
        return True

    def __contains__(self, address: str) -> bool:
        return address in self._until


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed worker call means."""

    error: RuntimeFault
    """The status its frames get if no other worker takes them."""
    retry: bool
    """Another worker of the tuple may take them."""
    hold: float | None
    """The worker is suspect from now for this long (s); None: it is not, or was already."""


class Failover:
    """One batch's way through the workers of its tuple: `ring` in the order the dispatcher chose (its
    choice first), each tried at most once."""

    def __init__(self, ring: list[str], suspects: Suspects, stall_s: float | None):
        self.ring = ring
        self.suspects = suspects
        self.stall_s = stall_s
        self.tried: set[str] = set()
        self.internal_at: str | None = None
        """The worker that answered INTERNAL, the batch then tried elsewhere."""
        self._capped = False
        self._stall: float | None = stall_s
        """The stall limit of the call in flight (stretched by the calls ahead of it)."""

    def pick(self, now: float) -> str | None:
        """The first worker not tried yet that is not suspect; else the first not tried; None when
        every worker was tried."""
        untried = [a for a in self.ring if a not in self.tried]
        return next((a for a in untried if not self.suspects.suspect(a, now)), untried[0] if untried else None)

    def timeout(self, address: str, remaining_s: float, now: float, ahead: int = 0) -> float:
        """How long the call to `address` may take: the frames' remaining time, or the stall limit
        (times the `ahead` calls already in flight to that worker, plus one) where a healthy worker not
        tried yet could take over (cutting the one healthy worker short to retry on a suspect one turned
        a slow answer into a failure)."""
        self.tried.add(address)
        self._stall = None if self.stall_s is None else self.stall_s * (1 + ahead)
        self._capped = (self._stall is not None and self._stall < remaining_s
                        and any(a not in self.tried and not self.suspects.suspect(a, now) for a in self.ring))
        return self._stall if self._capped else remaining_s  # type: ignore[return-value]

    def failed(self, address: str, exc: BaseException, sent: float, now: float) -> Failure:
        """The call to `address`, made at `sent`, failed at `now` with `exc` (TimeoutError: no answer
        within its timeout)."""
        if isinstance(exc, TimeoutError):
            exc = DeadlineExceeded(f"worker {address}: no answer before the deadline")
        error = exc if isinstance(exc, RuntimeFault) else Unavailable(f"{type(exc).__name__}: {exc}")
        # stalled: no answer within the stall limit (the call may have run to the frames' deadline when it
        # was the last worker to try); a timer may fire a hair early
        stalled = (isinstance(error, DeadlineExceeded) and self._stall is not None
                   and now - sent >= self._stall - 1e-3)
        if stalled and self._capped:  # the frames still have time: the worker failed them, not the clock
            error = Unavailable(f"worker {address} stalled: no answer within its stall limit of "
                                f"{self._stall * 1000:.0f} ms")  # type: ignore[operator]
        failed = stalled or isinstance(error, Unavailable)
        hold = self.suspects.mark(address, now) if failed else None
        retry = failed
        # INTERNAL: the model's or the worker's device's; a second one is the model's
        if isinstance(error, Internal) and self.internal_at is None:
            self.internal_at, retry = address, True
        return Failure(error, retry, hold)

    def answered(self, address: str) -> str | None:
        """`address` answered well: trust it again. The worker whose INTERNAL it answered for, if any (to
        blame)."""
        self.suspects.clear(address)
        return self.internal_at
