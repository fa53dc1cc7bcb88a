"""The controller's policy pieces without a network: assignment and the rate band."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import replace

import numpy as np
import pytest
from prometheus_client import generate_latest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.planner.harpagon import plan
from harpagon.runtime.controller.assignment import WorkerInfo, assign, live_workload
from harpagon.runtime.controller.config import ControllerConfig
from harpagon.runtime.controller.controller import Controller, promise_metrics
from harpagon.runtime.controller.watches import WatchSettings
from harpagon.runtime.metrics import ControllerMetrics
from harpagon.runtime.promise import describe
from harpagon.runtime.wire.routes import from_proto, to_proto
from tests.conftest import BASE
from tests.fakes import FakeWorkers, run_virtual

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


def test_losing_a_worker_moves_its_tuple_only():
    """The lost worker's module goes to an idle worker; no other module moves (taking another
    module's worker for it would cascade: that module would move too, and so on)."""
    everyone = workers(8)
    live = live_workload(W, everyone)
    p = plan(live)
    first = assign(p, live, everyone, (3, 16, 16), 1)
    busy = sorted(wid for wid, mods in first.modules.items() if mods)
    assert 2 <= len(busy) < len(everyone)  # the plan leaves spares
    for lost in busy:
        rest = [w for w in everyone if w.id != lost]
        again = assign(p, live_workload(W, rest), rest, (3, 16, 16), 2, previous=first.modules)
        moved = {wid for wid, mods in again.modules.items() if mods != first.modules[wid]}
        assert len(moved) == 1, (lost, moved)
        (taker,) = moved
        assert not first.modules[taker] and again.modules[taker] == first.modules[lost]


FLUID = Settings(arrivals="fluid")  # the rate band and the promise's words need no replay
S = WatchSettings()


def test_rates_outside_the_band_trigger_a_replan_at_the_measured_rate():
    now = [0.0]

    async def scenario():
        c = Controller(W, FLUID, (3, 16, 16), lambda t, r: asyncio.sleep(0), clock=lambda: now[0])
        c.plan = plan(W, FLUID)  # as if a plan were in force since t = 0
        c.in_force(0.0)
        for t in range(1, 10):  # one frontend at 400/s: out of the band, but within min_epoch_s
            now[0] = t
            c.observe_rates("f1", {"cam": 400.0})
            assert not c.dirty
        c.in_force(now[0])  # a new plan: the reports before it no longer count
        for t in range(10, 22):
            now[0] = t
            c.observe_rates("f1", {"cam": 310.0})
        assert not c.dirty  # inside 0.8-1.1 x 300
        for t in range(10, 22):  # a second frontend: 370/s in all, judged from min_epoch_s after the plan...
            now[0] = t
            c.observe_rates("f2", {"cam": 60.0})
        assert not c.dirty  # ...out of the band for 2 s only
        now[0] = 22
        c.observe_rates("f2", {"cam": 60.0})
        assert c.dirty  # out of the band for rate_hold_s
        assert c.rates.rate("cam") == pytest.approx(370.0)

    run_virtual(scenario())


def test_a_stream_that_starts_late_is_judged_from_its_first_frame():
    """Idle seconds before a client starts are not a rate drop: averaged in, they re-planned the demo
    for 23 frames/s instead of 40."""
    now = [0.0]

    async def scenario():
        c = Controller(W, FLUID, (3, 16, 16), lambda t, r: asyncio.sleep(0), clock=lambda: now[0])
        c.plan = plan(W, FLUID)
        c.in_force(0.0)
        for t in range(1, 15):  # no frames yet
            now[0] = t
            c.observe_rates("f1", {"cam": 0.0})
        for t in range(15, 30):  # then the planned 300/s
            now[0] = t
            c.observe_rates("f1", {"cam": 300.0})
            assert not c.dirty, f"re-planned at t={t}"
        for t in range(30, 45):  # then a real move, judged from the first frame: (15*300 + k*400) / (15 + k)
            now[0] = t
            c.observe_rates("f1", {"cam": 400.0})
            # a rise is judged over the last rise_window_s too: (6*300 + 4*400) / 10 is past 1.1x (and the
            # noise) at t=33, then held there for rate_hold_s
            assert c.dirty == (t >= 36), f"t={t}"
        assert c.rates.rate("cam") == pytest.approx(400)  # a rise is planned at its latest rate, not the mean

    run_virtual(scenario())


