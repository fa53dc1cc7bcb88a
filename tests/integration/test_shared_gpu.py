"""A shared GPU live: one EMULATED worker hosts the modules of two apps (the plan's shared GPU), serves
both apps' frames side by side, and keeps hosting them through a re-plan (a worker joins), with every
frame answered within its SLO."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput

from harpagon.config.loader import load_workload
from harpagon.runtime.serve import LocalCluster

pytestmark = pytest.mark.integration

CONFIG = """
hardware: [{name: t4, price_per_hour: 0.526, memory_gb: 16}]
profiles:
  - {model: light-a, hardware: t4, batches: [[1, 4.0, 0, 300], [2, 5.0, 0, 400], [4, 7.0, 0, 500]]}
  - {model: light-b, hardware: t4, batches: [[1, 3.0, 0, 300], [2, 4.0, 0, 400], [4, 6.0, 0, 500]]}
apps:
  - {name: one, rate: 10, slo_ms: 300, modules: [{name: x, model: light-a}]}
  - {name: two, rate: 10, slo_ms: 300, modules: [{name: y, model: light-b}]}
serve:
  workers: [{device: "emulated:t4", count: 2}]
  input_shape: [3, 8, 8]
  frame_shape: [8, 8, 3]
"""


def test_one_worker_hosts_two_apps_modules_through_a_replan(tmp_path):
    config = tmp_path / "light.yaml"
    config.write_text(CONFIG)
    workload = load_workload([config])

    async def stream(client, app: str, seconds: float, results: list) -> None:
        x = InferInput("FRAME", [8, 8, 3], "UINT8")
        x.set_data_from_numpy(np.zeros((8, 8, 3), np.uint8))
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            t0 = loop.time()
            try:
                await client.infer(app, [x], client_timeout=5)
                results.append((app, (loop.time() - t0) * 1000, None))
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                results.append((app, None, str(exc)))
            await asyncio.sleep(0.1)

    async def scenario():
        async with LocalCluster(workload, grpc_port=0, metrics_port=0).running() as cluster:
            controller = cluster.controller
            before = controller.plan
            hosting_before = {w: m for w, m in controller.running.items() if len(m) == 2}
            client = triton_aio.InferenceServerClient(f"127.0.0.1:{cluster.port}")
            results: list = []
            streams = asyncio.gather(stream(client, "one", 6, results), stream(client, "two", 6, results))
            await asyncio.sleep(2)
            plans = controller.plans
            cluster.start_worker("emulated:t4")  # a worker joins: the controller re-plans
            for _ in range(100):
                if controller.plans > plans and controller.settled:
                    break
                await asyncio.sleep(0.1)
            await streams
            await client.close()
            hosting_after = {w: m for w, m in controller.running.items() if len(m) == 2}
            stats = cluster.plane.stats()
            return before, controller.plan, controller.plans - plans, hosting_before, hosting_after, results, stats

    before, after, replans, hosting_before, hosting_after, results, stats = asyncio.run(
        asyncio.wait_for(scenario(), 240))
    for p in (before, after):  # one GPU, shared by the two apps' modules
        gpus = {t.gpu for ap in p.apps for mp in ap.modules for t in mp.tuples}
        assert len(gpus) == 1 and None not in gpus and p.cost_per_hour == pytest.approx(0.526)
    assert replans >= 1
    # the same worker hosts both modules, before and after the re-plan
    assert len(hosting_before) == 1 and hosting_after == hosting_before
    (names,) = hosting_before.values()
    assert sorted(n.split("@")[0] for n in names) == ["one/x", "two/y"]
    # every frame of both apps answered within its SLO, across the re-plan
    assert {r[0] for r in results} == {"one", "two"}
    assert all(err is None for _, _, err in results), [e for *_, e in results if e]
    assert max(ms for _, ms, _ in results) < 300
    assert stats[("one", "x")].requests > 0 and stats[("two", "y")].requests > 0
