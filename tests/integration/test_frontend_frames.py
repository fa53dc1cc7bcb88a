"""JPEG and raw frames end to end: tritonclient sends one as a BYTES input (or UINT8 pixels) to the
frontend, which forwards the bytes to a real CPU torch worker that decodes and resizes them; a
truncated JPEG, whose header still reads, fails only at the worker's decoder and is answered
INVALID_ARGUMENT."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tritonclient.grpc as triton
from PIL import Image as PilImage
from tritonclient.utils import InferenceServerException

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.wire.modules import worker_module_name
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable
from harpagon.v1 import worker_pb2 as pb
from tests.integration.test_frontend import Frontend

pytestmark = pytest.mark.integration
SHAPE = (3, 32, 32)


def jpeg(h: int, w: int) -> bytes:
    out = io.BytesIO()
    PilImage.fromarray(np.random.default_rng(h + w).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def image_input(data: bytes) -> triton.InferInput:
    x = triton.InferInput("FRAME", [1], "BYTES")
    x.set_data_from_numpy(np.array([data], dtype=np.object_))
    return x


@pytest.fixture
def cpu_frontend(start_worker):
    w = start_worker("--device", "cpu", "--threads", "1")
    name = worker_module_name("photos/cls", 1)
    w.stub.ApplyConfig(pb.ApplyConfigRequest(config=pb.WorkerConfig(version=1, modules=[
        pb.ModuleConfig(name=name, model="resnet18", batch=1, input_shape=list(SHAPE))])), timeout=120)
    app = app_route(App.model_validate({"name": "photos", "rate": 10, "slo_ms": 30000, "modules": [
        {"name": "cls", "model": "resnet18"}]}))
    route = ModuleRoute("cls", SHAPE, (TupleSpec(1, 1, 10.0),), ((w.address,),), (name,))
    fe = Frontend(RoutingTable(1, "batch-aware", {"photos": app}, {("photos", "cls"): route}))
    yield fe
    fe.stop()


def test_a_jpeg_sent_as_bytes_is_decoded_by_a_real_worker_and_a_truncated_one_is_invalid_argument(cpu_frontend):
    client = triton.InferenceServerClient(f"127.0.0.1:{cpu_frontend.port}")
    image = jpeg(120, 160)
    r = client.infer("photos", [image_input(image)], request_id="jpeg")
    scores = r.as_numpy("cls_0")
    assert r.get_response().id == "jpeg" and scores.shape == (1, 1000) and np.isfinite(scores).all()
    assert r.as_numpy("cls_top_class").shape == (1, 5)

    with pytest.raises(InferenceServerException) as info:
        client.infer("photos", [image_input(image[: len(image) // 2])])  # its header reads; its pixels do not
    assert "INVALID_ARGUMENT" in str(info.value.status()) and "could not be read" in info.value.message()

    raw = triton.InferInput("FRAME", [48, 64, 3], "UINT8")  # the UINT8 path: a raw frame the worker resizes
    raw.set_data_from_numpy(np.zeros((48, 64, 3), np.uint8))
    assert client.infer("photos", [raw]).as_numpy("cls_0").shape == (1, 1000)
    counters = cpu_frontend.plane.counters["photos"]
    assert (counters.success, counters.failed) == (2, 1)


def test_a_raw_uint8_frame_is_resized_by_the_worker_as_the_same_frame_sent_as_png_is(cpu_frontend):
    """Raw pixels and a lossless PNG of them reach the worker at full size and are resized there the
    same way, so they answer the same scores; the frontend resized neither."""
    client = triton.InferenceServerClient(f"127.0.0.1:{cpu_frontend.port}")
    pixels = np.random.default_rng(5).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    out = io.BytesIO()
    PilImage.fromarray(pixels).save(out, "PNG")
    raw = triton.InferInput("FRAME", list(pixels.shape), "UINT8")
    raw.set_data_from_numpy(pixels)
    from_raw = client.infer("photos", [raw]).as_numpy("cls_0")
    from_png = client.infer("photos", [image_input(out.getvalue())]).as_numpy("cls_0")
    assert from_raw.shape == (1, 1000) and np.isfinite(from_raw).all()
    np.testing.assert_allclose(from_raw, from_png, rtol=1e-5, atol=1e-5)
