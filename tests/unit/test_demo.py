"""The demo's frame schedule and its verdict against the plan's promise (no servers)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from harpagon.model.latency import Settings
from harpagon.model.plan import Promise, Replayed
from harpagon.planner.harpagon import plan
from harpagon.runtime.demo import AppLoad, send_times, verdict
from harpagon.runtime.promise import predicted, target
from tests.unit.test_controller import W


def test_poisson_schedule_is_seeded_with_mean_gap_one_over_the_rate():
    rate, seconds = 40.0, 500.0
    times = send_times(rate, seconds, "poisson", np.random.default_rng([7, 0]))
    again = send_times(rate, seconds, "poisson", np.random.default_rng([7, 0]))
    other = send_times(rate, seconds, "poisson", np.random.default_rng([8, 0]))
    assert np.array_equal(times, again) and not np.array_equal(times[:100], other[:100])
    gaps = np.diff(np.concatenate([[0.0], times]))
    assert (gaps > 0).all() and times[-1] < seconds
    n = rate * seconds  # 20,000 frames: the mean gap is within 3% of 1/rate well beyond 4 sigma
    assert len(times) == pytest.approx(n, rel=4 / np.sqrt(n))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.03)
    assert gaps.std() == pytest.approx(1 / rate, rel=0.05)  # exponential: std = mean (evenly spaced: 0)
    assert np.mean(gaps < 0.5 / rate) == pytest.approx(1 - np.exp(-0.5), abs=0.02)


def test_constant_schedule_is_evenly_spaced_from_zero():
    times = send_times(30.0, 2.0, "constant", np.random.default_rng(0))
    assert len(times) == 60 and times[0] == 0 and np.allclose(np.diff(times), 1 / 30)


def test_verdict_judges_attainment_against_the_promise_for_the_arrivals_sent():
    replayed = Replayed(10_000, 0, 0.995, True, (("cam", 0.995),))
    p = replace(plan(W, Settings(arrivals="fluid")), promise=Promise("poisson", 0.99, replayed))
    ld = AppLoad("cam", 300, 200, sent=1000, answered=998, within_slo=993, dropped=2)
    assert ld.attainment == pytest.approx(0.993)  # dropped frames are late, as in the replay
    line = verdict(ld, p, "poisson")
    assert line.startswith("cam: 99.3% within the 200 ms SLO (993 of 1000 frames); promise ≥ 99% (Poisson), "
                           "replay predicted 99.5%: ")
    assert line.endswith("kept[/green]")
    assert verdict(ld, p, "constant").endswith("missed[/red]")  # constant arrivals: every frame is promised
    assert "promise 100% (constant)" in verdict(ld, p, "constant")
    assert target(p.promise, "constant") == 1.0 and predicted(p.promise, "constant", "cam") == 1.0
    fluid = replace(p, promise=Promise("fluid", 0.99))
    assert "makes no promise for Poisson arrivals (it is made for the fluid promise)" in verdict(ld, fluid, "poisson")
    constant_only = replace(p, promise=Promise("constant", 0.99, replayed))
    assert target(constant_only.promise, "poisson") is None and target(constant_only.promise, "constant") == 1.0
    almost = AppLoad("cam", 300, 200, sent=10_000, answered=10_000, within_slo=9_999)
    assert verdict(almost, p, "constant").startswith("cam: 99.9% within")  # never rounded up to 100%
