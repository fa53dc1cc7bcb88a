"""How long a frame may have waited before the frontend saw it: its event loop watches itself.

A frame's SLO clock starts when the frontend takes it, but a call can wait unseen first: in gRPC's
queue while the event loop is busy or stopped (a GC pause, a starved CPU, SIGSTOP). After such a
delay, frames sent a while ago look fresh, and an answer within their SLO by the frontend's clock is
late for the client. So a tick every :data:`TICK_S` measures the loop's lag. A tick later than
:data:`LATE_S` means the loop did not run since the tick before: calls may have queued meanwhile, and
gRPC hands them over one at a time, so the backlog drains over several iterations after the loop
runs again. Frames taken while it drains (about as long as it took to build, at most
:data:`BACKLOG_S`) are charged from the tick before the delay. Each late tick opens such a window of its own: a later,
shorter delay does not shorten the charge of frames still left from an earlier one.
"""

from __future__ import annotations

import asyncio
from collections import deque

#: How often the loop checks itself (s): a frame that waited less than this plus LATE_S may be
#: charged only the loop's current lag.
TICK_S = 0.005
#: A tick this late (s) means the loop did not run since the tick before: calls waited unseen meanwhile.
LATE_S = 0.005
#: A tick this late (s) is counted as a stall (`LoopWatch.stalls`: a GC pause, a starved CPU, SIGSTOP).
STALL_S = 0.1
#: The most a frame is charged for the loop's delays (s). A call can wait longer in gRPC's queue (gRPC
#: drops it only after 30 s, see the servicer's MAX_WAITING_CALLS), but a frame charged a second is
#: late for any SLO under it; a longer SLO is charged less than its frames may have waited, which a
#: client's own deadline covers (it runs from when gRPC received the call).
BACKLOG_S = 1.0


class LoopWatch:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._last = 0.0  # when the latest tick ran
        self._lag = 0.0  # how late it ran
        # (since, until): frames taken before `until` may have waited since `since`; in order of `since`
        self._windows: deque[tuple[float, float]] = deque()
        self.stalls = 0
        """Ticks later than STALL_S so far."""

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
        self._lag = max(0.0, now - self._last - TICK_S)
        if self._lag > LATE_S:
            self._windows.append((self._last, now + min(now - self._last, BACKLOG_S)))
            if self._lag > STALL_S:
                self.stalls += 1
        while self._windows and self._windows[0][1] <= now:
            self._windows.popleft()
        self._last = now
        self._handle = self._loop.call_later(TICK_S, self._tick)

    def lag(self, now: float) -> float:
        """How late the loop runs callbacks now (s): what a frame waits to be taken, or an answer to leave."""
        return max(self._lag, now - self._last - TICK_S, 0.0)

    def arrival(self, now: float) -> float:
        """The earliest a frame taken at `now` (loop time) may have reached this process."""
        if self._loop is None:  # not watching (yet)
            return now
        since = now - self.lag(now)
        if now - self._last - TICK_S > LATE_S:  # late right now: the tick has not run since
            since = self._last
        for start, until in self._windows:  # in order of start: the first still open is the earliest
            if until > now:
                since = min(since, start)
                break
        return max(since, now - BACKLOG_S)
