"""The worker's data plane and tensor codec, in process (emulated device, no network)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from harpagon.runtime.metrics import WorkerMetrics
from harpagon.runtime.wire.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound
from harpagon.runtime.wire.frames import EncodedFrame
from harpagon.runtime.wire.modules import CropEdge, ModuleSpec
from harpagon.runtime.wire.tensors import Crops, from_numpy, to_numpy
from harpagon.runtime.worker import crops, registry
from harpagon.runtime.worker.data_plane import MAX_BATCH, MAX_CROP_EDGES, MAX_MODULES, WorkerDataPlane
from harpagon.runtime.worker.executor import EmulatedExecutor, TorchExecutor
from harpagon.v1 import worker_pb2 as pb

PROFILES = {("resnet18", "fake"): {1: (1.0, 0.0), 4: (2.0, 0.5)}}
SHAPE = (3, 8, 8)


def spec(name="m", batch=4, model="resnet18") -> ModuleSpec:
    return ModuleSpec(name, model, batch, SHAPE)


@pytest.fixture
def plane():
    p = WorkerDataPlane(EmulatedExecutor("fake", PROFILES))
    yield p
    p.close()


def test_tensor_round_trip_and_checks():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(to_numpy(from_numpy(a)), a)
    with pytest.raises(InvalidArgument, match="dtype 'complex64'"):
        to_numpy(pb.Tensor(dtype="complex64", shape=[1], data=b"\0" * 8))
    with pytest.raises(InvalidArgument, match="3 bytes do not hold a uint8 tensor of shape \\[2, 2\\]"):
        to_numpy(pb.Tensor(dtype="uint8", shape=[2, 2], data=b"abc"))
    with pytest.raises(InvalidArgument, match="negative"):
        to_numpy(pb.Tensor(dtype="uint8", shape=[-1], data=b""))


def test_module_config_validation():
    def shape(model):
        return registry.entry(model).input

    ok = ModuleSpec.from_proto(pb.ModuleConfig(name="x", model="resnet18", batch=2), shape)
    assert ok.input_shape == (3, 224, 224)  # the registry's default
    assert ModuleSpec.from_proto(ok.to_proto()) == ok  # the codec round-trips
    with pytest.raises(InvalidArgument, match="batch must be >= 1"):
        ModuleSpec.from_proto(pb.ModuleConfig(name="x", model="resnet18", batch=0), shape)
    with pytest.raises(FailedPrecondition, match="'bert' is not in the registry"):
        ModuleSpec.from_proto(pb.ModuleConfig(name="x", model="bert", batch=1), shape)
    with pytest.raises(InvalidArgument, match="input_shape"):
        ModuleSpec.from_proto(pb.ModuleConfig(name="x", model="resnet18", batch=1, input_shape=[3, 8, 0]), shape)
    with pytest.raises(InvalidArgument, match="input_shape"):
        ModuleSpec.from_proto(pb.ModuleConfig(name="x", model="resnet18", batch=1, input_shape=[3, 8, 8, 8]), shape)
    vector = ModuleSpec.from_proto(pb.ModuleConfig(name="x", model="mlp_head", batch=1, input_shape=[1000]), shape)
    assert vector.input_shape == (1000,)  # a features edge's child takes a vector
    with pytest.raises(InvalidArgument, match="input_shape"):  # no registry to fill it in
        ModuleSpec.from_proto(pb.ModuleConfig(name="x", model="resnet18", batch=1))


def test_versions_are_idempotent_and_only_grow(plane):
    assert plane.apply(1, [spec()]) is True
    assert plane.apply(1, [spec()]) is False
    with pytest.raises(FailedPrecondition, match="in force with other modules"):
        plane.apply(1, [spec(batch=1)])
    with pytest.raises(FailedPrecondition, match="older"):
        plane.apply(0, [spec()])
    with pytest.raises(InvalidArgument, match="twice"):
        plane.apply(2, [spec(), spec()])


def test_failed_config_keeps_the_old_one(plane):
    plane.apply(1, [spec()])
    with pytest.raises(FailedPrecondition, match="no profile"):
        plane.apply(2, [spec(), spec("n", batch=8)])
    assert plane.version == 1
    assert plane.infer("m", np.zeros((1, *SHAPE), np.uint8)).batch == 4


def test_unchanged_modules_are_not_reloaded(plane):
    plane.apply(1, [spec("a"), spec("b", batch=1)])
    a = plane._runners["a"]
    plane.apply(2, [spec("a"), spec("c", batch=1)])
    assert plane._runners["a"] is a and set(plane._runners) == {"a", "c"}


def test_infer_pads_and_counts(plane):
    plane.apply(1, [spec()])
    r = plane.infer("m", np.zeros((3, *SHAPE), np.float32))
    assert (r.batch, r.dummies) == (4, 1) and r.exec_ms >= 2.5 and r.outputs[0].shape == (3, 1000)
    c = plane.counters()["m"]
    assert (c.batches, c.requests, c.dummies) == (1, 3, 1)
    with pytest.raises(NotFound):
        plane.infer("x", np.zeros((1, *SHAPE), np.uint8))
    with pytest.raises(InvalidArgument, match="batches of 4"):
        plane.infer("m", np.zeros((5, *SHAPE), np.uint8))
    with pytest.raises(InvalidArgument, match="int64"):
        plane.infer("m", np.zeros((1, *SHAPE), np.int64))



def test_every_batch_is_one_record_that_the_tally_and_prometheus_both_count():
    """The plane records each batch once; its own counters (heartbeats) and the Prometheus recorder
    agree, errors and expiries included."""
    metrics = WorkerMetrics()
    plane = WorkerDataPlane(EmulatedExecutor("fake", PROFILES), metrics)
    try:
        plane.apply(1, [spec()])
        for n in (3, 4, 1):
            plane.infer("m", np.zeros((n, *SHAPE), np.uint8))
        with pytest.raises(DeadlineExceeded):
            plane.infer("m", np.zeros((1, *SHAPE), np.uint8), deadline=time.monotonic() - 1.0)
        c = plane.counters()["m"]
        value = metrics.registry.get_sample_value
        assert (c.batches, c.requests, c.dummies, c.expired) == (3, 8, 4, 1)
        assert value("nv_inference_exec_count_total", {"model": "m"}) == c.batches
        assert value("nv_inference_count_total", {"model": "m"}) == c.requests
        assert value("harpagon_worker_dummies_total", {"model": "m"}) == c.dummies
        assert value("harpagon_worker_expired_total", {"model": "m"}) == c.expired
        assert value("nv_inference_compute_infer_duration_us_total", {"model": "m"}) == pytest.approx(
            c.exec_ms_total * 1000)
        assert len(plane.take_recent()["m"]) == 3 and plane.take_recent() == {}
    finally:
        plane.close()

# --- deadlines -----------------------------------------------------------------------------------


def test_a_batch_that_reaches_the_device_past_its_deadline_is_not_run():
    """A 200 ms batch holds the device; a batch queued behind it with a 50 ms deadline is not run when
    it gets there: DeadlineExceeded, counted `expired`; one with room enough runs."""
    profiles = {**PROFILES, ("slow", "fake"): {1: (200.0, 0.0)}}
    plane = WorkerDataPlane(EmulatedExecutor("fake", profiles))
    try:
        plane.apply(1, [spec("long", batch=1, model="slow"), spec()])
        on_device = threading.Event()
        runner = plane._runners["long"]

        class Flagged:  # the long batch, telling the test when it holds the device
            spec = runner.spec

            def __call__(self, x):
                on_device.set()
                return runner(x)

        plane._runners["long"] = Flagged()
        with ThreadPoolExecutor(3) as pool:
            long = pool.submit(plane.infer, "long", np.zeros((1, *SHAPE), np.uint8))
            assert on_device.wait(5)
            t0 = time.monotonic()
            late = pool.submit(plane.infer, "m", np.zeros((2, *SHAPE), np.uint8), t0 + 0.05)
            fine = pool.submit(plane.infer, "m", np.zeros((1, *SHAPE), np.uint8), t0 + 5.0)
            with pytest.raises(DeadlineExceeded, match="past its deadline"):
                late.result(5)
            assert fine.result(5).batch == 4 and long.result(5).batch == 1
        c = plane.counters()["m"]
        assert (c.expired, c.batches, c.requests, c.errors) == (1, 1, 1, 0)
        assert plane.counters()["long"].expired == 0
        assert plane.infer("m", np.zeros((1, *SHAPE), np.uint8), deadline=None).batch == 4  # no deadline: runs
    finally:
        plane.close()


def test_expired_travels_in_the_module_stats():
    from harpagon.runtime.worker.server import module_stats

    plane = WorkerDataPlane(EmulatedExecutor("fake", PROFILES))
    try:
        plane.apply(1, [spec()])
        with pytest.raises(DeadlineExceeded):
            plane.infer("m", np.zeros((1, *SHAPE), np.uint8), deadline=time.monotonic() - 1.0)
        (stats,) = module_stats(plane)
        assert stats.expired == 1 and stats.batches == 0
    finally:
        plane.close()


# --- bounds --------------------------------------------------------------------------------------


@pytest.mark.parametrize("specs, match", [
    ([spec(f"m{i}", batch=1) for i in range(MAX_MODULES + 1)], f"65 modules, more than {MAX_MODULES}"),
    ([spec(batch=0)], "batch must be in \\[1, 1024\\], got 0"),
    ([spec(batch=MAX_BATCH + 1)], "batch must be in \\[1, 1024\\], got 1025"),
    ([spec("x" * 257)], "module name must be 1 to 256 characters, got 257"),
    ([spec(model="r" * 300)], "model must be 1 to 256 characters, got 300"),
    ([ModuleSpec("m", "resnet18", 1, (1, 1, 1, 1, 1))], "1 to 4 dimensions"),
    ([ModuleSpec("m", "resnet18", 1, (3, 0, 8))], "dimensions >= 1, got \\[3, 0, 8\\]"),
    ([ModuleSpec("m", "resnet18", 1, (3, 9000, 9000))], "elements per item"),
    ([ModuleSpec("m", "resnet18", 1024, (3, 512, 512))], "batch 1024 of input_shape \\[3, 512, 512\\]"),
], ids=["modules", "batch-0", "batch-1025", "name", "model", "rank", "zero-dim", "item-elements",
        "batch-elements"])
def test_configurations_past_the_bounds_are_invalid_and_keep_the_old_one(plane, specs, match):
    plane.apply(1, [spec()])
    with pytest.raises(InvalidArgument, match=match):
        plane.apply(2, specs)
    assert plane.version == 1


def test_a_module_name_past_the_bound_is_invalid_at_infer(plane):
    plane.apply(1, [spec()])
    with pytest.raises(InvalidArgument, match="at most 256 characters, got 100000"):
        plane.infer("m" * 100_000, np.zeros((1, *SHAPE), np.uint8))


def test_a_new_budget_alone_reloads_nothing(plane):
    """Budgets are for reporting: a restarted or recalibrated controller that plans the same modules
    with other budgets must not reload them (on a GPU: a weight load and a warm-up each)."""
    from dataclasses import replace

    loads = []
    load = plane.executor.load
    plane.executor.load = lambda s: loads.append(s.name) or load(s)
    plane.apply(1, [replace(spec(), budget_ms=10.0)])
    plane.apply(2, [replace(spec(), budget_ms=25.0)])
    assert loads == ["m"] and plane.specs[0].budget_ms == 25.0
    plane.apply(3, [replace(spec(), batch=1, budget_ms=25.0)])  # a real change does reload
    assert loads == ["m", "m"]


# --- detectors' crops ----------------------------------------------------------------------------

EDGES = (CropEdge("cars", (3, 4, 6), labels=(3,), scale=1.5), CropEdge("people", (3, 5, 5), scale=2.0, max_crops=1))


def detector(batch: int = 4) -> ModuleSpec:
    return ModuleSpec("det", "resnet18", batch, SHAPE, crops=EDGES)  # crops edges: an emulated detector


def test_an_emulated_detector_returns_the_crops_of_each_edge(plane):
    plane.apply(1, [detector()])
    r = plane.infer("det", np.zeros((3, *SHAPE), np.uint8))
    boxes, scores, labels = r.outputs
    assert boxes.shape == (3, 100, 4) and scores.shape == labels.shape == (3, 100)
    assert set(r.crops) == {"cars", "people"}
    assert r.crops["cars"].counts.tolist() == [1, 2, 1] and r.crops["people"].counts.tolist() == [1, 1, 1]
    assert r.crops["cars"].items.shape == (4, 3, 4, 6) and r.crops["people"].items.shape == (3, 3, 5, 5)
    assert (labels[np.arange(3), r.crops["people"].detection] == 1).all()
    assert r.crops["cars"].of(1)[0].tolist() == [0, 1] and (labels[1, :2] == 3).all()
    c = plane.counters()["det"]
    assert (c.batches, c.requests, c.dummies) == (1, 3, 1)  # per-module stats as for any module
    assert plane.infer("det", np.zeros((1, *SHAPE), np.uint8)).crops["cars"].counts.tolist() == [2]  # f = 3


def test_the_server_puts_the_crops_in_the_reply(plane):
    from harpagon.runtime.worker.server import WorkerServicer

    class Context:
        def time_remaining(self):
            return None

    plane.apply(1, [detector(), spec("cls")])
    servicer = WorkerServicer(plane)
    reply = servicer.Infer(pb.InferRequest(module="det", input=from_numpy(np.zeros((2, *SHAPE), np.uint8)),
                                           id="d"), Context())
    sets = {c.child: Crops.from_proto(c) for c in reply.crops}
    assert reply.id == "d" and len(reply.outputs) == 3 and set(sets) == {"cars", "people"}
    assert sets["cars"].counts.tolist() == [1, 2] and sets["cars"].items.shape == (3, 3, 4, 6)
    assert sets["people"].detection.dtype == np.int32
    plain = servicer.Infer(pb.InferRequest(module="cls", input=from_numpy(np.zeros((1, *SHAPE), np.uint8))),
                           Context())
    assert len(plain.crops) == 0 and to_numpy(plain.outputs[0]).shape == (1, 1000)


@pytest.mark.parametrize("crops, match", [
    (tuple(CropEdge(f"c{i}", (3, 4, 4)) for i in range(MAX_CROP_EDGES + 1)), "crops has 17 edges, more than 16"),
    ((CropEdge("big", (3, 9000, 9000)),), "crops for 'big': shape .* got \\[3, 9000, 9000\\]"),
    ((CropEdge("flat", (3, 4)),), "crops for 'flat': shape"),
    ((CropEdge("c" * 300, (3, 4, 4)),), "crops child must be 1 to 256 characters, got 300"),
], ids=["edges", "shape-elements", "rank", "child"])
def test_crops_past_the_bounds_are_invalid(plane, crops, match):
    with pytest.raises(InvalidArgument, match=match):
        plane.apply(1, [ModuleSpec("det", "resnet18", 4, SHAPE, crops=crops)])
    assert plane.version == 0


def test_a_torch_runner_takes_feature_vectors():
    """`mlp` heads (a features edge's child) take [n, k] inputs."""
    runner = TorchExecutor("cpu", threads=1).load(ModuleSpec("head", "mlp_head", 4, (1000,)))
    result = runner(np.random.default_rng(0).random((3, 1000), dtype=np.float32))
    assert result.outputs[0].shape == (3, 16) and result.outputs[0].dtype == np.float32 and result.crops == {}


# --- encoded frames ------------------------------------------------------------------------------


def _png(image: np.ndarray) -> EncodedFrame:
    """[3, H, W] uint8 as a PNG frame (lossless)."""
    import warnings

    import torch
    from torchvision.io import encode_png

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return EncodedFrame(encode_png(torch.from_numpy(image)).numpy().tobytes(), "png")


def _jpeg(image: np.ndarray) -> EncodedFrame:
    import warnings

    import torch
    from torchvision.io import encode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return EncodedFrame(encode_jpeg(torch.from_numpy(image), quality=90).numpy().tobytes(), "jpeg")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, h, w), dtype=np.uint8)


