"""The controller on fake workers (tests/fakes.py): the three-phase re-plan, failed applies, waiting
for the expected workers, and calibration end to end (heartbeats and hop overheads -> a re-plan with
the measured figures). Plans are fluid, each takes milliseconds; on the virtual clock's loop
(`run_virtual`) they are made inline, and the loop's timers (heartbeats, back-offs, waits) take no
real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings, collection_ms, effective_latency
from harpagon.runtime.controller.assignment import WorkerInfo
from harpagon.runtime.controller.calibration import CalibrationSettings
from harpagon.runtime.controller.config import ControllerConfig
from harpagon.runtime.controller.controller import Controller, RegistrationRefused, epoch_version, loop_time
from harpagon.runtime.controller.watches import WatchSettings
from harpagon.runtime.wire.errors import FailedPrecondition, Unavailable
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.wire.routes import RoutingTable
from tests.conftest import BASE
from tests.fakes import Apply, FakeWorkers, Mark, VirtualClockLoop, run_virtual

FLUID = Settings(arrivals="fluid")
SHAPE = (3, 16, 16)
# resnet50 on t4: d(1) 3.52, d(2) 5.21, d(4) 9.37 ms. At 100 frames/s the plan is d@b1 + c@b1 on two
# t4 workers; at 300/s it is d@b2 on one and c@b2 on two (GPUs unshared: these tests are about moving
# modules between workers; tests/unit/test_sharing.py and tests/integration/test_shared_gpu.py share).
W = Workload.model_validate({**BASE, "apps": [{"name": "cam", "rate": 100, "slo_ms": 200, "modules": [
    {"name": "d", "model": "resnet50"}, {"name": "c", "model": "resnet50", "after": ["d"], "scale": 2}]}],
    "serve": {"sharing": False}})
T4 = {r.batch: r for r in W.profile_rows[("resnet50", "t4")].values()}
S = WatchSettings()


def t4(n: int) -> list[WorkerInfo]:
    return [WorkerInfo(f"t{i}", f"10.0.0.{i}:7000", "t4", "emulated:t4", True) for i in range(n)]


#: Drift judged at each check on its own, and followed all the way at once: these tests are about the
#: controller's part (tests/unit/test_calibration.py tests the wait and the step bound).
JUDGE_AT_ONCE = CalibrationSettings(sustain_s=0.0, max_step=8.0)


class Harness:
    """A controller on fake workers, with its routes pushes marked in the fake's event log. Its clock
    is `now`, which the test sets; tests that run the controller's own loops give it the loop's clock
    (`clock=loop_time`, on the virtual loop)."""

    def __init__(self, workload: Workload = W, settings: Settings = FLUID,
                 clock: Callable[[], float] | None = None, **config):
        self.now = 0.0
        self.fake = FakeWorkers()
        self.tables: list[tuple[RoutingTable, dict[str, str]]] = []

        async def push(table: RoutingTable, refused: dict[str, str]) -> None:
            self.fake.mark("routes", table)
            self.tables.append((table, refused))

        config.setdefault("planning", "thread")
        self.c = Controller(workload, settings, SHAPE, push, ControllerConfig(**config),
                            clock=clock or (lambda: self.now), client=self.fake)

    async def planned(self, workers: int = 3) -> None:
        """`workers` T4s registered and a first plan in force, with no re-plan pending."""
        for w in t4(workers):
            self.c.register(w)
        await self.c.replan()

    def routes_marks(self) -> list[Mark]:
        return [e for e in self.fake.events if isinstance(e, Mark) and e.what == "routes"]


def names(applies: list[Apply]) -> dict[str, set[str]]:
    return {a.address: set(a.modules) for a in applies}


def routed(table: RoutingTable) -> dict[str, set[str]]:
    """Address -> module names the table sends it."""
    out: dict[str, set[str]] = {}
    for r in table.routes.values():
        for addrs, name in zip(r.workers, r.names, strict=True):
            for a in addrs:
                out.setdefault(a, set()).add(name)
    return out


# --- the three phases ------------------------------------------------------------------------


def test_a_replan_loads_old_and_new_then_switches_routes_then_drops_the_old():
    h = Harness()

    async def scenario():
        await h.planned()
        first_plan = h.c.plan
        for t in range(1, 14):  # one frontend measures 300 frames/s, 3x the planned 100, for rate_hold_s
            h.now = float(t)
            h.c.observe_rates("f1", {"cam": 300.0})
        assert h.c.dirty
        await h.c.reconcile()
        return first_plan

    first_plan = run_virtual(asyncio.wait_for(scenario(), 20))
    assert first_plan is not None and h.c.plan is not first_plan and h.c.plans == 2
    assert h.c.plan.app("cam").rate == pytest.approx(300.0)
    first_routes, second_routes = h.routes_marks()
    (t1, refused1), (t2, refused2) = h.tables
    assert refused1 == refused2 == {} and t2.version > t1.version

    # one configuration version per phase, in this order: 1st plan's phases 1 and 3, then the re-plan's
    versions = sorted({a.version for a in h.fake.applies})
    assert len(versions) == 4
    before1, after1, phase1, phase3 = ([a for a in h.fake.applies if a.version == v] for v in versions)
    # the first plan: phase 1 (nothing old) and phase 3 alike, before and after its routes
    assert max(a.seq for a in before1) < first_routes.seq < min(a.seq for a in after1)
    old = names(after1)
    assert names(before1) == old and set(old) == {w.address for w in t4(3)}
    assert routed(t1) == {a: m for a, m in old.items() if m}  # every worker runs what it is routed, nothing else

    # the re-plan: phase 1 (old | new) before the routes push, phase 3 (new only) after it
    assert max(a.seq for a in after1) < min(a.seq for a in phase1)
    assert max(a.seq for a in phase1) < second_routes.seq < min(a.seq for a in phase3)
    new = names(phase3)
    assert set(names(phase1)) == set(new) == set(old)  # every worker, once per phase
    assert len(phase1) == len(phase3) == 3
    for address in old:
        assert names(phase1)[address] == old[address] | new[address], address
    assert routed(t2) == {a: m for a, m in new.items() if m}
    # the plan did change: some worker held old and new modules at once, and dropped the old ones after
    assert any(names(phase1)[a] > new[a] for a in old)
    assert any(old[a] - new[a] for a in old)
    assert {n for ms in new.values() for n in ms} == {"cam/d@b2", "cam/c@b2"}
    assert {n for ms in old.values() for n in ms} == {"cam/d@b1", "cam/c@b1"}
    # each phase is one version, the same for every worker, and versions only grow per worker
    for phase in (before1, after1, phase1, phase3):
        assert len({a.version for a in phase}) == 1
    for address in old:
        versions = [a.version for a in h.fake.applies if a.address == address]
        assert versions == sorted(versions) and len(set(versions)) == len(versions) == 4
    assert t2.version == phase3[0].version  # the routes carry the version of the configuration they need


def test_a_worker_that_refuses_its_configuration_fails_the_reconcile_before_the_routes_move():
    """A failed phase-1 apply raises out of reconcile() (the loop logs it and retries with backoff);
    the routes are not pushed and the plan in force stays the old one, while the workers that
    accepted keep the union they were sent. A worker that refuses (it answered) stays."""
    h = Harness()

    async def scenario():
        for w in t4(3):
            h.c.register(w)
        h.fake.failing_apply[t4(3)[1].address] = FailedPrecondition("no GPU memory")
        with pytest.raises(RuntimeError, match="workers did not take their configuration: t1: no GPU memory"):
            await h.c.reconcile()
        assert h.c.plan is None and h.tables == []
        assert len(h.fake.applies) == 3  # phase 1 went to every worker; phase 3 was never sent
        held = h.c.running
        assert held["t1"] == () and held["t0"] != ()  # what a worker runs is what it accepted
        del h.fake.failing_apply[t4(3)[1].address]
        await h.c.reconcile()  # the retry succeeds
        assert h.c.plan is not None and len(h.tables) == 1

    run_virtual(asyncio.wait_for(scenario(), 20))


def test_a_worker_that_does_not_answer_its_push_is_dropped_and_the_next_plan_is_made_without_it():
    h = Harness()

    async def scenario():
        for w in t4(3):
            h.c.register(w)
        h.fake.failing_apply[t4(3)[1].address] = Unavailable("connection refused")
        with pytest.raises(RuntimeError, match="t1: connection refused"):
            await h.c.reconcile()
        assert "t1" not in {w.id for w in h.c.workers} and h.c.evicted == 1
        assert t4(3)[1].address in h.fake.forgotten
        await h.c.reconcile()  # the retry plans with the two that answer
        assert h.c.plan is not None and h.c.planned_workers == 2
        assert all(a.address != t4(3)[1].address for a in h.fake.applies[3:])

    run_virtual(asyncio.wait_for(scenario(), 20))


def test_a_worker_that_stalls_during_a_push_is_dropped_when_its_heartbeats_stop():
    """A stopped worker (SIGSTOP) never answers ApplyConfig: the push does not wait out its deadline,
    it is abandoned when the worker misses its heartbeats, and a plan without it is in force in
    about a heartbeat timeout."""
    h = Harness(clock=loop_time, heartbeat_ms=100)

    async def scenario():
        stalled = t4(3)[1]
        h.fake.apply_latency[stalled.address] = 3600.0
        beating = True

        async def heartbeats() -> None:
            while beating:
                for w in t4(3):
                    if w.id != stalled.id:
                        h.c.heartbeat(w.id)
                await asyncio.sleep(0.05)

        beats = asyncio.ensure_future(heartbeats())
        for w in t4(3):
            h.c.register(w)
        h.c.start()
        try:
            started = loop_time()
            while h.c.plan is None:
                await asyncio.sleep(0.05)
            took = loop_time() - started
            assert h.c.planned_workers == 2 and stalled.id not in {w.id for w in h.c.workers}
            # a lull of 0.2 s, 0.2 s for more joins, 0.3 s of missed heartbeats, a 0.5 s back-off and
            # 0.2 s again: far from apply_timeout_s
            assert took < 2, took
        finally:
            beating = False
            await h.c.stop()
            await beats

    run_virtual(asyncio.wait_for(scenario(), 30))


def test_a_starved_event_loop_is_not_blamed_on_the_workers():
    """In `serve` the frontend and the controller share an event loop: when overload stalls it, the
    heartbeats wait in it too, and the workers must not be evicted for it."""
    h = Harness(clock=loop_time, heartbeat_ms=100, missed_heartbeats=3)

    async def scenario():
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        for w in t4(2):
            h.c.register(w)
        h.c.start()
        try:
            for _ in range(3):
                for w in t4(2):
                    h.c.heartbeat(w.id)
                await asyncio.sleep(0.05)
                loop.stall(0.6)  # the loop is stalled for twice the heartbeat timeout
                await asyncio.sleep(0.15)  # the watch runs before the queued heartbeats would
            assert h.c.evicted == 0 and len(h.c.workers) == 2
            await asyncio.sleep(0.6)  # but a worker that really stops heartbeating is dropped
            assert h.c.evicted == 2 and not h.c.workers
        finally:
            await h.c.stop()

    run_virtual(asyncio.wait_for(scenario(), 20))


def test_a_restarted_controller_adopts_what_workers_run_and_unloads_nothing():
    """Workers tell a new controller what they run; its first plan (same workload, same workers)
    keeps every module where it is, and its versions are newer than its predecessor's."""
    first = Harness()

    async def scenario():
        await first.planned(3)
        running = {w.id: first.fake.specs(w.address) for w in t4(3)}  # what each reports it runs
        assert sum(map(len, running.values())) > 0
        second = Harness()
        second.c.version = first.c.version + (1 << 32)  # started a second later: the next epoch
        for w in t4(3):
            second.c.register(w, running[w.id])
        await second.c.reconcile()
        applies = second.fake.applies
        assert applies and all(a.version > first.c.version for a in applies)
        assert {a.address: a.specs for a in applies if a.version == max(x.version for x in applies)} == {
            w.address: running[w.id] for w in t4(3)}  # phase 3 keeps every module where it ran
        assert second.tables[0][0].routes == first.tables[-1][0].routes

    run_virtual(asyncio.wait_for(scenario(), 20))


