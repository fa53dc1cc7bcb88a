"""A module's `weights:` reaches its worker: `harpagon serve` on a real torch CPU worker loads the
weights file from the config's folder, and the reply shows it (a ResNet-18 whose classifier is zero
with bias 0.5 answers 0.5 for every class, which random initialisation never does)."""

from __future__ import annotations

import asyncio
import io

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
        async with LocalCluster(workload, grpc_port=0, metrics_port=0).running() as cluster:
            client = triton_aio.InferenceServerClient(f"127.0.0.1:{cluster.port}")
            frame = InferInput("FRAME", [24, 32, 3], "UINT8")
            frame.set_data_from_numpy(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
            result = await client.infer("cam", [frame], client_timeout=30)
            await client.close()
            return result.as_numpy("cls_0")

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


PIPELINE = """
include: [%s]
hardware: [{name: cpu-amd-epyc, price_per_hour: 0.1}]
apps:
  - name: street
    rate: 2
    slo_ms: 4000
    modules:
      - {name: detect, model: ssdlite320_mobilenet_v3_large}
      - {name: objects, model: resnet18, after: [detect], input: crops, scale: 3.0, weights: r18.pt,
         crops: {min_score: 0.0, max: 3}}
serve:
  workers: [{device: cpu, hardware: cpu-amd-epyc, count: 2, threads: 1}]
  input_shape: [3, 96, 96]
  frame_shape: [48, 64, 3]
"""


def test_the_video_demo_gives_per_object_results_of_real_models_with_local_weights(tmp_path):
    """`harpagon demo --video` on real CPU workers: a random SSDlite's detections (every score kept,
    at most 3) become the ResNet-18's requests, and its local weights (a classifier that always says
    class 817) show in every object's best class, tied to its detection, box and label name."""
    import av
    import torch
    from rich.console import Console
    from torchvision import models

    from harpagon.runtime.demo import run_demo
    from tests.integration.conftest import REPO

    m = models.resnet18(weights=None)
    torch.nn.init.zeros_(m.fc.weight)
    torch.nn.init.zeros_(m.fc.bias)
    with torch.no_grad():
        m.fc.bias[817] = 10.0
    torch.save(m.state_dict(), tmp_path / "r18.pt")
    config = tmp_path / "street.yaml"
    config.write_text(PIPELINE % (REPO / "models" / "profiles" / "cpu-amd-epyc.yaml"))
    video = tmp_path / "street.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            img = np.full((48, 64, 3), 30, np.uint8)
            img[10:30, 5 + 4 * i:25 + 4 * i] = 220
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)

    console = Console(record=True, width=200, file=io.StringIO())
    loads = asyncio.run(asyncio.wait_for(run_demo(load_workload([config]), 4, console, video=str(video)), 240))
    (load,) = loads
    assert load.answered > 0 and load.within_slo == load.answered and load.failed == 0
    reply = load.sample
    detection = reply.as_numpy("objects_detection")
    assert 1 <= len(detection) <= 3 and np.all((detection >= 0) & (detection < 100))
    assert np.all(reply.as_numpy("objects_top_class")[:, 0] == 817)  # the local weights, not random ones
    assert np.all(reply.as_numpy("objects_top_score")[:, 0] > 0.9)
    boxes = reply.as_numpy("objects_box")
    assert boxes.shape == (len(detection), 4) and np.all(boxes >= -1) and np.all(boxes[:, [0, 2]] <= 65)
    assert all(isinstance(n, bytes) and n for n in reply.as_numpy("objects_label_name"))
    text = console.export_text()
    assert "street: sink 'objects', one frame's reply" in text and "817 (0.9" in text
