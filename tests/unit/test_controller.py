"""The controller's policy pieces without a network: assignment and the rate band."""

from __future__ import annotations

import asyncio

import pytest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.planner.harpagon import plan
from harpagon.runtime.controller.assignment import WorkerInfo, assign, live_workload
from harpagon.runtime.controller.controller import MIN_EPOCH_S, Controller
from harpagon.runtime.frontend.routes import from_proto, to_proto
from tests.conftest import BASE

W = Workload.model_validate({**BASE, "apps": [{"name": "cam", "rate": 300, "slo_ms": 200, "modules": [
    {"name": "d", "model": "resnet50"}, {"name": "c", "model": "resnet50", "after": ["d"], "scale": 2}]}]})


def workers(n_t4: int, n_v100: int = 0) -> list[WorkerInfo]:
    return ([WorkerInfo(f"t{i}", f"127.0.0.1:{100 + i}", "t4", "emulated:t4", True) for i in range(n_t4)]
            + [WorkerInfo(f"v{i}", f"127.0.0.1:{200 + i}", "v100", "emulated:v100", True) for i in range(n_v100)])


def test_assignment_gives_each_tuple_distinct_workers_of_its_kind_and_routes_survive_the_wire():
    live = live_workload(W, workers(4, 2))
    assert {h.name: h.count for h in live.hardware} == {"v100": 2, "t4": 4}
    p = plan(live)
    a = assign(p, live, workers(4, 2), (3, 16, 16), version=7)
    used = [wid for wid, mods in a.modules.items() if mods]
    assert len(used) == sum(p.workers_by_hardware().values())
    for (app, module), route in a.table.routes.items():
        mp = p.app(app).module(module)
        assert [len(addrs) for addrs in route.workers] == [t.workers for t in mp.tuples]
    table, refused = from_proto(to_proto(a.table, {"x": "why"}))
    assert table.routes == a.table.routes and refused == {"x": "why"} and table.version == 7
    assert set(table.apps) == {"cam"}


def test_assignment_keeps_modules_where_they_ran():
    live = live_workload(W, workers(6))
    p = plan(live)
    first = assign(p, live, workers(6), (3, 16, 16), 1)
    again = assign(p, live, list(reversed(workers(6))), (3, 16, 16), 2, previous=first.modules)
    assert again.modules == first.modules


def test_rates_outside_the_band_trigger_a_replan_at_the_measured_rate():
    now = [0.0]

    async def scenario():
        c = Controller(W, Settings(), (3, 16, 16), lambda t, r: asyncio.sleep(0), clock=lambda: now[0])
        c.plan = plan(W)  # as if a plan were in force since t = 0
        c.planned_at = 0.0
        c.observe_rates("f1", {"cam": 400.0})
        assert not c.dirty  # within MIN_EPOCH_S of the last plan
        now[0] = MIN_EPOCH_S + 1
        c.observe_rates("f1", {"cam": 310.0})
        assert not c.dirty  # inside 0.8-1.1 x 300
        c.observe_rates("f2", {"cam": 60.0})  # two frontends: 370/s in all
        assert c.dirty
        assert c._planned_workload().apps[0].rate == pytest.approx(370.0)

    asyncio.run(scenario())


def test_request_level_dispatch_is_selectable_for_comparison():
    w = Workload.model_validate({**W.model_dump(exclude={"serve"}),
                                 "serve": {"workers": [{"device": "cpu"}], "dispatch": "request-level"}})
    pushed = []

    async def push(table, refused):
        pushed.append((table, refused))

    async def scenario():
        c = Controller(w, Settings(), (3, 16, 16), push)
        await c.reconcile()  # no workers yet: every app refused, by name
        return c

    c = asyncio.run(scenario())
    assert c.plan.dispatch == "request-level" and pushed[0][0].dispatch == "request-level"
    assert set(pushed[0][1]) == {"cam"} and "hardware counts run out" in pushed[0][1]["cam"]


def test_serve_defaults_to_one_worker_per_gpu_and_says_so_when_there_is_none():
    import torch

    from harpagon.runtime.serve import LocalCluster

    w = Workload.model_validate({**W.model_dump(exclude={"serve"}), "serve": {}})
    cluster = LocalCluster(w)
    if torch.cuda.is_available():
        assert [g.device for g in cluster.worker_groups][0] == "cuda:0"
    else:
        with pytest.raises(ValueError, match="no GPU is visible"):
            _ = cluster.worker_groups
    explicit = Workload.model_validate({**W.model_dump(exclude={"serve"}),
                                        "serve": {"workers": [{"device": "emulated:t4", "count": 2}]}})
    assert [(g.device, g.count) for g in LocalCluster(explicit).worker_groups] == [("emulated:t4", 2)]
