"""Two frontends on 127.0.0.1 sharing the apps (docs/model.md, "Several frontends"): a frame of an app
the other frontend owns is forwarded there over gRPC and answered from there; a frame of a split app
stays where it arrived; and when the owner is gone, the frame is served where it arrived, in the
owner's stream, not lost."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as rpc

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.servicer import start
from harpagon.runtime.serve import LocalCluster
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable, StreamRoute
from tests.conftest import cam_workload
from tests.fakes import FakeWorkers

pytestmark = pytest.mark.integration

FRAME = (24, 32, 3)


def _app(name: str, rate: float, streams: tuple[StreamRoute, ...]):
    return app_route(App.model_validate({"name": name, "rate": rate, "slo_ms": 2000,
                                         "modules": [{"name": "x", "model": "m"}]}), streams)


def _route(stream: str, worker: str) -> ModuleRoute:
    return ModuleRoute("x", (3, 8, 8), (TupleSpec(1, 1, 50.0, 0.0, 0.0),), ((worker,),), (f"{stream}/x@b1",))


async def _infer(client: triton_aio.InferenceServerClient, app: str, shape=FRAME) -> np.ndarray:
    x = InferInput("FRAME", list(shape), "UINT8")
    x.set_data_from_numpy(np.zeros(shape, np.uint8))
    return (await client.infer(app, [x], client_timeout=10)).as_numpy("x_0")


@contextlib.asynccontextmanager
async def two_frontends(apps, routes, **plane_args):
    """Frontends f0 and f1 on 127.0.0.1 (FakeWorkers each); `apps(addresses)` and `routes` their table.
    Yields the planes, their servers, and a client of f1."""
    planes = {f: FrontendDataPlane(None, (480, 640, 3), client=FakeWorkers(**plane_args.pop("fake", {})),
                                   frontend_id=f, **plane_args) for f in ("f0", "f1")}
    servers = {f: await start(plane, 0) for f, plane in planes.items()}
    at = {f: f"127.0.0.1:{port}" for f, (_, port) in servers.items()}
    for plane in planes.values():
        await plane.update(RoutingTable(1, "batch-aware", apps(at), routes))
    client = triton_aio.InferenceServerClient(at["f1"])
    try:
        yield planes, servers, client
    finally:
        await client.close()
        for server, _ in servers.values():
            await server.stop(0)
        for plane in planes.values():
            await plane.close()


@pytest.mark.parametrize("shape", [FRAME, (480, 640, 3)])  # a big frame's tensor is cut out of the request
def test_frames_reach_the_owner_of_their_stream_and_survive_its_loss(shape):
    def apps(at):
        return {"door": _app("door", 40, (StreamRoute("door", "f0", at["f0"], 40),)),
                "cam": _app("cam", 200, (StreamRoute("cam#0", "f0", at["f0"], 100),
                                         StreamRoute("cam#1", "f1", at["f1"], 100)))}

    routes = {("door", "x"): _route("door", "w-door"), ("cam#0", "x"): _route("cam#0", "w-cam0"),
              ("cam#1", "x"): _route("cam#1", "w-cam1")}

    async def scenario():
        async with two_frontends(apps, routes) as (planes, servers, client):
            for _ in range(5):
                await _infer(client, "door", shape)  # owned by f0: forwarded, answered from there
                await _infer(client, "cam", shape)  # split: f1's own stream
            # a stream's frame is forwarded too, its answer back in the stream
            frame = pb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=list(shape))
            request = pb.ModelInferRequest(model_name="door", id="s1", inputs=[frame],
                                           raw_input_contents=[bytes(int(np.prod(shape)))])
            async with grpc.aio.insecure_channel(f"127.0.0.1:{servers['f1'][1]}") as channel:
                stream = rpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter([request]))
                (reply,) = [r async for r in stream]
            assert reply.error_message == "" and reply.infer_response.id == "s1"
            assert [o.name for o in reply.infer_response.outputs] == ["x_0"]
            c0, c1 = planes["f0"].counters, planes["f1"].counters
            assert (c0["door"].frames, c0["door"].success) == (6, 6)  # counted (and reported) once, at the owner
            assert (c1["door"].forwarded, c1["door"].frames) == (6, 0)
            assert (c1["cam"].frames, c1["cam"].success) == (5, 5) and "cam" not in c0
            calls = {f: planes[f].client.calls for f in planes}
            assert {c.module for c in calls["f0"]} == {"door/x@b1"}
            assert all(f.data == bytes(np.prod(shape)) for c in calls["f0"] for f in c.batch)  # the frame whole
            assert {c.module for c in calls["f1"]} == {"cam#1/x@b1"}

            await servers["f0"][0].stop(0)  # the owner is gone before a re-plan: served here, in its stream
            for _ in range(3):
                await _infer(client, "door", shape)
            assert (c1["door"].owner_unreachable, c1["door"].frames, c1["door"].success) == (3, 3, 3)
            assert sum(c.module == "door/x@b1" for c in planes["f1"].client.calls) == 3

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_frame_forwarded_to_an_owner_that_refuses_it_gets_the_owners_status():
    """The owner's answer is the client's: an overloaded owner's RESOURCE_EXHAUSTED is relayed, not
    served around (that would overload the owner's stream from another frontend)."""
    async def scenario():
        async with two_frontends(lambda at: {"door": _app("door", 1, (StreamRoute("door", "f0", at["f0"], 1),))},
                                 {("door", "x"): _route("door", "w")}, fake={"latency": {"w": 5.0}},
                                 admit_floor=1, admit_factor=0.0) as (planes, _, client):
            first = asyncio.ensure_future(_infer(client, "door"))  # holds the owner's one place (5 s worker)
            while not planes["f0"].in_flight["door"]:
                await asyncio.sleep(0.01)
            with pytest.raises(Exception, match="RESOURCE_EXHAUSTED|overloaded"):
                await _infer(client, "door")
            first.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_serve_with_two_frontends_shares_the_apps_and_replans_when_one_is_killed():
    """`harpagon serve --frontends 2` on 127.0.0.1: frontend 1 is a process of its own. `cam` is split
    (a stream per frontend), `door` owned by one of them; frames of both, sent to both frontends, are
    answered. Frontend 1 killed with SIGKILL: the controller re-plans for one frontend within 5 s and
    the survivor serves every frame of both apps."""
    base = cam_workload(8)
    cam = base.apps[0]
    workload = base.model_copy(update={
        "apps": (cam.model_copy(update={"rate": 40.0}), cam.model_copy(update={"name": "door", "rate": 10.0})),
        "serve": base.serve.model_copy(update={"arrivals": "fluid", "split_rate": 15.0})})

    async def scenario():
        cluster = LocalCluster(workload, grpc_port=0, metrics_port=0, frontends=2)
        await cluster.start()
        try:
            await cluster.ready(60)
            controller = cluster.controller
            assert sorted(controller.frontends) == ["frontend-0", "frontend-1"]
            assert sorted(a.name for a in controller.plan.apps) == ["cam#0", "cam#1", "door"]
            clients = [triton_aio.InferenceServerClient(a) for a in cluster.addresses]
            for i in range(12):
                for app in ("cam", "door"):
                    x = InferInput("FRAME", [24, 32, 3], "UINT8")
                    x.set_data_from_numpy(np.zeros((24, 32, 3), np.uint8))
                    await clients[i % 2].infer(app, [x], client_timeout=10)
            counters = cluster.plane.counters  # frontend 0's
            assert counters["cam"].frames == 6  # its half of cam, in its own stream
            door_owner = next(s.frontend for s in controller.streams.of("door"))
            assert counters["door"].frames == (12 if door_owner == "frontend-0" else 0)
            assert counters["door"].forwarded == (0 if door_owner == "frontend-0" else 6)

            plans = controller.plans
            cluster.frontend_processes[0].kill()
            killed = time.monotonic()
            while controller.plans == plans or controller.dirty or "frontend-1" in controller.frontends:
                assert time.monotonic() - killed < 5.0, "no re-plan for one frontend within 5 s"
                await asyncio.sleep(0.05)
            assert sorted(a.name for a in controller.plan.apps) == ["cam", "door"]
            for _ in range(4):
                for app in ("cam", "door"):
                    x = InferInput("FRAME", [24, 32, 3], "UINT8")
                    x.set_data_from_numpy(np.zeros((24, 32, 3), np.uint8))
                    await clients[0].infer(app, [x], client_timeout=10)
            for client in clients:
                await client.close()
        finally:
            await cluster.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))
