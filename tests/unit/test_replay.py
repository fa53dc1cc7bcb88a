"""The replay against hand-computed cases, one per rule of docs/model.md v2 ("the replay")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings, batch_aware_latency
from harpagon.model.plan import AppPlan, ModulePlan, Plan, TuplePlan, check_plan
from harpagon.sim import judge, simulate

ROWS = [[1, 5.0], [2, 6.0], [4, 8.0]]  # d(1) = 5, d(2) = 6, d(4) = 8 ms


def workload(rate: float, modules: list[dict], slo: float = 1000.0, apps: int = 1) -> Workload:
    return Workload.model_validate({
        "hardware": [{"name": "g", "price_per_hour": 1.0}],
        "profiles": [{"model": "m", "hardware": "g", "batches": ROWS}],
        "apps": [{"name": f"a{i}", "rate": rate, "slo_ms": slo, "modules": modules} for i in range(apps)],
    })


def tup(rate: float, batch: int = 1, workers: int = 1, dummy: float = 0.0, overhead: float = 0.0,
        gpu: str | None = None, cycle_ms: float | None = None) -> TuplePlan:
    d = {r[0]: r[1] for r in ROWS}[batch]
    lat = (cycle_ms + d + overhead) if gpu else batch_aware_latency(batch, d, rate + dummy, overhead)
    return TuplePlan("g", batch, workers, rate, dummy, lat, gpu, cycle_ms)


def hand_plan(w: Workload, tuples: dict[str, TuplePlan], overhead: float = 0.0) -> Plan:
    """One tuple per module, budgets at the tuples' latencies (the plan is judged by the replay)."""
    apps = []
    for app in w.apps:
        mods = tuple(ModulePlan(m.name, "m", app.module_rate(m), tuples[m.name].latency_ms,
                                tuples[m.name].latency_ms, (tuples[m.name],)) for m in app.modules)
        total = max(sum(tuples[x].latency_ms for x in p) for p in app.paths)
        apps.append(AppPlan(app.name, app.rate, app.slo_ms, total, mods))
    return Plan.build("hand", "batch-aware", Settings(overhead_ms=overhead), tuple(apps), (), w)


CHAIN = [{"name": "x", "model": "m"}, {"name": "y", "model": "m", "after": ["x"]}]


def test_timer_padding_capacity_rule_a_fluid_feasible_tuple_can_still_overload():
    """r = 300/s, δ = 200/s at b = 4: the fluid load 500/s is exactly T(4), but the timer ships after
    1000·3/500 = 6 ms with 1 + floor(300·0.006) = 2 real requests, so the worker must run 150
    batches of 8 ms a second: 1.2 s of work per second, and the queue grows without bound."""
    w = workload(300.0, [{"name": "x", "model": "m"}])
    p = hand_plan(w, {"x": tup(300.0, 4, dummy=200.0)})
    assert check_plan(p, w) == []
    short, long = (simulate(p, w, frames=n).app("a0") for n in (300, 3000))
    assert short.modules[0].dummies == 2 * short.modules[0].batches  # 2 real + 2 dummies per batch
    assert long.max_ms > 5 * short.max_ms > 5 * p.apps[0].predicted_latency_ms


def test_a_module_with_scale_two_gets_both_requests_of_a_frame_at_once():
    """y (scale 2, b = 1, one worker) gets 2 requests per frame together: the second waits d(1)."""
    w = workload(10.0, [CHAIN[0], {**CHAIN[1], "scale": 2.0}])
    p = hand_plan(w, {"x": tup(10.0), "y": tup(20.0)})
    y = simulate(p, w, frames=50).app("a0").module("y")
    assert y.requests == 100 and y.max_ms == pytest.approx(10.0) and y.quantile(0.0) == pytest.approx(10.0)


def test_a_batched_parent_releases_its_frames_together():
    """x runs b = 4 at 400/s (full every 7.5 ms): its 4 frames reach y (b = 1, one worker) at once, so the
    fourth waits 3 d(1) = 15 ms before its own 5 ms."""
    w = workload(400.0, CHAIN)
    p = hand_plan(w, {"x": tup(400.0, 4), "y": tup(400.0, 1, workers=4)})
    y = simulate(p, w, frames=400).app("a0").module("y")
    assert y.max_ms == pytest.approx(5.0)  # four workers take the four frames side by side
    p1 = hand_plan(w, {"x": tup(400.0, 4), "y": tup(400.0, 1, workers=2)})
    assert simulate(p1, w, frames=400).app("a0").module("y").max_ms == pytest.approx(10.0)


def test_overhead_is_added_after_the_batch_without_occupying_the_worker():
    """Frames 5 ms apart on a 5 ms worker with a 3 ms hop: the worker is free again at once, so no frame
    queues; each module takes d + 3 and the chain twice that."""
    w = workload(200.0, CHAIN)
    p = hand_plan(w, {"x": tup(200.0, overhead=3.0), "y": tup(200.0, overhead=3.0)}, overhead=3.0)
    r = simulate(p, w, frames=500).app("a0")
    assert r.max_ms == pytest.approx(16.0) and r.p50_ms == pytest.approx(16.0)
    assert r.module("x").max_ms == pytest.approx(8.0) and r.module("y").max_ms == pytest.approx(8.0)


