"""The baseline planners on hand-checked cases (ResNet-50 FP32 on V100 and T4, REFERENCES §2.2-2.3)."""

from __future__ import annotations

import pytest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import Plan, check_plan
from harpagon.planner.baselines import clipper, inferline, nexus, scrooge
from harpagon.sim import simulate
from tests.conftest import BASE

V100 = {"name": "v100", "price_per_hour": 3.06}
T4 = {"name": "t4", "price_per_hour": 0.526}
RESNET_V100, RESNET_T4 = BASE["profiles"][0], BASE["profiles"][1]


def workload(apps, hardware=(V100,), profiles=(RESNET_V100,)) -> Workload:
    return Workload.model_validate({"hardware": list(hardware), "profiles": list(profiles), "apps": apps})


def app(name, rate, slo, modules=None):
    return {"name": name, "rate": rate, "slo_ms": slo, "modules": modules or [{"name": "m", "model": "resnet50"}]}


def tuples(p: Plan, app_name: str = "a", module: str = "m"):
    return p.app(app_name).module(module).tuples


def test_nexus_saturates_at_the_half_latency_batch_and_packs_the_residual():
    """3000/s within 50 ms: 2 GPUs at b=32 (2·23.13 ≤ 50 < 2·31.29), the 233/s residual at b=8 (38.3 ms)."""
    w = workload([app("a", 3000, 50)])
    p = nexus.plan(w)
    assert check_plan(p, w) == []
    sat, residual = tuples(p)
    assert (sat.batch, sat.workers, sat.gpu) == (32, 2, None)
    assert sat.rate == pytest.approx(2 * 32000 / 23.13)
    assert residual.gpu is not None and residual.rate == pytest.approx(3000 - 2 * 32000 / 23.13)
    # duty cycle min(50 - d(8), 1000·8/233) = 34.3 ms holds 8 requests: batch 8
    assert residual.batch == 8 and residual.cycle_ms == pytest.approx(34.336, abs=0.01)
    assert p.cost_per_hour == pytest.approx(3 * 3.06)
    assert p.dispatch == "request-level"


def test_nexus_packs_small_sessions_of_different_apps_on_one_gpu():
    w = workload([app("a", 10, 100), app("b", 20, 100)])
    p = nexus.plan(w)
    assert check_plan(p, w) == []
    (ta,), (tb,) = tuples(p, "a"), tuples(p, "b")
    assert ta.gpu == tb.gpu and ta.cycle_ms == tb.cycle_ms
    assert p.cost_per_hour == pytest.approx(3.06)  # one shared GPU, paid once
    r = simulate(p, w, duration_s=5)
    assert r.app("a").frames == 50 and r.app("b").frames == 100


def test_nexus_splits_a_chain_by_its_dynamic_program():
    modules = [{"name": "x", "model": "resnet50"}, {"name": "y", "model": "resnet50", "after": ["x"], "scale": 3}]
    w = workload([app("a", 1000, 100, modules)])
    p = nexus.plan(w)
    assert check_plan(p, w) == []
    x, y = (p.app("a").module(n) for n in ("x", "y"))
    assert x.budget_ms + y.budget_ms <= 100 + 1e-9
    assert y.budget_ms > x.budget_ms  # the busier module gets the larger share


def test_clipper_splits_evenly_ignores_collection_and_reports_the_violation():
    """SLO 40 over 2 modules: 20 ms each; the largest batch with d ≤ 20 is 16 (13.05 ms), one worker at
    1000/s, but collecting 16 at 1000/s takes 15 ms more: 28.05 ms > 20."""
    modules = [{"name": "x", "model": "resnet50"}, {"name": "m", "model": "resnet50", "after": ["x"]}]
    w = workload([app("a", 1000, 40, modules)])
    p = clipper.plan(w)
    (t,) = tuples(p)
    assert (t.batch, t.workers) == (16, 1)
    assert p.app("a").module("m").budget_ms == pytest.approx(20)
    assert t.latency_ms == pytest.approx(28.05)
    problems = check_plan(p, w)
    assert any("over the module budget" in x for x in problems)
    assert any("over the SLO" in x for x in problems)


def test_clipper_uses_one_hardware_kind_per_app():
    w = workload([app("a", 300, 100)], hardware=(V100, T4), profiles=(RESNET_V100, RESNET_T4))
    p = clipper.plan(w)
    assert {t.hardware for m in p.apps[0].modules for t in m.tuples} == {"t4"}


def test_scrooge_program_picks_the_cheapest_feasible_batch_then_packs_the_partial_worker():
    """3000/s, SLO 50: with ceil(λ/T) workers, b=32 needs 3 (54.1 ms, too slow), b=16 needs 3 (28.05 ms,
    $7.49/h fractional), b=8 needs 4 ($9.50/h): b=16. Then 2 full workers and one partial (548/s)."""
    w = workload([app("a", 3000, 50)])
    chosen = scrooge.solve(w.apps[0], w, Settings())
    assert chosen["m"][0].batch == 16 and chosen["m"][1] == pytest.approx(28.05)
    p = scrooge.plan(w)
    assert check_plan(p, w) == []
    full, partial = tuples(p)
    assert (full.batch, full.workers, full.gpu) == (16, 2, None)
    assert partial.gpu is not None and partial.cycle_ms == pytest.approx(15.0)
    assert p.cost_per_hour == pytest.approx(3 * 3.06)


def test_scrooge_respects_the_dag_latency_constraints():
    modules = [{"name": "x", "model": "resnet50"}, {"name": "m", "model": "resnet50", "after": ["x"]}]
    w = workload([app("a", 2000, 30, modules)])
    chosen = scrooge.solve(w.apps[0], w, Settings())
    assert chosen["x"][1] + chosen["m"][1] <= 30 + 1e-6


def test_inferline_downgrades_batches_up_and_removes_replicas():
    """300/s within 50 ms: starts at b=1 on the V100 (the fastest), downgrades to 2 T4s (284/s each),
    raises the batch to 2 (384/s), drops to one T4 ($0.526/h), then raises the batch again while it
    stays feasible (cost-neutral): b=4, ℓ = 1000·3/300 + 9.37 = 19.37 ms."""
    w = workload([app("a", 300, 50)], hardware=(V100, T4), profiles=(RESNET_V100, RESNET_T4))
    p = inferline.plan(w)
    assert check_plan(p, w) == []
    (t,) = tuples(p)
    assert (t.hardware, t.batch, t.workers) == ("t4", 4, 1)
    assert t.latency_ms == pytest.approx(3000 / 300 + 9.37)
    assert p.cost_per_hour == pytest.approx(0.526)


def test_inferline_refuses_an_slo_below_the_batch_one_path():
    w = workload([app("a", 300, 2)])
    p = inferline.plan(w)
    assert not p.apps and p.refused[0].app == "a"
