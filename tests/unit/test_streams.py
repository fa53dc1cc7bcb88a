"""Several frontends: the apps as streams (planner/streams.py), which frontend a frame goes to
(frontend/peers.Owners), the routes that carry the streams, and the controller re-planning when a
frontend joins or leaves."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from pydantic import ValidationError

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.planner.harpagon import plan
from harpagon.planner.streams import app_of, split_streams
from harpagon.runtime.controller.assignment import WorkerInfo, assign
from harpagon.runtime.frontend.peers import Owners
from harpagon.runtime.wire.routes import AppModule, AppRoute, StreamRoute, from_proto, to_proto
from tests.conftest import BASE
from tests.fakes import run_virtual
from tests.unit.test_controller_replan import Harness

FLUID = Settings(arrivals="fluid")


def workload(**rates: float) -> Workload:
    return Workload.model_validate({**BASE, "serve": {"sharing": False}, "apps": [
        {"name": name, "rate": rate, "slo_ms": 200, "modules": [{"name": "d", "model": "resnet50"}]}
        for name, rate in rates.items()]})


def test_one_frontend_plans_the_workload_as_it_is():
    w = workload(cam=3000, door=40)
    for frontends in ([], ["f0"]):
        s = split_streams(w, frontends, split_rate=100)
        assert s.workload is w and not s.split
        assert [(x.name, x.app, x.rate) for x in s.streams] == [("cam", "cam", 3000), ("door", "door", 40)]


def test_high_rate_apps_split_per_frontend_and_the_rest_are_owned_by_the_least_loaded():
    w = workload(cam=3000, door=40, lobby=300, yard=200)
    s = split_streams(w, ["f1", "f0", "f2"], split_rate=500, forward_ms=2.0)  # ids in any order
    assert s.frontends == ("f0", "f1", "f2")
    cam = s.of("cam")
    assert [(x.name, x.frontend, x.rate) for x in cam] == [("cam#0", "f0", 1000), ("cam#1", "f1", 1000),
                                                          ("cam#2", "f2", 1000)]
    # owned, largest first, each to the least loaded frontend (ties: the first id)
    assert {x.app: x.frontend for x in s.streams if x.app != "cam"} == {"lobby": "f0", "yard": "f1", "door": "f2"}
    assert [s.load(f) for f in s.frontends] == [1300, 1200, 1040]
    apps = {a.name: a for a in s.workload.apps}
    assert list(apps) == ["cam#0", "cam#1", "cam#2", "door", "lobby", "yard"]  # the configured order, streams in turn
    assert apps["cam#1"].rate == 1000 and apps["cam#1"].slo_ms == 200  # its frames stay where they arrive
    assert apps["door"].rate == 40 and apps["door"].slo_ms == 198  # forwarded: one hop less of the SLO
    assert s.source is w and {app_of(a.name) for a in s.workload.apps} == {a.name for a in w.apps}


def test_the_split_is_refused_with_what_is_wrong():
    w = workload(cam=3000)
    with pytest.raises(ValueError, match="repeat"):
        split_streams(w, ["f0", "f0"])
    with pytest.raises(ValueError, match="split_rate"):
        split_streams(w, ["f0", "f1"], split_rate=0)
    with pytest.raises(ValidationError, match="name"):  # '#' names a split app's streams
        workload(**{"cam#1": 10})


def test_an_owned_app_whose_slo_the_forward_uses_up_is_refused_with_its_reason():
    s = split_streams(workload(door=40), ["f0", "f1"], forward_ms=250)
    (refused,) = plan(s.workload, FLUID).refused
    assert refused.app == "door" and "SLO" in refused.reason


def test_a_split_workload_plans_every_stream():
    w = workload(cam=1200, door=40)
    s = split_streams(w, ["f0", "f1"], split_rate=500)
    p = plan(s.workload, FLUID)
    assert not p.refused and sorted(a.name for a in p.apps) == ["cam#0", "cam#1", "door"]
    assert sum(a.rate for a in p.apps if app_of(a.name) == "cam") == pytest.approx(1200)


def _route(name: str, *streams: StreamRoute) -> AppRoute:
    return AppRoute(name, sum(st.rate for st in streams) or 10.0, 100.0, (AppModule("d"),), streams)


def test_owners_keep_a_frame_at_its_own_stream_and_forward_the_others_by_rate():
    cam = _route("cam", StreamRoute("cam#0", "f0", "a0", 100), StreamRoute("cam#1", "f1", "a1", 100))
    door = _route("door", StreamRoute("door", "f0", "a0", 40))
    yard = _route("yard", StreamRoute("yard#0", "f0", "a0", 300), StreamRoute("yard#1", "f1", "a1", 100))
    plain = _route("plain")
    apps = {a.name: a for a in (cam, door, yard, plain)}
    f0, f1, f2 = Owners(apps, "f0"), Owners(apps, "f1"), Owners(apps, "f2")
    # its own streams: served here, in them
    assert f0.owner("cam") is None and f0.stream("cam") == "cam#0" and f1.stream("cam") == "cam#1"
    assert f0.owner("door") is None and f0.stream("door") == "door"
    # owned elsewhere: forwarded to the owner (in proportion to the streams' rates)
    assert f1.owner("door") == door.streams[0]
    picks = Counter(f2.owner("yard").name for _ in range(400))
    assert picks == {"yard#0": 300, "yard#1": 100}
    # served here without a stream of its own (forwarded to it, or the owner gone): any, by rate
    assert Counter(f2.stream("yard") for _ in range(40)) == {"yard#0": 30, "yard#1": 10}
    # no streams: one frontend serves it under its own name
    assert f2.owner("plain") is None and f2.stream("plain") == "plain"
    # an owner with no address takes no forwarded frames
    silent = Owners({"door": _route("door", StreamRoute("door", "f0", "", 40))}, "f1")
    assert silent.owner("door") is None and silent.stream("door") == "door"


def test_routes_carry_the_streams_and_refuse_routes_of_an_unknown_stream():
    w = workload(cam=1200, door=40)
    s = split_streams(w, ["f0", "f1"], split_rate=500)
    p = plan(s.workload, FLUID)
    workers = [WorkerInfo(f"w{i}", f"10.0.0.{i}:7000", "t4", "emulated:t4", True) for i in range(8)]
    table = assign(p, s.workload, workers, (3, 16, 16), 1, streams=s, addresses={"f0": "h:1", "f1": "h:2"}).table
    assert set(table.apps) == {"cam", "door"}  # the apps clients name
    assert {key[0] for key in table.routes} == {"cam#0", "cam#1", "door"}  # the streams' module routes
    cam = table.apps["cam"]
    assert cam.rate == 1200 and cam.slo_ms == 200  # the app's own rate and SLO: the frame's deadline
    assert cam.streams == (StreamRoute("cam#0", "f0", "h:1", 600), StreamRoute("cam#1", "f1", "h:2", 600))
    assert table.apps["door"].slo_ms == 200 and table.apps["door"].stream_names == ("door",)
    back, _ = from_proto(to_proto(table, {}))
    assert back.apps == table.apps and back.routes.keys() == table.routes.keys()
    message = to_proto(table, {})
    del message.apps[0].streams[:]  # cam's streams gone: its module routes name streams nobody serves
    with pytest.raises(ValueError, match="without their app routes"):
        from_proto(message)


def test_a_frontend_joining_or_leaving_makes_the_controller_share_the_apps_anew():
    w = workload(cam=1200, door=40).model_copy(update={"serve": workload().serve.model_copy(
        update={"sharing": False, "split_rate": 500})})
    h = Harness(w)

    async def scenario():
        await h.planned(workers=8)
        first = h.c.plan
        h.c.frontend_joined("f0", "h:1")  # one frontend serves everything itself: nothing to re-plan
        assert not h.c.dirty
        h.c.frontend_joined("f1", "h:2")
        assert h.c.dirty
        await h.c.replan()
        shared = h.c.plan
        h.c.frontend_left("f1")
        assert h.c.dirty
        await h.c.replan()
        return first, shared

    first, shared = run_virtual(asyncio.wait_for(scenario(), 20))
    assert sorted(a.name for a in first.apps) == ["cam", "door"]
    assert sorted(a.name for a in shared.apps) == ["cam#0", "cam#1", "door"]
    table, _ = h.tables[1]
    assert [(st.name, st.frontend, st.address) for st in table.apps["cam"].streams] == [
        ("cam#0", "f0", "h:1"), ("cam#1", "f1", "h:2")]
    assert sorted(a.name for a in h.c.plan.apps) == ["cam", "door"]  # back to one frontend
    assert not h.tables[2][0].apps["cam"].streams
    h.c.frontend_left("f0")  # no plan shares the apps any more: nothing to re-plan
    assert not h.c.dirty


def test_a_frontend_leaves_when_its_last_route_stream_ends():
    """A frontend re-connecting may hold two streams for a while: it leaves when the last one ends; one
    that says no address takes no apps (it is not a member)."""
    from types import SimpleNamespace

    from harpagon.runtime.controller.servicer import ControllerServicer, RoutesHub
    from harpagon.v1 import controller_pb2 as cpb

    events: list[tuple[str, str]] = []
    controller = SimpleNamespace(frontend_joined=lambda f, a: events.append(("joined", f)),
                                 frontend_left=lambda f: events.append(("left", f)))
    servicer = ControllerServicer(controller, RoutesHub())

    async def scenario():
        streams = [servicer.WatchRoutes(cpb.WatchRoutesRequest(frontend_id=f, address=a), None)
                   for f, a in (("f0", "h:1"), ("f0", "h:1"), ("anon", ""))]
        tasks = [asyncio.ensure_future(s.__anext__()) for s in streams]
        await asyncio.sleep(0)
        assert events == [("joined", "f0"), ("joined", "f0")]
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        await streams[0].aclose()
        assert events[-1] == ("joined", "f0")  # the other stream still open
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
        await streams[1].aclose()
        assert events[-1] == ("left", "f0")
        tasks[2].cancel()
        await asyncio.gather(tasks[2], return_exceptions=True)
        await streams[2].aclose()
        assert ("left", "anon") not in events

    asyncio.run(scenario())
