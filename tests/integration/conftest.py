"""Real worker processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.servicer import start
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc
from tests.fakes import FakeWorkers

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def threaded_frontend(frame_shape: tuple[int, int, int], slo_ms: float = 2000.0
                      ) -> Iterator[tuple[FrontendDataPlane, str, asyncio.AbstractEventLoop]]:
    """A frontend on 127.0.0.1 serving app `cam` (one module, 50 frames/s, `slo_ms`) for `frame_shape`
    frames in front of fake workers, its event loop in a thread of its own (a test can hold it)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = app_route(App.model_validate({"name": "cam", "rate": 50, "slo_ms": slo_ms,
                                        "modules": [{"name": "x", "model": "m"}]}))
    route = ModuleRoute("x", (3, 8, 8), (TupleSpec(1, 1, 50.0, 0.0, 0.0),), (("w1",),), ("cam/x@b1",))

    async def up():
        plane = FrontendDataPlane(RoutingTable(1, "batch-aware", {"cam": app}, {("cam", "x"): route}),
                                  frame_shape=frame_shape, client=FakeWorkers())
        server, port = await start(plane, 0)
        return plane, server, port

    plane, server, port = asyncio.run_coroutine_threadsafe(up(), loop).result(30)
    try:
        yield plane, f"127.0.0.1:{port}", loop
    finally:
        async def down():
            await server.stop(1)
            await plane.close()

        asyncio.run_coroutine_threadsafe(down(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class ServiceProcess:
    """`harpagon ARGS` in its own process; ready once it prints `<ready> HOST:PORT` (in JSON mode, a JSON
    line whose message is that). Every wait is bounded: a process that goes quiet before it is ready
    fails the test after 120 s instead of blocking it on a read."""

    def __init__(self, args: list[str], ready: str):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "harpagon.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
        self.lines: list[str] = []
        arrived: queue.Queue[str | None] = queue.Queue()
        # drain its output (into `lines`) from the start, so that it never blocks on a full pipe
        threading.Thread(target=self._drain, args=(arrived,), daemon=True).start()
        deadline = time.monotonic() + 120
        while True:
            try:
                line = arrived.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{args[0]} did not start:\n" + "".join(self.lines)) from None
            if line is None:
                raise RuntimeError(f"{args[0]} exited:\n" + "".join(self.lines))
            text = line
            if line.startswith("{"):  # a JSON log line (or text that only starts like one)
                with contextlib.suppress(ValueError, AttributeError):
                    text = json.loads(line).get("message", "")
            if text.startswith(ready):
                self.address = text[len(ready):].split()[0].rstrip(",")
                break

    def _drain(self, arrived: queue.Queue) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            arrived.put(line)
        arrived.put(None)

    def wait_for_line(self, text: str, timeout_s: float = 30.0) -> str:
        """The first line of its output that contains `text`, waiting for it (bounded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if text in line), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"no line with {text!r} within {timeout_s:g} s:\n" + "".join(self.lines[-20:]))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


class WorkerProcess(ServiceProcess):
    def __init__(self, *args: str):
        super().__init__(["worker", "--port", "0", *args], "worker listening on ")
        self.channel = grpc.insecure_channel(self.address)
        self.stub = rpc.WorkerStub(self.channel)
        self.stub.Health(pb.HealthRequest(), timeout=30)

    def stop(self) -> int:
        """SIGINT: stop without leaving. These tests' controllers are fakes, or stopped first; SIGTERM would
        wait for one to re-plan around the worker (tests/integration/test_fleet.py tests that)."""
        self.channel.close()
        return super().stop(signal.SIGINT)


@pytest.fixture
def start_worker() -> Iterator:
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        w = WorkerProcess(*args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def start_service() -> Iterator:
    started: list[ServiceProcess] = []

    def start(args: list[str], ready: str) -> ServiceProcess:
        p = ServiceProcess(args, ready)
        started.append(p)
        return p

    yield start
    for p in reversed(started):
        p.stop()
