"""The Poisson batch fill and the steady-state screen against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harpagon.model.latency import Settings
from harpagon.model.plan import AppPlan, ModulePlan, Plan, TuplePlan
from harpagon.planner.queueing import Arrival, evaluate, expected_fill, expected_loads, overloaded
from harpagon.sim import simulate
from tests.unit.test_replay import workload


@pytest.mark.parametrize("m", [0.0, 0.3, 1.0, 4.5])
def test_expected_fill_of_small_batches_by_hand(m):
    e = math.exp(-m)
    assert expected_fill(1, m) == pytest.approx(1.0)
    assert expected_fill(2, m) == pytest.approx(2 - e)  # 1 + P(N ≥ 1)
    assert expected_fill(3, m) == pytest.approx(3 - 2 * e - m * e)  # 1 + P(N ≥ 1) + P(N ≥ 2)
    # clumps of 2: N' ~ Poisson(m / 2); k = min(4, 2 (1 + N')) = 2 or 4
    assert expected_fill(4, m, clump=2) == pytest.approx(2 + 2 * (1 - math.exp(-m / 2)))


def test_expected_fill_is_the_exact_sum_and_broadcasts():
    b, m = 32, 31.0
    pmf = [math.exp(-m)]
    for j in range(1, 200):
        pmf.append(pmf[-1] * m / j)
    exact = sum(min(b, 1 + j) * p for j, p in enumerate(pmf))
    assert expected_fill(b, m) == pytest.approx(exact, rel=1e-12)
    assert exact == pytest.approx(29.785, abs=1e-3)  # not 31: the timer ships batches short
    got = expected_fill(np.array([1, 2, 32]), np.array([5.0, 0.0, 31.0]))
    assert got.tolist() == pytest.approx([1.0, 1.0, exact])


def test_the_poisson_model_counts_the_expected_fill():
    """City's products-1 tuple: 7 workers at b = 32, d = 21.1 ms, τ = 3.1 ms, 10,000 requests/s. Its
    even-stream count is 32 (load 94%); its Poisson fill 29.8 (load 101%): infeasible."""
    a = Arrival(poisson=True, epsilon=0.005)
    lat, _ = evaluate(np.float64(32), 21.1, 7, 10_000.0, np.float64(3.1), a, 1.0, 0.0, split=False)
    assert math.isinf(lat)
    even = Arrival(poisson=False, smooth=True)
    lat, _ = evaluate(np.float64(32), 21.1, 7, 10_000.0, np.float64(3.1), even, 1.0, 0.0, split=False)
    assert lat == pytest.approx(3.1 + 21.1)


def one_tuple(rate: float, batch: int, workers: int) -> tuple[Plan, object]:
    w = workload(rate, [{"name": "x", "model": "m"}])
    d = {1: 5.0, 2: 6.0, 4: 8.0}[batch]
    tau = 1000.0 * (batch - 1) / rate
    t = TuplePlan("g", batch, workers, rate, 0.0, tau + d)
    ap = AppPlan("a0", rate, 1000.0, tau + d, (ModulePlan("x", "m", rate, tau + d, tau + d, (t,)),))
    return Plan.build("hand", "batch-aware", Settings(), (ap,), (), w), w


def test_the_screen_rejects_what_the_steady_state_replay_overloads():
    """b = 4, d(4) = 8 ms, one worker at 480 requests/s: an even stream fills every batch (load 96%);
    Poisson batches hold 3.33 on average (load 115%), so the queue grows for as long as it runs."""
    p, w = one_tuple(480.0, 4, 1)
    (load, apps), = expected_loads(p, w, poisson=True).values()
    assert load == pytest.approx(480 / float(expected_fill(4, 480 * 6.25 / 1000)) * 8 / 1000) and apps == {"a0"}
    assert load > 1.0 and "a0/x[0] expected at 115.4% load" in overloaded(p, w, poisson=True)["a0"]
    assert overloaded(p, w, poisson=False) == {}
    short, long = (simulate(p, w, "poisson", frames=1000, seconds=s, seed=3).app("a0") for s in (0, 60))
    assert long.p99_ms > 10 * short.p99_ms  # the queue of a load over 1 keeps growing
    p, w = one_tuple(300.0, 4, 1)
    assert overloaded(p, w, poisson=True) == {}
