"""Process lifecycle shared by the long-running commands: stopping on a signal, not outliving the
process that started this one, and private run folders that a run killed with `kill -9` does not
leave behind for good."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so no sweep of dead runs' folders
    fcntl = None

#: Set by a parent for a child that should die with it (`harpagon serve` for its workers): the
#: parent's pid, which the child passes to :func:`die_with_parent` at start.
PARENT_ENV = "HARPAGON_PARENT_PID"
#: The signal a child gets when its parent dies: nothing is left to drain for (its peers are gone),
#: and no handler or blocking call can delay it.
PARENT_DEATH_SIGNAL = getattr(signal, "SIGKILL", signal.SIGTERM)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_OWNER = ".owner"  # the file a live run holds locked in its folder


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now, for a child told its port in its arguments (one that binds port 0
    cannot say which it got before it is up)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def until_stopped() -> None:
    """Return on SIGINT or SIGTERM (then the caller drains and stops)."""
    await stop_signals().wait()


def stop_signals() -> asyncio.Event:
    """An event set on SIGINT or SIGTERM, from now on (a start that takes a while is drained too)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) for a child that calls :func:`die_with_parent` at start."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}


def die_with_parent(parent: int | None = None, sig: int = PARENT_DEATH_SIGNAL) -> None:
    """Get `sig` when process `parent` dies, however it dies (`kill -9` included), so that no orphan
    lives on. `parent` defaults to the pid in $PARENT_ENV (removed, so that this process's own
    children do not take it for theirs); with neither, nothing happens.

    On Linux the kernel sends it (PR_SET_PDEATHSIG). It fires when the *thread* that started this
    process ends, so a parent starts such children from a thread that lives as long as it does.
    Elsewhere on POSIX a daemon thread polls the parent once a second; on Windows nothing happens.
    A parent already gone when this is called (it died while this process started) sends it at once."""
    if parent is None:
        value = os.environ.pop(PARENT_ENV, "")
        if not value.isdigit():
            return
        parent = int(value)
    if os.name != "posix":
        return
    if not _kernel_signals_parent_death(sig):
        threading.Thread(target=_watch_parent, args=(parent, sig), name="die-with-parent", daemon=True).start()
    if os.getppid() != parent:  # checked after asking: a death in between is not missed
        os.kill(os.getpid(), sig)


def _kernel_signals_parent_death(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), ctypes.c_ulong(0), ctypes.c_ulong(0),
                 ctypes.c_ulong(0)) == 0


def _watch_parent(parent: int, sig: int) -> None:
    while os.getppid() == parent:  # an orphan's parent becomes init (or a subreaper)
        time.sleep(1.0)
    os.kill(os.getpid(), sig)


class RunFolder:
    """A private temporary folder (mode 0700) for one run's files, such as `harpagon serve`'s
    certificates and sockets. The run that created it removes it at :meth:`cleanup`; one killed
    before (`kill -9`) leaves it, and the next run with the same prefix removes it at start. A live
    run holds a lock on a file in its folder, which the kernel drops when the run dies however it
    dies: unlike a pid, the lock cannot be mistaken for a new process's, nor for one in another pid
    namespace that shares the temporary folder."""

    def __init__(self, prefix: str, parent: str | os.PathLike | None = None):
        sweep(prefix, parent)
        self.name = tempfile.mkdtemp(prefix=prefix, dir=parent)
        self._lock = _hold(Path(self.name))

    def cleanup(self) -> None:
        shutil.rmtree(self.name, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _hold(folder: Path) -> int | None:
    """Lock the folder's owner file for this process's lifetime (None: no locks on this platform).
    The file gets its name once locked, so a sweep never sees it unlocked while its run lives."""
    if fcntl is None:
        return None
    fd, staged = tempfile.mkstemp(dir=folder, prefix=".staged-")
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(staged, folder / _OWNER)
    return fd


def sweep(prefix: str, parent: str | os.PathLike | None = None) -> list[Path]:
    """Remove the folders that runs with `prefix` left in `parent` (default: the temporary folder)
    when they died without cleaning up: this user's, with an owner file that no live process holds
    locked. Returns the folders removed."""
    if fcntl is None:
        return []
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{glob.escape(prefix)}*"):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.lstat().st_uid != os.getuid():
                continue
            fd = os.open(folder / _OWNER, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # no owner file: not one of ours, or its run is creating it
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its run lives
            continue
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


class ChildLog:
    """A child's stderr, passed through to this process's and kept in a file; a child that ends on its
    own with an error is reported at once, with its last line (a worker that cannot open its device
    says why there), not when its heartbeats are missed a minute later. Its pipe is read to the end
    whatever happens to the two copies (a full disk, a closed stderr), so the child never blocks on it."""

    def __init__(self, proc, name: str, path: Path, on_end: Callable[[ChildLog, bool], None]):
        self.proc, self.name, self.path, self.on_end = proc, name, path, on_end
        self.last: deque[str] = deque(maxlen=1)
        self.stopping = False
        """Set before this process stops the child: its exit is then no error, whatever its status."""
        self.thread = threading.Thread(target=self._run, name=f"log-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            kept = open(self.path, "ab")  # closed below, after the pipe's end
        except OSError as exc:
            kept = None
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"{self.name}: its log cannot be kept in {self.path}: {exc}\n")
        try:
            for line in self.proc.stderr:
                text = line.decode(errors="replace")
                if text.strip():
                    self.last.append(text.strip())
                if kept is not None:
                    try:
                        kept.write(line)
                        kept.flush()  # readable while the child runs
                    except OSError as exc:  # a full disk: the pass-through goes on
                        with contextlib.suppress(OSError):
                            kept.close()
                        kept = None
                        with contextlib.suppress(OSError, ValueError):
                            sys.stderr.write(f"{self.name}: its log in {self.path} stops here: {exc}\n")
                with contextlib.suppress(OSError, ValueError):  # our stderr closed: the file goes on
                    sys.stderr.write(text)
        finally:
            if kept is not None:
                with contextlib.suppress(OSError):
                    kept.close()
            self.proc.stderr.close()
        code = self.proc.wait()
        self.on_end(self, code != 0 and not self.stopping)

    @property
    def reason(self) -> str:
        code = self.proc.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"{how}: {self.last[-1] if self.last else 'it logged nothing'}"