def test_a_worker_that_registered_again_is_not_dropped_for_its_former_self():
    """A push that failed against a worker's old registration must not evict its new one."""
    h = Harness(clock=loop_time)
    worker = t4(1)[0]
    spec = ModuleSpec("cam/d@b1", "resnet50", 1, SHAPE)

    async def scenario():
        h.c.register(worker)
        h.fake.apply_latency[worker.address] = 3600.0  # the push to its former self hangs...
        push = asyncio.ensure_future(h.c.reconcile())
        await asyncio.sleep(0.01)
        h.c.register(worker, (spec,))  # ...and it registers again, running something else
        with pytest.raises(RuntimeError, match="t0: worker t0 was dropped while configuring it"):
            await push

    run_virtual(asyncio.wait_for(scenario(), 20))
    assert [w.id for w in h.c.workers] == ["t0"] and h.c.running["t0"] == (spec.name,) and h.c.evicted == 0


def test_a_restarted_controller_never_pushes_a_version_older_than_a_worker_runs():
    """Its clock may be behind its predecessor's: the versions workers report are a floor."""
    h = Harness()
    h.c.version = 5 << 32
    h.c.register(t4(1)[0], (), running_version=(9 << 32) + 3)
    assert h.c.version == (9 << 32) + 3


def test_a_worker_cannot_claim_a_version_from_beyond_any_epoch():
    """A running version of 2^64 - 1 once became the controller's, and every later push overflowed
    ("Value out of range"): no worker was ever configured again."""
    h = Harness()
    before = h.c.version
    h.c.register(t4(1)[0], (), running_version=2**64 - 1)
    assert h.c.version == before
    ahead = epoch_version(time.time() + 3600) + 7  # a predecessor's clock an hour ahead: believed
    h.c.register(t4(2)[1], (), running_version=ahead)
    assert h.c.version == ahead and h.c.version + 2 < 2**64


