"""A child that cannot start is reported at once with its own reason, and its log is kept in a file
the report names (`harpagon serve` and `harpagon demo` start workers as children)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from harpagon.data import example
from harpagon.runtime.lifecycle import ChildLog

pytestmark = pytest.mark.integration


def child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)


def test_a_child_that_fails_is_reported_with_its_last_line_and_its_log_kept(tmp_path, capfd):
    reported = threading.Event()
    got: list[ChildLog] = []

    def on_error(c: ChildLog, failed: bool) -> None:
        if failed:
            got.append(c)
            reported.set()

    code = "import sys; print('loading', file=sys.stderr); print('no such device', file=sys.stderr); sys.exit(3)"
    log = ChildLog(child(code), "worker w0", tmp_path / "w0.log", on_error)
    assert reported.wait(30)
    assert got == [log] and log.reason == "exit code 3: no such device"
    assert (tmp_path / "w0.log").read_text() == "loading\nno such device\n"
    assert "no such device" in capfd.readouterr().err  # passed through as well


@pytest.mark.parametrize("code", ["import sys; sys.exit(0)", "import time; time.sleep(30)"])
def test_a_child_that_ends_well_or_is_stopped_is_no_error(tmp_path, code):
    errors: list[ChildLog] = []
    log = ChildLog(child(code), "worker w1", tmp_path / "w1.log", lambda c, failed: failed and errors.append(c))
    if "sleep" in code:
        log.stopping = True  # as serve does before it stops its children
        log.proc.kill()
    log.thread.join(30)
    assert not log.thread.is_alive() and errors == []


@pytest.mark.parametrize("command", [["demo", "--seconds", "3"], ["serve", "--port", "0", "--metrics-port", "0"]])
def test_serve_and_the_demo_name_a_worker_that_cannot_open_its_device_at_once(tmp_path, command):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the worker would start")
    config, text = tmp_path / "cuda.yaml", example("video").read_text()
    assert "include: [../models/profiles/cpu-amd-epyc.yaml]" in text and "{device: cpu, hardware: cpu-amd" in text
    config.write_text(text.replace("include: [../models/profiles/cpu-amd-epyc.yaml]",
                                                          f"include: [{example('video').parent.parent}"
                                                          "/models/profiles/cpu-amd-epyc.yaml]")
                      .replace("{device: cpu, hardware: cpu-amd-epyc, count: 2, threads: 1}",
                               '{device: "cuda:0", hardware: cpu-amd-epyc, count: 1}'))
    out = subprocess.run([sys.executable, "-m", "harpagon.cli", command[0], str(config), *command[1:],
                          "--log-dir", str(tmp_path / "logs")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"harpagon {command[0]}: worker worker-0 exited at start: exit code 2: "), last
    assert "no CUDA device" in last and str(tmp_path / "logs" / "worker-0.log") in last
    assert "no CUDA device" in (tmp_path / "logs" / "worker-0.log").read_text()


def test_a_log_that_cannot_be_kept_still_drains_the_child_and_reports_it(tmp_path):
    """A log folder that is not there (a full disk, a read-only folder alike): the child's output still
    passes through and is read to its end, so the child never blocks on a full pipe, and its failure
    is still reported."""
    got: list[ChildLog] = []
    code = "import sys; [print('x' * 1000, file=sys.stderr) for _ in range(300)]; print('bye', file=sys.stderr); " \
           "sys.exit(4)"
    log = ChildLog(child(code), "worker w2", tmp_path / "missing" / "w2.log", lambda c, failed: got.append(c))
    log.thread.join(30)
    assert not log.thread.is_alive() and got == [log]
    assert log.reason == "exit code 4: bye" and log.proc.stderr.closed
