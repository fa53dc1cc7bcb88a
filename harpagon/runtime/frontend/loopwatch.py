"""How long a frame may have waited before the frontend saw it: its event loop watches itself.

A frame's SLO clock starts when the frontend takes it, but a call can wait unseen first: in gRPC's
queue while the event loop is busy or stopped (a GC pause, a starved CPU, SIGSTOP). After such a
stall, frames sent seconds ago look fresh, and an answer within their SLO by the frontend's clock is
late for the client. So a tick every :data:`TICK_S` measures the loop's lag, and a frame is charged
the lag it was taken in (a busy loop: tens of ms); after a stall, frames taken while the backlog
drains are charged from when the stall began (at most :data:`BACKLOG_S` earlier: gRPC cancels a call
that waited longer, see the servicer's `CLIENT_PORT_OPTIONS`).
"""

from __future__ import annotations

import asyncio

#: How often the loop checks itself (s).
TICK_S = 0.02
#: A tick this late (s) means the loop was stalled: calls waited unseen meanwhile.
STALL_S = 0.1
#: The longest a call waits in gRPC's queue before it is cancelled (s): the most a frame is charged.
BACKLOG_S = 1.0


class LoopWatch:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._last = 0.0  # when the latest tick ran
        self._lag = 0.0  # how late it ran
        self._stall_start = 0.0
        self._stall_until = float("-inf")  # frames taken before this are charged from `_stall_start`
        self.stalls = 0
        """Stalls seen so far."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None:
            return
        self._loop = loop
        self._last = loop.time()
        self._handle = loop.call_later(TICK_S, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._loop = self._handle = None

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if now - self._last > TICK_S + STALL_S:
            self._note_stall(now)
        self._lag = max(0.0, now - self._last - TICK_S)
        self._last = now
        self._handle = self._loop.call_later(TICK_S, self._tick)

    def _note_stall(self, now: float) -> None:
        self.stalls += 1
        self._stall_start = self._last
        self._stall_until = now + min(now - self._last, BACKLOG_S)  # about as long as the backlog takes

    def lag(self, now: float) -> float:
        """How late the loop runs callbacks now (s): what a frame waits to be taken, or an answer to leave."""
        return max(self._lag, now - self._last - TICK_S, 0.0)

    def arrival(self, now: float) -> float:
        """The earliest a frame taken at `now` (loop time) may have reached this process."""
        if self._loop is not None and now - self._last > TICK_S + STALL_S:
            self._note_stall(now)  # stalled right now: the tick has not run since
            self._last = now
        if now < self._stall_until:
            return max(self._stall_start, now - BACKLOG_S)
        return now - self.lag(now)
