"""Self-calibration live: emulated workers 30% slower than their profile (a slow GPU) break the first
plan; the controller measures their batch latency, re-plans with it, and attainment recovers."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput
from tritonclient.utils import InferenceServerException

from harpagon.config.loader import load_workload
from harpagon.config.schema import Workload
from harpagon.runtime.controller.controller import MIN_EPOCH_S
from harpagon.runtime.frontend.data_plane import SUSPECT_S
from harpagon.runtime.serve import LocalCluster

pytestmark = pytest.mark.integration


def workload() -> Workload:
    base = load_workload(["configs/demo.yaml"])  # the catalog's profiles
    return Workload.model_validate({
        **base.model_dump(exclude={"apps", "hardware", "serve"}),
        "hardware": [{"name": "t4", "price_per_hour": 0.526, "count": 3}],
        # one worker at batch 2 by the profile; at 1.3x its d(b), that worker is overloaded
        "apps": [{"name": "cam", "rate": 250.0, "slo_ms": 80.0, "modules": [{"name": "classify", "model": "resnet50"}]}],
        "serve": {"workers": [{"device": "emulated:t4", "count": 3, "slowdown": 1.3}], "input_shape": [3, 8, 8],
                  "frame_shape": [8, 8, 3], "overhead_ms": 3.0},
    })


async def send(client, rate: float, seconds: float, slo_ms: float, seed: int) -> list[tuple[float, bool]]:
    """Poisson frames at `rate` for `seconds`: per frame, its send time and whether it was answered in time."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((8, 8, 3), np.uint8)
    out: list[tuple[float, bool]] = []
    loop = asyncio.get_running_loop()

    async def one(sent: float) -> None:
        x = InferInput("FRAME", [8, 8, 3], "UINT8")
        x.set_data_from_numpy(frame)
        try:
            await client.infer("cam", [x])
            ok = (loop.time() - sent) * 1000 <= slo_ms
        except InferenceServerException:
            ok = False
        out.append((sent, ok))

    tasks, start, t = [], loop.time(), 0.0
    while t < seconds:
        t += rng.exponential(1.0 / rate)
        await asyncio.sleep(max(0.0, start + t - loop.time()))
        tasks.append(asyncio.ensure_future(one(loop.time())))
    await asyncio.gather(*tasks)
    return out


def test_a_slow_device_is_measured_and_replanned_for(caplog):
    caplog.set_level(logging.INFO, logger="harpagon.controller")

    async def scenario():
        async with LocalCluster(workload(), grpc_port=0, metrics_port=0).running() as cluster:
            controller = cluster.controller
            first = controller.plan
            client = triton_aio.InferenceServerClient(f"127.0.0.1:{cluster.port}")
            before = await send(client, 250.0, MIN_EPOCH_S - 2, 80.0, seed=1)
            plans = controller.plans
            deadline = time.monotonic() + 60
            sender = asyncio.ensure_future(send(client, 250.0, 60.0, 80.0, seed=2))  # keeps the load on
            while controller.plans == plans and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            # the load stays on while the old routes drain and the switch settles (a worker that stalled in
            # it is suspect for SUSPECT_S); then the new plan's steady state is measured
            await asyncio.sleep(SUSPECT_S + 1.0)
            sender.cancel()
            after = await send(client, 250.0, 8.0, 80.0, seed=3)
            await client.close()
            return first, controller.plan, controller.calibrator, before, after

    first, second, calibrator, before, after = asyncio.run(scenario())
    assert any("drifted" in r.getMessage() and "resnet50 on t4" in r.getMessage() for r in caplog.records)
    # 1.3x the profile, and more when the machine is busy: d(b) is mean + std, and a sleeping emulated
    # device on a loaded CPU overshoots and jitters
    assert calibrator.planned.factor("resnet50", "t4") >= 1.25
    got_before = np.mean([ok for _, ok in before[len(before) // 4:]])  # once the first plan's queue builds
    got_after = np.mean([ok for _, ok in after])
    assert got_before < 0.8, got_before  # the profile's plan cannot keep up with the slow device...
    assert got_after >= 0.95, got_after  # ...the plan made with the measured latency does
    assert second.cost_per_hour >= first.cost_per_hour
