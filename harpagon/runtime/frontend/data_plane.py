"""The frontend's data plane: runs a frame through its app's DAG on the planned workers.

A frame enters at the app's source module; each module gets `floor((f + 1) s) - floor(f s)`
requests for the app's f-th frame (its scale s, as the planner assumes), each the frame resized to
the module's input; a module runs once all its parents are done, parallel branches run
concurrently, and the reply holds the sink modules' outputs. Every frame carries its deadline
(arrival + the app's SLO): a frame still in the DAG past it is dropped at its next hop with
DEADLINE_EXCEEDED and counted.

Per module, requests go through :class:`harpagon.dispatch.ModuleDispatcher` (the code the simulator
runs) on the event loop's clock: split among tuples by smooth weighted round-robin, one open batch
per tuple, shipped whole to the tuple's next worker when full or when its flush timer runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass

import grpc
import numpy as np

from harpagon.dispatch.module import ModuleDispatcher, Shipped
from harpagon.model.latency import requests_for
from harpagon.runtime.errors import NotFound, RuntimeFault
from harpagon.runtime.frontend.routes import ModuleRoute, RoutingTable, worker_module_name
from harpagon.runtime.metrics import FrontendMetrics
from harpagon.runtime.tensors import from_numpy, to_numpy
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc

#: Latest latencies kept per module (for the demo's percentiles; metrics keep histograms).
LATENCY_WINDOW = 100_000


class DeadlineExceeded(RuntimeFault):
    code = "DEADLINE_EXCEEDED"


class Unavailable(RuntimeFault):
    code = "UNAVAILABLE"


def resize(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A [H, W, C] uint8 frame as a [C, h, w] module input (nearest neighbour)."""
    c, h, w = shape
    rows = (np.arange(h) * frame.shape[0] // h).clip(0, frame.shape[0] - 1)
    cols = (np.arange(w) * frame.shape[1] // w).clip(0, frame.shape[1] - 1)
    out = frame[rows][:, cols]
    if out.shape[2] != c:
        out = np.resize(out, (h, w, c))
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class LiveModule:
    """One module's dispatcher on the event loop, shipping batches to its workers over gRPC."""

    def __init__(self, route: ModuleRoute, dispatch: str, channels: dict[str, grpc.aio.Channel],
                 app: str = "", metrics: FrontendMetrics | None = None):
        self.route = route
        self.labels = (app, route.module)
        self.metrics = metrics
        self.dispatcher: ModuleDispatcher = ModuleDispatcher(route.tuples, dispatch)  # type: ignore[arg-type]
        self.stubs = [[rpc.WorkerStub(channels[a]) for a in addrs] for addrs in route.workers]
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None
        self.batches = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)  # per request: dispatched -> result
        self.tasks: set[asyncio.Task] = set()

    def now_ms(self) -> float:
        return self.loop.time() * 1000.0

    def submit(self, item: np.ndarray) -> asyncio.Future:
        fut = self.loop.create_future()
        t0 = self.loop.time()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception() or self._done(t0))
        self._ship(self.dispatcher.add((item, fut), self.now_ms()))
        self._arm()
        return fut

    def _done(self, t0: float) -> None:
        ms = (self.loop.time() - t0) * 1000.0
        self.latencies_ms.append(ms)
        if self.metrics:
            self.metrics.module_latency.labels(*self.labels).observe(ms / 1000.0)

    def _arm(self) -> None:
        due = self.dispatcher.deadline()
        if due == self._due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._due = due
        self._timer = None if due is None else self.loop.call_at(due / 1000.0, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._due = None, None
        self._ship(self.dispatcher.poll(self.now_ms()))
        self._arm()

    def _ship(self, shipped: list[Shipped]) -> None:
        for s in shipped:
            self.batches += 1
            if self.metrics:
                self.metrics.module_batches.labels(*self.labels).inc()
                self.metrics.module_requests.labels(*self.labels).inc(len(s.batch.items))
                self.metrics.module_dummies.labels(*self.labels).inc(s.batch.dummies)
            task = self.loop.create_task(self._send(s))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, s: Shipped) -> None:
        items = s.batch.items
        stub = self.stubs[s.tuple_index][s.worker]
        try:
            name = worker_module_name(self.route.worker_module, self.route.tuples[s.tuple_index].batch)
            reply = await stub.Infer(pb.InferRequest(module=name,
                                                     input=from_numpy(np.stack([x for x, _ in items]))))
            outputs = [to_numpy(t) for t in reply.outputs]
        except grpc.aio.AioRpcError as exc:
            error = Unavailable(f"module {self.route.module!r}: worker failed: {exc.code().name}: {exc.details()}")
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(error)
            return
        for i, (_, fut) in enumerate(items):
            if not fut.done():
                fut.set_result([o[i] for o in outputs])

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._ship(self.dispatcher.flush(self.now_ms()))
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class AppCounters:
    frames: int = 0
    success: int = 0
    failed: int = 0
    dropped: int = 0
    success_ns: int = 0