BAD_FRAME = EncodedFrame(b"\xff\xd8\xff" + b"\x00" * 64, "jpeg")


def test_a_torch_module_takes_a_batch_of_frames_with_an_error_for_the_bad_one():
    """resnet18 at 32 x 32: three frames, one unreadable. The good ones give the outputs their pixels
    give as a tensor (a PNG at the input size: decoded exactly), the bad one an error of its own."""
    plane = WorkerDataPlane(TorchExecutor("cpu", threads=1))
    try:
        plane.apply(1, [ModuleSpec("cls", "resnet18", 4, (3, 32, 32))])
        a, b = _image(32, 32, 1), _image(64, 48, 2)
        r = plane.infer("cls", [_png(a), BAD_FRAME, _jpeg(b)])
        assert r.outputs[0].shape == (3, 1000) and (r.batch, r.dummies) == (4, 1)
        assert list(r.errors) == [1] and "JPEG frame" in r.errors[1]
        want = plane.infer("cls", a[None]).outputs[0][0]
        assert np.allclose(r.outputs[0][0], want, atol=1e-4)
        assert np.isfinite(r.outputs[0][2]).all() and not np.allclose(r.outputs[0][2], want, atol=1e-3)
        assert plane.counters()["cls"].requests == 4  # three frames and one tensor
    finally:
        plane.close()


