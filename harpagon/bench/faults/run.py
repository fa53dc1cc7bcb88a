"""One run of the suite: the cluster started, every scenario against it, every process ended whatever
happened, and the report written."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harpagon.bench.faults.cluster import Cluster
from harpagon.bench.faults.goals import ScenarioResult
from harpagon.bench.faults.markdown import build_markdown
from harpagon.bench.faults.processes import log
from harpagon.bench.faults.scenarios import FULL, QUICK, Suite, Timing, describe_plan
from harpagon.bench.report import machine, shown
from harpagon.data import configs_dir

DEFAULT_CONFIG = configs_dir() / "faults.yaml"
DEFAULT_OUT = Path("docs/benchmarks/faults.md")
#: Emulated T4 workers started (the plan of configs/faults.yaml uses 3: the rest are spares).
DEFAULT_WORKERS = 6


def run_suite(out: Path, quick: bool = False, loopback: bool = False, config: Path = DEFAULT_CONFIG,
              workers: int = DEFAULT_WORKERS, command: str = "harpagon bench faults",
              only: Sequence[str] | None = None, logs: Path | None = None
              ) -> tuple[list[ScenarioResult], dict[str, Any]]:
    """Run the suite and write the report to `out` (and every process's output to `logs`); the results
    and the report's facts."""
    timing = QUICK if quick else FULL
    began = time.time()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return _run(out, timing, loopback, config, workers, command, only, logs, began)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # through every `finally`: processes killed, namespaces deleted


def _run(out: Path, timing: Timing, loopback: bool, config: Path, workers: int, command: str,
         only: Sequence[str] | None, logs: Path | None, began: float) -> tuple[list[ScenarioResult], dict[str, Any]]:
    load_at_start = os.getloadavg()[0]
    # ignore_cleanup_errors: a process that would not die may still hold a file; the run's result (or its
    # own error) matters more than the temporary folder
    with tempfile.TemporaryDirectory(prefix="harpagon-faults-", ignore_cleanup_errors=True) as tmp:
        cluster = Cluster(config, workers, loopback, Path(tmp))
        failed = True
        try:
            suite, client = _bring_up(cluster, timing)
            routes = cluster.routes()
            log(f"serving: {describe_plan(routes)}")
            suite.run(only)
            suite.finish(client)
            results = suite.results
            failed = False
        finally:
            # each step on its own, none raising: an error in the cleanup neither skips the rest nor hides
            # the error that brought us here
            cluster.close()
            if failed and cluster.client_logs:
                log(f"load client stderr:\n{cluster.client_tail() or '(empty)'}")
            if logs is not None:
                try:
                    cluster.save_logs(logs)
                except Exception as exc:  # noqa: BLE001 - the run's own error, if any, goes on up
                    log(f"could not save the logs to {logs}: {type(exc).__name__}: {exc}")
    meta = _facts(cluster, timing, command, config, began, load_at_start, routes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_markdown(results, meta) + "\n")
    return results, meta


def _bring_up(cluster: Cluster, timing: Timing) -> tuple[Suite, subprocess.Popen]:
    """The controller, the workers (started together), the frontend and the steady load client, once
    the cluster serves it; the suite and that client."""
    log(f"mode: {cluster.mode}" + (f" ({cluster.loopback_why})" if cluster.loopback_why else ""))
    cluster.start_controller()
    for p in [cluster.start_worker(role, wait=False) for role in cluster.worker_roles]:
        p.wait_ready()
    cluster.start_frontend()
    log(f"cluster started: controller {cluster.controller_address}, frontend {cluster.frontend_address}, "
        f"{cluster.n_workers} workers")
    suite = Suite(cluster, timing)
    client = cluster.start_client(suite.records.path, 1.0, None, time.time() + 1.5)
    if cluster.wait_back(0.0, suite.records, 90.0) is None:
        tail = "\n".join(s for _, s in cluster.controller.snapshot()[-20:])
        raise RuntimeError(f"the cluster did not come up within 90 s; controller log:\n{tail}\n"
                           f"load client:\n{cluster.client_tail() or '(nothing on stderr)'}")
    return suite, client


def _facts(cluster: Cluster, timing: Timing, command: str, config: Path, began: float, load_at_start: float,
           routes: dict) -> dict[str, Any]:
    """What the report says of the run besides its results."""
    return {"command": command, "machine": machine(), "run_s": time.time() - began, "mode": cluster.mode,
            "load": f"{load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
            "mode_note": cluster.net.note + (f" Loopback because: {cluster.loopback_why}." if cluster.loopback_why
                                             else ""),
            "workers": cluster.n_workers, "config": shown(config),
            "apps": "; ".join(f"app `{a.name}` at {a.rate:g} frames/s, SLO {a.slo_ms:g} ms" for a in cluster.apps),
            "plan": describe_plan(routes),
            "timing": (f"{timing.steady_s:g} s steady before each fault, {timing.observe_s:g} s from the fault to "
                       f"the heal or restart of a kill (stops and the partition last "
                       f"{timing.worker_stop_s:g} s for a worker, {timing.frontend_stop_s:g} s for the frontend, "
                       f"{timing.controller_stop_s:g} s for the controller, the partition {timing.partition_s:g} s; "
                       f"workers sent SIGTERM start again {timing.left_observe_s:g} s after the plan without them), "
                       f"then at most {timing.back_timeout_s:g} s of waiting for the cluster to be back")}
