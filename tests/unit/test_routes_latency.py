"""Routes carry each tuple's planned latency (the frontend's stall limit is derived from it)."""

from __future__ import annotations

import pytest

from harpagon.config.schema import Workload
from harpagon.dispatch.module import TupleSpec
from harpagon.planner.harpagon import plan
from harpagon.runtime.controller.assignment import WorkerInfo, assign, live_workload
from harpagon.runtime.wire.routes import AppModule, AppRoute, ModuleRoute, RoutingTable, from_proto, to_proto
from tests.conftest import BASE

W = Workload.model_validate({**BASE, "apps": [{"name": "cam", "rate": 300, "slo_ms": 200, "modules": [
    {"name": "d", "model": "resnet50"}, {"name": "c", "model": "resnet50", "after": ["d"], "scale": 2}]}]})


def test_assign_fills_each_tuples_planned_latency_and_it_survives_the_wire():
    workers = [WorkerInfo(f"t{i}", f"127.0.0.1:{100 + i}", "t4", "emulated:t4", True) for i in range(6)]
    live = live_workload(W, workers)
    p = plan(live)
    a = assign(p, live, workers, (3, 16, 16), version=3)
    for (app, module), route in a.table.routes.items():
        planned = [t.latency_ms for t in p.app(app).module(module).tuples]
        assert list(route.latency_ms) == pytest.approx(planned) and all(ms > 0 for ms in route.latency_ms)
    table, _ = from_proto(to_proto(a.table, {}))
    assert table.routes == a.table.routes and table.apps == a.table.apps


def test_latency_defaults_to_unknown_and_is_checked():
    t = TupleSpec(2, 1, 10.0)
    r = ModuleRoute("m", (3, 4, 4), (t, t), (("a",), ("b",)), ("m@b2", "m@b2"))
    assert r.latency_ms == (0.0, 0.0)
    with pytest.raises(ValueError, match="planned latency"):
        ModuleRoute("m", (3, 4, 4), (t, t), (("a",), ("b",)), ("m@b2", "m@b2"), (5.0,))
    with pytest.raises(ValueError, match="planned latency"):
        ModuleRoute("m", (3, 4, 4), (t,), (("a",),), ("m@b2",), (-1.0,))
    # a table from a controller that does not send latencies reads as unknown
    app = AppRoute("app", 10.0, 100.0, (AppModule("m"),))
    msg = to_proto(RoutingTable(1, "batch-aware", {"app": app}, {("app", "m"): r}), {})
    for m in msg.modules:
        for tr in m.tuples:
            tr.ClearField("latency_ms")
    table, _ = from_proto(msg)
    assert table.routes[("app", "m")].latency_ms == (0.0, 0.0)
