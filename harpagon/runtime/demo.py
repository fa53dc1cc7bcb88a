"""`harpagon demo`: serve a config locally and stream frames (synthetic, or a video file decoded with
PyAV) at each app's rate through the Triton gRPC API (tritonclient), showing live throughput, latency
and SLO attainment, then a summary and each module's measured latency against the plan.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from harpagon.config.schema import Workload
from harpagon.runtime.serve import LocalCluster


@dataclass
class AppLoad:
    name: str
    rate: float
    slo_ms: float
    sent: int = 0
    answered: int = 0
    within_slo: int = 0
    dropped: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


def video_frames(path: str, frame_shape: tuple[int, ...], limit: int = 300) -> list[np.ndarray]:
    """Up to `limit` frames of a video file (decoded with PyAV), resized to `frame_shape` [H, W, 3]."""
    import av

    h, w, _ = frame_shape
    out = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            rows = np.arange(h) * rgb.shape[0] // h
            cols = np.arange(w) * rgb.shape[1] // w
            out.append(np.ascontiguousarray(rgb[rows][:, cols]))
            if len(out) >= limit:
                break
    if not out:
        raise ValueError(f"{path}: no video frames")
    return out


async def _stream(client, load: AppLoad, frames: list[np.ndarray], seconds: float) -> None:
    from tritonclient.grpc import InferInput
    from tritonclient.utils import InferenceServerException

    loop = asyncio.get_running_loop()
    start = loop.time()
    pending: set[asyncio.Task] = set()

    async def one(i: int) -> None:
        frame = frames[i % len(frames)]
        x = InferInput("FRAME", list(frame.shape), "UINT8")
        x.set_data_from_numpy(frame)
        t0 = time.perf_counter()
        try:
            await client.infer(load.name, [x], request_id=str(i))
        except InferenceServerException as exc:
            status = str(exc.status())
            if "DEADLINE_EXCEEDED" in status:
                load.dropped += 1
            else:
                load.failed += 1
                load.errors[exc.message()[:80]] = load.errors.get(exc.message()[:80], 0) + 1
            return
        ms = (time.perf_counter() - t0) * 1000
        load.answered += 1
        load.latencies.append(ms)
        load.within_slo += ms <= load.slo_ms

    i = 0
    while (now := loop.time()) < start + seconds:
        due = start + i / load.rate
        if due > now:
            await asyncio.sleep(due - now)
        task = asyncio.ensure_future(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
        load.sent += 1
        i += 1
    if pending:
        await asyncio.gather(*pending)


def _table(loads: list[AppLoad], elapsed: float, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("app", "rate/s", "sent", "answered", "throughput/s", "P50 ms", "P99 ms", "SLO ms", "within SLO",
                "dropped", "failed"):
        t.add_column(col, justify="left" if col == "app" else "right")
    for ld in loads:
        att = ld.within_slo / ld.answered if ld.answered else float("nan")
        t.add_row(ld.name, f"{ld.rate:g}", str(ld.sent), str(ld.answered), f"{ld.answered / max(elapsed, 1e-9):.1f}",
                  f"{ld.percentile(50):.1f}", f"{ld.percentile(99):.1f}", f"{ld.slo_ms:g}", f"{att:.1%}",
                  str(ld.dropped), str(ld.failed))
    return t


def _modules_table(cluster: LocalCluster, plan) -> Table:
    """Per module: the plan's predicted latency against what the frontend measured (dispatch to result,
    so it includes the network and the worker's queue as well as collection and execution)."""
    t = Table(title="per module: measured against predicted", title_justify="left")
    for col in ("app", "module", "requests", "batches", "P50 ms", "P99 ms", "max ms", "predicted ms", "budget ms"):
        t.add_column(col, justify="left" if col in ("app", "module") else "right")
    for ap in plan.apps:
        for mp in ap.modules:
            live = cluster.plane.modules.get((ap.name, mp.name))
            lat = np.array(live.latencies_ms) if live and live.latencies_ms else np.array([np.nan])
            t.add_row(ap.name, mp.name, str(len(live.latencies_ms) if live else 0), str(live.batches if live else 0),
                      f"{np.percentile(lat, 50):.1f}", f"{np.percentile(lat, 99):.1f}", f"{lat.max():.1f}",
                      f"{mp.predicted_latency_ms:.1f}", f"{mp.budget_ms:.1f}")
    return t


async def run_demo(workload: Workload, seconds: float, console: Console | None = None,
                   video: str | None = None) -> list[AppLoad]:
    import tritonclient.grpc.aio as triton_aio

    console = console or Console(width=None if Console().is_terminal else 130)
    cluster = LocalCluster(workload, grpc_port=0, metrics_port=0)
    await cluster.start()
    try:
        with console.status("starting workers and planning..."):
            await cluster.ready()
        plan = cluster.controller.plan
        assert plan is not None
        console.print(f"serving on {cluster.host}:{cluster.port}: plan ${plan.cost_per_hour:.3f}/h on "
                      f"{sum(plan.workers_by_hardware().values())} workers "
                      f"({', '.join(f'{h}x{n}' for h, n in sorted(plan.workers_by_hardware().items()))})"
                      + (" [EMULATED workers]" if any(w.emulated for w in cluster.controller.workers) else ""))
        for r in plan.refused:
            console.print(f"[red]refused[/red] {r.app}: {r.reason}")
        client = triton_aio.InferenceServerClient(f"{cluster.host}:{cluster.port}")
        loads = [AppLoad(a.name, a.rate, a.slo_ms) for a in plan.apps]
        frame_shape = tuple(cluster.serve.frame_shape)
        if video:
            frames = video_frames(video, frame_shape)
            console.print(f"streaming {len(frames)} frames of {video} in a loop")
        else:  # synthetic: a few random frames
            rng = np.random.default_rng(0)
            frames = [rng.integers(0, 255, frame_shape, dtype=np.uint8) for _ in range(8)]
        loop = asyncio.get_running_loop()
        start = loop.time()
        streams = asyncio.gather(*(_stream(client, ld, frames, seconds) for ld in loads))
        with Live(_table(loads, 0, "live"), console=console, refresh_per_second=2) as live:
            while not streams.done():
                await asyncio.sleep(0.5)
                live.update(_table(loads, loop.time() - start, f"live, {loop.time() - start:.0f} of {seconds:g} s"))
        await streams
        console.print()
        await client.close()
        console.print(_table(loads, loop.time() - start,
                             f"summary: plan ${plan.cost_per_hour:.3f}/h, {seconds:g} s of synthetic frames"))
        console.print(_modules_table(cluster, plan))
        for ld in loads:
            for msg, n in ld.errors.items():
                console.print(f"[red]{ld.name}: {n} x {msg}[/red]")
        return loads
    finally:
        await cluster.stop()
