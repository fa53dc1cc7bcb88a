"""`harpagon demo`: serve a config locally and stream frames (synthetic, or a video file decoded with
PyAV) at each app's rate through the Triton gRPC API (tritonclient), showing live throughput, latency
and SLO attainment against the plan's promise, then a summary and each module's measured latency
against the plan.

Frames are sent as the promise is stated (docs/model.md v2): evenly spaced at each app's rate
(`constant`), or as a seeded Poisson process of that rate (`poisson`, the default), so the demo
judges the live system by the same arrivals the planner's replay judged the plan by.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from harpagon.config.schema import App, Workload
from harpagon.model.plan import Plan
from harpagon.planner.streams import app_of
from harpagon.runtime.frontend.stats import DispatchCounters
from harpagon.runtime.promise import ARRIVALS_NAME, describe, floor_pct, goal_text, pct, predicted, target
from harpagon.runtime.serve import LocalCluster

DemoArrivals = Literal["poisson", "constant"]


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
    sample: Any = None
    """A reply within the SLO (a tritonclient InferResult), one with objects in it when there was one."""
    kept: bool | None = None
    """Whether the app kept the plan's promise for its arrivals (None: no promise for them)."""

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    @property
    def done(self) -> int:
        """Frames whose fate is known: answered, dropped past their deadline, or failed."""
        return self.answered + self.dropped + self.failed

    @property
    def attainment(self) -> float:
        """Fraction of the frames done that were answered within the SLO (a dropped or failed frame
        is late, as in the replay)."""
        return self.within_slo / self.done if self.done else float("nan")


def send_times(rate: float, seconds: float, arrivals: DemoArrivals, rng: np.random.Generator) -> np.ndarray:
    """Offsets (s) at which an app's frames are sent within `seconds`: `1 / rate` apart from 0, or a
    Poisson process of that rate (exponential gaps of mean `1 / rate`, drawn from `rng`)."""
    if arrivals == "constant":
        return np.arange(int(np.ceil(seconds * rate - 1e-9))) / rate
    chunk = int(seconds * rate) + 100
    times = np.cumsum(rng.exponential(1.0 / rate, chunk))
    while times[-1] < seconds:
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate, chunk))])
    return times[times < seconds]


