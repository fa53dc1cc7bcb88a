"""A cluster of one config served in this process (`LocalCluster`: frontend and controller, each on an
event loop of its own; every worker a process of its own) and its measured runs: constant then Poisson
arrivals at the planned rates, after a warm-up; and the hops over TCP against Unix sockets."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from harpagon.bench.live.configs import with_emulated_serve
from harpagon.bench.live.load import python_sender
from harpagon.bench.live.measure import (
    app_results,
    cpu_children,
    cpu_self,
    hop_rows,
    lateness,
    module_results,
    plane_stats,
)
from harpagon.bench.live.perf_analyzer import pa_sender, perf_analyzer_figures
from harpagon.bench.live.results import ClusterResult, RunResult
from harpagon.bench.report import fmt, percentiles
from harpagon.runtime.demo import send_times
from harpagon.runtime.promise import ARRIVALS_NAME, floor_pct, goal_text

DISPATCHES = ("batch-aware", "request-level")
ARRIVALS = ("constant", "poisson")


async def run_arrivals(cluster, config: str, arrivals: str, seconds: float, seed: int, use_pa: bool) -> RunResult:
    """One run of every app's frames at its planned rate, `arrivals`: through the Python sender process,
    or (`use_pa`) one perf_analyzer per app; the serving process's CPU over the window."""
    from harpagon.runtime.promise import describe

    controller = cluster.controller
    plan = controller.plan
    rates = {a.name: a.rate for a in cluster.workload.apps}  # the configured (planned) rates
    served = [a.name for a in plan.apps]
    schedules = {name: send_times(rates[name], seconds if not use_pa else max(2 * seconds, 10.0), arrivals,  # type: ignore[arg-type]
                                  np.random.default_rng([seed, i])) for i, name in enumerate(served)}
    plans_before = controller.plans
    cpu0, child0, t0 = cpu_self(), cpu_children(), time.perf_counter()
    slo = {a.name: a.slo_ms for a in plan.apps}
    address = f"{cluster.host}:{cluster.port}"
    if use_pa:
        data = await pa_sender(address, schedules, seconds, slo)
        wall = time.perf_counter() - t0
        generator = f"perf_analyzer ({len(served)} processes, --async)"
        frames = sum(len(a["status"]) for a in data["apps"])
        offered = sum(a["offered"] for a in data["apps"] if not math.isnan(a["offered"]))
        lag = {"p50": math.nan, "p99": math.nan, "max": math.nan, "late_share": math.nan}
        share = offered / sum(rates[n] for n in served) if served else math.nan
        # perf_analyzer sends between and around its windows too: CPU per frame over everything it sent
        sent_total = offered * wall if offered else frames
    else:
        data = await python_sender(address, cluster.serve.frame_shape, schedules,
                                   timeout_s=max(10.0, 20 * max(slo.values()) / 1000))
        wall = time.perf_counter() - t0 - data["start_delay_s"]  # the senders start together after a delay
        generator = f"python sender ({data['processes']} process{'es' if data['processes'] > 1 else ''})"
        sched = np.concatenate([np.asarray(a["times"], float) for a in data["apps"]])
        sent = np.concatenate([np.asarray(a["sent"], float) for a in data["apps"]])
        frames = int(sched.size)
        lag = lateness(sched, sent)
        share = float(np.isfinite(sent).mean()) if frames else math.nan
        sent_total = frames
    cpu, child = cpu_self() - cpu0, cpu_children() - child0
    final = controller.plan or plan
    r = RunResult(config, cluster.serve.dispatch, arrivals, seconds, generator,
                  final.cost_per_hour, dict(final.workers_by_hardware()), describe(final.promise),
                  controller.plans - plans_before, app_results(data, final, arrivals, rates), cpu, wall,
                  int(round(sent_total)), child, lag, share)
    return r


async def start_cluster(workload, console, unix_sockets: bool = True, frontends: int = 1):
    """`LocalCluster` of `workload` in this process (its first frontend; the others processes of their
    own), once it is ready (stopped if it never is)."""
    from harpagon.runtime.serve import LocalCluster

    # The bench sends at the configured rates in runs with idle gaps between them; the controller would
    # read a gap as a rate drop and re-plan for a lower rate, so its rate-driven re-planning is off here
    # (any other re-plan, such as calibration's, still happens and is counted).
    cluster = LocalCluster(workload, grpc_port=0, metrics_port=0, follow_rates=False, unix_sockets=unix_sockets,
                           frontends=frontends)
    await cluster.start()
    try:
        await cluster.ready(timeout_s=180)
    except BaseException:
        await cluster.stop()
        raise
    return cluster