def test_frames_malformed_as_a_batch_are_invalid_naming_the_item(plane):
    plane.apply(1, [spec(), ModuleSpec("head", "resnet18", 1, (1000,))])  # a vector input
    good = _png(_image(8, 8))
    with pytest.raises(InvalidArgument, match="batches of 4; got 5 items"):
        plane.infer("m", [good] * 5)
    with pytest.raises(InvalidArgument, match="item 1: frame encoding must be one of jpeg, png, raw, got 'gif'"):
        plane.infer("m", [good, EncodedFrame(b"GIF89a", "gif")])
    with pytest.raises(InvalidArgument, match="item 0 is a bytes, not an EncodedFrame"):
        plane.infer("m", [b"\xff\xd8"])
    with pytest.raises(InvalidArgument, match="module 'head' takes \\[n, 1000\\] inputs, not frames"):
        plane.infer("head", [good])


def test_an_emulated_device_charges_decode_ms_per_frame_and_reports_the_same_errors():
    from dataclasses import replace

    profiles = {("resnet18", "fake"): {4: (2.0, 0.0)}}
    plane = WorkerDataPlane(EmulatedExecutor("fake", profiles))
    try:
        plane.apply(1, [replace(spec(), decode_ms=30.0)])
        frames = [_jpeg(_image(16, 16)), BAD_FRAME, EncodedFrame(b"\0" * 10, "raw", 2, 2)]
        r = plane.infer("m", frames)
        assert r.exec_ms >= 2.0 + 3 * 30.0 and r.outputs[0].shape == (3, 1000)
        assert sorted(r.errors) == [1, 2] and "JPEG frame" in r.errors[1] and "2 x 2 x 3 is 12" in r.errors[2]
        # calibration reads the model's run alone: decode is planned apart from the model's profile, and
        # its time per frame is reported apart (3 frames, 30 ms each)
        (model_ms,) = plane.take_recent()["m"]
        assert 2.0 <= model_ms < 2.0 + 30.0
        (per_frame,) = plane.take_recent_decode()["m"]
        assert 30.0 <= per_frame < 30.0 + 5.0 and plane.take_recent_decode() == {}
        assert plane.infer("m", np.zeros((3, *SHAPE), np.uint8)).exec_ms < 2.0 + 3 * 30.0  # tensors: no decode
    finally:
        plane.close()