def test_poisson_noise_in_the_rates_does_not_trigger_a_replan_but_a_real_move_does():
    """Under Poisson arrivals a 1 s count of a 40/s app leaves 0.8-1.1x one second in four; the
    controller judges the reports since the plan against the noise of a Poisson count."""
    now = [0.0]
    rng = np.random.default_rng(1)
    w = W.model_copy(update={"apps": (W.apps[0].model_copy(update={"rate": 40.0}),)})

    async def scenario():
        c = Controller(w, FLUID, (3, 16, 16), lambda t, r: asyncio.sleep(0), clock=lambda: now[0])
        c.plan = plan(w, FLUID)
        c.in_force(0.0)
        counts = rng.poisson(40.0, 600)
        assert np.mean((counts < 32) | (counts > 44)) > 0.15  # what the old 1 s check re-planned on
        for t, n in enumerate(counts, start=1):  # ten minutes at the planned rate
            now[0] = t
            c.observe_rates("f1", {"cam": float(n)}, 1.0)
            assert not c.dirty, f"re-planned on noise at t={t}"
        for t, n in enumerate(rng.poisson(52.0, 60), start=601):  # 1.3x the planned rate
            now[0] = t
            c.observe_rates("f1", {"cam": float(n)}, 1.0)
            if c.dirty:
                break
        assert c.dirty and now[0] - 600 <= S.min_epoch_s + 10
        assert c.rates.rate("cam") == pytest.approx(52.0, rel=0.15)

    run_virtual(scenario())


def test_planning_runs_in_a_planner_process_and_the_event_loop_keeps_ticking():
    """The replay is seconds of pure Python; heartbeats and the embedded frontend share the loop (a
    real loop and a real process: what is measured is the loop's lag while the planner works)."""

    async def scenario():
        c = Controller(W, Settings(), (3, 16, 16), lambda t, r: asyncio.sleep(0), client=FakeWorkers())
        for w in workers(6, 2):
            c.register(w)
        lags: list[float] = []

        async def tick():
            while True:
                t0 = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t0 - 0.01)

        ticker = asyncio.ensure_future(tick())
        t0 = time.perf_counter()
        await c.reconcile()
        took = time.perf_counter() - t0
        ticker.cancel()
        await c.stop()
        return c.plan, took, lags

    p, took, lags = asyncio.run(scenario())
    assert p.promise is not None and p.promise.replayed is not None and p.promise.replayed.seconds == 60.0
    assert p.promise.replayed.frames == max(10_000, 60 * min(a.rate for a in p.apps))  # the steady state
    assert p.promise.kept is True
    assert took > 0.3 and len(lags) > took / 0.02  # the loop ran all along...
    assert max(lags) < max(0.25, took / 4)  # ...and never stalled for the plan (in-loop: all of `took`)


def test_the_promise_is_logged_and_exported_with_what_its_replay_measured(caplog):
    p = plan(live_workload(W, workers(6, 2)))
    assert "promise poisson ≥99%: replayed 18000 frames or 60 s of each app (seed 0), min attainment" in \
        describe(p.promise)  # 300 frames/s for 60 s
    assert describe(p.promise).endswith("constant all within")
    metrics = ControllerMetrics()
    promise_metrics(metrics, p)
    text = generate_latest(metrics.registry).decode()
    (attainment,) = [a for app, a in p.promise.replayed.apps if app == "cam"]
    assert f'harpagon_plan_promise_attainment{{app="cam"}} {attainment}' in text
    assert 'harpagon_plan_promise_target{arrivals="poisson"} 0.99' in text
    assert 'harpagon_plan_promise_kept{arrivals="poisson"} 1.0' in text
    assert "# HELP harpagon_plan_promise_target Attainment the plan in force promises" in text
    # a broken promise: kept 0 and a warning; the fluid model promises nothing about arrivals
    broken = replace(p, promise=replace(p.promise, replayed=replace(p.promise.replayed, min_app_attainment=0.95,
                                                                      apps=(("cam", 0.95),))))
    promise_metrics(metrics, broken)
    assert 'harpagon_plan_promise_kept{arrivals="poisson"} 0.0' in generate_latest(metrics.registry).decode()
    promise_metrics(metrics, plan(W, FLUID))
    text = generate_latest(metrics.registry).decode()
    assert "harpagon_plan_promise_target{" not in text and "harpagon_plan_promise_attainment{" not in text
    assert describe(plan(W, FLUID).promise) == "promise fluid (the version-1 model; not replayed)"


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

    c = run_virtual(scenario())
    assert c.plan.dispatch == "request-level" and pushed[0][0].dispatch == "request-level"
    assert set(pushed[0][1]) == {"cam"} and "hardware counts run out" in pushed[0][1]["cam"]


