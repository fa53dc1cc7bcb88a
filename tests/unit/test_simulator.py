"""The simulator against closed-form cases."""

from __future__ import annotations

import pytest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings, batch_aware_latency, request_level_latency, requests_for
from harpagon.model.plan import AppPlan, ModulePlan, Plan, TuplePlan, check_plan
from harpagon.planner.harpagon import plan
from harpagon.sim import simulate
from harpagon.sim.simulator import arrival_times

ROWS = [[1, 5.0], [4, 8.0], [8, 12.0]]  # d(1) = 5, d(4) = 8, d(8) = 12 ms; T(4) = 500/s, T(8) = 666.7/s


def workload(rate: float, slo: float = 1000.0, modules=None) -> Workload:
    return Workload.model_validate({
        "hardware": [{"name": "g", "price_per_hour": 1.0}],
        "profiles": [{"model": "m", "hardware": "g", "batches": ROWS}],
        "apps": [{"name": "a", "rate": rate, "slo_ms": slo, "modules": modules or [{"name": "x", "model": "m"}]}],
    })


def one_tuple_plan(w: Workload, batch: int, workers: int, dummy: float = 0.0, dispatch="batch-aware",
                   overhead: float = 0.0) -> Plan:
    app = w.apps[0]
    d = dict((r[0], r[1]) for r in ROWS)[batch]
    rate = app.rate
    if dispatch == "batch-aware":
        lat = batch_aware_latency(batch, d, rate + dummy, overhead)
    else:
        lat = request_level_latency(batch, d, workers, rate + dummy, overhead)
    t = TuplePlan("g", batch, workers, rate, dummy, lat)
    ap = AppPlan(app.name, rate, app.slo_ms, lat, (ModulePlan("x", "m", rate, lat, lat, (t,)),))
    return Plan.build("hand", dispatch, Settings(overhead_ms=overhead), (ap,), (), w)


def test_arrivals_and_request_counts():
    import random

    assert arrival_times(200.0, 3, "constant", random.Random(0)) == [0.0, 5.0, 10.0]
    gaps = arrival_times(100.0, 20001, "poisson", random.Random(1))
    assert (gaps[-1] - gaps[0]) / 20000 == pytest.approx(10.0, rel=0.03)  # mean gap 1/λ
    assert [requests_for(f, 1.5) for f in range(4)] == [1, 2, 1, 2]
    assert sum(requests_for(f, 0.3) for f in range(100)) == 30


def test_unloaded_batch_one_worker_takes_exactly_d_plus_overhead():
    w = workload(100.0)
    p = one_tuple_plan(w, 1, 1, overhead=2.0)
    r = simulate(p, w, duration_s=5).app("a")
    assert r.frames == 500
    assert r.p50_ms == pytest.approx(7.0) and r.max_ms == pytest.approx(7.0) and r.over_slo == 0.0


def test_saturated_worker_with_constant_arrivals_never_queues():
    """r = T(4) = 500/s on one worker: each batch collects in 3/500 s and runs 8 ms, back to back."""
    w = workload(500.0)
    p = one_tuple_plan(w, 4, 1)
    assert check_plan(p, w) == []
    r = simulate(p, w, duration_s=4).app("a")
    (m,) = r.modules
    assert m.batches == 500 and m.dummies == 0
    assert r.max_ms == pytest.approx(6.0 + 8.0)  # ℓ = 1000·3/500 + 8
    # frames wait 6, 4, 2, 0 ms for their batch: P50 is between
    assert r.p50_ms == pytest.approx(11.0, abs=1.0)


def test_overloaded_worker_queues_without_bound():
    w = workload(600.0)  # 600/s against T(4) = 500/s
    p = one_tuple_plan(w, 4, 1)
    assert any("over capacity" in x for x in check_plan(p, w))
    short, long = (simulate(p, w, duration_s=s).app("a").max_ms for s in (1, 4))
    assert long > 3 * short > 100


def test_request_level_collects_n_times_slower_than_batch_aware():
    w = workload(1000.0)
    for dispatch, expected in (("batch-aware", 7.0 + 12.0), ("request-level", 14.0 + 12.0)):
        p = one_tuple_plan(w, 8, 2, dispatch=dispatch)
        r = simulate(p, w, duration_s=2).app("a")
        assert r.max_ms == pytest.approx(expected), dispatch
        assert p.apps[0].predicted_latency_ms == pytest.approx(expected)


def test_timer_pads_batches_with_the_planned_dummies():
    """r = 100/s with δ = 100/s at b = 8: flush after 35 ms, with 1 + floor(3.5) = 4 real requests."""
    w = workload(100.0)
    p = one_tuple_plan(w, 8, 1, dummy=100.0)
    r = simulate(p, w, duration_s=4).app("a")
    (m,) = r.modules
    assert m.batches == 100 and m.dummies == 400
    assert r.max_ms == pytest.approx(35.0 + 12.0)


def test_a_chain_adds_module_latencies_and_hops():
    w = workload(50.0, modules=[{"name": "x", "model": "m"}, {"name": "y", "model": "m", "after": ["x"]}])
    p = plan(w, Settings(overhead_ms=1.0))
    r = simulate(p, w, duration_s=2).app("a")
    assert r.max_ms <= p.apps[0].predicted_latency_ms + 1e-6
    assert r.max_ms == pytest.approx(sum(m.max_ms for m in r.modules))


def test_poisson_arrivals_at_full_utilisation_break_the_promise():
    w = workload(500.0)
    p = one_tuple_plan(w, 4, 1)
    r = simulate(p, w, "poisson", duration_s=4, seed=3).app("a")
    assert r.max_ms > p.apps[0].predicted_latency_ms
