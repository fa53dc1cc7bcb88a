"""The drift watchers as pure policies: reports in, a decision out, on a clock the test holds."""

from __future__ import annotations

import pytest

from harpagon.runtime.controller.watches import (
    MIN_EPOCH_S,
    MIN_FANOUT_FRAMES,
    MIN_RATE_FRACTION,
    RATE_HOLD_S,
    FanoutWatch,
    RateWatch,
)


def test_a_rate_watch_decides_and_keeps_its_own_state():
    w = RateWatch({"cam": 40.0, "door": 5.0})
    w.in_force(0.0)
    move = None
    for t in range(1, 40):  # cam at a tenth of its rate, door as configured
        w.observe(float(t), "f1", {"cam": 4.0, "door": 5.0}, 1.0)
        move = move or w.judge(float(t))
    assert move is not None and set(move.moved) == {"cam"} and move.idle == ()
    assert move.moved["cam"] == pytest.approx(MIN_RATE_FRACTION * 40.0)  # the floor, not 4
    assert w.rate("cam") == 40.0  # nothing planned until adopted
    w.adopt(move)
    assert w.rate("cam") == pytest.approx(10.0) and w.rate("door") == 5.0


def test_a_fanout_watch_reports_measured_scales_and_moves_only_when_judging():
    w = FanoutWatch({("cam", "c"): 1.0})
    w.in_force(0.0)
    for t in range(1, int(MIN_EPOCH_S)):
        w.observe(float(t), "f1", {("cam", "c"): (MIN_FANOUT_FRAMES, 2 * MIN_FANOUT_FRAMES)})
        view = w.judge(float(t))
        assert view.measured == {("cam", "c"): 2.0} and view.moved == {}  # within MIN_EPOCH_S
    moved = {}
    for t in range(int(MIN_EPOCH_S), int(MIN_EPOCH_S + RATE_HOLD_S) + 1):
        w.observe(float(t), "f1", {("cam", "c"): (MIN_FANOUT_FRAMES, 2 * MIN_FANOUT_FRAMES)})
        assert w.judge(float(t), follow=False).moved == {}
        moved = w.judge(float(t)).moved or moved
    assert moved == {("cam", "c"): (1.0, 2.0)}
    w.adopt(moved)
    assert w.scale(("cam", "c")) == 2.0
