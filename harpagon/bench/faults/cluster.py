"""The cluster under test: a controller, a frontend and emulated workers, each a process of its own
under mutual TLS (in its own network namespace where it can be), the load clients that stream frames
at it, and the wait until it is back after a fault."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harpagon.bench.faults.frames import OK, VANISH_AFTER_S, RecordTail
from harpagon.bench.faults.goals import WORKER_DRAIN_TIMEOUT_S
from harpagon.bench.faults.logs import membership, plan_lines
from harpagon.bench.faults.network import make_network
from harpagon.bench.faults.processes import Proc, kill_group, log
from harpagon.bench.report import ROOT
from harpagon.runtime.worker.executor import FAULT_FILE_ENV

#: The cluster is back once nothing changed for this long (s: a heal, a join or leave, a plan)...
SETTLE_S = 2.5
#: ...and this many frames sent after the latest plan were answered OK in a row.
BACK_FRAMES = 10


@dataclass
class AppInfo:
    name: str
    rate: float
    slo_ms: float


class Cluster:
    """The processes of one suite run and where they listen; close() ends them all, whatever happened."""

    def __init__(self, config: Path, workers: int, loopback: bool, tmp: Path):
        from harpagon.config import load_workload
        from harpagon.runtime.wire.tls import make_certs

        self.config = config
        self.workload = load_workload([config])
        if self.workload.serve is None:
            raise ValueError(f"{config}: needs a serve section (input and frame shapes)")
        self.frame_shape = tuple(self.workload.serve.frame_shape)
        self.apps = [AppInfo(a.name, a.rate, a.slo_ms) for a in self.workload.apps]
        self.n_workers = workers
        self.tmp = tmp
        self.pki = make_certs(tmp / "pki", days=1)
        self.foreign = make_certs(tmp / "foreign", days=1)  # a CA the cluster does not trust
        self.worker_roles = [f"w{i}" for i in range(workers)]
        self.roles = ["ctl", "fe", "fe2", "cli", *self.worker_roles]  # fe2: a second frontend, for one scenario
        self.net, self.loopback_why = make_network(self.roles, loopback)
        self.controllers: list[Proc] = []
        self.frontends: list[Proc] = []
        self.workers: dict[str, Proc] = {}  # role -> its current process
        self.old: list[Proc] = []  # killed or replaced
        self.others: list[Proc] = []  # processes a scenario started besides the cluster's (a `serve`)
        self.control = tmp / "rate.json"  # the load clients' rate factor (a lull)
        self.clients: list[subprocess.Popen] = []
        self.client_logs: list[Path] = []  # each load client's stderr (a file: a pipe nobody reads would fill)

    # --- addresses ---------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.net.mode

    def _python(self, role: str, *args: str) -> list[str]:
        return [*self.net.prefix(role), sys.executable, *args]

    @property
    def controller_address(self) -> str:
        return f"{self.net.host('ctl')}:{self.net.port('ctl', 50051)}"

    @property
    def frontend_address(self) -> str:
        return self.address_of("fe")

    def address_of(self, frontend_role: str) -> str:
        return f"{self.net.host(frontend_role)}:{self.net.port(frontend_role, 8001)}"

    @property
    def health_addresses(self) -> dict[str, str]:
        """The plaintext health ports the probes of a deployment use."""
        return {"frontend": f"{self.net.host('fe')}:{self.net.port('fe-health', 8003)}",
                "controller": f"{self.net.host('ctl')}:{self.net.port('ctl-health', 50052)}"}

    def role_of(self, address: str) -> str | None:
        return next((r for r, p in self.workers.items() if p.address == address), None)

    # --- processes ---------------------------------------------------------------------------

    def start_controller(self) -> Proc:
        host, port = self.net.host("ctl"), self.net.port("ctl", 50051)
        p = Proc("controller", self._python("ctl", "-m", "harpagon.cli", "controller", "--config", str(self.config),
                                            "--host", host, "--port", str(port),
                                            "--health-port", str(self.net.port("ctl-health", 50052)),
                                            "--tls-dir", str(self.pki / "controller")),
                 "controller listening on ")
        self.controllers.append(p)
        return p

    def start_frontend(self) -> Proc:
        p = self._frontend("fe", "frontend", ["--health-port", str(self.net.port("fe-health", 8003))])
        self.frontends.append(p)
        return p

    def start_second_frontend(self, frontend_id: str) -> Proc:
        """Another frontend (role fe2, id `frontend_id`), watching the same controller; not one of
        `frontends` (the frontend scenarios aim at the first), but killed at close."""
        p = self._frontend("fe2", "frontend 2", ["--id", frontend_id])
        self.others.append(p)
        return p

    def _frontend(self, role: str, name: str, extra: list[str]) -> Proc:
        host, port = self.net.host(role), self.net.port(role, 8001)
        return Proc(name, self._python(role, "-m", "harpagon.cli", "frontend", "--controller",
                                       self.controller_address, "--host", host, "--port", str(port),
                                       "--metrics-port", str(self.net.port(f"{role}-metrics", 8002)),
                                       "--frame-shape", ",".join(map(str, self.frame_shape)),
                                       "--tls-dir", str(self.pki / "frontend"), *extra),
                    "frontend listening on ")

    def start_worker(self, role: str, wait: bool = True) -> Proc:
        host, port = self.net.host(role), self.net.port(role, 9000)
        old = self.workers.get(role)
        if old is not None:
            self.old.append(old)
        p = Proc(f"worker {role}", self._python(role, "-m", "harpagon.cli", "worker", "--device", "emulated:t4",
                                                "--host", host, "--port", str(port), "--controller",
                                                self.controller_address, "--tls-dir", str(self.pki / "worker"),
                                                "--drain-timeout", f"{WORKER_DRAIN_TIMEOUT_S:g}"),
                 "worker listening on ", 60.0 if wait else 0.0, env={FAULT_FILE_ENV: str(self.fault_file(role))})
        self.workers[role] = p
        return p

    @property
    def controller(self) -> Proc:
        return self.controllers[-1]

    @property
    def frontend(self) -> Proc:
        return self.frontends[-1]

    def all_controller_lines(self, since: float = 0.0) -> list[tuple[float, str]]:
        return sorted((x for p in self.controllers for x in p.snapshot(since)), key=lambda x: x[0])

    def worker_lines(self, since: float = 0.0) -> list[tuple[str, list[tuple[float, str]]]]:
        """Each worker process's address and output (a replaced worker's old process too)."""
        return [(p.address, p.snapshot(since)) for p in [*self.old, *self.workers.values()]]

    # --- helpers in the client's namespace ---------------------------------------------------

    def helper(self, args: list[str], timeout_s: float = 30.0) -> Any:
        """Run `python -m harpagon.bench.faults ARGS` where clients are; its JSON answer."""
        done = subprocess.run(self._python("cli", "-m", "harpagon.bench.faults", *args), check=False,
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"helper {args[0]} failed: {done.stderr[-1500:]}")
        return json.loads(done.stdout)

    def routes(self) -> dict:
        """The controller's routing table, as a frontend sees it (WatchRoutes under the frontend's
        certificate, first message only)."""
        return self.helper(["_routes", "--controller", self.controller_address, "--tls-dir",
                            str(self.pki / "frontend")])

    def start_client(self, out: Path, rate_factor: float, seconds: float | None, start_at: float,
                     address: str | None = None) -> subprocess.Popen:
        spec = {"address": address or self.frontend_address, "frame_shape": list(self.frame_shape), "start_at": start_at,
                "seconds": seconds, "vanish_after_s": VANISH_AFTER_S, "control": str(self.control),
                "apps": [{"name": a.name, "rate": a.rate * rate_factor, "slo_ms": a.slo_ms} for a in self.apps]}
        path = out.with_suffix(".spec.json")
        path.write_text(json.dumps(spec))
        err = out.with_suffix(".stderr.log")
        with err.open("ab") as stderr:
            p = subprocess.Popen(self._python("cli", "-m", "harpagon.bench.faults", "_client", str(path), str(out)),
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        self.clients.append(p)
        self.client_logs.append(err)
        return p

    def fault_file(self, role: str) -> Path:
        """While this file exists, the worker's emulated device fails every batch (test-only injection)."""
        return self.tmp / f"fault-{role}"

    def set_rate(self, factor: float) -> None:
        """Every load client sends at `factor` times its rate from now on (within 0.1 s)."""
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps({"factor": factor}))
        os.replace(tmp, self.control)

    def client_tail(self, lines: int = 15) -> str:
        """The last lines of each load client's stderr (for an error message)."""
        out = []
        for err in dict.fromkeys(self.client_logs):
            try:
                text = err.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if text:
                out.append(f"--- {err.name}:\n" + "\n".join(text))
        return "\n".join(out)

    # --- state -------------------------------------------------------------------------------

    def wait_back(self, since: float, records: RecordTail, timeout_s: float) -> float | None:
        """Wait until every worker is registered with the current controller, a plan is in force since the
        last join or leave, nothing has changed for SETTLE_S (the heal, a join, a leave, a plan), and the
        latest BACK_FRAMES frames, sent after all that, were answered OK; when that was (wall time), or None
        after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.controller.snapshot()
            members, changed = membership(lines)
            plans = [t for t, _ in plan_lines(lines) if t >= changed]
            now = time.time()
            if len(members) >= self.n_workers and plans and now - max(plans[-1], since) >= SETTLE_S:
                after = sorted((f for f in records.read() if f.t >= max(plans[-1], since)), key=lambda f: f.t)
                if len(after) >= BACK_FRAMES and all(f.code == OK for f in after[-BACK_FRAMES:]):
                    return now
            time.sleep(0.2)
        return None

    def save_logs(self, folder: Path) -> None:
        """Every process's output, one file each, lines prefixed with their arrival (wall clock); each load
        client's stderr as it wrote it."""
        folder.mkdir(parents=True, exist_ok=True)
        seen: dict[str, int] = {}
        for p in [*self.controllers, *self.frontends, *self.old, *self.workers.values(), *self.others]:
            stem = p.name.replace(" ", "-")
            seen[stem] = seen.get(stem, 0) + 1
            (folder / f"{stem}.{seen[stem]}.log").write_text(
                "".join(f"{t:.3f} {s}\n" for t, s in p.snapshot()))
        for err in dict.fromkeys(self.client_logs):
            if err.is_file():
                shutil.copyfile(err, folder / f"client-{err.name}")

    def close(self) -> list[str]:
        """Kill every process and delete the network, each step on its own (one that fails or hangs does
        not keep the others from running); never raises: what went wrong, one line per step."""
        errors: list[str] = []

        def step(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - cleanup goes on; said in the log
                errors.append(f"{what}: {type(exc).__name__}: {exc}")

        def kill_client(c: subprocess.Popen) -> None:
            if c.poll() is not None:
                return
            kill_group(c.pid)
            try:
                c.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"pid {c.pid} did not exit within 10 s of SIGKILL") from None

        for c in self.clients:
            step(f"load client {c.pid}", lambda c=c: kill_client(c))
        for p in [*self.frontends, *self.workers.values(), *self.old, *self.controllers, *self.others]:
            step(f"{p.name} (pid {p.pid})", lambda p=p: (p.signal(signal.SIGCONT), p.kill()))
        step(f"network ({self.net.mode})", self.net.close)
        for e in errors:
            log(f"cleanup: {e}")
        return errors