def test_a_live_workers_id_and_address_cannot_be_taken_over():
    """Any holder of the worker certificate registering at another worker's address evicted it (21
    re-plans in 20 s as the two took turns): an address is bound to the live worker that holds it."""
    h = Harness()
    h.c.register(t4(1)[0])
    with pytest.raises(ValueError, match="held by a live worker"):
        h.c.register(WorkerInfo("t0", "10.9.9.9:7000", "t4", "emulated:t4", True))
    with pytest.raises(ValueError, match="held by live worker 't0'"):
        h.c.register(WorkerInfo("intruder", t4(1)[0].address, "t4", "emulated:t4", True))
    assert [w.id for w in h.c.workers] == ["t0"] and h.c.evicted == 0
    h.now += h.c.config.heartbeat_timeout_s  # it died: missed its heartbeats
    h.c.register(WorkerInfo("t0-restarted", t4(1)[0].address, "t4", "emulated:t4", True))  # its successor
    assert [w.id for w in h.c.workers] == ["t0-restarted"]


def test_a_worker_that_keeps_refusing_its_configuration_is_removed_and_kept_out_for_a_while():
    """A worker that answers every push with an error kept each re-plan failing (its retries forever),
    so a dead worker next to it was never replaced although spares stood idle."""
    h = Harness()

    async def scenario():
        await h.planned(4)
        bad = t4(4)[0]
        h.fake.failing_apply[bad.address] = FailedPrecondition("cannot hold it")
        h.c.rates.planned["cam"] = 150.0  # any change: every worker gets a push
        refusals = h.c.config.max_refusals
        for attempt in range(1, refusals + 1):
            with pytest.raises(RuntimeError, match="did not take their configuration"):
                await h.c.reconcile()
            assert (bad.id in {w.id for w in h.c.workers}) == (attempt < refusals), attempt
        await h.c.reconcile()  # without it: in force
        assert h.c.plan is not None and bad.address not in routed(h.tables[-1][0])
        with pytest.raises(RegistrationRefused, match="refused 3 configurations"):
            h.c.register(bad)
        h.now += h.c.config.quarantine_s  # the quarantine is over
        del h.fake.failing_apply[bad.address]
        h.c.register(bad)
        assert bad.id in {w.id for w in h.c.workers}

    run_virtual(scenario())