def test_completions_come_before_arrivals_at_equal_times():
    """200 frames/s on a 5 ms worker: each frame arrives the instant the previous one finishes and must
    find the worker free (5 ms, not 10)."""
    w = workload(200.0, [{"name": "x", "model": "m"}])
    r = simulate(hand_plan(w, {"x": tup(200.0)}), w, frames=1000).app("a0")
    assert r.max_ms == pytest.approx(5.0)


def test_a_request_arriving_exactly_at_the_timer_joins_the_batch():
    """100/s with δ = 200/s at b = 4: τ = 1000·3/300 = 10 ms, the very gap between requests, so the
    second request joins the first one's batch at the timer: 2 real and 2 dummies per batch."""
    w = workload(100.0, [{"name": "x", "model": "m"}])
    m = simulate(hand_plan(w, {"x": tup(100.0, 4, dummy=200.0)}), w, frames=200).app("a0").module("x")
    assert m.batches == 100 and m.dummies == 200
    assert m.max_ms == pytest.approx(10.0 + 8.0)


def test_tuples_on_one_shared_gpu_run_first_in_first_out_on_one_worker():
    """Two apps, one b = 1 tuple each on shared GPU g0, frames at the same instants: the second app's
    frame waits for the first app's batch (FIFO, ties in plan order)."""
    w = workload(10.0, [{"name": "x", "model": "m"}], apps=2)
    p = hand_plan(w, {"x": tup(10.0, gpu="g0", cycle_ms=50.0)})
    r = simulate(p, w, frames=20)
    assert r.app("a0").max_ms == pytest.approx(5.0)
    assert r.app("a1").max_ms == pytest.approx(10.0)
    alone = hand_plan(w, {"x": tup(10.0)})
    assert simulate(alone, w, frames=20).app("a1").max_ms == pytest.approx(5.0)


def test_request_level_keeps_one_open_batch_per_worker():
    """Request-level, b = 2 on two workers at 200/s: each worker collects at 100/s, so τ = 10 ms and the
    first request of a batch waits the full 10 ms (batch-aware would wait 5)."""
    w = workload(200.0, [{"name": "x", "model": "m"}])
    t = TuplePlan("g", 2, 2, 200.0, 0.0, 16.0)
    ap = AppPlan("a0", 200.0, 1000.0, 16.0, (ModulePlan("x", "m", 200.0, 16.0, 16.0, (t,)),))
    p = Plan.build("hand", "request-level", Settings(), (ap,), (), w)
    assert simulate(p, w, frames=400).app("a0").max_ms == pytest.approx(16.0)
    p2 = hand_plan(w, {"x": TuplePlan("g", 2, 2, 200.0, 0.0, 11.0)})
    assert simulate(p2, w, frames=400).app("a0").max_ms == pytest.approx(11.0)


def test_judge_reports_both_promises():
    w = workload(500.0, [{"name": "x", "model": "m"}], slo=50.0)
    # b = 4 at 500/s on one worker: exactly saturated. Constant arrivals never queue; Poisson ones do.
    p = hand_plan(w, {"x": tup(500.0, 4)})
    v = judge(p, w, "poisson", frames=5000, seconds=0, seed=3)
    assert v.replayed.constant_all_within and v.replayed.frames == 5000 and v.replayed.seed == 3
    assert v.replayed.min_app_attainment < 0.99 and not v.kept("poisson", 0.99) and v.kept("constant", 0.99)
    assert v.replayed.apps == (("a0", v.replayed.min_app_attainment),)
    # By default 60 s of the app (30,000 frames): the saturated queue has longer to grow.
    steady = judge(p, w, "poisson", frames=5000, seed=3)
    assert steady.replayed.frames == 30_000 and steady.replayed.seconds == 60.0
    assert steady.replayed.min_app_attainment < v.replayed.min_app_attainment


def test_an_apps_poisson_arrivals_do_not_depend_on_the_other_apps_replayed():
    w = workload(300.0, [{"name": "x", "model": "m"}], slo=30.0, apps=2)
    p = hand_plan(w, {"x": tup(300.0, 4)})
    both = simulate(p, w, "poisson", frames=3000, seed=5)
    alone = simulate(replace(p, apps=p.apps[1:]), w, "poisson", frames=3000, seed=5)
    a, b = alone.app("a1"), both.app("a1")
    assert (a.frames, a.p50_ms, a.p99_ms, a.max_ms, a.over_slo) == (b.frames, b.p50_ms, b.p99_ms, b.max_ms, b.over_slo)
    assert both.app("a0").p99_ms != both.app("a1").p99_ms  # two streams, not one
