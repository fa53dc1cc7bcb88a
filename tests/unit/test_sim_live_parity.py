"""The simulator and the live frontend, fed the same arrival trace, ship the same batches with the same
padding: the dispatch logic exists once and both run it.

The live frontend runs on an event loop with a virtual clock (time moves only when every task waits
for a timer, by exactly that timer's delay), against fake workers that take each batch's `d(b)` in
first-in-first-out order and add `overhead_ms` after it, as the replay's workers do.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings, effective_latency
from harpagon.planner.harpagon import PlannerOptions, plan
from harpagon.planner.streams import split_streams
from harpagon.runtime.controller.assignment import WorkerInfo, assign
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.wire.clients import WorkerReply
from harpagon.sim.simulator import Simulator
from tests.fakes import run_virtual

SHAPE = (3, 8, 8)
FRAME = (16, 16, 3)


class FifoWorkers:
    """Fake workers: one batch at a time per address for `d(b)`, results `overhead_ms` later; each
    output item is the frame number the test encoded in the input's pixels."""

    def __init__(self, d_ms: dict[str, float], overhead_ms: float):
        self.d_ms = d_ms  # worker module name -> d(b)
        self.overhead_ms = overhead_ms
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.log: list[tuple[float, str, str, tuple[int, ...]]] = []  # time shipped, address, module, frames

    async def infer(self, address, module, batch, timeout_s=None):
        frames = tuple(int(x.data[0]) * 256 + int(x.data[1]) for x in batch)  # raw frames: [H, W, 3] bytes
        self.log.append((asyncio.get_running_loop().time() * 1000.0, address, module, frames))
        async with self.locks[address]:
            await asyncio.sleep(self.d_ms[module] / 1000.0)
        await asyncio.sleep(self.overhead_ms / 1000.0)
        return WorkerReply([np.array(frames, np.float32)[:, None]])

    async def apply(self, address, version, specs, timeout_s):
        return version

    def forget(self, address):
        pass

    async def close(self):
        pass


WORKLOAD = Workload.model_validate({
    "hardware": [{"name": "t4", "price_per_hour": 0.35}],
    "profiles": [{"model": "m", "hardware": "t4",
                  "batches": [[1, 4.0, 0.2], [2, 5.0, 0.2], [4, 7.0, 0.3], [8, 11.0, 0.4]]}],
    "apps": [{"name": "cam", "rate": 900.0, "slo_ms": 60.0, "modules": [
        {"name": "detect", "model": "m"},
        {"name": "left", "model": "m", "after": ["detect"], "scale": 1.5},
        {"name": "right", "model": "m", "after": ["detect"], "scale": 0.5},
    ]}],
})


@pytest.mark.parametrize("dispatch", ["batch-aware", "request-level"])
@pytest.mark.parametrize("arrivals", ["poisson", "constant"])
def test_simulator_and_live_frontend_ship_the_same_batches(dispatch, arrivals):
    settings = Settings(overhead_ms=1.5, arrivals="fluid")
    p = plan(WORKLOAD, settings, PlannerOptions(dispatch=dispatch))
    assert not p.refused and sum(t.workers for a in p.apps for m in a.modules for t in m.tuples) >= 3
    frames = 1500  # frame numbers travel in two pixel channels
    sim = Simulator(p, WORKLOAD, arrivals, {"cam": frames}, seed=5)
    sim.trace = []
    result = sim.run()
    modules = {m.name: m for m in result.app("cam").modules}
    assert any(m.dummies for m in modules.values()) and any(len(m.tuples) > 1 or m.tuples[0].workers > 1
                                                            for m in p.apps[0].modules)

    workers = [WorkerInfo(f"w{i}", f"w{i}", "t4", "emulated:t4", True) for i in range(8)]
    assignment = assign(p, WORKLOAD, workers, SHAPE, version=1)
    # live, no frame is dropped past its deadline (the replay drops none): the traces can match whole
    table = replace(assignment.table, apps={"cam": replace(assignment.table.apps["cam"], slo_ms=1e6)})
    rows = WORKLOAD.profile_rows[("m", "t4")]
    d_ms = {name: effective_latency(rows[t.batch].mean_ms, rows[t.batch].std_ms, settings.safety)
            for route in assignment.table.routes.values() for t, name in zip(route.tuples, route.names, strict=True)}
    fake = FifoWorkers(d_ms, settings.overhead_ms)

    async def live():
        plane = FrontendDataPlane(table, FRAME, client=fake)
        loop = asyncio.get_running_loop()
        tasks = []
        for f, t_ms in enumerate(sim.arrival["cam"]):
            await asyncio.sleep(max(0.0, t_ms / 1000.0 - loop.time()))
            frame = np.zeros(FRAME, np.uint8)
            frame[..., 0], frame[..., 1] = f // 256, f % 256
            tasks.append(asyncio.ensure_future(plane.infer("cam", frame)))
        await asyncio.gather(*tasks)
        await plane.close()
        return plane

    plane = run_virtual(live())

    # the same batches: module, tuple, worker, frames in order and padding
    where = {}
    for (_app, module), route in assignment.table.routes.items():
        for k, (addrs, name) in enumerate(zip(route.workers, route.names, strict=True)):
            for j, address in enumerate(addrs):
                where[(address, name)] = (module, k, j, route.tuples[k].batch)
    live_batches = sorted((where[(a, n)][0], t, where[(a, n)][1], where[(a, n)][2], fr, where[(a, n)][3])
                          for t, a, n, fr in fake.log)
    sim_batches = sorted((module, t, k, j, tuple(fr), size) for t, _, module, k, j, fr, size in sim.trace)
    assert len(live_batches) == len(sim_batches) > frames / 4
    for got, want in zip(live_batches, sim_batches, strict=True):
        assert got[0] == want[0] and got[2:] == want[2:], (got, want)
        assert got[1] == pytest.approx(want[1], abs=1e-5)  # shipped at the same (virtual) time (timer slack 1e-6)
    stats = plane.stats()
    for m in ("detect", "left", "right"):
        assert stats[("cam", m)].dummies == modules[m].dummies and stats[("cam", m)].batches == modules[m].batches


