"""Children that die with their parent, and run folders that a killed run does not leave for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harpagon.runtime.lifecycle import PARENT_ENV, RunFolder, die_with_parent

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX process semantics")

REPO = Path(__file__).resolve().parents[2]

#: A child that asks to die with its parent (`watchdog`: by polling, as where there is no prctl),
#: then says whether the parent's pid is still in its environment, and waits.
CHILD = """
import os, sys, time
from harpagon.runtime import lifecycle
if sys.argv[1] == "watchdog":
    lifecycle._kernel_signals_parent_death = lambda sig: False
lifecycle.die_with_parent()
print("armed", os.environ.get(lifecycle.PARENT_ENV), flush=True)
time.sleep(120)
"""
#: A parent that starts CHILD, says its pid, and waits to be killed.
PARENT = """
import subprocess, sys, time
from harpagon.runtime.lifecycle import child_env
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=child_env())
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Running (a zombie that no one has reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel (a zombie then counts as alive until reaped)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("how", ["kernel", "watchdog"])
def test_a_child_dies_when_its_parent_is_killed(how):
    if how == "kernel" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, how], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = None
    try:
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().split() == ["armed", "None"]  # the pid is not passed further down
        parent.kill()
        parent.wait(timeout=30)
        for _ in range(200):  # bounded: the watchdog polls once a second
            if not alive(child):
                break
            time.sleep(0.05)
        assert not alive(child)
    finally:
        parent.kill()
        parent.wait(timeout=30)
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_whose_parent_died_while_it_started_dies_at_once():
    code = "import os; from harpagon.runtime.lifecycle import die_with_parent; die_with_parent(os.getppid() + 1)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL


def test_without_a_parent_named_nothing_happens(monkeypatch):
    monkeypatch.delenv(PARENT_ENV, raising=False)
    die_with_parent()  # this process goes on


def test_the_next_run_removes_the_folder_of_a_killed_one_and_no_live_one(tmp_path):
    live = RunFolder("run-", tmp_path)
    code = ("import sys, time; from harpagon.runtime.lifecycle import RunFolder; "
            "print(RunFolder('run-', sys.argv[1]).name, flush=True); time.sleep(120)")
    killed = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        left = Path(killed.stdout.readline().strip())
        (left / "secret").write_text("x")
    finally:
        killed.kill()
        killed.wait(timeout=30)
    assert Path(live.name).is_dir()  # the killed run's sweep left the live one
    foreign = tmp_path / "run-not-ours"  # no owner file: not made by RunFolder
    foreign.mkdir()
    assert left.is_dir()
    following = RunFolder("run-", tmp_path)
    try:
        assert not left.exists()
        assert Path(live.name).is_dir() and foreign.is_dir()
        assert oct(Path(following.name).stat().st_mode & 0o777) == "0o700"
    finally:
        live.cleanup()
        following.cleanup()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-not-ours"]
