"""The drift watchers as pure policies: reports in, a decision out, on a clock the test holds."""

from __future__ import annotations

import math
import re

import pytest

from harpagon.runtime.controller.watches import FanoutWatch, RateWatch, WatchSettings

S = WatchSettings()


def test_a_rate_watch_decides_and_keeps_its_own_state():
    w = RateWatch({"cam": 40.0, "door": 5.0})
    w.in_force(0.0)
    move = None
    for t in range(1, 40):  # cam at a tenth of its rate, door as configured
        w.observe(float(t), "f1", {"cam": 4.0, "door": 5.0}, 1.0)
        move = move or w.decide(float(t))
    assert move is not None and set(move.moved) == {"cam"} and move.idle == ()
    assert move.moved["cam"] == pytest.approx(S.min_rate_fraction * 40.0)  # the floor, not 4
    assert w.rate("cam") == 40.0  # nothing planned until adopted
    w.adopt(move)
    assert w.rate("cam") == pytest.approx(10.0) and w.rate("door") == 5.0


def test_a_fanout_watch_reports_measured_scales_and_moves_only_when_deciding():
    w = FanoutWatch({("cam", "c"): 1.0})
    w.in_force(0.0)
    frames = S.min_fanout_frames
    for t in range(1, int(S.min_epoch_s)):
        w.observe(float(t), "f1", {("cam", "c"): (frames, 2 * frames)})
        view = w.decide(float(t))
        assert view.measured == {("cam", "c"): 2.0} and view.moved == {}  # within min_epoch_s
    moved = {}
    for t in range(int(S.min_epoch_s), int(S.min_epoch_s + S.rate_hold_s) + 1):
        w.observe(float(t), "f1", {("cam", "c"): (frames, 2 * frames)})
        assert w.decide(float(t), follow=False).moved == {}
        moved = w.decide(float(t)).moved or moved
    assert moved == {("cam", "c"): (1.0, 2.0)}
    w.adopt(moved)
    assert w.scale(("cam", "c")) == 2.0


def test_a_watch_follows_its_own_settings():
    """A shorter epoch and hold move sooner: the settings, not module constants, decide."""
    quick = WatchSettings(min_epoch_s=1.0, rate_hold_s=0.0)
    w = RateWatch({"cam": 40.0}, quick)
    w.in_force(0.0)
    w.observe(1.0, "f1", {"cam": 4.0}, 1.0)
    move = w.decide(1.0)
    assert move is not None and move.moved["cam"] == pytest.approx(quick.min_rate_fraction * 40.0)


def test_a_ramp_is_planned_at_its_latest_rate_and_a_fall_at_the_mean_since_the_plan():
    """On a ramp the mean since the plan lags the rate by half the plan's age: a rise is planned at the
    last `rate_recent_s`; a fall keeps the (higher, safer) mean."""
    for slope, check in ((+2.0, lambda got, mean, last: got == pytest.approx(last) and got > mean),
                         (-2.0, lambda got, mean, last: got == pytest.approx(mean) and got > last)):
        w = RateWatch({"cam": 200.0})
        w.in_force(0.0)
        move, rates = None, []
        for t in range(1, 40):
            rates.append(200.0 + slope * t)
            w.observe(float(t), "f1", {"cam": rates[-1]}, 1.0)
            if move is None and (move := w.decide(float(t))) is not None:
                recent, kept = int(S.rate_recent_s), rates[max(0, t - 1 - int(S.rate_window_s)):]  # the window's
                assert check(move.moved["cam"], sum(kept) / len(kept), sum(rates[-recent:]) / recent)
        assert move is not None


@pytest.mark.parametrize(("field", "value"), [
    ("rate_band", (1.1, 0.8)), ("rate_band", (0.0, 1.1)), ("scale_band", (0.8,)), ("min_epoch_s", -1.0),
    ("rate_window_s", 0.0), ("rate_noise_z", math.nan), ("rate_hold_s", True), ("report_expiry_s", 0),
    ("surge_factor", 1.0), ("rate_recent_s", 31.0), ("rise_window_s", 0.0), ("rise_window_s", 31.0), ("surge_hold_s", -0.5), ("min_rate_fraction", 1.5),
    ("idle_reset_s", 45.0), ("min_fanout_frames", 0), ("min_fanout_frames", 2.5), ("min_scale", 0.0),
])
def test_bad_watch_settings_are_refused_by_name_and_value(field, value):
    with pytest.raises(ValueError, match=rf"watch {field} .*got {re.escape(repr(value))}"):
        WatchSettings(**{field: value})


def test_a_rise_is_seen_over_the_last_rise_window_before_the_mean_since_the_plan_shows_it():
    """A plan half a minute old on a ramp: its mean lags, the last rise_window_s do not."""

    def decided(settings: WatchSettings) -> tuple[int, float]:
        w = RateWatch({"cam": 200.0}, settings)
        w.in_force(0.0)
        for t in range(1, 90):
            rate = 200.0 if t <= 25 else 200.0 + 4.0 * (t - 25)  # flat, then +4 frames/s every second
            w.observe(float(t), "f1", {"cam": rate}, 1.0)
            if (move := w.decide(float(t))) is not None:
                return t, move.moved["cam"]
        raise AssertionError("no re-plan")

    t, planned = decided(S)
    # past 1.1x (and 4 sigma) over the last 10 s at t = 35, held 3 s; planned at the last 2 s
    assert t == 38 and planned == pytest.approx(200.0 + 4.0 * (12.5))
    late, _ = decided(WatchSettings(rise_window_s=S.rate_window_s))  # the mean since the plan alone
    assert late >= t + 5