def test_two_frontends_sharing_the_apps_ship_the_batches_the_simulator_ships_for_their_streams():
    """N = 2 (docs/model.md, "Several frontends"): a high-rate app split into one stream per frontend,
    a low-rate one owned by one frontend; clients spread every app's frames over both frontends. Each
    frame goes where `Owners` says (the owner's stream, the forward made instantly here: the plan
    charges the hop to the forwarded app's SLO), and the two frontends together ship exactly the
    batches the simulator ships for the plan of the streams."""
    two = WORKLOAD.model_copy(update={"apps": (
        WORKLOAD.apps[0], WORKLOAD.apps[0].model_copy(update={"name": "door", "rate": 120.0}))})
    streams = split_streams(two, ["f0", "f1"], split_rate=300.0)
    assert [(s.name, s.frontend) for s in streams.streams] == [("cam#0", "f0"), ("cam#1", "f1"), ("door", "f0")]
    settings = Settings(overhead_ms=1.5, arrivals="fluid")
    p = plan(streams.workload, settings, PlannerOptions())
    assert not p.refused
    frames = 600
    sim = Simulator(p, streams.workload, "poisson", {s.name: frames for s in streams.streams}, seed=7)
    sim.trace = []
    sim.run()

    workers = [WorkerInfo(f"w{i}", f"w{i}", "t4", "emulated:t4", True) for i in range(16)]
    assignment = assign(p, streams.workload, workers, SHAPE, version=1, streams=streams,
                        addresses={"f0": "f0:1", "f1": "f1:1"})
    table = replace(assignment.table, apps={name: replace(a, slo_ms=1e6)
                                            for name, a in assignment.table.apps.items()})
    rows = WORKLOAD.profile_rows[("m", "t4")]
    d_ms = {name: effective_latency(rows[t.batch].mean_ms, rows[t.batch].std_ms, settings.safety)
            for route in assignment.table.routes.values() for t, name in zip(route.tuples, route.names, strict=True)}
    fake = FifoWorkers(d_ms, settings.overhead_ms)
    # each stream's frames: a split stream's arrive at its own frontend; the owned app's alternate
    # between the frontends (frames at f1 are forwarded to f0)
    events = sorted((t, s.name, s.app, f) for s in streams.streams for f, t in enumerate(sim.arrival[s.name]))
    forwarded = 0

    async def live():
        nonlocal forwarded
        planes = {f: FrontendDataPlane(table, FRAME, client=fake, frontend_id=f) for f in ("f0", "f1")}
        loop = asyncio.get_running_loop()
        tasks = []
        for n, (t_ms, stream, app, f) in enumerate(events):
            await asyncio.sleep(max(0.0, t_ms / 1000.0 - loop.time()))
            frame = np.zeros(FRAME, np.uint8)
            frame[..., 0], frame[..., 1] = f // 256, f % 256
            at = planes[{"cam#0": "f0", "cam#1": "f1"}.get(stream, ("f0", "f1")[n % 2])]
            owner = at.owner(app)
            if owner is not None:  # forwarded to the owner, served there in its stream
                forwarded += 1
                at = planes[owner.frontend]
            tasks.append(asyncio.ensure_future(at.infer(app, frame)))
        await asyncio.gather(*tasks)
        for plane in planes.values():
            await plane.close()

    run_virtual(live())
    assert 0 < forwarded < frames
    where = {}
    for (app, module), route in assignment.table.routes.items():
        for k, (addrs, name) in enumerate(zip(route.workers, route.names, strict=True)):
            for j, address in enumerate(addrs):
                where[(address, name)] = (app, module, k, j, route.tuples[k].batch)
    live_batches = sorted((*where[(a, n)][:2], t, *where[(a, n)][2:4], fr, where[(a, n)][4]) for t, a, n, fr in fake.log)
    sim_batches = sorted((app, module, t, k, j, tuple(fr), size) for t, app, module, k, j, fr, size in sim.trace)
    assert len(live_batches) == len(sim_batches) > frames
    assert {b[0] for b in live_batches} == {"cam#0", "cam#1", "door"}
    for got, want in zip(live_batches, sim_batches, strict=True):
        assert got[:2] == want[:2] and got[3:] == want[3:], (got, want)
        assert got[2] == pytest.approx(want[2], abs=1e-5)