def test_decode_ms_travels_in_the_module_config_and_is_bounded(plane):
    from dataclasses import replace

    s = replace(spec(), decode_ms=1.5)
    assert ModuleSpec.from_proto(s.to_proto()) == s and s.to_proto().decode_ms == 1.5
    for bad in (-1.0, float("nan"), 1e9):
        with pytest.raises(InvalidArgument, match="decode_ms must be in \\[0, 10000.0\\], got"):
            ModuleSpec.from_proto(pb.ModuleConfig(name="x", model="resnet18", batch=1, input_shape=[3, 8, 8],
                                                  decode_ms=bad))
    with pytest.raises(InvalidArgument, match="decode_ms must be in"):
        plane.apply(1, [replace(spec(), decode_ms=-2.0)])


def test_a_detector_fed_frames_cuts_its_crops_from_the_full_resolution_frame():
    """A 64 x 64 frame of four coloured quadrants; the detector runs at 16 x 16 and finds one box, the
    top-right quadrant in its input's pixels. The crop is that quadrant of the FULL frame, and an
    item whose frame is unreadable gets no crops."""
    import torch

    from harpagon.runtime.worker.executor import _TorchRunner

    class OneBox(torch.nn.Module):
        def forward(self, images):
            self.seen = images.shape
            return [{"boxes": torch.tensor([[8.0, 0.0, 16.0, 8.0]]), "scores": torch.tensor([0.9]),
                     "labels": torch.tensor([1])} for _ in images]

    frame = np.zeros((3, 64, 64), np.uint8)
    colours = {(0, 0): (200, 0, 0), (0, 1): (0, 180, 0), (1, 0): (0, 0, 160), (1, 1): (90, 90, 90)}
    for (qy, qx), rgb in colours.items():
        frame[:, qy * 32:(qy + 1) * 32, qx * 32:(qx + 1) * 32] = np.array(rgb, np.uint8)[:, None, None]
    frame[:, 40, 40] = 255  # a detail the 16 x 16 input cannot hold, inside the bottom-right quadrant
    edge = CropEdge("c", (3, 8, 8), min_score=0.5)
    runner = _TorchRunner(ModuleSpec("det", "ssdlite320_mobilenet_v3_large", 4, (3, 16, 16), crops=(edge,)),
                          "detect", OneBox(), "cpu")
    r = runner([_png(frame), BAD_FRAME, _png(frame)])
    assert runner.model.seen == (4, 3, 16, 16)
    got = r.crops["c"]
    assert got.counts.tolist() == [1, 0, 1] and list(r.errors) == [1]
    assert got.items.shape == (2, 3, 8, 8)
    for crop in got.items:
        assert (crop == np.array(colours[0, 1], np.uint8)[:, None, None]).all()  # exactly the top-right
    assert np.allclose(r.outputs[0][0, 0], [8, 0, 16, 8])  # boxes stay in the input's pixels
    # frames of different sizes in one call: each item cut from its own, at full resolution (the
    # bright pixel survives a 32 px box cut to 32 px)
    small = torch.zeros((3, 10, 20), dtype=torch.uint8)
    cut = crops.cut_frames([torch.from_numpy(frame), None, small], [np.array([[32.0, 32.0, 64.0, 64.0]]),
                                                                    np.zeros((0, 4)), np.array([[0, 0, 20, 10]])],
                           (3, 32, 32))
    assert cut.shape == (2, 3, 32, 32) and cut[0, :, 8, 8].tolist() == [255, 255, 255] and not cut[1].any()


