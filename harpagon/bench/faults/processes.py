"""The suite's processes: each component started in a session of its own with its output kept line by
line, killed by process group, and the process trees the orphan goals are judged on."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harpagon.bench.report import ROOT


def log(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def kill_group(pid: int) -> None:
    """SIGKILL to the process group of `pid` (it and what it started), and to `pid` itself should it
    have left its group; gone already is fine."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


class Proc:
    """A process of the cluster, in its own session (so that its children go with it); every line of its
    output is kept with the wall time it arrived. Ready once it prints a line starting with `ready`."""

    def __init__(self, name: str, argv: list[str], ready: str, timeout_s: float = 60.0,
                 env: dict[str, str] | None = None):
        self.name = name
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.started = time.time()
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                      env=env, start_new_session=True, bufsize=1)
        self.pid = self.popen.pid
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        self.address = ""
        self.ready_at = math.nan
        self._ready = ready
        if timeout_s > 0:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> Proc:
        """Wait for its ready line (its address follows it); kill it and raise if it does not come."""
        found = self.wait_line(lambda s: s.startswith(self._ready), timeout_s, stop_on_exit=True)
        if found is None:
            self.kill()
            tail = "".join(s + "\n" for _, s in self.lines[-15:])
            raise RuntimeError(f"{self.name} did not start within {timeout_s:g} s:\n{tail}")
        self.ready_at = found[0]
        self.address = found[1][len(self._ready):].split()[0].rstrip(",")
        return self

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self.lines.append((time.time(), line.rstrip("\n")))

    def snapshot(self, since: float = 0.0) -> list[tuple[float, str]]:
        with self._lock:
            return [(t, s) for t, s in self.lines if t >= since]

    def wait_line(self, pred: Callable[[str], bool], timeout_s: float, since: float = 0.0,
                  stop_on_exit: bool = False) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout_s
        while True:
            for t, s in self.snapshot(since):
                if pred(s):
                    return t, s
            if time.monotonic() >= deadline or (stop_on_exit and self.popen.poll() is not None
                                               and not self._thread.is_alive()):
                return None
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to its process group (it and what it started, e.g. the controller's planner process)."""
        kill_group(self.pid)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def pid_namespace() -> str:
    """This process's PID namespace (its inode number): a PID means something only within it."""
    try:
        return re.sub(r"\D", "", os.readlink("/proc/self/ns/pid")) or "0"
    except OSError:
        return "0"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat(pid: int) -> tuple[int, str, int] | None:
    """A process's parent, state and start time (clock ticks since boot) from /proc; None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def process_tree(pid: int) -> list[tuple[int, int]]:
    """The processes `pid` started, and theirs, as (pid, start time): a pid alone may be reused."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[0], []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        st = _stat(child)
        if st is not None:
            out.append((child, st[2]))
            todo += children.get(child, [])
    return out


def running(proc: tuple[int, int]) -> bool:
    """The very process (same start time), not a zombie."""
    st = _stat(proc[0])
    return st is not None and st[2] == proc[1] and st[1] not in ("Z", "X")


class ExitWatch:
    """Watches processes for when each exits (a thread, polling every 50 ms, until `deadline`)."""

    def __init__(self, procs: list[tuple[int, int]], deadline: float):
        self.procs, self.deadline = procs, deadline
        self.gone: dict[int, float] = {}  # pid -> when (wall clock)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while len(self.gone) < len(self.procs) and time.time() < self.deadline:
            for proc in self.procs:
                if proc[0] not in self.gone and not running(proc):
                    self.gone[proc[0]] = time.time()
            time.sleep(0.05)

    def result(self, since: float) -> dict[str, Any]:
        """How many processes, when the last of them was gone (s after `since`), and those still running."""
        self._thread.join(max(0.0, self.deadline - time.time()) + 1.0)
        left = [pid for pid, _ in self.procs if pid not in self.gone]
        return {"children": len(self.procs), "survivors": left,
                "outlived_s": max(0.0, max(self.gone.values(), default=since) - since) if not left else None}
