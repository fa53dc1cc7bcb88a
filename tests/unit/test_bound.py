"""The lower bound on any plan's cost: hand-checked cases, and below every planner's plan."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from harpagon.config import load_workload
from harpagon.config.schema import App, Hardware, Module, Profile, Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import Plan, check_plan
from harpagon.planner.bound import app_bound, bound, lower_bound
from harpagon.planner.registry import OPTIMUM, PLANNERS
from tests.strategies import settings as random_settings
from tests.strategies import workloads

ROOT = Path(__file__).resolve().parents[2]
FLUID = Settings(arrivals="fluid")


def one_module(rate: float, slo_ms: float) -> Workload:
    """Per request ($/h per request/s at u = 1): small b1 1/100 = 0.01, small b4 1/200 = 0.005 (20 ms),
    big b1 2.5/250 = 0.01, big b4 2.5/400 = 0.00625 (10 ms)."""
    return Workload(
        hardware=(Hardware(name="small", price_per_hour=1.0), Hardware(name="big", price_per_hour=2.5)),
        profiles=(Profile(model="m", hardware="small", batches=[[1, 10.0], [4, 20.0]]),
                  Profile(model="m", hardware="big", batches=[[1, 4.0], [4, 10.0]])),
        apps=(App(name="a", rate=rate, slo_ms=slo_ms, modules=(Module(name="x", model="m"),)),),
    )


def test_one_module_costs_its_cheapest_option_per_request():
    assert lower_bound(one_module(100.0, 30.0), FLUID) == pytest.approx(100 * 0.005)
    # Half the allowed load: twice the price per request.
    assert lower_bound(one_module(100.0, 30.0), Settings(max_utilization=0.5)) == pytest.approx(100 * 0.01)
    b = bound(one_module(100.0, 30.0), FLUID)
    m = b.apps[0].modules[0]
    assert (m.option.hardware, m.option.batch, m.latency_ms) == ("small", 4, 20.0) and b.apps[0].exact


def test_an_option_too_slow_for_the_slo_is_excluded():
    # Small b4 takes 20 ms > 15: big b4 (10 ms) is the cheapest left.
    assert lower_bound(one_module(100.0, 15.0), FLUID) == pytest.approx(100 * 0.00625)
    # With 6 ms overhead per hop, big b4 takes 16 > 15 and small b1 16 > 15: only big b1 (10 ms) fits.
    assert lower_bound(one_module(100.0, 15.0), Settings(overhead_ms=6.0)) == pytest.approx(100 * 0.01)
    # Nothing fits: every planner refuses, the bound is infinite.
    assert lower_bound(one_module(100.0, 3.0), FLUID) == math.inf


def chain(rates: tuple[float, float], slo_ms: float) -> App:
    return App(name="c", rate=1.0, slo_ms=slo_ms, modules=(
        Module(name="first", model="m", scale=rates[0]), Module(name="second", model="m", after=("first",),
                                                                   scale=rates[1])))


def test_the_path_rule_lets_only_one_module_of_a_chain_take_the_slow_option():
    w = one_module(1.0, 30.0)
    # SLO 30: each module alone may take small b4 (20 ms, 0.005), but not both (40 > 30); the other
    # takes the best of what fits in the 10 ms left (big b4, 0.00625). The busier module gets the cheap one.
    app = chain((100.0, 300.0), 30.0)
    w = w.model_copy(update={"apps": (app,)})
    b = app_bound(app, w, FLUID)
    assert b.exact
    assert b.single == pytest.approx(400 * 0.005)
    assert b.cost == pytest.approx(300 * 0.005 + 100 * 0.00625)
    assert {m.module: m.option.batch for m in b.modules} == {"first": 4, "second": 4}
    assert {m.module: m.option.hardware for m in b.modules} == {"first": "big", "second": "small"}
    # An SLO of 40 lets both take it: the two rules agree.
    loose = app_bound(chain((100.0, 300.0), 40.0), w, FLUID)
    assert loose.cost == pytest.approx(loose.single) == pytest.approx(400 * 0.005)
    # Under 8 ms (the fastest path) nothing fits.
    assert app_bound(chain((100.0, 300.0), 7.0), w, FLUID).cost == math.inf


def _at_least_bound(p: Plan, w: Workload, s: Settings) -> None:
    if check_plan(p, w):  # the bound is about plans that meet the model (Clipper's may not)
        return
    served = {a.name for a in p.apps}
    floor = sum(a.cost for a in bound(w, s).apps if a.app in served)
    assert p.cost_per_hour >= floor * (1 - 1e-9), (p.planner, p.cost_per_hour, floor)


def _every_planner(w: Workload, s: Settings) -> None:
    for planner in PLANNERS.values():
        _at_least_bound(planner(w, s), w, s)
    _at_least_bound(OPTIMUM(w, s), w, s)


def example_configs() -> list[Path]:
    return sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", example_configs(), ids=lambda p: p.stem)
def test_every_planner_costs_at_least_the_bound_on_the_example_configs(path):
    w = load_workload([path])
    s = FLUID
    assert math.isfinite(lower_bound(w, s))
    _every_planner(w, s)


@pytest.mark.slow
@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(workloads(max_modules=3, max_apps=3), workloads(max_modules=3, max_apps=3, counts=True)),
       random_settings)
def test_every_planner_costs_at_least_the_bound_on_random_workloads(w, s):
    _every_planner(w, s)
    b = bound(w, s)
    assert b.single <= b.cost * (1 + 1e-12)