@lru_cache(maxsize=64)
def _sampling(height: int, width: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rows = (np.arange(h) * height // h).clip(0, height - 1)
    cols = (np.arange(w) * width // w).clip(0, width - 1)
    return rows, cols


def sample(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """A [H, W, C] frame resized to [h, w, C] (nearest neighbour)."""
    rows, cols = _sampling(frame.shape[0], frame.shape[1], h, w)
    return frame.take(rows, 0).take(cols, 1)  # two takes: several times faster than one 2-d fancy index


def video_frames(path: str, frame_shape: tuple[int, ...], limit: int = 300) -> list[np.ndarray]:
    """Up to `limit` frames of a video file (decoded with PyAV), resized to `frame_shape` [H, W, 3]."""
    import av

    h, w, _ = frame_shape
    out = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            out.append(sample(frame.to_ndarray(format="rgb24"), h, w))
            if len(out) >= limit:
                break
    if not out:
        raise ValueError(f"{path}: no video frames")
    return out


def _client_frames(apps: dict[str, App], names: list[str], frame_shape: tuple[int, ...],
                   video: str | None) -> dict[str, list[np.ndarray] | list[bytes]]:
    """Each app's frames as its clients send them: at its declared `frame` size (else `serve.frame_shape`),
    JPEG-encoded by the client when the app declares JPEG frames (the workers decode them), else raw
    pixels; from the video file, or a few random frames."""
    from harpagon.runtime.wire.frames import encode_frame

    pixels: dict[tuple[int, ...], list[np.ndarray]] = {}
    out: dict[str, list[np.ndarray] | list[bytes]] = {}
    for name in names:
        f = apps[name].frame
        shape = (f.height, f.width, 3) if f is not None else frame_shape
        if shape not in pixels:
            rng = np.random.default_rng(0)
            pixels[shape] = (video_frames(video, shape) if video
                             else [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(8)])
        encoding = f.encoding if f is not None else "raw"
        out[name] = (pixels[shape] if encoding == "raw"
                     else [bytes(encode_frame(p, encoding).data) for p in pixels[shape]])
    return out


async def _stream(clients: list, load: AppLoad, frames: list[np.ndarray] | list[bytes], times: np.ndarray) -> None:
    """The app's frames at `times`, frame i through client i mod len(clients) (clients spread over the
    frontends, as a balancer spreads them)."""
    from tritonclient.grpc import InferInput
    from tritonclient.utils import InferenceServerException

    loop = asyncio.get_running_loop()
    start = loop.time()
    pending: set[asyncio.Task] = set()

    async def one(i: int) -> None:
        frame = frames[i % len(frames)]
        if isinstance(frame, bytes):  # an encoded image: one BYTES element, as Triton clients send images
            x = InferInput("FRAME", [1], "BYTES")
            x.set_data_from_numpy(np.array([frame], dtype=np.object_))
        else:
            x = InferInput("FRAME", list(frame.shape), "UINT8")
            x.set_data_from_numpy(frame)
        t0 = time.perf_counter()
        try:
            result = await clients[i % len(clients)].infer(load.name, [x], request_id=str(i))
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
        if ms <= load.slo_ms and (load.sample is None or _objects_in(result) >= _objects_in(load.sample)):
            load.sample = result

    for i, offset in enumerate(times):
        due = start + offset
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        task = asyncio.ensure_future(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
        load.sent += 1
    if pending:
        await asyncio.gather(*pending)


def _objects_in(result: Any) -> int:
    """Objects a reply holds (requests of its object-level sinks)."""
    outputs = result.get_response().outputs
    return sum(int(o.shape[0]) for o in outputs if o.name.endswith("_detection"))


def reply_tables(app: App, result: Any) -> list[Table]:
    """One frame's reply as a tritonclient user reads it (`result.as_numpy(name)`): per sink module,
    one row per request, with the detection it is of (below a `crops` edge) and its best classes."""
    tables = []
    names = {o.name for o in result.get_response().outputs}
    for m in app.modules:
        if app.children[m.name]:
            continue
        t = Table(title=f"{app.name}: sink {m.name!r}, one frame's reply (request id {result.get_response().id})",
                  title_justify="left")
        objects = f"{m.name}_detection" in names
        cols = (["detection", "label", "score", "box (x1, y1, x2, y2)"] if objects else ["request"])
        top = f"{m.name}_top_class" in names
        for c in cols + (["top classes (probability)"] if top else [f"{m.name}_0"]):
            t.add_column(c)

        def col(suffix: str, sink: str = m.name) -> np.ndarray | None:
            return result.as_numpy(f"{sink}_{suffix}") if f"{sink}_{suffix}" in names else None

        raw = col("0")
        n = len(raw) if raw is not None else 0
        label_names = col("label_name")
        for i in range(n):
            row = []
            if objects:
                label = str(col("label")[i])
                if label_names is not None:
                    label += f" {label_names[i].decode()}"
                row += [str(col("detection")[i]), label, f"{col('score')[i]:.2f}",
                        ", ".join(f"{v:.0f}" for v in col("box")[i])]
            else:
                row.append(str(i))
            if top:
                row.append(", ".join(f"{c} ({p:.3f})" for c, p in zip(col("top_class")[i], col("top_score")[i],
                                                                      strict=True)))
            else:
                row.append(f"shape {list(raw[i].shape)}")
            t.add_row(*row)
        if n == 0:
            t.add_row(*(["(no requests in this frame)"] + [""] * (len(t.columns) - 1)))
        tables.append(t)
    return tables


def _table(loads: list[AppLoad], elapsed: float, title: str, plan: Plan | None, arrivals: DemoArrivals) -> Table:
    promise = plan.promise if plan else None
    t = Table(title=title, title_justify="left")
    for col in ("app", "rate/s", "sent", "answered", "throughput/s", "P50 ms", "P99 ms", "SLO ms", "within SLO",
                "promise", "replay", "dropped", "failed"):
        t.add_column(col, justify="left" if col == "app" else "right")
    for ld in loads:
        goal, pred = target(promise, arrivals), predicted(promise, arrivals, ld.name)
        att = floor_pct(ld.attainment)
        if goal is not None and ld.done:
            att = f"[{'green' if ld.attainment >= goal else 'red'}]{att}[/]"
        t.add_row(ld.name, f"{ld.rate:g}", str(ld.sent), str(ld.answered), f"{ld.answered / max(elapsed, 1e-9):.1f}",
                  f"{ld.percentile(50):.1f}", f"{ld.percentile(99):.1f}", f"{ld.slo_ms:g}", att,
                  goal_text(goal, "-"),
                  "-" if pred is None else floor_pct(pred), str(ld.dropped), str(ld.failed))
    return t


def kept_promise(ld: AppLoad, goal: float | None) -> bool | None:
    """Whether the app's frames met the promised attainment `goal` (None: no promise)."""
    return None if goal is None else ld.done > 0 and ld.attainment >= goal


def verdict(ld: AppLoad, plan: Plan | None, arrivals: DemoArrivals) -> str:
    """One line per app: the attainment measured against what the plan in force promises for these
    arrivals, and what the planner's replay predicted."""
    promise = plan.promise if plan else None
    head = (f"{ld.name}: {floor_pct(ld.attainment)} within the {ld.slo_ms:g} ms SLO "
            f"({ld.within_slo} of {ld.done} frames)")
    goal = target(promise, arrivals)
    if goal is None:
        made_for = promise.arrivals if promise else "no"
        return f"{head}; the plan makes no promise for {ARRIVALS_NAME[arrivals]} arrivals (it is made for the " \
               f"{ARRIVALS_NAME.get(made_for, made_for)} promise)"
    pred = predicted(promise, arrivals, ld.name)
    kept = kept_promise(ld, goal)
    return (f"{head}; promise {'≥ ' + pct(goal) if goal < 1 else '100%'} ({ARRIVALS_NAME[arrivals]}), "
            f"replay predicted {'-' if pred is None else floor_pct(pred)}: "
            + ("[green]kept[/green]" if kept else "[red]missed[/red]"))


def _modules_table(cluster: LocalCluster, plan) -> Table:
    """Per module, over the whole run (across re-plans): the planned scale (requests per frame) against
    the measured one, and the plan's predicted latency against what the frontend measured (GPU: the
    shared GPUs the module runs on, `own` when its workers are its own) (dispatch to result, so it includes collection, the hop and the worker's queue as
    well as execution), with the worker's execution and the hop's overhead apart."""
    streams = cluster.controller.streams
    mine = None if streams is None or not streams.split else {
        st.name for st in streams.streams if st.frontend == cluster.frontend_id}
    t = Table(title="per module, whole run: measured against predicted" + (
        " (the streams frontend 0 owns; the other frontends' are in their own metrics)" if mine is not None else ""),
        title_justify="left")
    for col in ("app", "module", "GPU", "scale", "measured", "requests", "batches", "P50 ms", "P99 ms", "max ms",
                "predicted ms", "budget ms", "exec ms", "hop P99 ms"):
        t.add_column(col, justify="left" if col in ("app", "module", "GPU") else "right")
    stats = cluster.plane.stats()
    for ap in plan.apps:
        if mine is not None and ap.name not in mine:
            continue
        for mp in ap.modules:
            st = stats.get((ap.name, mp.name))
            if st is None:
                st = DispatchCounters()
            lat = st.latency_ms

            def ms(samples, q: float) -> str:
                return "-" if not samples else f"{DispatchCounters.percentile(samples, q):.1f}"

            measured = f"{st.requests / st.frames:.2f}" if st.frames else "-"
            gpus = ", ".join(sorted({x.gpu for x in mp.tuples if x.gpu is not None})) or "own"
            t.add_row(ap.name, mp.name, gpus, f"{mp.rate / ap.rate:.2f}", measured, str(st.requests), str(st.batches),
                      ms(lat, 50), ms(lat, 99), ms(lat, 100),
                      f"{mp.predicted_latency_ms:.1f}", f"{mp.budget_ms:.1f}", ms(st.exec_ms, 50),
                      ms(st.transport_ms, 99))
    return t


async def run_demo(workload: Workload, seconds: float, console: Console | None = None,
                   video: str | None = None, arrivals: DemoArrivals = "poisson", seed: int = 0,
                   frontends: int | None = None, log_dir: Path | None = None) -> list[AppLoad]:
    """`frontends`: how many frontends serve (default the config's); each app's frames are spread
    over them. `log_dir`: where the children's logs are kept (LocalCluster.log_dir)."""
    import tritonclient.grpc.aio as triton_aio

    console = console or Console(width=None if Console().is_terminal else 150)
    cluster = LocalCluster(workload, grpc_port=0, metrics_port=0, frontends=frontends, log_dir=log_dir)
    await cluster.start()
    try:
        with console.status("starting workers and planning..."):
            await cluster.ready()
        controller = cluster.controller
        plan = controller.plan
        assert plan is not None
        console.print(f"serving on {', '.join(cluster.addresses)}: plan ${plan.cost_per_hour:.3f}/h on "
                      f"{sum(plan.workers_by_hardware().values())} workers "
                      f"({', '.join(f'{h}x{n}' for h, n in sorted(plan.workers_by_hardware().items()))})"
                      + (" [EMULATED workers]" if any(w.emulated for w in controller.workers) else ""))
        console.print(f"plan {describe(plan.promise)}")
        for r in plan.refused:
            console.print(f"[red]refused[/red] {r.app}: {r.reason}")
        clients = [triton_aio.InferenceServerClient(address) for address in cluster.addresses]
        rates: dict[str, float] = {}
        for a in plan.apps:  # an app shared among frontends is planned as several streams
            rates[app_of(a.name)] = rates.get(app_of(a.name), 0.0) + a.rate
        loads = [AppLoad(a.name, rates[a.name], a.slo_ms) for a in workload.apps if a.name in rates]
        sent = _client_frames({a.name: a for a in workload.apps}, [ld.name for ld in loads],
                              tuple(cluster.serve.frame_shape), video)
        source = f"frames of {video}" if video else "synthetic frames"
        for name, frames in sent.items():
            kind = "JPEG" if isinstance(frames[0], bytes) else "raw"
            console.print(f"{name}: streaming {len(frames)} {source} in a loop, {kind}")
        how = "evenly spaced" if arrivals == "constant" else f"Poisson arrivals, seed {seed}"
        console.print(f"sending each app's frames at its rate, {how}")
        schedules = [send_times(ld.rate, seconds, arrivals, np.random.default_rng([seed, i]))
                     for i, ld in enumerate(loads)]
        plans_before = controller.plans
        loop = asyncio.get_running_loop()
        start = loop.time()
        streams = asyncio.gather(*(_stream(clients, ld, sent[ld.name], times)
                                   for ld, times in zip(loads, schedules, strict=True)))
        with Live(_table(loads, 0, "live", plan, arrivals), console=console, refresh_per_second=2) as live:
            while not streams.done():
                await asyncio.sleep(0.5)
                live.update(_table(loads, loop.time() - start, f"live, {loop.time() - start:.0f} of {seconds:g} s",
                                   controller.plan, arrivals))
        await streams
        console.print()
        for client in clients:
            await client.close()
        plan = controller.plan or plan  # the plan in force at the end
        if controller.plans > plans_before:
            console.print(f"the controller re-planned {controller.plans - plans_before} time(s) while streaming; "
                          f"in force at the end: ${plan.cost_per_hour:.3f}/h, {describe(plan.promise)}")
        console.print(_table(loads, loop.time() - start,
                             f"summary: plan ${plan.cost_per_hour:.3f}/h, {seconds:g} s of {source}, {how}",
                             plan, arrivals))
        for ld in loads:
            ld.kept = kept_promise(ld, target(plan.promise, arrivals))
            console.print(verdict(ld, plan, arrivals))
        console.print(_modules_table(cluster, plan))
        apps = {a.name: a for a in workload.apps}
        for ld in loads:
            if ld.sample is not None:
                for t in reply_tables(apps[ld.name], ld.sample):
                    console.print(t)
        for ld in loads:
            for msg, n in ld.errors.items():
                console.print(f"[red]{ld.name}: {n} x {msg}[/red]")
        return loads
    finally:
        await cluster.stop()
