"""Real pipelines in the frontend's data plane, on fake workers: a detector's kept detections become
exactly its crops children's requests (tied to their detection in the reply), a frame without
detections, a join of two branches per object, and the measured fan-out."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest

from harpagon.config import pipeline
from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend import reply
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.wire.clients import WorkerReply
from harpagon.runtime.wire.frames import EncodedFrame
from harpagon.runtime.wire.routes import AppRoute, ModuleRoute, RoutingTable
from harpagon.runtime.wire.tensors import Crops
from tests.fakes import FakeWorkers

SHAPE = (3, 4, 4)  # every module's input (crops included)
FRAME = (40, 80, 3)  # [H, W, C]: boxes scale by 10 (rows) and 20 (columns) from the input's pixels
D = pipeline.MAX_DETECTIONS


class Detecting(FakeWorkers):
    """Fake workers whose detector (any module named `detect@...`) finds `v % 4` objects in a frame of
    constant value v: object j has box [j, j, j + 1, j + 2] in its input's pixels, score 0.9 - j/10 and
    label 3 + j % 2 (so a filter on label 3 keeps the even ones); each child's crop of object j is
    filled with 10 j + 1. Other modules answer their items' pixel means (FakeWorkers.outputs)."""

    async def infer(self, address, module, batch, timeout_s=None):
        base = await super().infer(address, module, batch, timeout_s)
        if not module.startswith("detect@"):
            return base
        n = len(batch)
        boxes, scores = np.zeros((n, D, 4), np.float32), np.zeros((n, D), np.float32)
        labels = np.full((n, D), -1, np.int64)
        kept: dict[str, list[list[int]]] = {"cars": [], "all": []}
        for i, item in enumerate(batch):
            k = int(item.data[0] if isinstance(item, EncodedFrame) else item.flat[0]) % 4  # raw frames: bytes
            for j in range(k):
                boxes[i, j], scores[i, j], labels[i, j] = (j, j, j + 1, j + 2), 0.9 - j / 10, 3 + j % 2
            kept["all"].append(list(range(k)))
            kept["cars"].append([j for j in range(k) if j % 2 == 0])
        crops = {}
        for child, edge in (("a", "all"), ("b", "cars"), ("cars", "cars")):
            per_item = kept[edge]
            idx = np.array([j for js in per_item for j in js], np.int32)
            items = np.stack([np.full(SHAPE, 10 * j + 1, np.uint8) for j in idx]) if len(idx) else \
                np.zeros((0, *SHAPE), np.uint8)
            crops[child] = Crops(np.array([len(js) for js in per_item], np.int64), idx, items)
        return WorkerReply([boxes, scores, labels], base.queue_ms, base.exec_ms, crops)


def route(module: str, address: str, shape: tuple[int, ...] = SHAPE, batch: int = 1) -> ModuleRoute:
    return ModuleRoute(module, shape, (TupleSpec(batch, 1, 50.0, 0.0, 0.0),), ((address,),), (f"{module}@b{batch}",))


def frame(v: int) -> np.ndarray:
    return np.full(FRAME, v, np.uint8)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10.0))


