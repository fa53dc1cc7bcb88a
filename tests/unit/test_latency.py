"""docs/model.md's formulas against values computed by hand."""

import math

import pytest

from harpagon.model.latency import (
    Settings,
    batch_aware_latency,
    capacity,
    dummy_rate,
    effective_latency,
    group_threshold,
    min_workers,
    request_level_latency,
    throughput,
    tuple_latency,
    within,
)

# ResNet-50 FP32 on V100 (REFERENCES §2.2): d(48) = 31.29 ms, d(16) = 13.05 ms.
D48, D16 = 31.29, 13.05


def test_effective_latency_adds_std_then_scales():
    assert effective_latency(2.0, 0.5, 1.2) == pytest.approx(3.0)
    assert effective_latency(2.68, 0.0, 1.0) == 2.68


def test_throughput_is_batch_per_batch_latency():
    assert throughput(48, D48) == pytest.approx(48000 / 31.29)  # 1534.04 req/s
    assert throughput(1, 2.68) == pytest.approx(373.134, rel=1e-5)


def test_batch_aware_latency_worked_example():
    # λ = 3000/s on 2 workers at b = 48: 1000·47/3000 + 31.29 = 46.9567 ms (REFERENCES, worked example)
    assert batch_aware_latency(48, D48, 3000, 0.0) == pytest.approx(46.956667, rel=1e-6)
    assert 3000 <= capacity(2, 48, D48, 1.0)
    assert batch_aware_latency(48, D48, 3000, 2.5) == pytest.approx(49.456667, rel=1e-6)


def test_request_level_latency_worked_example():
    # b = 16 on 3 workers: each collects at 1000/s, 1000·15·3/3000 + 13.05 = 28.05 ms
    assert request_level_latency(16, D16, 3, 3000, 0.0) == pytest.approx(28.05)
    # b = 32 on 2 workers would be 1000·31·2/3000 + 23.13 = 43.8 ms, b=32 on 3: 54.13 ms
    assert request_level_latency(32, 23.13, 3, 3000, 0.0) == pytest.approx(54.13)


def test_batch_one_has_no_collection_time():
    assert batch_aware_latency(1, 2.68, 10.0, 1.0) == pytest.approx(3.68)
    assert request_level_latency(1, 2.68, 5, 10.0, 1.0) == pytest.approx(3.68)


def test_tuple_latency_dispatches_on_policy():
    assert tuple_latency("batch-aware", 16, D16, 3, 2000, 1000, 0.0) == pytest.approx(18.05)
    assert tuple_latency("request-level", 16, D16, 3, 2000, 1000, 0.0) == pytest.approx(28.05)


def test_dummy_rate_is_least_that_meets_budget():
    # b = 8, d = 8.28, r = 100/s, B = 50 ms: needs 1000·7/41.72 = 167.785/s in all, so δ = 67.785/s
    delta = dummy_rate(8, 8.28, 100, 50, 0.0)
    assert delta == pytest.approx(1000 * 7 / 41.72 - 100)
    assert batch_aware_latency(8, 8.28, 100 + delta, 0.0) == pytest.approx(50)
    assert dummy_rate(8, 8.28, 500, 50, 0.0) == 0.0  # real load alone fills batches in time
    assert dummy_rate(8, 8.28, 100, 8.28, 0.0) == math.inf  # no room left to collect
    assert dummy_rate(1, 8.28, 100, 9.0, 0.0) == 0.0
    assert dummy_rate(1, 8.28, 100, 8.0, 0.0) == math.inf


def test_group_threshold_and_min_workers_agree():
    # 2 workers at b = 48: 1000·47 / (2·1534.036) + 31.29 = 46.609 ms
    assert group_threshold(48, D48, 2, 1.0, 0.0) == pytest.approx(47000 / (2 * 48000 / 31.29) + 31.29)
    assert min_workers(48, D48, 1.0, 50.0, 0.0) == 2  # need 1.64 workers' worth of collection rate
    assert min_workers(48, D48, 1.0, 46.0, 0.0) == 3
    assert min_workers(48, D48, 1.0, 31.29, 0.0) is None
    assert min_workers(1, 2.68, 1.0, 2.68, 0.0) == 1
    assert min_workers(1, 2.68, 1.0, 2.6, 0.0) is None
    for n in (1, 2, 5):
        t = group_threshold(16, D16, n, 0.8, 1.0)
        assert min_workers(16, D16, 0.8, t, 1.0) <= n
        assert min_workers(16, D16, 0.8, t * 0.999, 1.0) > n


def test_max_utilization_scales_capacity():
    assert capacity(3, 16, D16, 0.5) == pytest.approx(1.5 * 16000 / D16)


def test_within_is_relative():
    assert within(100.00005, 100.0)
    assert not within(100.001, 100.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"safety": 0.9}, "safety must be >= 1, got 0.9"),
        ({"overhead_ms": -1.0}, "overhead_ms must be >= 0, got -1.0"),
        ({"max_utilization": 0.0}, "max_utilization must be in (0, 1], got 0.0"),
        ({"max_utilization": 1.5}, "max_utilization must be in (0, 1], got 1.5"),
        ({"safety": math.nan}, "safety must be >= 1, got nan"),
    ],
)
def test_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**kwargs)
