"""A measured fan-out that leaves its band re-plans the live system: real torch CPU workers, a random
SSDlite whose filter keeps 3 detections a frame (every score passes, at most 3), planned for 1 crop a
frame. The frontend counts 3 requests a frame for the classifier, the controller re-plans with it,
and the plan in force then gives the classifier three times the app's rate (calibration may re-plan
before it: the test lets it, as a live system would)."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput

from harpagon.config.loader import load_workload
from harpagon.runtime.serve import LocalCluster
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

CONFIG = """
include: [%s]
hardware: [{name: cpu-amd-epyc, price_per_hour: 0.1}]
apps:
  - name: street
    rate: 5
    slo_ms: 4000
    modules:
      - {name: detect, model: ssdlite320_mobilenet_v3_large}
      - {name: objects, model: resnet18, after: [detect], input: crops, scale: 1.0, crops: {min_score: 0.0, max: 3}}
serve:
  workers: [{device: cpu, hardware: cpu-amd-epyc, count: 2, threads: 1}]
  input_shape: [3, 64, 64]
  frame_shape: [48, 64, 3]
"""


def test_a_measured_fanout_out_of_its_band_replans_with_it(tmp_path, caplog):
    config = tmp_path / "street.yaml"
    config.write_text(CONFIG % (REPO / "models" / "profiles" / "cpu-amd-epyc.yaml"))
    workload = load_workload([config])

    async def scenario():
        async with LocalCluster(workload, grpc_port=0, metrics_port=0).running() as cluster:
            controller = cluster.controller
            first = controller.plan
            plans = controller.plans
            client = triton_aio.InferenceServerClient(f"127.0.0.1:{cluster.port}")
            frame = InferInput("FRAME", [48, 64, 3], "UINT8")
            frame.set_data_from_numpy(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
            loop = asyncio.get_running_loop()
            # the re-plan comes 10 s into a plan, after 50 frames, held 3 s (a calibration re-plan may come
            # first: resnet18 on 64 x 64 inputs runs faster than its profile, measured at 224 x 224)
            end = loop.time() + 90
            counts = []

            def replanned() -> bool:
                plan = controller.plan.app("street")
                return plan.module("objects").rate > 2 * plan.rate

            async def one() -> None:
                result = await client.infer("street", [frame], client_timeout=10)
                counts.append(len(result.as_numpy("objects_detection")))

            sent = set()
            while loop.time() < end and not replanned():  # 5 frames a second, as configured
                task = asyncio.ensure_future(one())
                sent.add(task)
                task.add_done_callback(sent.discard)
                await asyncio.sleep(0.2)
            await asyncio.gather(*sent)
            await client.close()
            for _ in range(100):  # the re-plan under way
                if controller.settled:
                    break
                await asyncio.sleep(0.1)
            url = f"http://127.0.0.1:{cluster.metrics_at}/metrics"
            metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
            return first, controller.plan, controller.plans - plans, counts, metrics

    with caplog.at_level("INFO", logger="harpagon.controller"):
        first, last, replans, counts, metrics = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert set(counts) == {3}  # every frame: 3 detections kept, 3 classifier requests
    assert replans >= 1
    assert first.app("street").module("objects").rate == pytest.approx(5.0)
    street = last.app("street")  # (its rate may be the measured one too)
    assert street.module("objects").rate == pytest.approx(3 * street.rate)  # planned with the measured 3
    assert any(re.search(r"measured fan-out left the band .*street/objects: 1 -> 3", r.getMessage())
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert 'harpagon_controller_module_scale{app="street",kind="measured",module="objects"} 3.0' in metrics
