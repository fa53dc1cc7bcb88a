"""`kill -9` of `harpagon serve` or of a controller leaves none of their processes running (workers,
planner, multiprocessing's resource tracker) and no CA key on disk."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from harpagon.bench.faults.processes import process_tree, running
from harpagon.runtime.lifecycle import sweep
from tests.conftest import cam_workload

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")]

WORKLOAD = cam_workload(2)
FLUID = WORKLOAD.model_copy(update={"serve": WORKLOAD.serve.model_copy(update={"arrivals": "fluid"})})
#: The goal: no process of ours outlives its parent by more than this (s); the wait allows slack on
#: a loaded machine.
BOUND_S = 5.0
SLACK_S = 10.0


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_9_and_wait(service, expected: dict[str, int]) -> list[tuple[int, int]]:
    """Collect the service's processes (each `expected` command fragment that many times), kill -9
    it, and return those of them still running SLACK_S later (or none, as soon as all are gone)."""
    deadline = time.monotonic() + 60
    while True:
        ours = {proc: command(proc[0]) for proc in process_tree(service.proc.pid)}
        counts = {part: sum(part in c for c in ours.values()) for part in expected}
        if counts == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counts == expected, ours
    service.proc.kill()
    service.proc.wait(timeout=30)
    deadline = time.monotonic() + BOUND_S + SLACK_S
    while any(running(p) for p in ours) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in ours if running(p)]


def kill_leftovers(left: list[tuple[int, int]]) -> None:
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)


def test_kill_9_of_serve_takes_its_workers_and_planner_along_and_leaves_no_ca_key(tmp_path, monkeypatch,
                                                                                  start_service):
    config = tmp_path / "cam.yaml"
    config.write_text(yaml.safe_dump(FLUID.model_dump(exclude_none=True)))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # where `serve` makes its run folder
    serve = start_service(["serve", str(config), "--port", "0", "--metrics-port", "0"], "serving on ")
    left = kill_9_and_wait(serve, {" worker --device ": 2, "multiprocessing.spawn": 1, "resource_tracker": 1})
    kill_leftovers(left)
    assert left == []
    run = [p for p in temp.iterdir() if p.name.startswith("harpagon-serve-")]
    assert len(run) == 1
    keys = [p.relative_to(run[0]).parts[1:] for p in run[0].rglob("*.key")]  # below certs-XXXX/
    # the CA's key never stays (nor do the in-process controller's and frontend's): only the workers'
    # own key, signed by a CA whose key is gone and trusted by no live process
    assert keys == [("worker", "tls.key")]
    assert sweep("harpagon-serve-", temp) == run  # the next start removes the rest
    # but not its children's logs: a serve killed with -9 leaves them for the operator (a clean stop
    # removes them, unless a child failed)
    (logs,) = [p for p in temp.iterdir()]
    assert logs.name.startswith("harpagon-logs-") and sorted(p.name for p in logs.iterdir()) == \
        ["worker-0.log", "worker-1.log"]


def test_kill_9_of_a_controller_takes_its_planner_along(tmp_path, start_service):
    config = tmp_path / "cam.yaml"
    config.write_text(yaml.safe_dump(FLUID.model_dump(exclude_none=True)))
    controller = start_service(["controller", "--config", str(config), "--port", "0"], "controller listening on ")
    left = kill_9_and_wait(controller, {"multiprocessing.spawn": 1, "resource_tracker": 1})
    kill_leftovers(left)
    assert left == []
