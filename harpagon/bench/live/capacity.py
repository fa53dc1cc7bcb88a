"""The capacity of one frontend process: the highest frame rate through a one-module app at which the
promise is still kept, found by doubling then bisection over short bounded runs, each on a fresh
cluster planned for its rate; of tiny frames, or of one frame kind (size and encoding) per search."""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import math
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from harpagon.bench.live.cluster import start_cluster
from harpagon.bench.live.configs import CAPACITY_FRAME, CAPACITY_SLO_MS, FrameKind, capacity_workload
from harpagon.bench.live.load import python_sender
from harpagon.bench.live.measure import LATE_SEND_MS, app_load, cpu_children, cpu_of, cpu_self, kept
from harpagon.bench.live.perf_analyzer import intervals_file, pa_records, run_pa
from harpagon.bench.live.results import Capacity, Step
from harpagon.bench.report import percentiles
from harpagon.runtime.demo import send_times
from harpagon.runtime.promise import floor_pct, target

#: The capacity goal of one frontend process (frames/s through a one-module app, promise kept).
CAPACITY_GOAL = 2000.0
#: A run whose sender got out less than this share of the scheduled frames on time did not offer the rate.
OFFERED_SHARE = 0.95


def search_capacity(measure: Callable[[float], Step], start: float, limit: float, bisect_steps: int = 3,
                    progress: Callable[[Step], None] | None = None) -> Capacity:
    """The highest rate at which `measure(rate).ok`: doubling from `start` until a run fails or `limit`
    is passed (the last doubling is clipped to `limit`), then `bisect_steps` bisections between the best
    rate that passed and the lowest that failed. Rates are rounded to whole frames/s; a rate measured
    once is not measured again."""
    if not (start > 0 and limit >= start):
        raise ValueError(f"need 0 < start <= limit, got start={start:g}, limit={limit:g}")
    steps: list[Step] = []
    seen: dict[float, Step] = {}

    def run(rate: float) -> Step:
        rate = float(round(rate))
        if rate not in seen:
            s = measure(rate)
            seen[rate] = s
            steps.append(s)
            if progress:
                progress(s)
        return seen[rate]

    best: float | None = None
    fail: float | None = None
    rate = start
    while True:
        s = run(rate)
        if not s.ok:
            fail = s.rate
            break
        best = s.rate
        if s.rate >= limit:
            break
        rate = min(rate * 2, limit)
    if best is not None and fail is not None:
        lo, hi = best, fail
        for _ in range(bisect_steps):
            mid = float(round((lo + hi) / 2))
            if mid <= lo or mid >= hi:
                break
            if run(mid).ok:
                lo = mid
            else:
                hi = mid
        best, fail = lo, hi
    return Capacity(best, fail, steps)


async def search_async(measure: Callable[[float], Awaitable[Step]], start: float, limit: float, bisect_steps: int,
                       progress: Callable[[Step], None]) -> Capacity:
    """`search_capacity` with an async `measure`: the pure driver runs in a thread and each of its
    measurements is awaited on this loop."""
    loop = asyncio.get_running_loop()

    def sync_measure(rate: float) -> Step:
        return asyncio.run_coroutine_threadsafe(measure(rate), loop).result()

    return await asyncio.to_thread(search_capacity, sync_measure, start, limit, bisect_steps, progress)


