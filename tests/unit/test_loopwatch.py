"""The frontend charges frames the time its event loop was stalled (a frame that waited unseen in
gRPC's queue during a stall must not look fresh)."""

# ruff: noqa: ASYNC251 - blocking the event loop with time.sleep is how these tests stall it

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.loopwatch import BACKLOG_S, LoopWatch
from harpagon.runtime.wire.errors import DeadlineExceeded
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable
from tests.fakes import FakeWorkers


def test_after_a_stall_frames_are_charged_from_its_start_until_the_backlog_drains():
    async def scenario():
        loop = asyncio.get_running_loop()
        watch = LoopWatch()
        watch.start(loop)
        await asyncio.sleep(0.1)
        now = loop.time()
        assert now - 0.01 <= watch.arrival(now) <= now  # a healthy loop: frames are (nearly) fresh
        before = loop.time()
        time.sleep(0.4)  # the loop stalls (a GC pause, a starved CPU, SIGSTOP)
        now = loop.time()
        assert before - 0.05 <= watch.arrival(now) <= before  # taken right after: charged from the stall
        await asyncio.sleep(0.05)
        assert watch.arrival(loop.time()) <= before  # still draining
        await asyncio.sleep(0.5)
        now = loop.time()
        assert now - 0.01 <= watch.arrival(now) <= now  # drained: fresh again
        assert watch.stalls == 1
        time.sleep(BACKLOG_S + 0.5)  # a stall longer than gRPC lets a call wait
        now = loop.time()
        assert watch.arrival(now) == pytest.approx(now - BACKLOG_S)
        await asyncio.sleep(BACKLOG_S + 0.1)  # drained
        time.sleep(0.06)  # a busy loop, short of a stall: a frame taken now is charged the lag
        now = loop.time()
        assert now - 0.07 <= watch.arrival(now) <= now - 0.03
        watch.stop()

    asyncio.run(scenario())


async def _watching(loop: asyncio.AbstractEventLoop) -> LoopWatch:
    """A watch on `loop` that has ticked for a while on an idle loop."""
    watch = LoopWatch()
    watch.start(loop)
    await asyncio.sleep(0.05)
    return watch


def test_a_backlog_left_by_a_delay_short_of_a_stall_is_charged_from_before_the_delay_until_it_drains():
    """The loop did not run for 70 ms (a starved CPU): gRPC hands the calls that queued meanwhile over
    one at a time, so some are taken after the next ticks ran on time; they are still charged from
    before the delay (a frame that waited 54 ms unseen was once charged 2 ms and answered late)."""
    async def scenario():
        loop = asyncio.get_running_loop()
        watch = await _watching(loop)
        before = loop.time()
        time.sleep(0.07)
        await asyncio.sleep(0.02)  # ticks on time again; the backlog is still draining
        now = loop.time()
        assert watch.lag(now) < 0.07 - 0.03 and watch.stalls == 0  # the loop no longer looks late...
        assert watch.arrival(now) <= before  # ...but frames taken now may have waited since then
        await asyncio.sleep(0.1)
        now = loop.time()
        assert now - 0.02 <= watch.arrival(now) <= now  # drained: fresh again
        watch.stop()

    asyncio.run(scenario())


def test_a_shorter_delay_in_the_drain_of_a_longer_one_does_not_shorten_its_charge():
    async def scenario():
        loop = asyncio.get_running_loop()
        watch = await _watching(loop)
        before = loop.time()
        time.sleep(0.3)
        await asyncio.sleep(0.02)
        time.sleep(0.03)  # a second, shorter delay while the first one's backlog drains
        await asyncio.sleep(0.02)
        now = loop.time()
        assert watch.arrival(now) <= before
        assert watch.stalls == 1
        watch.stop()

    asyncio.run(scenario())


def test_a_frame_taken_after_a_stall_longer_than_its_slo_is_deadline_exceeded():
    app = app_route(App.model_validate({"name": "a", "rate": 50, "slo_ms": 200,
                                        "modules": [{"name": "m", "model": "m"}]}))
    route = ModuleRoute("m", (3, 4, 4), (TupleSpec(1, 1, 50.0),), (("w1",),), ("m@b1",))
    frame = np.zeros((8, 8, 3), np.uint8)

    async def scenario():
        plane = FrontendDataPlane(RoutingTable(1, "batch-aware", {"a": app}, {("a", "m"): route}),
                                  frame_shape=(8, 8, 3), client=FakeWorkers())
        await plane.infer("a", frame)  # healthy: answered
        time.sleep(0.4)  # the loop stalls for twice the SLO while the frame waits unseen
        with pytest.raises(DeadlineExceeded):
            await plane.infer("a", frame)
        await asyncio.sleep(0.6)  # the backlog drained: frames are fresh again
        await plane.infer("a", frame)
        counters = plane.counters["a"]
        await plane.close()
        return counters

    counters = asyncio.run(scenario())
    assert (counters.success, counters.dropped) == (2, 1)