def test_serve_defaults_to_one_worker_per_gpu_and_says_so_when_there_is_none():
    import torch

    from harpagon.runtime.serve import LocalCluster

    w = Workload.model_validate({**W.model_dump(exclude={"serve"}), "serve": {}})
    cluster = LocalCluster(w)
    if torch.cuda.is_available():
        assert next(g.device for g in cluster.worker_groups) == "cuda:0"
    else:
        with pytest.raises(ValueError, match="no GPU is visible"):
            _ = cluster.worker_groups
    explicit = Workload.model_validate({**W.model_dump(exclude={"serve"}),
                                        "serve": {"workers": [{"device": "emulated:t4", "count": 2}]}})
    assert [(g.device, g.count) for g in LocalCluster(explicit).worker_groups] == [("emulated:t4", 2)]


def test_bad_rate_reports_are_dropped_not_planned_for(caplog):
    """`inf` crashed the planner in a retry loop; a huge rate re-planned for it; unknown apps and bad
    windows are noise from a broken or hostile frontend."""
    now = [0.0]

    async def scenario():
        c = Controller(W, FLUID, (3, 16, 16), lambda t, r: asyncio.sleep(0), clock=lambda: now[0])
        c.plan = plan(W, FLUID)
        c.in_force(0.0)
        for t in range(1, 40):
            now[0] = t
            c.observe_rates("f1", {"cam": math.inf, "ghost": 50.0})
            c.observe_rates("f2", {"cam": 300.0 * 1000})  # beyond max_rate_factor x the configured 300/s
            c.observe_rates("f3", {"cam": -5.0})
            c.observe_rates("f4", {"cam": 300.0}, window_s=math.nan)
            c.observe_rates("f5", {"cam": 300.0})
        return c

    c = run_virtual(scenario())
    assert not c.dirty and c.rates.rate("cam") == 300.0  # only f5's sane reports counted
    assert set(c.rates.reports) == {"f1", "f2", "f3", "f5"} and all(r == {} for _, r, _ in c.rates.reports["f1"])
    assert any("rates dropped" in r.getMessage() and "ghost" in r.getMessage() for r in caplog.records)
    assert any("window nan s is not in (0, 60]" in r.getMessage() for r in caplog.records)


def _served(w: Workload, now: list[float]) -> Controller:
    c = Controller(w, FLUID, (3, 16, 16), lambda t, r: asyncio.sleep(0), clock=lambda: now[0])
    c.plan = plan(w, FLUID)
    c.in_force(0.0)
    return c


def _new_plan(c: Controller, at: float) -> None:
    """What a re-plan does to the watchers, without planning: it takes the pending re-plan (the flag
    has no public setter: only the loop clears it) and puts a plan in force at `at`."""
    c._dirty.clear()
    c.in_force(at)


def test_after_a_lull_the_plan_keeps_a_floor_and_a_surge_back_re_plans_within_seconds():
    """45 s at 1 of 40 frames/s shrank a plan to one worker; back at 40, judged over the reports since
    that plan, the rate climbed 5 -> 10 -> 37 over three re-plans 10 s apart while 96% of frames failed."""
    now = [0.0]
    w = W.model_copy(update={"apps": (W.apps[0].model_copy(update={"rate": 40.0}),)})

    async def scenario():
        c = _served(w, now)
        for t in range(1, 46):  # the lull
            now[0] = t
            c.observe_rates("f1", {"cam": 1.0})
        assert c.dirty
        assert c.rates.rate("cam") == pytest.approx(S.min_rate_fraction * 40.0)  # the floor, not 1
        _new_plan(c, 46.0)
        for t in range(47, 50):  # still quiet: the floor is not re-planned for again
            now[0] = t
            c.observe_rates("f1", {"cam": 1.0})
        assert not c.dirty
        back = 50
        for t in range(back, back + 30):  # back at the configured rate, well within min_epoch_s of the plan
            now[0] = t
            c.observe_rates("f1", {"cam": 40.0})
            if c.dirty:
                break
        assert c.dirty and now[0] - back <= S.rate_recent_s + S.surge_hold_s
        assert c.rates.rate("cam") == pytest.approx(40.0)  # in one step

    run_virtual(scenario())


