"""The elastic benchmark's pure parts: the day's curve and arrivals, and the figures and goals drawn
from a run's samples and frames (tests/integration/test_fleet.py runs the loop itself)."""

from __future__ import annotations

import numpy as np
import pytest

from harpagon.bench.elastic.day import Day, day_arrivals
from harpagon.bench.elastic.report import markdown
from harpagon.bench.elastic.results import (
    ElasticResult,
    Sample,
    fates,
    integrate,
    minute_rows,
    rises,
    summary,
)
from harpagon.bench.live.load import DROPPED, FAILED, NO_REPLY, OK


def test_the_day_runs_from_its_low_to_one_and_back():
    day = Day(600.0, 0.25)
    assert day.factor(0.0) == pytest.approx(0.25) and day.factor(300.0) == pytest.approx(1.0)
    assert day.factor(600.0) == pytest.approx(0.25) and day.factor(150.0) == pytest.approx(0.625)


def test_arrivals_follow_the_curve_after_a_warm_up_at_the_night_rate():
    day = Day(600.0, 0.25)
    t = day_arrivals(200.0, day, 60.0, np.random.default_rng(1))
    assert np.all(np.diff(t) >= 0)
    assert np.sum(t < 60.0) / 60.0 == pytest.approx(50.0, rel=0.1)  # the night: a quarter of 200
    noon = (t >= 60 + 270) & (t < 60 + 330)
    assert noon.sum() / 60.0 == pytest.approx(200.0 * float(np.mean(day.factor(np.arange(270, 330)))), rel=0.05)
    assert len(t) / 660.0 == pytest.approx((60 * 50 + 600 * 125) / 660.0, rel=0.03)  # mean factor 0.625


def sample(t: float, desired: int, started: int, plan_workers: int, planned: int, price: float = 1.0) -> Sample:
    return Sample(t, desired, started, started, planned, plan_workers, planned * price, started * price, 0.0)


def result(samples: list[Sample], frames: dict) -> ElasticResult:
    return ElasticResult("x.yaml", Day(120.0), 10.0, 100.0, {"cam": 100.0}, 0.99, samples, frames, [],
                         peak_cost=4.0, peak_workers=4, price=1.0, spare=1, command="harpagon bench elastic",
                         wall_s=1.0)


def test_costs_integrate_the_sampled_steps_and_rises_time_their_capacity():
    samples = [sample(-5.0, 2, 2, 2, 1), sample(0.0, 2, 2, 2, 1), sample(30.0, 4, 3, 2, 1),
               sample(33.0, 4, 4, 4, 3), sample(90.0, 2, 2, 4, 1), sample(120.0, 2, 2, 2, 1)]
    # allocated: 2 over [0, 30), 3 over [30, 33), 4 over [33, 90), 2 over [90, 120) worker-seconds
    assert integrate(samples, "allocated_cost", 0.0, 120.0) == pytest.approx((60 + 9 + 228 + 60) / 3600)
    assert integrate(samples, "allocated_cost", -5.0, 0.0) == pytest.approx(10 / 3600)  # the warm-up apart
    [rise] = rises(samples)
    assert (rise.at, rise.desired, rise.serving_at) == (30.0, 4, 33.0)


def test_frames_are_counted_by_fate_and_minutes_flag_their_scale_up_windows():
    times = np.array([-1.0, 1.0, 2.0, 3.0, 4.0, 61.0, 62.0])
    status = np.array([OK, OK, OK, FAILED, DROPPED, OK, NO_REPLY])
    latency = np.array([5.0, 50.0, 150.0, np.nan, np.nan, 20.0, np.nan])
    samples = [sample(0.0, 2, 2, 2, 1), sample(30.0, 4, 3, 2, 1), sample(33.0, 4, 4, 4, 3), sample(120.0, 4, 4, 4, 3)]
    r = result(samples, {"cam": {"times": times, "status": status, "latency_ms": latency}})
    assert fates(r) == {"cam": {"sent": 6, "within": 2, "late": 1, "failed": 1, "deadline": 1, "lost": 1}}
    rows = minute_rows(r)
    assert [(x["minute"], x["frames"], x["scale_up"]) for x in rows] == [(1, 4, True), (2, 2, False)]
    assert rows[0]["attainment"] == pytest.approx(1 / 4) and rows[1]["attainment"] == pytest.approx(1 / 2)
    s = summary(r)
    assert s["lost"] == 1 and s["max_delay"] == pytest.approx(3.0) and not s["minutes_kept"]
    text = markdown(r, "elastic.png")
    assert "| 0 frames lost (no answer and no status) | 1 | **no** |" in text
    assert "EMULATED" in text and "![rate, workers and cost over the day](elastic.png)" in text