async def capacity_step(rate: float, seconds: float, use_pa: bool, seed: int, console,
                        profile_to: Path | None = None, streaming: bool = False, kind: FrameKind | None = None,
                        frontends: int = 1) -> Step:
    """One bounded run of the one-module app at `rate`: fresh cluster sized by the planner, Poisson
    arrivals (perf_analyzer with the seeded intervals, or the Python sender), attainment against the
    plan's Poisson promise. With a frame `kind` the app declares that kind's frames and the Python
    sender sends them, whatever `use_pa` says (so that every kind is measured under one generator).
    With `frontends` > 1 the Python sender spreads the frames over them, and the serving processes'
    CPU is this process's and the other frontends'."""
    w = capacity_workload(rate, kind, frontends)
    use_pa = use_pa and kind is None and frontends == 1
    n = w.serve.workers[0].count
    try:
        cluster = await start_cluster(w, console, frontends=frontends)
    except Exception as exc:
        return Step(rate, False, workers=n, why=f"cluster did not start: {exc}")
    prof = cProfile.Profile() if profile_to else None
    try:
        plan = cluster.controller.plan
        goal = target(plan.promise, "poisson")
        plans0 = cluster.controller.plans
        others = [p.pid for p in cluster.frontend_processes]
        cpu0, child0, others0 = cpu_self(), cpu_children(), cpu_of(others)
        if prof:
            prof.enable()
        if use_pa:
            rec, offered, wall = await _pa_rate_run(cluster, "one", rate, seconds, seed, streaming)
            if isinstance(rec, str):
                return Step(rate, False, goal=goal, workers=n, why=rec)
        else:
            rec, offered, wall = await _python_rate_run(cluster, rate, seconds, seed,
                                                        kind.shape if kind else CAPACITY_FRAME,
                                                        kind.encoding if kind else "raw")
        if prof:
            prof.disable()
        cpu, child = cpu_self() - cpu0 + cpu_of(others) - others0, cpu_children() - child0
        ld = app_load("one", rate, CAPACITY_SLO_MS, rec["latency_ms"], rec["status"])
        p50, p99, _, _ = percentiles(ld.latencies)
        ok = bool(kept(ld, goal))
        why = ""
        if offered < OFFERED_SHARE * rate:
            ok, why = False, f"client-bound: got out {offered:.0f} of {rate:.0f} frames/s"
        elif not ok:
            why = f"missed: {floor_pct(ld.attainment)} within {CAPACITY_SLO_MS:g} ms"
        step = Step(rate, ok, ld.attainment, goal, offered, ld.answered / wall if wall > 0 else math.nan, p50, p99,
                    1000 * cpu / max(ld.sent, 1), cpu / wall if wall > 0 else math.nan,
                    child / wall if wall > 0 else math.nan, n, cluster.controller.plans - plans0, why)
        if prof and profile_to:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
            profile_to.write_text(s.getvalue())
        return step
    finally:
        if prof:
            prof.disable()
        await cluster.stop()


async def _python_rate_run(cluster, rate: float, seconds: float, seed: int, frame_shape=CAPACITY_FRAME,
                           encoding: str = "raw") -> tuple[dict, float, float]:
    """The Python sender at `rate` with seeded Poisson arrivals of `frame_shape` frames in `encoding`:
    records, offered rate (frames sent on time, per second), wall seconds of sending."""
    t0 = time.perf_counter()
    times = send_times(rate, seconds, "poisson", np.random.default_rng([seed, 0]))
    data = await python_sender(cluster.addresses, frame_shape, {"one": times}, 10.0, encoding)
    a = data["apps"][0]
    sent = np.asarray(a["sent"], float)
    on_time = np.isfinite(sent) & ((sent - times) * 1000 <= LATE_SEND_MS)
    wall = time.perf_counter() - t0 - data["start_delay_s"]
    offered = rate * float(on_time.mean()) if times.size else math.nan
    return {"latency_ms": a["latency_ms"], "status": a["status"]}, offered, wall


async def _pa_rate_run(cluster, app: str, rate: float, seconds: float, seed: int, streaming: bool = False):
    """perf_analyzer at `rate` with seeded Poisson intervals (async), per-request export: records,
    offered rate (requests in its windows / their span), wall seconds; or an error line."""
    with tempfile.TemporaryDirectory() as tmp:
        iv = Path(tmp) / "intervals.txt"
        intervals_file(send_times(rate, max(seconds * 2, 10.0), "poisson", np.random.default_rng([seed, 0])), iv)
        export = Path(tmp) / "export.json"
        window_ms = max(1000, int(seconds * 1000 / 3))
        t0 = time.perf_counter()
        rc, out = await run_pa(["-m", app, "-u", f"{cluster.host}:{cluster.port}", "-i", "grpc", "--async",
                                "--request-intervals", str(iv), "--max-threads", "16", "-p", str(window_ms),
                                "-r", "3", "-s", "1000", "--profile-export-file", str(export),
                                *(["--streaming"] if streaming else [])], seconds * 6 + 60)
        wall = time.perf_counter() - t0
        if rc != 0 or not export.exists():
            lines = [ln for ln in out.strip().splitlines() if ln.strip()]
            return (f"perf_analyzer failed: {lines[-1][:160] if lines else rc}"), math.nan, wall
        rec = pa_records(json.loads(export.read_text()), CAPACITY_SLO_MS)
        offered = rec["requests"] / rec["span_s"] if rec["span_s"] and rec["span_s"] > 0 else math.nan
        return rec, offered, wall