class FrontendDataPlane:
    """Apps in, sink outputs out. Create and use it on one event loop."""

    def __init__(self, table: RoutingTable, frame_shape: tuple[int, int, int] = (480, 640, 3),
                 metrics: FrontendMetrics | None = None):
        self.frame_shape = frame_shape
        self.metrics = metrics
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.counters: dict[str, AppCounters] = defaultdict(AppCounters)
        self.refused: dict[str, str] = {}
        self._seq: dict[str, int] = defaultdict(int)
        self.modules: dict[tuple[str, str], LiveModule] = {}
        self._install(table)

    def _install(self, table: RoutingTable) -> dict[tuple[str, str], LiveModule]:
        for route in table.routes.values():
            for addrs in route.workers:
                for a in addrs:
                    if a not in self.channels:
                        self.channels[a] = grpc.aio.insecure_channel(a, options=[
                            ("grpc.max_receive_message_length", 256 << 20),
                            ("grpc.max_send_message_length", 256 << 20)])
        old = self.modules
        self.table = table
        self.modules = {key: LiveModule(route, table.dispatch, self.channels, key[0], self.metrics)
                        for key, route in table.routes.items()}
        return old

    async def update(self, table: RoutingTable, refused: dict[str, str] | None = None) -> None:
        """Route new frames by `table`; batches already open under the old table ship and finish."""
        old = self._install(table)
        self.refused = dict(refused or {})
        for m in old.values():
            await m.close()

    def has_app(self, name: str) -> bool:
        return name in self.table.apps

    def sinks(self, app: str) -> list[str]:
        a = self.table.apps[app]
        return [m.name for m in a.modules if not a.children[m.name]]

    async def infer(self, app_name: str, frame: np.ndarray) -> dict[str, list[list[np.ndarray]]]:
        """Run one frame; returns, per sink module, the outputs of each of its requests."""
        app = self.table.apps.get(app_name)
        if app is None:
            if app_name in self.refused:
                raise Unavailable(f"app {app_name!r} cannot be served: {self.refused[app_name]}")
            raise NotFound(f"app {app_name!r} is not served (serving: {sorted(self.table.apps)})")
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + app.slo_ms / 1000.0
        seq = self._seq[app_name]
        self._seq[app_name] += 1
        counters = self.counters[app_name]
        counters.frames += 1
        tasks: dict[str, asyncio.Task] = {}

        async def run(module: str) -> list[list[np.ndarray]]:
            m = app.module(module)
            if m.after:
                await asyncio.gather(*(tasks[p] for p in m.after))
            if loop.time() > deadline:
                raise DeadlineExceeded(f"app {app_name!r}: frame past its {app.slo_ms:g} ms deadline before {module!r}")
            live = self.modules.get((app_name, module))  # the routes in force at this hop
            if live is None:
                raise Unavailable(f"app {app_name!r} is no longer served")
            item = resize(frame, live.route.input_shape)
            return list(await asyncio.gather(*(live.submit(item) for _ in range(requests_for(seq, m.scale)))))

        for m in _topological(app):
            tasks[m] = loop.create_task(run(m))
        try:
            await asyncio.gather(*tasks.values())
        except DeadlineExceeded:
            counters.dropped += 1
            if self.metrics:
                self.metrics.dropped.labels(app_name).inc()
                self.metrics.failure.labels(app_name, "deadline").inc()
            raise
        except Exception as exc:
            counters.failed += 1
            if self.metrics:
                self.metrics.failure.labels(app_name, type(exc).__name__).inc()
            raise
        finally:
            for t in tasks.values():
                if not t.done():
                    t.cancel()
        elapsed = time.perf_counter() - start
        counters.success += 1
        counters.success_ns += int(elapsed * 1e9)
        if self.metrics:
            self.metrics.success.labels(app_name).inc()
            self.metrics.duration_us.labels(app_name).inc(elapsed * 1e6)
            self.metrics.latency.labels(app_name).observe(elapsed)
        return {s: tasks[s].result() for s in self.sinks(app_name)}

    async def close(self) -> None:
        for m in self.modules.values():
            await m.close()
        for c in self.channels.values():
            await c.close()


def _topological(app) -> list[str]:
    order, seen = [], set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for p in app.module(name).after:
            visit(p)
        order.append(name)

    for m in app.modules:
        visit(m.name)
    return order