def test_the_server_answers_frames_and_their_errors(plane):
    from harpagon.runtime.worker.server import WorkerServicer

    class Context:
        def time_remaining(self):
            return None

    plane.apply(1, [spec()])
    servicer = WorkerServicer(plane)
    request = pb.InferRequest(module="m", id="f", frames=[_png(_image(8, 8)).to_proto(), BAD_FRAME.to_proto()])
    reply = servicer.Infer(request, Context())
    assert reply.id == "f" and to_numpy(reply.outputs[0]).shape == (2, 1000)
    assert [(e.item, "JPEG frame" in e.message) for e in reply.errors] == [(1, True)]
    tensor = servicer.Infer(pb.InferRequest(module="m", input=from_numpy(np.zeros((1, *SHAPE), np.uint8))), Context())
    assert len(tensor.errors) == 0


def test_the_grpc_client_sends_frames_and_reads_their_errors(plane):
    import asyncio

    from harpagon.runtime.wire.clients import GrpcWorkerClient
    from harpagon.runtime.worker.server import start

    plane.apply(1, [spec()])
    server, address = start(plane, 0)

    async def calls():
        client = GrpcWorkerClient()
        try:
            framed = await client.infer(address, "m", [BAD_FRAME, _jpeg(_image(20, 30))], timeout_s=10)
            tensor = await client.infer(address, "m", np.zeros((1, *SHAPE), np.uint8), timeout_s=10)
            return framed, tensor
        finally:
            await client.close()

    try:
        framed, tensor = asyncio.run(calls())
    finally:
        server.stop(0)
    assert framed.outputs[0].shape == (2, 1000) and list(framed.errors) == [0] and "JPEG" in framed.errors[0]
    assert tensor.outputs[0].shape == (1, 1000) and tensor.errors == {}