def test_the_reconcile_loop_retries_a_failed_replan():
    h = Harness(clock=loop_time, heartbeat_ms=60_000, settle_s=0.0)

    async def scenario():
        h.fake.failing_apply[t4(2)[0].address] = FailedPrecondition("busy")
        h.c.start()
        try:
            for w in t4(2):
                h.c.register(w)
            for _ in range(100):  # the first attempt fails (and the failure is handled: a re-plan pending)...
                await asyncio.sleep(0.02)
                if h.fake.applies and h.c.dirty:
                    break
            assert h.fake.applies and h.c.plan is None and h.c.dirty
            del h.fake.failing_apply[t4(2)[0].address]
            for _ in range(300):  # ...and the loop tries again after its backoff
                await asyncio.sleep(0.02)
                if h.c.plan is not None:
                    break
            assert h.c.plan is not None and len(h.tables) == 1 and h.c.plans == 2
        finally:
            await h.c.stop()
        assert h.fake.closed

    run_virtual(asyncio.wait_for(scenario(), 20))


# --- waiting for the expected workers ------------------------------------------------------------


def test_the_first_plan_waits_for_the_expected_workers():
    h = Harness(clock=loop_time, expect_workers=2, expect_timeout_s=30.0, heartbeat_ms=60_000)

    async def scenario():
        h.c.start()
        try:
            h.c.register(t4(2)[0])
            await asyncio.sleep(0.6)  # the loop would plan 0.2 s after a join if it did not wait
            assert h.c.plans == 0 and h.fake.applies == []
            h.c.register(t4(2)[1])
            for _ in range(200):
                await asyncio.sleep(0.02)
                if h.c.plan is not None:
                    break
            assert h.c.plan is not None and h.c.planned_workers == 2
            await asyncio.sleep(0.3)
            assert h.c.plans == 1  # one plan for both joins, not one per join
            assert {a.address for a in h.fake.applies} == {w.address for w in t4(2)}
        finally:
            await h.c.stop()

    run_virtual(asyncio.wait_for(scenario(), 20))


