"""Dispatch state machines with a fake clock (plain numbers in ms)."""

from __future__ import annotations

from collections import Counter

import pytest

from harpagon.dispatch import BatchCollector, ModuleDispatcher, SmoothWRR, TupleSpec


def test_smooth_wrr_matches_shares_and_spreads_picks():
    wrr = SmoothWRR([5, 1, 1])
    picks = [wrr.next() for _ in range(70)]
    assert Counter(picks) == {0: 50, 1: 10, 2: 10}
    assert picks[:7].count(0) == 5 and picks[:7].count(1) == 1  # every window of 7 holds the exact shares
    # within one of the exact share over every prefix
    wrr = SmoothWRR([189.7, 50.3])
    seen = [0, 0]
    for i in range(1, 2001):
        seen[wrr.next()] += 1
        assert abs(seen[0] - i * 189.7 / 240) <= 1.0


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_smooth_wrr_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        SmoothWRR(weights)


def test_collector_ships_full_batches_round_robin():
    c = BatchCollector(size=3, wait_ms=100.0, workers=2)
    shipped = [b for t in range(9) if (b := c.add(t, float(t))) is not None]
    assert [b.items for b in shipped] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert [b.worker for b in shipped] == [0, 1, 0]
    assert all(b.reason == "full" and b.dummies == 0 for b in shipped)


def test_collector_timer_pads_with_dummies_after_the_oldest_waited():
    c = BatchCollector(size=8, wait_ms=10.0)
    assert c.add("a", 0.0) is None
    assert c.add("b", 4.0) is None
    assert c.deadline() == 10.0  # from the oldest request, not the newest
    assert c.poll(9.99) is None
    batch = c.poll(10.0)
    assert batch.items == ["a", "b"] and batch.dummies == 6 and batch.reason == "timer"
    assert c.deadline() is None and c.poll(50.0) is None


def test_collector_without_timer_waits_for_a_full_batch():
    c = BatchCollector(size=2, wait_ms=float("inf"))
    c.add(1, 0.0)
    assert c.deadline() is None and c.poll(1e9) is None
    assert c.add(2, 1e9).items == [1, 2]


def test_collector_flush_ships_what_is_open():
    c = BatchCollector(size=4, wait_ms=5.0)
    assert c.flush(0.0) is None
    c.add("x", 1.0)
    assert c.flush(2.0).items == ["x"]


def test_module_dispatcher_batch_aware_fills_one_batch_at_the_full_rate():
    """Two workers at b=4: a batch-aware tuple fills one batch from the whole stream."""
    d = ModuleDispatcher([TupleSpec(batch=4, workers=2, rate=400.0)], "batch-aware")
    shipped = [s for i in range(8) for s in d.add(i, i * 2.5)]
    assert [(s.worker, s.batch.items) for s in shipped] == [(0, [0, 1, 2, 3]), (1, [4, 5, 6, 7])]
    assert shipped[0].batch.shipped_ms == 7.5  # (b - 1) / r = 3 / 400 s


def test_module_dispatcher_request_level_collects_per_worker():
    d = ModuleDispatcher([TupleSpec(batch=4, workers=2, rate=400.0)], "request-level")
    shipped = [s for i in range(8) for s in d.add(i, i * 2.5)]
    assert [(s.worker, s.batch.items) for s in shipped] == [(0, [0, 2, 4, 6]), (1, [1, 3, 5, 7])]
    assert shipped[0].batch.shipped_ms == 15.0  # each worker collects at r / n


def test_module_dispatcher_splits_between_tuples_by_planned_share():
    d = ModuleDispatcher([TupleSpec(1, 3, 300.0), TupleSpec(1, 1, 100.0)])
    shipped = [s for i in range(400) for s in d.add(i, float(i))]
    assert Counter(s.tuple_index for s in shipped) == {0: 300, 1: 100}


def test_module_dispatcher_timer_uses_the_planned_dummy_rate():
    # r = 100/s, δ = 100/s, b = 5: the batch may collect for 1000 * 4 / 200 = 20 ms
    d = ModuleDispatcher([TupleSpec(batch=5, workers=1, rate=100.0, dummy_rate=100.0)])
    assert d.add("a", 0.0) == [] and d.add("b", 10.0) == []
    assert d.deadline() == 20.0
    (s,) = d.poll(20.0)
    assert s.batch.items == ["a", "b"] and s.batch.dummies == 3
