"""`harpagon serve`'s scaler: it starts and stops local worker processes to match the desired fleet
(runtime/controller/fleet.py), as KEDA scales a Deployment per GPU kind in a cluster (docs/deploy.md).

Mechanism only: the controller decides how many workers of each kind it wants and which of them are
idle; this starts the missing ones and sends SIGTERM to idle ones beyond the count. A worker that gets
SIGTERM leaves (it tells the controller, which re-plans without it before it stops), so a scale-down
loses no frame; the scaler never stops a worker the plan uses.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harpagon.config.schema import WorkerGroup

log = logging.getLogger("harpagon.scaler")


@dataclass(frozen=True)
class ScaleEvent:
    """One worker started or stopped (the elastic benchmark's timeline)."""

    at: float  # time.monotonic()
    kind: str
    action: str  # "start" or "stop"
    worker: str


@dataclass
class LocalScaler:
    """Starts worker processes of a kind's group while fewer run than desired (up to the group's
    `count`), and stops idle ones while more run."""

    groups: Mapping[str, WorkerGroup]
    """Hardware kind -> the group its workers are started as."""
    start: Callable[[WorkerGroup, str], subprocess.Popen]
    """Starts one worker of a group under an id."""
    workers: dict[str, tuple[str, subprocess.Popen]] = field(default_factory=dict)
    """Worker id -> (kind, process), those started and not yet exited."""
    events: list[ScaleEvent] = field(default_factory=list)
    _stopping: set[str] = field(default_factory=set)
    _started: int = 0

    def adopt(self, kind: str, worker: str, proc: subprocess.Popen) -> None:
        """A worker started outside the scaler (at start) that it may stop later."""
        self.workers[worker] = (kind, proc)

    def next_id(self) -> str:
        self._started += 1
        return f"local-{self._started}"

    def scale(self, desired: Mapping[str, int], idle: Mapping[str, list[str]]) -> None:
        self._reap()
        for kind, want in desired.items():
            group = self.groups.get(kind)
            if group is None:
                continue
            running = [wid for wid, (k, _) in self.workers.items() if k == kind and wid not in self._stopping]
            if len(running) < want:
                for _ in range(min(want, group.count) - len(running)):
                    worker = self.next_id()
                    self.workers[worker] = (kind, self.start(group, worker))
                    self.events.append(ScaleEvent(time.monotonic(), kind, "start", worker))
                    log.info("fleet: starting worker %s (%s): %d wanted", worker, kind, want)
            elif len(running) > want:
                for worker in [w for w in idle.get(kind, ()) if w in running][:len(running) - want]:
                    self._stopping.add(worker)
                    self.workers[worker][1].terminate()  # SIGTERM: it leaves, then exits
                    self.events.append(ScaleEvent(time.monotonic(), kind, "stop", worker))
                    log.info("fleet: stopping idle worker %s (%s): %d wanted", worker, kind, want)

    def _reap(self) -> None:
        """Forget workers that exited; one that exited unasked is said (the controller evicts it)."""
        for worker, (kind, proc) in list(self.workers.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.workers[worker]
            if worker not in self._stopping:
                log.warning("fleet: worker %s (%s) exited unasked with code %s", worker, kind, code)
            self._stopping.discard(worker)