def plane_for(app: AppRoute, shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[FrontendDataPlane, Detecting]:
    fake = Detecting()
    shapes = shapes or {}
    routes = {(app.name, m.name): route(m.name, f"w-{m.name}", shapes.get(m.name, SHAPE)) for m in app.modules}
    return FrontendDataPlane(RoutingTable(1, "batch-aware", {app.name: app}, routes), FRAME, client=fake), fake


CARS = app_route(App.model_validate({"name": "cars", "rate": 10, "slo_ms": 1000, "modules": [
    {"name": "detect", "model": "yolo9000", "task": "detect"},
    {"name": "cars", "model": "resnet50", "after": ["detect"], "input": "crops", "scale": 1.5,
     "crops": {"labels": [3]}}]}))


def test_kept_detections_become_exactly_the_child_requests_tied_to_their_detection():
    async def scenario():
        plane, fake = plane_for(CARS)
        out = [await plane.infer("cars", frame(v)) for v in (3, 2, 0, 7)]  # 3, 2, 0 and 3 objects
        return plane, fake, out

    plane, fake, out = run(scenario())
    # objects 0 and 2 are label 3 (kept); frames of 3, 2, 0 and 3 objects keep 2, 1, 0 and 2 crops
    assert [len(o["cars"]) for o in out] == [2, 1, 0, 2]
    assert sum(c.size for c in fake.calls_to(module="cars@b1")) == 5
    # the detector got each raw frame at its full size (its worker resizes it, and cuts crops from it)
    sent = [f for c in fake.calls_to(module="detect@b1") for f in c.batch]
    assert [(f.encoding, f.height, f.width, f.data) for f in sent] == [("raw", 40, 80, frame(v).tobytes())
                                                                       for v in (3, 2, 0, 7)]
    first = out[0]["cars"]
    assert first.detector == "detect" and first.keys == [0, 2]
    # each request ran on ITS crop (the fake's output is the crop's pixel mean: 10 j + 1)
    assert [float(r[0][0]) for r in first.requests] == pytest.approx([1.0, 21.0])
    # the reply ties each result to its detection, boxes in the frame's pixels (x by 20, y by 10)
    t = {spec.name: arr for spec, arr in reply.sink_tensors(CARS, "cars", first)}
    np.testing.assert_array_equal(t["cars_detection"], [0, 2])
    np.testing.assert_allclose(t["cars_box"], [[0, 0, 20, 20], [40, 20, 60, 40]])
    np.testing.assert_allclose(t["cars_score"], [0.9, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(t["cars_label"], [3, 3])
    assert t["cars_top_class"].shape == (2, 1) and t["cars_top_score"] == pytest.approx(1.0)  # one score each
    # the frame without objects: its reply has every tensor, empty
    empty = {spec.name: arr for spec, arr in reply.sink_tensors(CARS, "cars", out[2]["cars"])}
    assert set(empty) == set(t) and all(len(a) == 0 for a in empty.values())
    assert empty["cars_box"].shape == (0, 4)
    # measured fan-out: 4 frames reached each module; 5 car requests for them
    assert plane.take_fanout() == {("cars", "detect"): (4, 4), ("cars", "cars"): (4, 5)}
    assert plane.take_fanout() == {}  # taken


def test_metadata_describes_the_reply_and_names_labels_of_registry_detectors():
    app = App.model_validate({"name": "v", "rate": 10, "slo_ms": 1000, "modules": [
        {"name": "detect", "model": "ssdlite320_mobilenet_v3_large"},
        {"name": "cls", "model": "resnet18", "after": ["detect"], "input": "crops", "crops": {"labels": ["car"]}}]})
    route = app_route(app)
    names = {o.name: (o.datatype, o.dims) for o in route.module("cls").outputs}
    assert names == {"cls_0": ("FP32", (-1, 1000)), "cls_top_class": ("INT64", (-1, 5)),
                     "cls_top_score": ("FP32", (-1, 5)), "cls_detection": ("INT32", (-1,)),
                     "cls_box": ("FP32", (-1, 4)), "cls_score": ("FP32", (-1,)), "cls_label": ("INT64", (-1,)),
                     "cls_label_name": ("BYTES", (-1,))}
    assert pipeline.crop_labels(app, "cls") == (3,)  # "car" in COCO as torchvision numbers it
    assert route.module("detect").labels[3] == "car" and route.module("cls").labels == ()
    assert route.sinks == ("cls",) and route.outputs == route.module("cls").outputs


def test_a_join_pairs_its_parents_outputs_per_object():
    #   detect -> crops (all)  -> a \
    #   detect -> crops (cars) -> b  -> pair (features: a's and b's outputs, per object both kept)
    app = App.model_validate({"name": "j", "rate": 10, "slo_ms": 1000, "modules": [
        {"name": "detect", "model": "yolo9000", "task": "detect"},
        {"name": "a", "model": "resnet18", "after": ["detect"], "input": "crops", "scale": 1.5},
        {"name": "b", "model": "resnet18", "after": ["detect"], "input": "crops", "crops": {"labels": [3]}},
        {"name": "pair", "model": "mlp_join", "after": ["a", "b"], "input": "features"}]})
    assert pipeline.check(app) == []
    assert pipeline.input_shape(app, "pair", SHAPE) == (2000,)

    class Wide(Detecting):
        @staticmethod
        def outputs(batch):  # 1000 scores per item: its pixel mean, then zeros
            out = np.zeros((len(batch), 1000), np.float32)
            out[:, 0] = np.asarray(batch, np.float64).reshape(len(batch), -1).mean(axis=1)
            return [out]

    async def scenario():
        fake = Wide()
        routes = {("j", m): route(m, f"w-{m}", (2000,) if m == "pair" else SHAPE) for m in ("detect", "a", "b", "pair")}
        plane = FrontendDataPlane(RoutingTable(1, "batch-aware", {"j": app_route(app)}, routes), FRAME, client=fake)
        return fake, await plane.infer("j", frame(3))  # objects 0, 1, 2; b keeps 0 and 2

    fake, out = run(scenario())
    assert out["pair"].keys == [0, 2] and out["pair"].detector == "detect"
    items = sorted(v for c in fake.calls_to(module="pair@b1") for v in c.items)
    # each joined item is [a's 1000 | b's 1000] of one object: both crops of object j have mean 10 j + 1
    assert items == pytest.approx([2 * 1.0 / 2000, 2 * 21.0 / 2000])


def test_edges_that_do_not_fit_their_parent_are_refused():
    def problems(modules):
        return [msg for _, _, msg in pipeline.check(App.model_validate(
            {"name": "x", "rate": 1, "slo_ms": 100, "modules": modules}))]

    assert "crops need a detector parent" in problems([
        {"name": "d", "model": "resnet18"}, {"name": "c", "model": "resnet18", "after": ["d"], "input": "crops"}])[0]
    assert "not a label of" in problems([
        {"name": "d", "model": "ssdlite320_mobilenet_v3_large"},
        {"name": "c", "model": "resnet18", "after": ["d"], "input": "crops", "crops": {"labels": ["unicorn"]}}])[0]
    assert "have no known size" in problems([
        {"name": "d", "model": "yolo9000"}, {"name": "c", "model": "mlp_head", "after": ["d"], "input": "features"}])[0]
    assert "is a classify model" in problems([{"name": "d", "model": "resnet18", "task": "detect"}])[0]


def test_an_encoded_frames_detections_are_in_its_own_pixels_and_its_crops_children_get_arrays():
    from PIL import Image as PilImage

    out = io.BytesIO()
    PilImage.fromarray(np.zeros((80, 40, 3), np.uint8)).save(out, "PNG")  # H 80, W 40: unlike FRAME
    image = EncodedFrame(out.getvalue(), "png")

    class FrameDetecting(Detecting):
        """Finds 3 objects in an encoded frame (it cannot read its pixels); `sent`: the batches of frames."""

        async def infer(self, address, module, batch, timeout_s=None):
            if isinstance(batch, np.ndarray):
                return await super().infer(address, module, batch, timeout_s)
            self.sent.append(batch)
            return await super().infer(address, module, np.full((len(batch), *SHAPE), 3, np.uint8), timeout_s)

    async def scenario():
        fake = FrameDetecting()
        fake.sent = []
        routes = {("cars", m.name): route(m.name, f"w-{m.name}") for m in CARS.modules}
        plane = FrontendDataPlane(RoutingTable(1, "batch-aware", {"cars": CARS}, routes), FRAME, client=fake)
        return fake, await plane.infer("cars", image)

    fake, got = run(scenario())
    assert fake.sent == [[image]]  # the detector got the frame as sent
    children = fake.calls_to(module="cars@b1")
    assert len(children) == 2 and all(isinstance(c.batch, np.ndarray) for c in children)  # crops: arrays
    t = {spec.name: arr for spec, arr in reply.sink_tensors(CARS, "cars", got["cars"])}
    # boxes [j, j, j + 1, j + 2] of a [3, 4, 4] input: x by 40 / 4 = 10, y by 80 / 4 = 20
    np.testing.assert_allclose(t["cars_box"], [[0, 0, 10, 40], [20, 40, 30, 80]])


def test_each_module_takes_its_models_own_input_unless_serve_sets_one_for_all():
    """A 320x320 detector feeds 224x224 classifiers: its workers cut each crop at the child's input."""
    from harpagon.config.schema import Workload
    from harpagon.planner.harpagon import plan
    from harpagon.runtime.controller.assignment import WorkerInfo, assign

    app = {"name": "street", "rate": 2, "slo_ms": 3000, "modules": [
        {"name": "detect", "model": "ssdlite320_mobilenet_v3_large"},
        {"name": "objects", "model": "resnet18", "after": ["detect"], "input": "crops", "scale": 2.0},
        {"name": "other", "model": "stand_in", "task": "classify"},  # no registry entry: the default image
        {"name": "head", "model": "mlp_head", "after": ["objects"], "input": "features"}]}
    w = Workload.model_validate({
        "hardware": [{"name": "cpu", "price_per_hour": 0.1}],
        "profiles": [{"model": m, "hardware": "cpu", "batches": [[1, 10.0]]}
                     for m in ("ssdlite320_mobilenet_v3_large", "resnet18", "stand_in", "mlp_head")],
        "apps": [{**app, "modules": [*app["modules"][:2], app["modules"][3]]}]})
    a = App.model_validate(app)
    assert [pipeline.input_shape(a, m) for m in ("detect", "objects", "other", "head")] == \
        [(3, 320, 320), (3, 224, 224), pipeline.DEFAULT_IMAGE, (1000,)]
    assert [pipeline.input_shape(a, m, (3, 16, 16)) for m in ("detect", "objects", "head")] == \
        [(3, 16, 16), (3, 16, 16), (1000,)]  # serve.input_shape: one size for every frame and crop module
    workers = [WorkerInfo(f"w{i}", f"127.0.0.1:{9000 + i}", "cpu", "emulated:cpu", True) for i in range(4)]
    for image, detector, crops in ((None, (3, 320, 320), (3, 224, 224)), ((3, 16, 16), (3, 16, 16), (3, 16, 16))):
        table = assign(plan(w), w, workers, image, version=1)
        specs = {s.name.split("@")[0]: s for ms in table.modules.values() for s in ms}
        assert specs["street/detect"].input_shape == detector and specs["street/objects"].input_shape == crops
        (edge,) = specs["street/detect"].crops
        assert edge.child == "objects" and edge.shape == crops
        assert table.table.routes[("street", "detect")].input_shape == detector
