"""The controller follows a module's measured fan-out (requests per frame) as it follows app rates:
re-planned with the measured scale once it leaves the band by more than noise, for a while, and not
for bogus reports or a frontend gone quiet. Fake workers and clock, fluid plans, on the virtual
clock's loop."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import generate_latest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.runtime.controller.assignment import WorkerInfo
from harpagon.runtime.controller.config import ControllerConfig
from harpagon.runtime.controller.controller import Controller
from harpagon.runtime.controller.servicer import ControllerServicer
from harpagon.runtime.controller.watches import WatchSettings
from harpagon.runtime.frontend.main import rate_beacon
from harpagon.runtime.metrics import ControllerMetrics
from harpagon.v1 import controller_pb2 as cpb
from tests.conftest import BASE
from tests.fakes import FakeWorkers, run_virtual

FLUID = Settings(arrivals="fluid")
# a detector `d` and its child `c`, planned at one request per frame
W = Workload.model_validate({**BASE, "apps": [{"name": "cam", "rate": 100, "slo_ms": 200, "modules": [
    {"name": "d", "model": "resnet50"}, {"name": "c", "model": "resnet50", "after": ["d"], "scale": 1.0}]}]})
C = ("cam", "c")
S = WatchSettings()


class Harness:
    def __init__(self, **kw):
        self.now = 0.0
        self.metrics = ControllerMetrics()

        async def push(table, refused) -> None:
            pass

        self.c = Controller(W, FLUID, (3, 16, 16), push, ControllerConfig(planning="thread", **kw),
                            clock=lambda: self.now, client=FakeWorkers(), metrics=self.metrics)

    async def planned(self) -> None:
        """Three T4s and a plan in force since t = 0."""
        for i in range(3):
            self.c.register(WorkerInfo(f"t{i}", f"10.0.0.{i}:7000", "t4", "emulated:t4", True))
        await self.c.replan()

    def report(self, t: float, counts: dict, frontend: str = "f1") -> None:
        self.now = t
        self.c.observe_fanout(frontend, counts)

    def gauge(self, module: str, kind: str) -> float | None:
        return self.metrics.registry.get_sample_value("harpagon_controller_module_scale",
                                                      {"app": "cam", "module": module, "kind": kind})


def test_a_measured_scale_out_of_the_band_replans_with_it(caplog):
    caplog.set_level(logging.INFO, "harpagon.controller")
    h = Harness()

    async def scenario():
        await h.planned()
        before = h.c.plan
        assert h.gauge("c", "planned") == 1.0 and h.gauge("c", "measured") is None
        # 20 frames/s reach c and each gets 2 requests: 2x the planned scale, from the plan on
        for t in range(1, int(S.min_epoch_s + S.rate_hold_s)):
            h.report(t, {C: (20, 40), ("cam", "d"): (20, 20)})
            assert not h.c.dirty, t  # within min_epoch_s of the plan, then held for rate_hold_s
        assert h.gauge("c", "measured") == pytest.approx(2.0) and h.gauge("d", "measured") == pytest.approx(1.0)
        h.report(S.min_epoch_s + S.rate_hold_s, {C: (20, 40), ("cam", "d"): (20, 20)})
        assert h.c.dirty
        assert h.c.fanout.scale(C) == pytest.approx(2.0) and h.c.fanout.scale(("cam", "d")) == 1.0
        assert W.apps[0].module("c").scale == 1.0  # the configuration itself is untouched
        await h.c.replan()
        return before

    before = run_virtual(asyncio.wait_for(scenario(), 20))
    assert before.app("cam").module("c").rate == pytest.approx(100.0)
    assert h.c.plan.app("cam").module("c").rate == pytest.approx(200.0)  # 100 frames/s x the measured 2.0
    assert h.c.plan.app("cam").module("d").rate == pytest.approx(100.0)
    assert h.gauge("c", "planned") == pytest.approx(2.0) and h.gauge("d", "planned") == 1.0
    text = generate_latest(h.metrics.registry).decode()
    assert 'harpagon_controller_module_scale{app="cam",kind="measured",module="c"} 2.0' in text
    (line,) = [r.getMessage() for r in caplog.records if "measured fan-out left the band" in r.getMessage()]
    assert "cam/c: 1 -> 2" in line and "cam/d" not in line


def test_a_scale_within_the_band_or_over_too_few_frames_does_not_replan():
    h = Harness()

    async def scenario():
        await h.planned()
        for t in range(1, 40):  # 1.2x: within 0.8-1.25
            h.report(t, {C: (10, 12)})
        assert not h.c.dirty and h.gauge("c", "measured") == pytest.approx(1.2)
        h.c.in_force(40.0)  # a new plan: the reports before it no longer count
        for t in range(41, 41 + 2 * int(S.min_epoch_s)):  # 3x, but one frame a second: too few to judge
            h.report(t, {C: (1, 3)})
        assert not h.c.dirty and 2 * S.min_epoch_s < S.min_fanout_frames

    run_virtual(asyncio.wait_for(scenario(), 20))


def test_noise_does_not_replan_but_the_same_mean_over_more_frames_does():
    async def scenario(frames: int) -> bool:
        h = Harness()
        await h.planned()
        h.report(S.min_epoch_s + 1, {C: (frames, round(1.4 * frames))})  # 1.4x: out of the band...
        for t in range(int(S.min_epoch_s) + 2, int(S.min_epoch_s) + 12):  # ...held, with nothing new since
            h.report(t, {C: (0, 0)})
        return h.c.dirty

    # over 60 frames, 4 std of the mean of Poisson(1) counts is 0.52: 1.4 is noise. Over 600 it is not
    assert run_virtual(asyncio.wait_for(scenario(60), 20)) is False
    assert run_virtual(asyncio.wait_for(scenario(600), 20)) is True

    async def brief_burst() -> bool:  # 1.15 over 20 frames: within the band and the noise
        h = Harness()
        await h.planned()
        for t in range(1, 30):
            h.report(t, {C: (20, 23)} if t == 11 else {})
        return h.c.dirty

    assert run_virtual(asyncio.wait_for(brief_burst(), 20)) is False


def test_a_detector_that_finds_nothing_plans_its_child_at_the_least_scale_once():
    h = Harness()

    async def scenario():
        await h.planned()
        for t in range(1, int(S.min_epoch_s + S.rate_hold_s) + 1):
            h.report(t, {C: (20, 0)})
        assert h.c.dirty and h.c.fanout.scale(C) == S.min_scale
        await h.c.replan()  # a scale > 0: the planner has a rate to plan for
        assert h.c.plan.app("cam").module("c").rate == pytest.approx(100 * S.min_scale)
        start = h.now
        for t in range(1, 40):  # still nothing: the floored measurement is the planned scale, no re-plan
            h.report(start + t, {C: (20, 0)})
        assert not h.c.dirty

    run_virtual(asyncio.wait_for(scenario(), 20))
    assert h.gauge("c", "measured") == 0.0 and h.gauge("c", "planned") == S.min_scale


def test_bogus_fanout_reports_are_dropped_without_crashing(caplog):
    h = Harness()

    async def scenario():
        await h.planned()
        for t in range(1, 40):
            h.report(t, {("cam", "ghost"): (20, 40), ("nope", "c"): (20, 40), C: (-20, -40)}, "f1")
            h.report(t, {C: (20, 20 * 5000)}, "f2")  # beyond max_fanout requests per frame
            h.report(t, {C: (0, 7)}, "f3")  # requests without frames
            h.report(t, {C: (20.5, 41), ("cam", "d"): "x", "cam/c": (20, 40)}, "f4")  # not whole counts, bad keys
            h.report(t, {C: (10**15, 2 * 10**15)}, "f5")  # more frames than a minute of 100x the rate
            h.report(t, {C: (20, 20)}, "f6")  # the only sane one: as planned
        assert not h.c.dirty

    run_virtual(asyncio.wait_for(scenario(), 20))
    assert h.c.fanout.scales == {} and h.c.fanout.scale(C) == 1.0
    assert h.gauge("c", "measured") == pytest.approx(1.0)  # f6 alone
    assert all(r == {} for name in ("f1", "f2", "f3", "f4", "f5") for _, r in h.c.fanout.reports[name])
    dropped = [r.getMessage() for r in caplog.records if "fan-out dropped" in r.getMessage()]
    assert any("ghost" in m and "nope" in m for m in dropped)


@pytest.mark.parametrize("quiet", [True, False])
def test_a_frontend_gone_quiet_takes_its_counts_along(quiet):
    """f1 measured 2x before going quiet; f2 reports the planned scale from then on. Once f1's latest
    report is older than report_expiry_s its counts no longer count; a frontend that keeps reporting
    (nothing new) keeps them."""
    h = Harness()

    async def scenario():
        await h.planned()
        for t in range(1, 6):
            h.report(t, {C: (20, 40)}, "f1")
        for t in range(6, 30):
            if not quiet:
                h.report(t, {}, "f1")
            h.report(t, {C: (1, 1)}, "f2")
        return h.c.dirty

    dirty = run_virtual(asyncio.wait_for(scenario(), 20))
    assert 5 + S.report_expiry_s < S.min_epoch_s + S.rate_hold_s  # f1 expires before its counts could be held
    if quiet:
        assert not dirty and set(h.c.fanout.reports) == {"f2"}
    else:
        assert dirty and h.c.fanout.scale(C) == pytest.approx(2.0, rel=0.1)


def test_follow_fanout_off_keeps_the_configured_scales():
    h = Harness(follow_fanout=False)

    async def scenario():
        await h.planned()
        for t in range(1, 40):
            h.report(t, {C: (20, 60)})
        assert not h.c.dirty

    run_virtual(asyncio.wait_for(scenario(), 20))
    assert h.gauge("c", "measured") == pytest.approx(3.0)  # still measured and exported


def test_the_servicer_passes_a_reports_fanout_after_its_rates():
    calls = []

    class Recorder:
        def observe_rates(self, frontend, rates, window_s):
            calls.append(("rates", frontend, rates))

        def observe_hops(self, hops):
            calls.append(("hops", hops))

        def observe_fanout(self, frontend, counts):
            calls.append(("fanout", frontend, counts))

    request = cpb.RatesReport(frontend_id="f1", app_rates={"cam": 20.0}, window_s=1.0, fanout=[
        cpb.ModuleFanout(app="cam", module="c", frames=20, requests=40),
        cpb.ModuleFanout(app="cam", module="d", frames=20, requests=20),
        cpb.ModuleFanout(app="cam", module="c", frames=1, requests=3)])  # named twice: added up
    asyncio.run(ControllerServicer(Recorder()).ReportRates(request, None))
    assert [c[0] for c in calls] == ["rates", "hops", "fanout"]
    assert calls[2] == ("fanout", "f1", {("cam", "c"): (21, 43), ("cam", "d"): (20, 20)})


def test_rate_beacon_reports_each_periods_fanout():
    class Counters:
        offered = 0

    class Plane:
        def __init__(self):
            self.counters = {"cam": Counters()}
            self.fanout = [{C: (3, 6)}, {}, {}]

        def take_hops(self):
            return [1.0]

        def take_fanout(self):
            return self.fanout.pop(0) if self.fanout else {}

    got = []

    async def report(rates, window, hops, fanout):
        got.append((rates, window, hops, fanout))

    async def scenario():
        beacon = asyncio.ensure_future(rate_beacon(Plane(), report, period_s=0.01))
        while len(got) < 2:
            await asyncio.sleep(0.01)
        beacon.cancel()

    run_virtual(asyncio.wait_for(scenario(), 5))
    assert got[0][1:] == (0.01, [1.0], {C: (3, 6)}) and got[1][3] == {}
