"""The fleet live (docs/model.md, "The fleet"): `harpagon serve` with a `serve.fleet` starts the workers
its plan needs plus a spare, starts more when the plan needs more, stops idle ones after the
scale-down delay, and a worker that gets SIGTERM while frames flow through it leaves without losing
one. Real worker processes (emulated T4s: batches sleep their profiled latency) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import time

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput

from harpagon.config.schema import Workload
from harpagon.runtime.serve import LocalCluster

pytestmark = pytest.mark.integration

#: One module at 20 ms a frame whatever the batch (50 frames/s per T4): workers follow the rate.
ELASTIC = Workload.model_validate({
    "hardware": [{"name": "t4", "price_per_hour": 0.526, "count": 5}],
    "profiles": [{"model": "resnet50", "hardware": "t4", "batches": [[1, 20.0], [2, 40.0]]}],
    "apps": [{"name": "cam", "rate": 60, "slo_ms": 300, "modules": [{"name": "detect", "model": "resnet50"}]}],
    "serve": {"workers": [{"device": "emulated:t4", "count": 5}], "input_shape": [3, 16, 16],
              "frame_shape": [24, 32, 3], "arrivals": "fluid", "sharing": False,
              "fleet": {"spare": 1, "scale_down_delay_s": 2.0}},
})


async def replan_at(cluster: LocalCluster, rate: float) -> None:
    """Plan the app at `rate` now, as the rate watch does once the measured rate leaves its band."""

    async def move() -> None:
        cluster.controller.rates.planned["cam"] = rate
        await cluster.controller.replan()

    await cluster.control.run(move())


async def until(what, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not what():
        if time.monotonic() > end:
            raise TimeoutError
        await asyncio.sleep(0.1)


def registered(cluster: LocalCluster) -> int:
    return len(cluster.controller.workers)


def test_serve_sizes_its_workers_to_the_plan_and_follows_it_up_and_down():
    async def scenario() -> None:
        async with LocalCluster(ELASTIC, grpc_port=0, metrics_port=0).running(timeout_s=60) as cluster:
            c = cluster.controller
            assert c.plan.workers_by_hardware() == {"t4": 2}
            assert registered(cluster) == 3 and cluster.initial == [3]  # the plan's 2 and the spare, not 5
            assert c.fleet.desired(c.clock()) == {"t4": 3}

            await replan_at(cluster, 140.0)  # 3 workers and the spare
            await until(lambda: registered(cluster) == 4 and not c.dirty)
            await until(lambda: c.planned_workers == 4)
            assert c.plan.workers_by_hardware() == {"t4": 3}

            await replan_at(cluster, 40.0)  # 1 worker and the spare, once the delay is over
            assert registered(cluster) == 4
            await until(lambda: registered(cluster) == 2, timeout_s=20)
            assert c.left == 2 and c.evicted == 0  # they said they were leaving: nobody was evicted
            await until(lambda: len(cluster.scaler.workers) == 2, timeout_s=20)
            assert [e.action for e in cluster.scaler.events] == ["start", "stop", "stop"]

    asyncio.run(scenario())


def test_a_busy_worker_sent_sigterm_leaves_without_losing_a_frame():
    async def scenario() -> None:
        async with LocalCluster(ELASTIC, grpc_port=0, metrics_port=0).running(timeout_s=60) as cluster:
            c = cluster.controller
            busy = next(w for w, mods in c.running.items() if mods)
            proc = cluster.scaler.workers[busy][1]
            client = triton_aio.InferenceServerClient(f"127.0.0.1:{cluster.port}")
            x = InferInput("FRAME", [24, 32, 3], "UINT8")
            x.set_data_from_numpy(np.zeros((24, 32, 3), np.uint8))
            results: list[str] = []

            async def send(n: int) -> None:
                for _ in range(n):
                    try:
                        await client.infer("cam", [x], client_timeout=10)
                        results.append("ok")
                    except Exception as exc:  # every failure counted, none hidden
                        results.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.02)

            sending = asyncio.ensure_future(asyncio.gather(*(send(100) for _ in range(2))))
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            await until(lambda: proc.poll() is not None, timeout_s=30)
            await sending
            await client.close()
            assert proc.returncode == 0
            assert results.count("ok") == 200, [r for r in results if r != "ok"][:3]
            assert c.left == 1 and c.evicted == 0 and busy not in c.running
            # the desired fleet did not change: a worker replaces it
            await until(lambda: registered(cluster) == 3 and not c.dirty)

    asyncio.run(scenario())
