"""A module's `weights:` reaches its worker: `harpagon serve` on a real torch CPU worker loads the
weights file from the config's folder, and the reply shows it (a ResNet-18 whose classifier is zero
with bias 0.5 answers 0.5 for every class, which random initialisation never does)."""

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
hardware: [{name: cpu-amd-epyc, price_per_hour: 0.1}]
profiles:
  - {model: resnet18, hardware: cpu-amd-epyc, batches: [[1, 57.3, 3.8], [2, 103.4, 5.4]]}
apps:
  - name: cam
    rate: 2
    slo_ms: 3000
    modules: [{name: cls, model: resnet18, weights: %s}]
serve:
  workers: [{device: cpu, hardware: cpu-amd-epyc, threads: 1}]
  input_shape: [3, 32, 32]
  frame_shape: [24, 32, 3]
  weights_dir: weights
"""


def test_a_modules_weights_file_reaches_its_worker(tmp_path):
    import torch
    from torchvision import models

    (tmp_path / "weights").mkdir()
    m = models.resnet18(weights=None)
    torch.nn.init.zeros_(m.fc.weight)
    torch.nn.init.constant_(m.fc.bias, 0.5)
    torch.save(m.state_dict(), tmp_path / "weights" / "r18.pt")
    config = tmp_path / "app.yaml"
    config.write_text(CONFIG % "r18.pt")
    workload = load_workload([config])
    assert workload.serve.weights_dir == str((tmp_path / "weights").resolve())  # relative to the config file

    async def scenario():
        cluster = LocalCluster(workload, grpc_port=0, metrics_port=0)
        await cluster.start()
        try:
            await cluster.ready()
            client = triton_aio.InferenceServerClient(f"127.0.0.1:{cluster.port}")
            frame = InferInput("FRAME", [24, 32, 3], "UINT8")
            frame.set_data_from_numpy(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
            result = await client.infer("cam", [frame], client_timeout=30)
            await client.close()
            return result.as_numpy("cls_0")
        finally:
            await cluster.stop()

    logits = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert logits.shape == (1, 1000) and np.allclose(logits, 0.5)


@pytest.mark.parametrize(("weights", "why"), [("missing.pt", "no such file"), ("../app.yaml", "outside")])
def test_weights_that_are_not_in_the_weights_folder_are_refused_at_start(tmp_path, weights, why):
    (tmp_path / "weights").mkdir()
    config = tmp_path / "app.yaml"
    config.write_text(CONFIG % weights)
    cluster = LocalCluster(load_workload([config]), grpc_port=0, metrics_port=0)
    with pytest.raises(ValueError, match=why):
        asyncio.run(cluster.start())
