"""An app's route: built once by the controller (the registry's facts resolved), carried whole by the
routes on the wire, and all the frontend needs to serve the app: it reads no registry."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from harpagon.config import models
from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane, admission_limit
from harpagon.runtime.wire.routes import AppModule, AppRoute, ModuleRoute, RoutingTable, from_proto, to_proto
from harpagon.v1 import controller_pb2 as cpb
from tests.fakes import FakeWorkers, run_virtual

VEHICLES = App.model_validate({"name": "v", "rate": 30, "slo_ms": 400, "modules": [
    {"name": "detect", "model": "ssdlite320_mobilenet_v3_large"},
    {"name": "cls", "model": "resnet18", "after": ["detect"], "input": "crops",
     "crops": {"labels": ["car", 8], "min_score": 0.3, "max": 5}},
    {"name": "whole", "model": "resnet18", "after": ["detect"], "scale": 0.5}]})


def app(modules: list[dict]) -> App:
    return App.model_validate({"name": "a", "rate": 10, "slo_ms": 100, "modules": modules})


def test_an_app_route_holds_what_the_frontend_serves_the_app_by():
    r = app_route(VEHICLES)
    assert (r.name, r.rate, r.slo_ms) == ("v", 30, 400) and admission_limit(r) == 48
    assert [m.name for m in r.modules] == list(VEHICLES.topological) and r.sinks == ("cls", "whole")
    detect, cls, whole = (r.module(n) for n in ("detect", "cls", "whole"))
    assert detect.task == "detect" and detect.labels[3] == "car" and detect.outputs == ()
    assert (cls.input, cls.after, cls.objects, cls.task) == ("crops", ("detect",), "detect", "classify")
    assert cls.labels == () and (whole.scale, whole.objects, whole.labels) == (0.5, None, ())
    assert [o.name for o in r.outputs] == [
        "cls_0", "cls_top_class", "cls_top_score", "cls_detection", "cls_box", "cls_score", "cls_label",
        "cls_label_name", "whole_0", "whole_top_class", "whole_top_score"]


@pytest.mark.parametrize("modules, chain", [
    ([{"name": "a", "model": "m"}], True),
    ([{"name": "a", "model": "m"}, {"name": "b", "model": "m", "after": ["a"]},
      {"name": "c", "model": "m", "after": ["b"]}], True),
    ([{"name": "a", "model": "m"}, {"name": "b", "model": "m", "after": ["a"]},
      {"name": "c", "model": "m", "after": ["a"]}], False),
    ([{"name": "a", "model": "m"}, {"name": "d", "model": "m", "after": ["b", "c"]},
      {"name": "b", "model": "m", "after": ["a"]}, {"name": "c", "model": "m", "after": ["a"]}], False),
])
def test_chain_and_sinks_follow_the_apps_paths(modules, chain):
    a = app(modules)
    r = app_route(a)
    assert r.chain == chain == (len(a.paths) == 1)
    assert r.sinks == tuple(m.name for m in a.modules if not a.children[m.name])  # in the order declared


def test_app_routes_survive_the_wire_and_the_frontend_reads_no_registry():
    route = ModuleRoute("detect", (3, 4, 4), (TupleSpec(1, 1, 30.0, 0.0, 0.0),), (("w1",),), ("v/detect@b1",))
    sent = RoutingTable(4, "batch-aware", {"v": app_route(VEHICLES)}, {("v", "detect"): route})
    models.registry.cache_clear()
    table, refused = from_proto(to_proto(sent, {"x": "why"}))
    assert table == sent and refused == {"x": "why"}

    solo = ModuleRoute("m", (3, 4, 4), (TupleSpec(1, 1, 10.0, 0.0, 0.0),), (("w1",),), ("a/m@b1",))
    msg = to_proto(RoutingTable(1, "batch-aware", {"a": app_route(app([{"name": "m", "model": "resnet18"}]))},
                                {("a", "m"): solo}), {})
    models.registry.cache_clear()
    served, _ = from_proto(msg)

    async def scenario():
        plane = FrontendDataPlane(served, frame_shape=(8, 8, 3), client=FakeWorkers())
        out = await plane.answer("a", np.zeros((8, 8, 3), np.uint8))
        await plane.close()
        return out, plane.describe("a").outputs

    out, described = run_virtual(asyncio.wait_for(scenario(), 10))
    assert [spec for spec, _ in out] == list(described) and out[0][1].shape == (1, 1)
    assert models.registry.cache_info().currsize == 0  # the frontend never loaded the registry


@pytest.mark.parametrize("rate, slo_ms, modules, why", [
    (float("nan"), 100.0, [AppModule("a")], "finite"),
    (10.0, float("inf"), [AppModule("a")], "finite"),
    (10.0, 100.0, [], "no modules"),
    (10.0, 100.0, [AppModule("b", ("a",)), AppModule("a")], "before its parents"),  # an unknown parent, or a cycle
    (10.0, 100.0, [AppModule("a"), AppModule("a")], "repeats"),
    (10.0, 100.0, [AppModule("a"), AppModule("b")], "one source"),
    (10.0, 100.0, [AppModule("a", input="video")], "input"),  # type: ignore[arg-type]
])
def test_a_malformed_app_route_is_refused_whole(rate, slo_ms, modules, why):
    """What the frontend would otherwise trip over on every frame (an admission bound of NaN, a parent it
    never runs, a cycle that holds frames forever) is refused when the route is built."""
    with pytest.raises(ValueError, match=why):
        AppRoute("a", rate, slo_ms, tuple(modules))


def test_routes_for_an_app_without_its_app_route_are_refused():
    """A controller of another release sends no app routes: an error, not every app NOT_FOUND in silence."""
    routes = cpb.Routes(version=3, modules=[cpb.ModuleRoute(app="cam", module="m", input_shape=[3, 8, 8])])
    with pytest.raises(ValueError, match="without their app routes"):
        from_proto(routes)