def test_without_the_expected_workers_it_plans_with_those_it_has_after_the_timeout():
    h = Harness(clock=loop_time, expect_workers=2, expect_timeout_s=1.0, heartbeat_ms=60_000)

    async def scenario():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        h.c.start()
        try:
            h.c.register(t4(1)[0])
            await asyncio.sleep(0.3)
            assert h.c.plans == 0
            for _ in range(300):
                await asyncio.sleep(0.02)
                if h.c.plan is not None:
                    break
            took = loop.time() - t0
        finally:
            await h.c.stop()
        return took

    took = run_virtual(asyncio.wait_for(scenario(), 20))
    assert h.c.plan is not None and h.c.planned_workers == 1
    assert 1.0 <= took < 1.5  # the timeout, then the wait for more joins
    # one t4 cannot hold two modules: the app is refused, with its reason pushed to the frontend
    assert h.tables and set(h.tables[-1][1]) == {"cam"}


# --- calibration end to end ---------------------------------------------------------------------


def d_of(t) -> float:
    """A planned tuple's d(b), from its latency (fluid: no queueing allowance)."""
    return t.latency_ms - t.queue_ms - collection_ms("batch-aware", t.batch, t.workers, t.rate + t.dummy_rate)


def test_heartbeats_30_percent_slower_than_the_profile_replan_with_it_scaled():
    h = Harness(calibration=JUDGE_AT_ONCE)

    async def scenario():
        await h.planned()
        before = h.c.plan
        # what each worker runs, by the names the controller gave it (from the apply log)
        running = {w.id: h.fake.config(w.address)[1] for w in t4(3)}
        assert sum(bool(m) for m in running.values()) == 2
        batch_of = {s.name: s.batch for a in h.fake.applies for s in a.specs}

        def beat(now: float) -> None:
            h.now = now
            for wid, mods in running.items():
                slow = {m: [effective_latency(T4[batch_of[m]].mean_ms, T4[batch_of[m]].std_ms, 1.0) * 1.3] * 60
                        for m in mods}
                slow["not/a-module@b1"] = [999.0]  # a name the worker does not run: ignored
                assert h.c.heartbeat(wid, slow)

        beat(1.0)  # enough batches (60 >= min_batches) to judge, but within min_epoch_s of the plan
        assert not h.c.dirty and h.c.calibrator.planned.factor("resnet50", "t4") == 1.0
        beat(S.min_epoch_s + 1.0)
        assert h.c.dirty  # 240 batches at 1.3x: drifted
        assert h.c.calibrator.planned.factor("resnet50", "t4") == pytest.approx(1.3)
        assert h.c.calibrator.planned.factor("resnet50", "v100") == 1.0
        assert not h.c.heartbeat("nobody", {"x": [1.0]})
        # while the re-plan is pending, figures that moved again are not judged (no re-plan per second)
        h.now = S.min_epoch_s + 3.0
        slower = {m: [effective_latency(T4[batch_of[m]].mean_ms, T4[batch_of[m]].std_ms, 1.0) * 2.0] * 60
                  for mods in running.values() for m in mods}
        for wid in running:
            h.c.heartbeat(wid, slower)
        assert h.c.calibrator.planned.factor("resnet50", "t4") == pytest.approx(1.3)
        await h.c.replan()
        # the plan in force is judged over what it serves: the 2x figures measured before it do not count
        assert h.c.calibrator.measured(h.now).exec == {}
        return before

    before = run_virtual(asyncio.wait_for(scenario(), 20))
    after = h.c.plan
    assert after is not before and h.c.plans == 2
    for p, factor in ((before, 1.0), (after, 1.3)):
        tuples = [t for m in p.app("cam").modules for t in m.tuples]
        assert tuples and all(t.hardware == "t4" for t in tuples)
        for t in tuples:  # every tuple planned with d(b) of the profile times the factor
            profiled = effective_latency(T4[t.batch].mean_ms, T4[t.batch].std_ms, p.settings.safety)
            assert d_of(t) == pytest.approx(profiled * factor, rel=1e-6)
    assert after.app("cam").predicted_latency_ms > before.app("cam").predicted_latency_ms
    assert after.settings.overhead_ms == 0.0  # no hop reports: the configured overhead