def test_a_burst_is_not_a_surge_and_a_modest_rise_waits_for_the_band():
    """A 1 s burst at 3x and a rise to 1.3x do not re-plan within min_epoch_s (the surge rule wants
    surge_factor over rate_recent_s, held surge_hold_s)."""
    now = [0.0]

    async def scenario():
        c = _served(W, now)  # 300 frames/s
        for t in range(1, 9):
            now[0] = t
            c.observe_rates("f1", {"cam": 900.0 if t == 4 else 300.0})
            assert not c.dirty, t
        for t in range(9, int(S.min_epoch_s)):
            now[0] = t
            c.observe_rates("f1", {"cam": 390.0})
            assert not c.dirty, t

    run_virtual(scenario())


def test_an_app_planned_above_its_rate_that_gets_no_frames_is_planned_at_its_configured_rate_again():
    """Rates at 99x for 3 s can make the controller refuse an app; once its clients are gone it must not
    stay refused (nor hold the burst's GPUs) for good."""
    now = [0.0]

    async def scenario():
        c = _served(W, now)
        for t in range(1, 6):
            now[0] = t
            c.observe_rates("f1", {"cam": 99 * 300.0})
        assert c.dirty and c.rates.rate("cam") == pytest.approx(99 * 300.0)
        _new_plan(c, 6.0)
        for t in range(7, 7 + int(S.idle_reset_s)):  # nothing offered
            now[0] = t
            c.observe_rates("f1", {})
            assert not c.dirty, t
        now[0] = 7 + S.idle_reset_s
        c.observe_rates("f1", {})
        assert c.dirty and c.rates.rate("cam") == pytest.approx(300.0)
        _new_plan(c, now[0])
        for t in range(int(now[0]) + 1, int(now[0]) + 2 * int(S.idle_reset_s)):  # at its configured rate: idle stays
            now[0] = t
            c.observe_rates("f1", {})
        assert not c.dirty

    run_virtual(scenario())


@pytest.mark.parametrize(("field", "value"), [
    ("heartbeat_ms", 0), ("heartbeat_ms", 2**32), ("heartbeat_ms", 0.5), ("missed_heartbeats", 0),
    ("apply_timeout_s", math.inf), ("max_refusals", True), ("quarantine_s", -1.0), ("retry_s", (8.0, 0.5)),
    ("retry_s", (0.0, 1.0)), ("coalesce_s", math.nan), ("poll_s", 0.0), ("expect_workers", -1),
    ("expect_timeout_s", -1.0), ("settle_s", -0.1), ("drain_s", "2"), ("planning", "inline"),
    ("follow_rates", 1), ("follow_fanout", None), ("watches", {}), ("max_rate_factor", 0.0),
    ("max_fanout", 0), ("calibration", {}), ("calibration_check_s", -1.0),
])
def test_bad_controller_config_is_refused_by_name_and_value(field, value):
    with pytest.raises(ValueError, match=rf"controller {field} .*got {re.escape(repr(value))}"):
        ControllerConfig(**{field: value})


def test_the_frontends_reporting_and_their_rates_are_exported_until_one_goes_quiet():
    now = [0.0]
    metrics = ControllerMetrics()

    async def push(table, refused):
        pass

    c = Controller(W, Settings(), (3, 16, 16), push, metrics=metrics, clock=lambda: now[0])
    c.observe_rates("fe-a", {"cam": 120.0})
    c.observe_rates("fe-b", {"cam": 180.0})
    text = generate_latest(metrics.registry).decode()
    assert "harpagon_frontends 2.0" in text
    assert 'harpagon_frontend_offered_rate{app="cam",frontend="fe-a"} 120.0' in text
    assert 'harpagon_frontend_offered_rate{app="cam",frontend="fe-b"} 180.0' in text
    now[0] = c.config.watches.report_expiry_s + 1.0  # fe-b has not reported since
    c.observe_rates("fe-a", {"cam": 150.0})
    text = generate_latest(metrics.registry).decode()
    assert "harpagon_frontends 1.0" in text and 'frontend="fe-b"' not in text
    assert 'harpagon_frontend_offered_rate{app="cam",frontend="fe-a"} 150.0' in text
