"""`harpagon serve`: controller, frontend and local workers in one command.

The frontend and the controller run in this process, each on an event loop of its own (the
controller's in a thread): a flood of frames that saturates the frontend's loop cannot delay the
workers' heartbeats (on one shared loop, the demo at 10x its rates had 5 of its 8 healthy workers
evicted). Each local worker is its own process (one per device, as on a GPU node),
registered with the controller over gRPC on 127.0.0.1. The `serve` section of the config says which
workers to start.

The control plane is authenticated even on one host: at start, `serve` makes a throwaway CA and
certificates for its controller, frontend and workers (mutual TLS), in a folder only its user can
read, so another user's process can neither register as a worker, nor configure one, nor send it
batches. Only the workers' certificate and key stay on disk: the CA's key is deleted once it has
signed, the controller's and frontend's once loaded, so that a `serve` killed with `kill -9` leaves
no key that could sign a certificate its successors trust. The run's folder (certificates, sockets,
profiles) is removed at stop, or, after a `kill -9`, at the next start (:class:`RunFolder`); the
workers and the planner process die with `serve` (:func:`die_with_parent`).

With `serve.frontends` N > 1 (or `--frontends N`), frontends 1..N-1 are `harpagon frontend` processes on
the next ports (PORT+1, ...), watching the controller like remote ones, and the plan shares the apps
among all N (docs/model.md, "Several frontends"); the frontend certificate then stays on disk with the
workers', for them to read.

With a `serve.fleet`, the workers of `serve.workers` are the most it may start: it starts those the
first plan needs (plus spares), and a :class:`LocalScaler` starts and stops workers as the plan's needs
change (docs/model.md, "The fleet").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIServer

import yaml
from grpc_health.v1 import health, health_pb2_grpc
from prometheus_client import CollectorRegistry

from harpagon.config.schema import MAX_WORKERS, ServeConfig, WorkerGroup, Workload
from harpagon.planner.harpagon import PlannerOptions
from harpagon.planner.harpagon import plan as harpagon_plan
from harpagon.planner.streams import frontend_ids
from harpagon.runtime import logs
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.controller.config import ControllerConfig
from harpagon.runtime.controller.controller import Controller, settings_of
from harpagon.runtime.controller.fleet import targets
from harpagon.runtime.controller.scaler import LocalScaler
from harpagon.runtime.controller.servicer import ControllerServicer, RoutesHub
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.main import rate_beacon
from harpagon.runtime.frontend.servicer import start as start_frontend
from harpagon.runtime.frontend.stats import FanoutCounts
from harpagon.runtime.lifecycle import ChildLog, RunFolder, child_env, free_port, stop_signals
from harpagon.runtime.metrics import ControllerMetrics, FrontendMetrics, scrape, serve_metrics
from harpagon.runtime.traces import otlp_tracing
from harpagon.runtime.wire.clients import GrpcWorkerClient
from harpagon.runtime.wire.rpc import aio_server
from harpagon.runtime.wire.tls import TlsFiles, make_certs
from harpagon.runtime.worker.executor import default_hardware_name
from harpagon.runtime.worker.registry import weights_file
from harpagon.v1 import controller_pb2_grpc as crpc

log = logging.getLogger("harpagon.serve")

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; `run` awaits a coroutine on it from another loop."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call(self, fn, *args) -> None:
        """Call `fn(*args)` on the loop, soon; does not wait."""
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class StartError(RuntimeError):
    """A child process (worker or frontend) ended while the cluster was starting; says why."""


@dataclass
class LocalCluster:
    workload: Workload
    host: str = "127.0.0.1"
    grpc_port: int | None = None  # None: the config's (default 8001); 0: any free port
    metrics_port: int | None = None  # None: the config's (default 8002); 0: any free port
    follow_rates: bool = True  # re-plan when measured rates leave the band (see ControllerConfig.follow_rates)
    unix_sockets: bool = True  # local workers listen on Unix sockets (False: loopback TCP, for comparison)
    tls: bool = True  # mutual TLS on the control plane with throwaway certificates (False: plaintext, to compare)
    frontends: int | None = None  # None: the config's `serve.frontends` (default 1)
    log_dir: Path | None = None
    """Where each child's log is kept, `NAME.log` (None: a temporary folder, removed at a clean stop and
    kept when a child failed)."""
    otlp_endpoint: str | None = None
    """Export a trace per frame there (runtime/traces.py), from every frontend; None: no traces."""
    processes: list[subprocess.Popen] = field(default_factory=list)
    # What `start` has started so far (None: not yet), so that `stop` undoes a start that failed midway.
    _run: RunFolder | None = field(default=None, init=False, repr=False)  # _certs, sockets, _profiles
    _certs: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)
    frontend: Any = field(default=None, init=False, repr=False)
    plane: FrontendDataPlane | None = field(default=None, init=False, repr=False)
    control: LoopThread | None = field(default=None, init=False, repr=False)
    control_server: Any = field(default=None, init=False, repr=False)
    _beacon: asyncio.Future | None = field(default=None, init=False, repr=False)
    _profiles: Path | None = field(default=None, init=False, repr=False)
    _logs: Path | None = field(default=None, init=False, repr=False)
    _metrics: WSGIServer | None = field(default=None, init=False, repr=False)
    frontend_processes: list[subprocess.Popen] = field(default_factory=list, init=False, repr=False)
    addresses: list[str] = field(default_factory=list, init=False)
    """Every frontend's Triton address, this process's first (known once :meth:`ready`)."""
    scaler: LocalScaler | None = field(default=None, init=False, repr=False)
    """Starts and stops workers to match the desired fleet (with a `serve.fleet`)."""
    initial: list[int] = field(default_factory=list, init=False)
    """Workers started at start, per worker group (each group's `count` without a fleet)."""
    child_logs: dict[subprocess.Popen, ChildLog] = field(default_factory=dict, init=False, repr=False)
    failed: list[ChildLog] = field(default_factory=list, init=False, repr=False)
    """Children that ended on their own with an error."""
    children_metrics: dict[subprocess.Popen, tuple[dict[str, str], int]] = field(default_factory=dict, init=False,
                                                                               repr=False)
    """Each child process's labels and metrics port: this process's metrics port shows theirs too."""

    @property
    def frontend_count(self) -> int:
        return self.serve.frontends if self.frontends is None else self.frontends

    @property
    def frontend_id(self) -> str:
        """This process's frontend at the controller ("local" when it is the only one)."""
        return frontend_ids(1)[0] if self.frontend_count > 1 else "local"

    @property
    def serve(self) -> ServeConfig:
        if self.workload.serve is None:
            raise ValueError("the config has no `serve` section: which workers should run?")
        return self.workload.serve

    @property
    def worker_groups(self) -> tuple[WorkerGroup, ...]:
        """The configured workers, or one per visible GPU."""
        if self.serve.workers:
            return self.serve.workers
        if not hasattr(self, "_gpus"):
            import torch

            self._gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not self._gpus:
            raise ValueError("no GPU is visible: list cpu or emulated:HARDWARE workers under serve.workers")
        return tuple(WorkerGroup(device=f"cuda:{i}") for i in range(self._gpus))

    def weights_dir(self) -> Path:
        """Where local workers read modules' weights (the config's folder unless `serve.weights_dir`)."""
        return Path(self.serve.weights_dir or ".").resolve()

    def check_weights(self) -> None:
        """Every module's weights file exists in the weights folder: a missing one is an input error
        at start, not a configuration that workers refuse at every re-plan."""
        folder = self.weights_dir()
        for app in self.workload.apps:
            for m in app.modules:
                if not m.weights:
                    continue
                path = weights_file(folder, m.weights)
                if path is None:
                    raise ValueError(f"app {app.name!r}, module {m.name!r}: weights {m.weights!r} lie outside the "
                                     f"weights folder {str(folder)!r} (serve.weights_dir)")
                if not path.is_file():
                    raise ValueError(f"app {app.name!r}, module {m.name!r}: weights {m.weights!r}: no such file in "
                                     f"{str(folder)!r} (serve.weights_dir)")

    @contextlib.asynccontextmanager
    async def running(self, timeout_s: float = 120.0) -> AsyncIterator[LocalCluster]:
        """The cluster started and ready inside (:meth:`ready`), drained and stopped after, however the
        block ends."""
        await self.start()
        try:
            await self.ready(timeout_s)
            yield self
        finally:
            await self.stop()

    async def start(self) -> None:
        """Start the frontend, the controller and the configured workers; on failure, stop what started."""
        s = self.serve
        groups = self.worker_groups  # fail before starting anything
        self.check_weights()
        self.settings = settings_of(s)
        self.initial = await self._initial_fleet(s, groups)
        try:
            await self._start(s, groups)
        except BaseException:
            await self.stop()
            raise

    async def _initial_fleet(self, s: ServeConfig, groups: tuple[WorkerGroup, ...]) -> list[int]:
        """Workers to start per group: every configured one, or with a fleet those the plan within the
        quota (each kind's `count`, at most the workers of that kind `serve.workers` lists) needs plus
        spares (planned once here, so that a normal start plans once more, not once per scale step)."""
        if s.fleet is None:
            return [g.count for g in groups]
        # the quota is what this host can start: a kind without workers here cannot be scaled up
        local: dict[str, int] = {}
        for g in groups:
            kind = group_kind(g)
            local[kind] = local.get(kind, 0) + g.count
        self.workload = self.workload.model_copy(update={"hardware": tuple(
            h.model_copy(update={"count": min(local.get(h.name, 0), h.count if h.count is not None else MAX_WORKERS)})
            for h in self.workload.hardware)})
        options = PlannerOptions(dispatch=s.dispatch, replay=True, sharing=s.sharing)
        plan = await asyncio.to_thread(harpagon_plan, self.workload, self.settings, options)
        want = targets(plan.workers_by_hardware(), {h.name: h.count for h in self.workload.hardware}, s.fleet)
        out = []
        for g in groups:
            kind = group_kind(g)
            out.append(min(g.count, want.get(kind, 0)))
            want[kind] = want.get(kind, 0) - out[-1]
        log.info("fleet: starting %d workers (the first plan's, with spares) of at most %d", sum(out),
                 sum(g.count for g in groups))
        return out

    async def _start(self, s: ServeConfig, groups: tuple[WorkerGroup, ...]) -> None:
        self._run = RunFolder(prefix="harpagon-serve-")
        self._logs = Path(self.log_dir if self.log_dir is not None else tempfile.mkdtemp(prefix="harpagon-logs-"))
        self._logs.mkdir(parents=True, exist_ok=True)
        self._certs = tempfile.TemporaryDirectory(prefix="certs-", dir=self._run.name)
        certs = Path(self._certs.name)
        controller_tls = frontend_tls = None
        if self.tls:
            make_certs(certs, days=30)
            (certs / "ca.key").unlink()  # nothing signs after this
            controller_tls, frontend_tls = (TlsFiles.load(certs / role) for role in ("controller", "frontend"))
            # both run in this process: no child reads them (but frontend processes do, when there are some)
            for role in ("controller",) if self.frontend_count > 1 else ("controller", "frontend"):
                shutil.rmtree(certs / role)
        registry = CollectorRegistry()
        self.plane = FrontendDataPlane(None, tuple(s.frame_shape), FrontendMetrics(registry),
                                       client=GrpcWorkerClient(frontend_tls),
                                       configured={a.name: app_route(a) for a in self.workload.apps},
                                       frontend_id=self.frontend_id,
                                       tracing=otlp_tracing(self.otlp_endpoint, "harpagon-frontend")
                                       if self.otlp_endpoint else None)
        self._metrics = serve_metrics(registry, s.metrics_port if self.metrics_port is None else self.metrics_port,
                                      self.host, more=self._children_metrics)
        self.metrics_at = self._metrics.server_port
        port = s.grpc_port if self.grpc_port is None else self.grpc_port
        self.frontend, self.port = await start_frontend(self.plane, port, self.host)
        frontend_loop = asyncio.get_running_loop()

        hub = RoutesHub() if self.frontend_count > 1 else None  # the other frontends watch the routes

        async def push_routes(table, refused) -> None:  # from the controller's loop to the frontend's
            if hub is not None:
                await hub.push(table, refused)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.plane.update(table, refused),
                                                                       frontend_loop))

        # the first plan waits (bounded) for the local workers, so a normal start plans once
        config = ControllerConfig(follow_rates=self.follow_rates, expect_workers=sum(self.initial))
        if s.fleet is not None:
            kinds: dict[str, WorkerGroup] = {}
            for g in groups:
                kinds.setdefault(group_kind(g), g)
            self.scaler = LocalScaler(kinds, lambda g, worker: self.start_worker(g.device, g.hardware, g.threads,
                                                                                 g.slowdown, worker))
        self.controller = Controller(self.workload, self.settings, s.input_shape, push_routes, config,
                                     metrics=ControllerMetrics(registry), client=GrpcWorkerClient(controller_tls),
                                     scaler=self.scaler)
        self.control = LoopThread("controller")

        async def start_control() -> int:
            self.control_server, bound = aio_server(self.host, 0, controller_tls)
            crpc.add_ControllerServicer_to_server(ControllerServicer(self.controller, hub), self.control_server)
            health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), self.control_server)
            await self.control_server.start()
            self.controller.start()
            return bound

        self.control_port = await self.control.run(start_control())
        if self.frontend_count > 1:
            self.control.call(self.controller.frontend_joined, self.frontend_id, f"{self.host}:{self.port}")
        self.addresses = [f"{self.host}:{self.port}"]

        def observe(rates: dict[str, float], window: float, hops: list[float], fanout: FanoutCounts) -> None:
            self.controller.observe_rates(self.frontend_id, rates, window)
            self.controller.observe_hops(hops)
            self.controller.observe_fanout(self.frontend_id, fanout)

        async def report(rates: dict[str, float], window: float, hops: list[float], fanout: FanoutCounts) -> None:
            self.control.call(observe, rates, window, hops, fanout)

        self._beacon = asyncio.ensure_future(rate_beacon(self.plane, report))
        self._profiles = Path(self._run.name) / "profiles.yaml"
        self._profiles.write_text(yaml.safe_dump({"profiles": [p.model_dump() for p in self.workload.profiles]}))
        for group, n in zip(groups, self.initial, strict=True):
            for _ in range(n):
                if self.scaler is None:
                    self.start_worker(group.device, group.hardware, group.threads, group.slowdown)
                else:
                    worker = self.scaler.next_id()
                    proc = self.start_worker(group.device, group.hardware, group.threads, group.slowdown, worker)
                    self.scaler.adopt(group_kind(group), worker, proc)
        for i in range(1, self.frontend_count):
            self.start_frontend(i, 0 if port == 0 else port + i)
        log.info("frontend on %s:%d (Triton gRPC), metrics on http://%s:%d/metrics, controller on %s:%d",
                 self.host, self.port, self.host, self.metrics_at, self.host, self.control_port)

    def start_frontend(self, index: int, port: int) -> subprocess.Popen:
        """Frontend `index` as a process of its own, watching this controller (it dies with this process)."""
        frontend_id, metrics_port = frontend_ids(self.frontend_count)[index], free_port(self.host)
        tracing = ["--otlp-endpoint", self.otlp_endpoint] if self.otlp_endpoint else []
        proc = self._child("frontend", frontend_id, "--host", self.host, "--port", str(port), "--metrics-port",
                           str(metrics_port), "--id", frontend_id, "--frame-shape",
                           ",".join(map(str, self.serve.frame_shape)), *tracing)
        self.frontend_processes.append(proc)
        self.children_metrics[proc] = ({"frontend": frontend_id}, metrics_port)
        return proc

    def _children_metrics(self) -> list:
        """The live children's metrics, read at each scrape of this process's port, each series labelled
        with its worker or frontend."""
        live = [(labels, port) for proc, (labels, port) in list(self.children_metrics.items()) if proc.poll() is None]
        if not live:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(live)), thread_name_prefix="scrape") as pool:
            found = pool.map(lambda lp: scrape(f"http://{self.host}:{lp[1]}/metrics", lp[0]), live)
            return [f for families in found for f in families]

    def _child(self, role: str, name: str, *args: str) -> subprocess.Popen:
        """`harpagon ROLE ARGS` watching this controller, under the role's certificate, logging as this
        process does to its stderr (a worker that cannot open its device says why there, at once). It
        dies with this process (see die_with_parent: start children from a thread that lives as long)."""
        tls = ["--tls-dir", str(Path(self._certs.name) / role)] if self.tls else []
        proc = subprocess.Popen([sys.executable, "-m", "harpagon", *_child_logs(), role, *args, "--controller",
                                 f"{self.host}:{self.control_port}", *tls], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=child_env({**os.environ, "PYTHONUNBUFFERED": "1"}))
        self.child_logs[proc] = ChildLog(proc, f"{role} {name}", self._logs / f"{name}.log", self._child_ended)
        return proc

    def _child_ended(self, child: ChildLog, failed: bool) -> None:
        """From the child's log thread, its output read to the end: a failure is said at once, with why
        and where its whole log is; its metrics are no longer scraped."""
        self.children_metrics.pop(child.proc, None)
        if failed:
            self.failed.append(child)
            log.error("%s exited: %s (its log: %s)", child.name, child.reason, child.path)

    def start_worker(self, device: str, hardware: str | None = None, threads: int | None = None,
                     slowdown: float = 1.0, worker_id: str | None = None) -> subprocess.Popen:
        # local workers listen on Unix sockets: a hop is faster than over loopback TCP (docs/benchmarks/live.md)
        socket = Path(self._run.name) / f"worker-{len(self.processes)}.sock"
        listen = ["--unix-socket", str(socket)] if self.unix_sockets else ["--port", "0"]
        args = ["--device", device, *listen, "--profiles", str(self._profiles)]
        if any(m.weights for a in self.workload.apps for m in a.modules):
            args += ["--weights-dir", str(self.weights_dir())]
        if hardware:
            args += ["--hardware", hardware]
        if threads:
            args += ["--threads", str(threads)]
        if slowdown != 1.0:
            args += ["--slowdown", repr(slowdown)]
        if worker_id:
            args += ["--id", worker_id]
        metrics_port = free_port(self.host)
        name = worker_id or socket.stem
        proc = self._child("worker", name, *args, "--metrics-port", str(metrics_port))
        self.children_metrics[proc] = ({"worker": name}, metrics_port)
        self.processes.append(proc)
        return proc

    async def ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every worker started at start has registered and a plan using them is in force."""
        want = sum(self.initial)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while loop.time() < end:
            joined = dict(self.controller.frontends)
            if (self.controller.planned_workers >= want and not self.controller.dirty
                    and (self.frontend_count == 1 or len(joined) >= self.frontend_count)):
                if self.frontend_count > 1:
                    self.addresses = [joined[f] for f in frontend_ids(self.frontend_count)]
                return
            ended = [self.child_logs[p] for p in [*self.processes, *self.frontend_processes] if p.poll() is not None]
            if ended:
                await asyncio.to_thread(ended[0].thread.join, 5)  # its last line
                raise StartError(f"{ended[0].name} exited at start: {ended[0].reason} (its log: {ended[0].path})")
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{want} workers and {self.frontend_count} frontends did not register and get a plan "
                           f"within {timeout_s:g} s")

    async def stop(self) -> None:
        """Drain: stop re-planning, stop taking frames, let open batches finish, stop workers (only
        what `start` got to, when it failed midway)."""
        for child in list(self.child_logs.values()):  # what ends from here on is stopped, not failed
            child.stopping = True
        if self._beacon is not None:
            self._beacon.cancel()
        for p in self.frontend_processes:  # they leave first: the controller's stop ends their routes
            p.terminate()

        if self.control is not None and hasattr(self, "controller"):  # first: a re-plan in flight must not
            await self.control.run(self.controller.stop())              # route a closed plane
        if self.frontend is not None:
            await self.frontend.stop(5)
        if self.plane is not None:
            await self.plane.close()
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
        for p in self.processes:  # SIGINT: stop without leaving (the frontend has drained; SIGTERM would re-plan)
            p.send_signal(signal.SIGINT)
        for p in [*self.frontend_processes, *self.processes]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.control is not None:
            if self.control_server is not None:  # after the workers, which heartbeat until they stop
                await self.control.run(self.control_server.stop(1))
            self.control.close()  # after the workers: those its scaler started die with its thread
        for folder in (self._certs, self._run):
            if folder is not None:
                folder.cleanup()
        for child in list(self.child_logs.values()):  # off the loop: it may host the frontend
            await asyncio.to_thread(child.thread.join, 5)
        if self._logs is not None and self.log_dir is None:
            if self.failed:
                log.warning("the children's logs are kept in %s", self._logs)
            else:
                shutil.rmtree(self._logs, ignore_errors=True)


def group_kind(group: WorkerGroup) -> str:
    """The hardware kind a group's workers register as (what their executor reports)."""
    if group.hardware:
        return group.hardware
    if group.device.startswith("emulated:"):
        return group.device.split(":", 1)[1]
    return default_hardware_name(group.device)