def test_hop_overheads_beyond_the_band_replan_with_the_measured_overhead():
    h = Harness(settings=Settings(arrivals="fluid", overhead_ms=1.0), calibration=JUDGE_AT_ONCE)

    async def scenario():
        await h.planned()
        before = h.c.plan
        h.now = 1.0
        h.c.observe_hops([1.0] * 300)  # as planned
        h.now = S.min_epoch_s + 1.0
        h.c.observe_hops([1.05] * 300)  # within the band (and the 0.5 ms floor)
        assert not h.c.dirty
        h.now = S.min_epoch_s + 3.0
        h.c.observe_hops([6.0] * 500)  # P95 of what came since the plan: 6 ms
        assert h.c.dirty and h.c.calibrator.planned.overhead_ms == pytest.approx(6.0)
        await h.c.replan()
        return before

    before = run_virtual(asyncio.wait_for(scenario(), 20))
    after = h.c.plan
    assert before.settings.overhead_ms == 1.0 and after.settings.overhead_ms == pytest.approx(6.0)
    assert h.c.settings.overhead_ms == 1.0  # the configured figure is kept; the plan carries the measured one
    for p in (before, after):
        for m in p.app("cam").modules:
            for t in m.tuples:  # latency = collection + d(b) + the overhead planned with
                d = effective_latency(T4[t.batch].mean_ms, T4[t.batch].std_ms, p.settings.safety)
                assert t.latency_ms == pytest.approx(
                    collection_ms("batch-aware", t.batch, t.workers, t.rate + t.dummy_rate) + d
                    + p.settings.overhead_ms, rel=1e-6)
    assert after.app("cam").predicted_latency_ms > before.app("cam").predicted_latency_ms


def test_without_calibration_measurements_never_replan():
    h = Harness(calibration=None)

    async def scenario():
        await h.planned()
        running = {w.id: h.fake.config(w.address)[1] for w in t4(3)}
        for now in (1.0, S.min_epoch_s + 1.0, S.min_epoch_s + 3.0):
            h.now = now
            for wid, mods in running.items():
                h.c.heartbeat(wid, {m: [100.0] * 100 for m in mods})
            h.c.observe_hops([50.0] * 500)
        assert not h.c.dirty and h.c.calibrator is None

    run_virtual(asyncio.wait_for(scenario(), 20))


def test_a_whole_pass_stays_fast():
    """Guard: a fluid plan in a thread is milliseconds, so this file stays well under its budget."""
    h = Harness()

    async def scenario():
        for w in t4(3):
            h.c.register(w)
        t0 = time.perf_counter()
        await h.c.reconcile()
        return time.perf_counter() - t0

    assert asyncio.run(scenario()) < 5.0


