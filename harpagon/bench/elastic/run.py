"""Run the day: `harpagon serve` with its fleet, the Python senders, and the controller sampled on its own loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from harpagon.bench.elastic.day import Day, day_arrivals
from harpagon.bench.elastic.results import SAMPLE_S, ElasticResult, Sample
from harpagon.bench.live.load import python_sender
from harpagon.bench.report import shown


async def _snapshot(cluster, t0: float) -> Sample:
    """The fleet as the controller sees it, read on the controller's loop (its state is not shared)."""
    c = cluster.controller

    async def read() -> Sample:
        now = c.clock()
        plan = c.plan
        desired = sum(c.fleet.desired(now).values()) if c.fleet is not None and plan is not None else 0
        registered = len(c.workers)
        prices = {h.name: h.price_per_hour for h in c.workload.hardware}
        started = list(cluster.scaler.workers.values()) if cluster.scaler is not None else []
        return Sample(time.monotonic() - t0, desired, sum(p.poll() is None for _, p in started), registered,
                      sum(plan.workers_by_hardware().values()) if plan else 0, c.planned_workers,
                      plan.cost_per_hour if plan else 0.0,
                      sum(prices.get(kind, 0.0) for kind, p in started if p.poll() is None),
                      sum(a.rate for a in plan.apps) if plan else 0.0)

    return await cluster.control.run(read())


async def run_elastic(config: Path, minutes: float, low: float, warmup_s: float, seed: int, command: str,
                      console) -> ElasticResult:
    from harpagon.config import load_workload
    from harpagon.planner.harpagon import PlannerOptions
    from harpagon.planner.harpagon import plan as harpagon_plan
    from harpagon.runtime.controller.controller import settings_of
    from harpagon.runtime.promise import target
    from harpagon.runtime.serve import LocalCluster

    workload = load_workload([config])
    serve = workload.serve
    if serve is None or serve.fleet is None:
        raise ValueError(f"{config}: the elastic benchmark needs a `serve.fleet` section")
    day = Day(minutes * 60.0, low)
    settings = settings_of(serve)
    peak = harpagon_plan(workload, settings, PlannerOptions(dispatch=serve.dispatch, replay=True,
                                                            sharing=serve.sharing))
    rng = np.random.default_rng(seed)
    schedules = {a.name: day_arrivals(a.rate, day, warmup_s, rng) for a in workload.apps}
    kinds = {t.hardware for a in peak.apps for m in a.modules for t in m.tuples}
    price = next(h.price_per_hour for h in workload.hardware if h.name in kinds) if kinds else 0.0
    started = time.perf_counter()
    samples: list[Sample] = []
    async with LocalCluster(workload, grpc_port=0, metrics_port=0).running(timeout_s=180) as cluster:
        console.print(f"cluster up: {len(cluster.controller.workers)} workers; sending a {minutes:g}-minute day "
                      f"after {warmup_s:g} s of night")
        t0 = time.monotonic() + 1.5 + 0.2 + warmup_s  # the sender starts its processes 1.7 s from now

        async def sample() -> None:
            while True:
                samples.append(await _snapshot(cluster, t0))
                await asyncio.sleep(SAMPLE_S)

        sampling = asyncio.ensure_future(sample())
        try:
            sent = await python_sender(f"127.0.0.1:{cluster.port}", serve.frame_shape, schedules, timeout_s=10.0)
        finally:
            sampling.cancel()
        events = [(e.at - t0, e.action, e.worker) for e in (cluster.scaler.events if cluster.scaler else [])]
    frames = {a["name"]: {"times": np.asarray(a["times"]) - warmup_s, "status": np.asarray(a["status"]),
                          "latency_ms": np.asarray(a["latency_ms"], float)} for a in sent["apps"]}
    goal = target(peak.promise, peak.promise.arrivals) if peak.promise is not None else None
    return ElasticResult(shown(config), day, warmup_s, sum(a.rate for a in workload.apps),
                           {a.name: a.slo_ms for a in workload.apps}, goal if goal is not None else 0.99, samples,
                           frames, events, peak.cost_per_hour, sum(peak.workers_by_hardware().values()), price,
                           sum(serve.fleet.of("spare", k) for k in kinds), command, time.perf_counter() - started)