def _child_logs() -> list[str]:
    """The global flags that make a child log as this process does: its format and level."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    return ["--log-format", logs.FORMAT, "--log-level", level if level in logs.LEVELS else "error"]


async def serve_forever(workload: Workload, grpc_port: int | None = None, metrics_port: int | None = None,
                        frontends: int | None = None, log_dir: Path | None = None,
                        otlp_endpoint: str | None = None) -> None:
    cluster = LocalCluster(workload, grpc_port=grpc_port, metrics_port=metrics_port, frontends=frontends,
                           log_dir=log_dir, otlp_endpoint=otlp_endpoint)
    stop = stop_signals()  # from the start: a SIGTERM while the first plan is made drains too
    await cluster.start()

    def serving() -> None:
        logs.banner(f"serving on {', '.join(cluster.addresses)} (Triton gRPC), metrics on "
                    f"http://{cluster.host}:{cluster.metrics_at}/metrics; Ctrl-C drains and stops",
                    "harpagon.serve", addresses=cluster.addresses,
                    metrics=f"http://{cluster.host}:{cluster.metrics_at}/metrics")

    try:  # a child that cannot start fails the command at once, with its own reason (StartError)
        if cluster.frontend_count == 1:  # listening already: apps answer UNAVAILABLE until routed
            serving()
        ready, stopped = asyncio.ensure_future(cluster.ready()), asyncio.ensure_future(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not ready.done():
            ready.cancel()
        else:
            try:
                ready.result()
            except TimeoutError as exc:
                if cluster.frontend_count > 1:  # their addresses come with their registration
                    raise StartError(str(exc)) from None
                log.warning("%s; serving with what there is", exc)
    except BaseException:
        await cluster.stop()
        raise
    if cluster.frontend_count > 1 and not stop.is_set():
        serving()
    await stop.wait()
    logs.banner("draining...", "harpagon.serve")
    await cluster.stop()