def test_remote_frontends_get_a_drain_only_when_the_new_routes_unload_something():
    """Between switching routes and unloading, the controller waits `drain_s` for remote frontends'
    old batches, but only when phase 3 unloads a module: a plan that moves nothing (a restarted
    controller adopting the running state) goes into force at once."""
    h = Harness(drain_s=0.5)

    async def scenario():
        started = loop_time()
        await h.planned(3)  # nothing ran before: nothing to unload
        first = loop_time() - started
        again = Harness(drain_s=0.5)
        for w in t4(3):
            again.c.register(w, h.fake.specs(w.address))
        started = loop_time()
        await again.c.reconcile()  # the same plan on the same workers: nothing unloaded
        adopted = loop_time() - started
        for t in range(1, 14):  # 3x the rate: the re-plan moves modules
            h.now = float(t)
            h.c.observe_rates("f1", {"cam": 300.0})
        started = loop_time()
        await h.c.reconcile()
        moved = loop_time() - started
        return first, adopted, moved

    first, adopted, moved = run_virtual(asyncio.wait_for(scenario(), 30))
    assert first == adopted == 0 and moved == pytest.approx(0.5), (first, adopted, moved)


def test_an_overload_measured_as_offered_frames_does_not_take_the_app_down():
    """Rates count offered frames; planned at 50x its rate on 3 workers the app was refused (every
    frame UNAVAILABLE) where its configured rate is served and admission refuses the excess."""
    h = Harness()

    async def scenario():
        await h.planned(3)
        h.c.rates.planned["cam"] = 5000.0  # as a surge of offered frames makes it
        await h.c.replan()
        assert h.c.plan is not None and [a.name for a in h.c.plan.apps] == ["cam"] and not h.c.plan.refused
        assert h.c.rates.rate("cam") == 100.0 and h.c.rates.ceiling == {"cam": 5000.0}
        assert h.tables[-1][1] == {}  # routed, not refused
        for t in range(1, 30):  # the overload goes on: not followed again
            h.now = float(t)
            h.c.observe_rates("f1", {"cam": 5000.0})
        assert not h.c.dirty
        h.c.register(t4(4)[3])  # more hardware: worth trying again
        assert h.c.rates.ceiling == {}

    run_virtual(scenario())


def test_frame_decode_1_5x_its_figure_replans_with_the_hardware_figure_scaled():
    """Workers report each batch's decode per frame; the controller turns it into ms per megapixel of the
    app's declared frames and the calibration scales the hardware's figure, which the next plan charges."""
    doc = W.model_dump(exclude_none=True)
    for hw in doc["hardware"]:
        hw["decode_ms_per_mpixel"] = {"jpeg": 2.0}
    doc["apps"][0]["frame"] = {"height": 720, "width": 1280, "encoding": "jpeg"}
    frames = Workload.model_validate(doc)
    per_frame = 2.0 * 0.9216  # ms: a 1280x720 frame at 2 ms per megapixel
    h = Harness(workload=frames, calibration=JUDGE_AT_ONCE)

    async def scenario():
        await h.planned()
        specs = {s.name: s for a in h.fake.applies for s in a.specs}
        assert {round(s.decode_ms, 6) for s in specs.values()} == {round(per_frame, 6)}  # both modules take frames
        running = {w.id: h.fake.config(w.address)[1] for w in t4(3)}

        def beat(now: float) -> None:
            h.now = now
            for wid, mods in running.items():
                assert h.c.heartbeat(wid, None, {m: [per_frame * 1.5] * 60 for m in mods} | {"not/ours@b1": [9.0]})

        beat(1.0)
        assert not h.c.dirty  # within min_epoch_s of the plan
        beat(S.min_epoch_s + 1.0)
        assert h.c.dirty and h.c.calibrator.planned.decode_factor("t4", "jpeg") == pytest.approx(1.5)
        assert h.c.calibrator.planned.factor("resnet50", "t4") == 1.0  # the model's figure untouched
        await h.c.replan()

    run_virtual(asyncio.wait_for(scenario(), 20))
    latest = {s.name: s for s in h.fake.applies[-1].specs}
    assert latest and {round(s.decode_ms, 6) for s in latest.values()} == {round(per_frame * 1.5, 6)}

