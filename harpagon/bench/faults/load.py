"""The load client, a process of its own in the clients' namespace: streams each app's frames at its
rate, evenly spaced, and records every frame as it is sent and again with its outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any, TextIO

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as trpc

from harpagon.bench.faults.frames import OK, VANISHED

#: Checks of the client's loop kept (one per 10 ms or more): 10 s, longer than any answer within its SLO.
TICKS_KEPT = 1000

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20),
                   # a frontend restarted at the same address is reached within half a second
                   ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500)]


async def stream_frames(spec: dict, out: Path) -> None:
    """Stream each app's frames, evenly spaced at its rate, from `start_at` for `seconds` (None: until
    SIGTERM); append one JSON line per frame as it is sent (id, app, send time) and one per outcome (the
    same, the status code name and the latency). A frame still unanswered when the client gives up on it
    (its timeout + 5 s after the last send, or any other way out) is written VANISHED; one this process
    never got to write (it was killed) has a send line and no outcome, which RecordTail.final() counts as
    VANISHED."""
    channel = grpc.aio.insecure_channel(spec["address"], options=CHANNEL_OPTIONS)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    with out.open("a", buffering=1) as records:
        client = _LoadClient(spec, trpc.GRPCInferenceServiceStub(channel), records, loop)
        watcher = asyncio.ensure_future(client.watch_loop())
        try:
            await client.run(stop)
        finally:
            # whatever is still unanswered now is lost: written VANISHED before its task is cancelled (a
            # cancelled task's CancelledError passes `except Exception` and would write nothing)
            client.give_up()
            watcher.cancel()
            await channel.close()
            records.write(json.dumps({"summary": client.summary()}) + "\n")


class _LoadClient:
    """The frames of one client: when each app's next one is due, those in flight, and how late this
    client's own event loop ran."""

    def __init__(self, spec: dict, stub: Any, records: TextIO, loop: asyncio.AbstractEventLoop):
        shape = list(spec["frame_shape"])
        frame = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8).tobytes()
        apps = spec["apps"]
        self.requests = {a["name"]: tpb.ModelInferRequest(
            model_name=a["name"], inputs=[tpb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8",
                                                                                  shape=shape)],
            raw_input_contents=[frame]) for a in apps}
        self.timeouts = {a["name"]: a["slo_ms"] / 1000.0 + spec["vanish_after_s"] for a in apps}
        self.stub, self.records, self.loop = stub, records, loop
        self.pending: set[asyncio.Task] = set()
        self.inflight: dict[int, tuple[str, float, float]] = {}  # frame id -> app, send time, perf_counter at send
        self.lags: list[float] = []
        self.stalls: list[tuple[float, float]] = []  # (wall time, ms) when this client's own loop ran late
        # (perf_counter, ms) of every recent check of this loop: how late it ran while a frame was out
        self.ticks: deque[tuple[float, float]] = deque(maxlen=TICKS_KEPT)
        self.start = loop.time() + max(0.0, spec["start_at"] - time.time())
        self.seconds = spec.get("seconds")
        self.grace_s = spec.get("grace_s", 5.0)
        self.control = Path(spec["control"]) if spec.get("control") else None
        self.factor = 1.0  # the suite's multiple of every app's rate (a lull), read from `control` as it changes
        self.checked = -math.inf
        # every app's send times, merged: the n-th frame since the factor last changed is due at
        # anchor + n / (rate x factor) (computed, not summed: no drift, and exactly rate x seconds frames)
        self.counts = {a["name"]: 0 for a in apps}
        self.rates = {a["name"]: float(a["rate"]) for a in apps}
        self.anchors = {a["name"]: (self.start, 0, 1.0) for a in apps}  # app -> (time, count, factor) since the last change

    async def watch_loop(self) -> None:
        """This client's own event-loop lag: a late answer is only the server's if the client was on time."""
        while True:
            t0 = self.loop.time()
            await asyncio.sleep(0.01)
            lag = (self.loop.time() - t0 - 0.01) * 1000.0
            self.ticks.append((time.perf_counter(), lag))
            if lag > 20.0:
                self.stalls.append((time.time(), lag))

    def lag_since(self, t0: float) -> float:
        """The most this client's loop ran late since `t0` (perf_counter), in ms: at most that much of a
        frame's latency may be the client's own, reading the answer late (the frontend cannot see it)."""
        return max((min(lag, (t - t0) * 1000.0) for t, lag in self.ticks if t > t0), default=0.0)

    async def run(self, stop: asyncio.Event) -> None:
        """Send each frame when it is due until `seconds` are over (or `stop`), then wait for the answers."""
        while not stop.is_set():
            app = min(self.counts, key=lambda a: (self.due_of(a), a))
            due = self.due_of(app)
            if self.seconds is not None and due - self.start >= self.seconds:
                break
            delay = due - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                if stop.is_set():
                    break
            self.send(app, due)
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=max(self.timeouts.values()) + self.grace_s)

    def due_of(self, app: str) -> float:
        t0, n0, f0 = self.anchors[app]
        return t0 + (self.counts[app] - n0) / (self.rates[app] * f0)

    def rate_factor(self) -> float:
        if self.control is not None and self.loop.time() - self.checked >= 0.1:
            self.checked = self.loop.time()
            with contextlib.suppress(OSError, ValueError):
                self.factor = max(1e-3, float(json.loads(self.control.read_text())["factor"]))
        return self.factor

    def send(self, app: str, due: float) -> None:
        """Record the frame as sent (before anything else), then start its call."""
        sent = time.time()
        self.lags.append((self.loop.time() - due) * 1000.0)
        fid = sum(self.counts.values())
        self.counts[app] += 1
        if (factor_now := self.rate_factor()) != self.anchors[app][2]:  # from this frame on, at the new rate
            self.anchors[app] = (due, self.counts[app] - 1, factor_now)
        self.inflight[fid] = (app, sent, time.perf_counter())
        self.records.write(json.dumps({"id": fid, "app": app, "t": sent}) + "\n")
        task = asyncio.ensure_future(self.one(fid, app))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def one(self, fid: int, app: str) -> None:
        if fid in self.inflight:  # latency from the call's start, as before send records existed
            self.inflight[fid] = (app, self.inflight[fid][1], time.perf_counter())
        try:
            await self.stub.ModelInfer(self.requests[app], timeout=self.timeouts[app])
            code = OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        except Exception as exc:  # noqa: BLE001 - recorded, never lost
            code = f"CLIENT_{type(exc).__name__}"
        self.outcome(fid, code)

    def outcome(self, fid: int, code: str) -> None:
        """Write a frame's outcome, once (a frame already written, e.g. as VANISHED, is not written again)."""
        sent = self.inflight.pop(fid, None)
        if sent is not None:
            app, t, t0 = sent
            self.records.write(json.dumps({"id": fid, "app": app, "t": t, "code": code,
                                           "ms": (time.perf_counter() - t0) * 1000.0,
                                           "client_lag_ms": self.lag_since(t0)}) + "\n")

    def give_up(self) -> None:
        """Every frame still unanswered written VANISHED, then its call cancelled."""
        for fid in sorted(self.inflight):
            self.outcome(fid, VANISHED)
        for task in list(self.pending):
            task.cancel()

    def summary(self) -> dict[str, Any]:
        lag = sorted(self.lags)
        return {"sent": sum(self.counts.values()), "lag_ms_max": lag[-1] if lag else None,
                "lag_ms_p99": lag[int(0.99 * (len(lag) - 1))] if lag else None, "loop_stalls": self.stalls}
