"""Frame latency and event-loop lag while the controller re-plans, with the planner (and its replay,
seconds of pure Python) in a thread or in the controller's planner process.

Run: python scripts/bench_replan.py [--planning thread|process] [--seconds S] [CONFIG]
(default: process, 24 s, configs/demo.yaml). It serves the config locally as `harpagon serve` does
(controller and frontend on one event loop, emulated workers in their own processes), sends each
app's frames evenly at its rate through tritonclient from the same process, as the demo does, forces
two re-plans, and compares the frames sent while a plan was being made with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

import numpy as np

from harpagon.config.loader import load_workload
from harpagon.runtime.serve import LocalCluster


async def bench(config: str, planning: str, seconds: float) -> None:
    import tritonclient.grpc.aio as triton_aio
    from tritonclient.grpc import InferInput

    w = load_workload([config])
    cluster = LocalCluster(w, grpc_port=0, metrics_port=0)
    await cluster.start()
    c = cluster.controller
    c.config = dataclasses.replace(c.config, planning=planning)
    windows: list[tuple[float, float]] = []
    make_plan = c._make_plan

    async def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return await make_plan(*args, **kwargs)
        finally:
            windows.append((t0, time.perf_counter()))

    c._make_plan = timed  # type: ignore[method-assign]
    try:
        await cluster.ready()
        windows.clear()
        client = triton_aio.InferenceServerClient(f"127.0.0.1:{cluster.port}")
        frame = np.zeros(tuple(cluster.serve.frame_shape), np.uint8)
        frames: list[tuple[float, float, float]] = []  # sent at, latency ms (inf: failed), SLO ms
        lags: list[tuple[float, float]] = []

        async def ticker() -> None:
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append((t, (time.perf_counter() - t) * 1000 - 5))

        async def one(app: str, slo: float) -> None:
            x = InferInput("FRAME", list(frame.shape), "UINT8")
            x.set_data_from_numpy(frame)
            t0 = time.perf_counter()
            try:
                await client.infer(app, [x])
                frames.append((t0, (time.perf_counter() - t0) * 1000, slo))
            except Exception:  # noqa: BLE001 - a failed frame is a late frame here
                frames.append((t0, float("inf"), slo))

        async def stream(app: str, rate: float, slo: float) -> None:
            start, i, tasks = time.perf_counter(), 0, set()
            while (now := time.perf_counter()) < start + seconds:
                if (due := start + i / rate) > now:
                    await asyncio.sleep(due - now)
                t = asyncio.ensure_future(one(app, slo))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*tasks)

        async def replans() -> None:
            start = time.perf_counter()
            for at in (seconds / 6, seconds / 2):
                await asyncio.sleep(start + at - time.perf_counter())
                c._dirty.set()

        tick = asyncio.ensure_future(ticker())
        await asyncio.gather(replans(), *(stream(a.name, a.rate, a.slo_ms) for a in w.apps))
        tick.cancel()
        await client.close()
    finally:
        await cluster.stop()

    def planning_at(t: float) -> bool:
        return any(a <= t <= b for a, b in windows)

    print(f"| {planning} | plans (s) | frames | P50 ms | P99 ms | max ms | within SLO | loop lag P99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, during in (("while planning", True), ("otherwise", False)):
        lat = np.array([ms for t, ms, _ in frames if planning_at(t) == during])
        ok = np.mean([ms <= slo for t, ms, slo in frames if planning_at(t) == during])
        lag = np.array([ms for t, ms in lags if planning_at(t) == during])
        print(f"| {name} | {', '.join(f'{b - a:.1f}' for a, b in windows)} | {len(lat)} | "
              f"{np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | {lat.max():.1f} | {ok:.1%} | "
              f"{np.percentile(lag, 99):.1f} | {lag.max():.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/demo.yaml")
    parser.add_argument("--planning", choices=("thread", "process"), default="process")
    parser.add_argument("--seconds", type=float, default=24.0)
    args = parser.parse_args()
    asyncio.run(bench(args.config, args.planning, args.seconds))


if __name__ == "__main__":  # the planner process is spawned: it imports this module without running it
    main()