async def run_cluster(config: str, workload, dispatch: str, seconds: float, seed: int, console,
                      perf_analyzer: bool, quick: bool, warmup_s: float = 0.0) -> ClusterResult:
    """A cluster of `config` with `dispatch`: a warm-up at the planned rates (the controller calibrates
    its plan with what it measures), then constant then Poisson arrivals, then (demo, batch-aware)
    perf_analyzer's figures on its first app."""
    w = with_emulated_serve(workload, dispatch)
    # perf_analyzer aborts the whole run at the first failed or dropped frame ("Thread [n] had error"), so
    # it cannot judge attainment where frames are dropped: the Python sender drives these runs, and its
    # lateness says where it, not the server, is the bottleneck. (`pa_sender` stays for loads without drops.)
    use_pa = False
    with console.status(f"{config} ({dispatch}): starting {sum(g.count for g in w.serve.workers)} emulated "
                        "workers and planning..."):
        cluster = await start_cluster(w, console)
    try:
        warmup = await _warm_up(cluster, config, dispatch, warmup_s, seed, console, use_pa) if warmup_s > 0 else None
        runs = []
        for arrivals in ARRIVALS:
            with console.status(f"{config} ({dispatch}): {seconds:g} s of {ARRIVALS_NAME[arrivals]} arrivals..."):
                r = await run_arrivals(cluster, config, arrivals, seconds, seed, use_pa)
            runs.append(r)
            console.print(f"  {config} {dispatch} {arrivals}: " + ", ".join(
                f"{a.app} {floor_pct(a.attainment)} ({goal_text(a.goal)})" for a in r.apps)
                + f"; server {r.cpu_per_frame_ms:.2f} ms CPU/frame, {r.server_cores:.2f} cores; "
                  f"client lag P99 {r.lag['p99']:.1f} ms")
            await asyncio.sleep(1.0)
        plan = cluster.controller.plan
        result = ClusterResult(config, dispatch, runs, module_results(cluster.plane, plan),
                               None if plane_stats(cluster.plane) is None else hop_rows(plane_stats(cluster.plane)),
                               warmup_replans=warmup)
        if perf_analyzer and dispatch == "batch-aware" and Path(config).name == "demo.yaml":
            result.perf_analyzer = await perf_analyzer_figures(cluster, plan.apps[0].name, console, quick)
        return result
    finally:
        await cluster.stop()


async def _warm_up(cluster, config: str, dispatch: str, warmup_s: float, seed: int, console, use_pa: bool) -> int:
    """Serve the planned rates (Poisson) for `warmup_s`, wait for the re-plan that asked for, and start
    the frontend's counts afresh; how many re-plans it made."""
    controller = cluster.controller
    plans = controller.plans
    with console.status(f"{config} ({dispatch}): {warmup_s:g} s of warm-up..."):
        await run_arrivals(cluster, config, "poisson", warmup_s, seed + 1000, use_pa)
        for _ in range(300):  # a re-plan the warm-up's measurements asked for finishes (bounded)
            if controller.settled:
                break
            await asyncio.sleep(0.2)
    warmup = controller.plans - plans
    console.print(f"  {config} {dispatch}: warm-up {warmup_s:g} s, {warmup} re-plan(s)")
    cluster.plane.reset_stats()
    return warmup


async def transport_comparison(config: str, workload, seconds: float, seed: int, console,
                               rounds: int = 2) -> list[dict[str, Any]]:
    """The demo's hops with workers on loopback TCP and on Unix sockets, side by side in one run
    (alternating, `rounds` times each: the machine's noise drifts over minutes): pooled transport
    samples of every module, Poisson arrivals at the planned rates."""
    w = with_emulated_serve(workload, "batch-aware")
    pooled: dict[str, list[float]] = {"tcp": [], "unix": []}
    for r in range(rounds):
        for transport in ("tcp", "unix"):
            with console.status(f"{config}: hops over {transport} (round {r + 1} of {rounds})..."):
                cluster = await start_cluster(w, console, unix_sockets=transport == "unix")
                try:
                    await run_arrivals(cluster, config, "poisson", seconds, seed + 7 * r, False)
                    for st in cluster.plane.stats().values():
                        pooled[transport].extend(st.transport_ms)
                finally:
                    await cluster.stop()
    rows = []
    for transport, samples in pooled.items():
        p50, p99, _, n = percentiles(samples)
        rows.append({"transport": transport, "hops": n, "p50_ms": p50, "p99_ms": p99})
    console.print("  transport: " + ", ".join(f"{x['transport']} P50 {fmt(x['p50_ms'], '.2f')} / P99 "
                                              f"{fmt(x['p99_ms'], '.2f')} ms ({x['hops']} hops)" for x in rows))
    return rows
