"""The self-calibration policy, with hand-checked figures and an injected clock (no network)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings, options_for
from harpagon.runtime.controller.calibration import Calibration, CalibrationSettings, Calibrator

W = Workload.model_validate({
    "hardware": [{"name": "v100", "price_per_hour": 3.06}, {"name": "t4", "price_per_hour": 0.526}],
    "profiles": [
        # mean + std: 2.5 / 7.0 / 12.0
        {"model": "resnet50", "hardware": "v100", "batches": [[1, 2.0, 0.5], [4, 6.0, 1.0], [8, 10.0, 2.0]]},
        # mean + std: 5.0 / 15.0
        {"model": "resnet50", "hardware": "t4", "batches": [[1, 4.0, 1.0], [4, 12.0, 3.0]]},
        {"model": "ssd", "hardware": "v100", "batches": [[1, 6.0], [2, 10.0]]},
    ],
    "apps": [{"name": "traffic", "rate": 100, "slo_ms": 200,
              "modules": [{"name": "detect", "model": "ssd"},
                          {"name": "cars", "model": "resnet50", "after": ["detect"]}]}],
})
S = Settings(overhead_ms=1.0, safety=1.2)
#: The band and floor these hand-checked cases are written for (the defaults are looser: live figures jitter),
#: each check deciding alone (the default waits for a drift to last `sustain_s`: see the live-feed cases).
TIGHT = CalibrationSettings(band=0.10, overhead_floor_ms=0.5, sustain_s=0.0)


def around(mean_plus_std: float, std: float, n: int) -> list[float]:
    """`n` (even) samples whose mean is `mean_plus_std - std` and whose population std is `std`."""
    mean = mean_plus_std - std
    return [mean - std, mean + std] * (n // 2)


def slow_v100(cal: Calibrator, now: float) -> None:
    """resnet50 on v100: size 4 at 1.2x its 7.0 ms (60 batches), size 8 at 1.5x its 12.0 ms (30 batches):
    weighted by counts, (60 * 1.2 + 30 * 1.5) / 90 = 1.3."""
    cal.observe_batches(now, "resnet50", "v100", 4, around(8.4, 1.0, 60))
    cal.observe_batches(now, "resnet50", "v100", 8, around(18.0, 1.0, 30))


def test_a_worker_30_percent_slower_drifts_and_only_its_profile_is_scaled():
    cal = Calibrator(W, S, TIGHT)
    slow_v100(cal, 1.0)
    cal.observe_batches(1.0, "resnet50", "t4", 4, around(15.0, 3.0, 80))  # t4 is as profiled
    m = cal.measured(2.0)
    assert m.exec[("resnet50", "v100")].factor == pytest.approx(1.3)
    assert m.exec[("resnet50", "v100")].interval == pytest.approx((1.3, 1.3))
    assert m.exec[("resnet50", "v100")].batches == 90
    assert m.exec[("resnet50", "v100")].by_batch[4] == pytest.approx((60, 8.4))  # the P84 of 6.4 / 8.4 ms
    assert m.exec[("resnet50", "t4")].factor == pytest.approx(1.0)

    reasons = cal.drift(2.0)
    assert len(reasons) == 1
    assert "resnet50 on v100" in reasons[0] and "1.30x" in reasons[0] and "90 batches" in reasons[0]

    c = cal.calibrated(2.0)
    assert c.factor("resnet50", "v100") == pytest.approx(1.3) and c.factor("resnet50", "t4") == 1.0
    w, s = c.apply(W, S)
    assert s == S  # the overhead did not drift
    rows = w.profile_rows[("resnet50", "v100")]  # a fresh workload: no stale cached rows
    for b, (mean, std) in {1: (2.0, 0.5), 4: (6.0, 1.0), 8: (10.0, 2.0)}.items():
        assert rows[b].mean_ms == pytest.approx(1.3 * mean) and rows[b].std_ms == pytest.approx(1.3 * std)
    assert w.profiles[1] is W.profiles[1] and w.profiles[2] is W.profiles[2]  # undrifted pairs: as configured
    assert w.apps == W.apps and w.hardware == W.hardware
    # what the planner reads: d(b) = 1.3 (mean + std) * safety, the safety still applied once
    d = {(o.hardware, o.batch): o.d_ms for o in options_for(w, w.apps[0], next(m for m in w.apps[0].modules if m.model == "resnet50"), s)}
    assert d[("v100", 4)] == pytest.approx(1.3 * 7.0 * 1.2) and d[("t4", 4)] == pytest.approx(15.0 * 1.2)


def test_an_emulated_device_sleeping_mean_plus_std_does_not_drift():
    cal = Calibrator(W, S, TIGHT)
    rng = np.random.default_rng(0)
    for model, hw, b, d in [("resnet50", "v100", 1, 2.5), ("resnet50", "v100", 8, 12.0),
                            ("resnet50", "t4", 4, 15.0), ("ssd", "v100", 2, 10.0)]:
        # sleeps d, overshooting by a few tens of microseconds: measured mean ~ mean + std, std ~ 0
        cal.observe_batches(0.5, model, hw, b, list(d + rng.uniform(0, 0.05, 100)))
    m = cal.measured(1.0)
    assert set(m.exec) == {("resnet50", "v100"), ("resnet50", "t4"), ("ssd", "v100")}
    assert all(e.factor == pytest.approx(1.0, abs=0.02) for e in m.exec.values())
    assert cal.drift(1.0) == []
    assert cal.calibrated(1.0).apply(W, S) == (W, S)


def test_adopted_figures_do_not_drift_again_and_a_return_to_the_profile_drifts_back():
    cal = Calibrator(W, S, TIGHT)
    slow_v100(cal, 1.0)
    c = cal.calibrated(2.0)
    assert c.reasons
    cal.adopt(c, 2.0)
    assert cal.planned.factor("resnet50", "v100") == pytest.approx(1.3)
    assert cal.drift(2.0) == []  # what was judged is not judged again
    slow_v100(cal, 3.0)  # the worker stays 30% slower: the plan in force already assumes it
    assert cal.drift(4.0) == []
    assert cal.calibrated(4.0).factor("resnet50", "v100") == pytest.approx(1.3)  # kept, not compounded

    cal.adopt(cal.calibrated(4.0), 4.0)
    cal.observe_batches(5.0, "resnet50", "v100", 4, around(7.0, 1.0, 60))  # as profiled again
    reasons = cal.drift(6.0)
    assert len(reasons) == 1 and "1.00x the profile's against 1.30x planned" in reasons[0]
    back = cal.calibrated(6.0)
    assert back.factor("resnet50", "v100") == pytest.approx(1.0)
    w, _ = back.apply(W, S)
    assert w.profile_rows[("resnet50", "v100")][4].mean_ms == pytest.approx(6.0)


def test_factors_are_relative_to_the_configured_profile():
    cal = Calibrator(W, S, TIGHT)
    slow_v100(cal, 1.0)
    cal.adopt(cal.calibrated(2.0), 2.0)
    # 1.69x the profile: 1.3x what is planned, but the new factor is 1.69, not 1.3 * 1.69
    cal.observe_batches(3.0, "resnet50", "v100", 4, around(7.0 * 1.69, 1.0, 60))
    c = cal.calibrated(4.0)
    assert c.factor("resnet50", "v100") == pytest.approx(1.69)
    w, _ = c.apply(W, S)  # applied to the configured workload, as always
    assert w.profile_rows[("resnet50", "v100")][1].mean_ms == pytest.approx(2.0 * 1.69)


def test_overhead_drifts_beyond_the_band_and_the_floor_only():
    cal = Calibrator(W, Settings(overhead_ms=5.0), TIGHT)  # band 10%: 0.5 ms; floor 0.5 ms
    cal.observe_hops(1.0, [5.4] * 300)
    assert cal.drift(2.0) == []
    cal = Calibrator(W, Settings(overhead_ms=5.0), TIGHT)
    cal.observe_hops(1.0, [6.0] * 300)
    reasons = cal.drift(2.0)
    assert reasons == ["hop overhead P95 6.0 ms against 5.0 ms planned (300 hops over 1 s)"]
    c = cal.calibrated(2.0)
    assert c.overhead_ms == pytest.approx(6.0)
    w, s = c.apply(W, Settings(overhead_ms=5.0, safety=1.2))
    assert s == Settings(overhead_ms=6.0, safety=1.2) and w is W

    cal = Calibrator(W, Settings(overhead_ms=1.0), TIGHT)  # 0.3 ms is beyond 10% of 1 ms but below the floor
    cal.observe_hops(1.0, [1.3] * 300)
    assert cal.drift(2.0) == []
    cal = Calibrator(W, Settings(overhead_ms=1.0), TIGHT)  # smaller too, at most max_step (2x) a step
    cal.observe_hops(1.0, [0.2] * 300)
    assert cal.calibrated(2.0).overhead_ms == pytest.approx(0.5)


def test_overhead_is_a_high_quantile_and_adopting_it_stops_the_drift():
    cal = Calibrator(W, Settings(), replace(TIGHT, max_step=100.0))  # planned 0 ms: the floor alone decides
    hops = np.tile(np.arange(100.0) / 10, 3)  # 0.0 .. 9.9 ms
    cal.observe_hops(1.0, list(hops))
    m = cal.measured(2.0)
    assert m.hops == 300 and m.overhead_ms == pytest.approx(float(np.quantile(hops, 0.95)))
    assert m.overhead_ms > 9.0
    c = cal.calibrated(2.0)
    assert c.overhead_ms == pytest.approx(m.overhead_ms)
    cal.adopt(c, 2.0)
    assert cal.planned_overhead_ms == pytest.approx(m.overhead_ms)
    cal.observe_hops(3.0, list(hops))
    assert cal.drift(4.0) == []
    cal.observe_hops(3.0, [0.1] * 10_000)  # the overhead fell
    assert cal.calibrated(4.0).overhead_ms == pytest.approx(0.1)


def test_observations_expire_after_the_window():
    cal = Calibrator(W, S, CalibrationSettings(window_s=30.0, sustain_s=0.0))
    slow_v100(cal, 0.0)
    cal.observe_hops(0.0, [9.0] * 300)
    assert len(cal.drift(29.0)) == 2
    assert cal.drift(30.5) == []
    assert cal.measured(30.5).exec == {} and cal.measured(30.5).overhead_ms is None
    cal.observe_hops(31.0, [1.0])  # an observation drops what expired
    assert not cal._exec and cal._hops.size == 1


def test_too_few_samples_give_no_verdict():
    cal = Calibrator(W, S, CalibrationSettings(min_batches=50, min_hops=200, sustain_s=0.0))
    cal.observe_batches(1.0, "resnet50", "v100", 4, [14.0] * 49)  # 2x, but 49 batches
    cal.observe_hops(1.0, [9.0] * 199)
    assert cal.drift(2.0) == [] and cal.calibrated(2.0).apply(W, S) == (W, S)
    cal.observe_batches(1.5, "resnet50", "v100", 1, [5.0])  # the 50th, of another size: 2x as well
    cal.observe_hops(1.5, [9.0])
    reasons = cal.drift(2.0)
    assert len(reasons) == 2 and "2.00x" in reasons[0] and "50 batches" in reasons[0]


def test_bad_and_unprofiled_samples_are_ignored_and_counted():
    cal = Calibrator(W, S, CalibrationSettings(min_batches=4, min_hops=2, sustain_s=0.0))
    kept = cal.observe_batches(1.0, "resnet50", "v100", 4, [math.nan, math.inf, -1.0, 0.0, 9.1, 9.1, 9.1, 9.1])
    assert kept == 4
    assert cal.observe_batches(1.0, "resnet50", "v100", 4, [None, "x", 9.1]) == 1  # type: ignore[list-item]
    assert cal.observe_batches(1.0, "resnet50", "v100", 3, [20.0, 20.0]) == 0  # no row of size 3
    assert cal.observe_batches(1.0, "bert", "v100", 1, [20.0]) == 0  # no profile at all
    assert cal.observe_hops(1.0, [-0.5, math.nan, 0.0, 2.0]) == 2
    m = cal.measured(2.0)
    assert m.rejected == 4 + 2 + 2 and m.unprofiled == 3
    assert set(m.exec) == {("resnet50", "v100")} and set(m.exec["resnet50", "v100"].by_batch) == {4}
    assert m.exec["resnet50", "v100"].factor == pytest.approx(1.3)
    assert m.hops == 2
    assert "1.30x" in cal.drift(2.0)[0]


def test_memory_stays_bounded_and_keeps_the_newest():
    cal = Calibrator(W, S, CalibrationSettings(max_samples=100, min_batches=10, min_hops=10))
    for i in range(50):
        cal.observe_batches(float(i) / 10, "resnet50", "v100", 4, [7.0] * 30)
        cal.observe_hops(float(i) / 10, [1.0] * 30)
    cal.observe_batches(5.0, "resnet50", "v100", 4, [14.0] * 70)
    cal.observe_hops(5.0, [3.0] * 1000)
    m = cal.measured(5.0)
    assert m.exec["resnet50", "v100"].by_batch[4] == (100, 14.0)
    kept, _ = cal._exec["resnet50", "v100", 4].between(-math.inf, -math.inf)
    assert sorted(kept) == [7.0] * 30 + [14.0] * 70
    assert m.hops == 100 and m.overhead_ms == 3.0


def test_apply_keeps_everything_else_of_the_workload():
    rated = W.model_copy(update={"apps": (W.apps[0].model_copy(update={"rate": 250.0}),)})
    c = Calibration({("ssd", "v100"): 2.0}, overhead_ms=3.0)
    w, s = c.apply(rated, S)
    assert w.apps[0].rate == 250.0 and w.serve is None
    assert [r.mean_ms for r in w.profile_rows[("ssd", "v100")].values()] == [12.0, 20.0]
    assert s.overhead_ms == 3.0 and s.safety == S.safety
    assert Calibration().apply(rated, S) == (rated, S)


@pytest.mark.parametrize(("field", "value"), [
    ("band", 0.0), ("band", -0.1), ("band", math.nan), ("window_s", 0.0), ("window_s", math.inf),
    ("min_batches", 0), ("min_batches", 2.5), ("min_batches", True), ("min_hops", 0),
    ("overhead_quantile", 0.0), ("overhead_quantile", 1.0), ("overhead_quantile", 1.5),
    ("overhead_floor_ms", -1.0), ("max_samples", 0), ("sustain_s", -1.0), ("sustain_s", math.inf),
    ("sustain_s", math.nan), ("max_step", 1.0), ("max_step", 0.5), ("max_step", math.inf), ("max_step", True),
])
def test_bad_settings_name_the_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"calibration {field} .*got {value!r}"):
        CalibrationSettings(**{field: value})


def test_the_bounds_of_the_new_settings_are_accepted():
    c = CalibrationSettings(sustain_s=0.0, max_step=1.01)
    assert (c.sustain_s, c.max_step) == (0.0, 1.01)
    assert (CalibrationSettings().sustain_s, CalibrationSettings().max_step) == (10.0, 2.0)


def test_max_samples_must_hold_a_verdict():
    with pytest.raises(ValueError, match="max_samples must be >= min_batches"):
        CalibrationSettings(max_samples=100, min_hops=200)
    with pytest.raises(ValueError, match="now must be a finite time"):
        Calibrator(W, S, TIGHT).observe_hops(math.nan, [1.0])


# --- a live feed: drifts that must last ---------------------------------------------------------------

Slowdown = Callable[[float, int], np.ndarray]
"""`(t, n) ->` how many times slower each of `n` samples observed at `t` is."""
def steady(t: float, n: int) -> np.ndarray:  # a Slowdown: every sample as profiled
    return np.ones(n)
LIVE = Settings(overhead_ms=4.0, safety=1.2)


def serve(cal: Calibrator, until: float, exec_x: Slowdown = steady, hop_x: Slowdown = steady,
          seen: list | None = None) -> list:
    """Feed `cal` as a live system does: every 0.5 s, 20 batches of resnet50 on v100 at size 4 from an
    emulated device (sleeps its 7.0 ms, overshooting by up to 50 us) and 60 hops of 2-4.1 ms (P95 ~4.0 ms,
    the configured 4 ms), each times its slowdown; a check every second, whose drifted figures are adopted
    at once (as a re-plan does). Returns `(t, calibration)` of each re-plan; `seen` gets `(t, measured)`
    of each check."""
    rng = np.random.default_rng(0)
    replans = []
    for t in np.arange(0.5, until + 0.25, 0.5):
        t = float(t)
        cal.observe_batches(t, "resnet50", "v100", 4, list((7.0 + rng.uniform(0, 0.05, 20)) * exec_x(t, 20)))
        cal.observe_hops(t, list(rng.uniform(2.0, 4.1, 60) * hop_x(t, 60)))
        if t != int(t):
            continue
        if seen is not None:
            seen.append((t, cal.measured(t)))
        if (c := cal.calibrated(t)).reasons:
            cal.adopt(c, t)
            replans.append((t, c))
    return replans


def between(start: float, end: float, x: float, every: int = 1) -> Slowdown:
    """Every `every`-th sample `x` times slower from `start` to `end` (exclusive)."""
    return lambda t, n: np.where((np.arange(n) % every == 0) & (start <= t < end), x, 1.0)


def test_a_host_hiccup_does_not_replan():
    """5% of the samples 20x slower for 2 s (the host starved a moment): a mean + std over the window
    measures 1.9x the profile at the hiccup's first check; the P84 and P95 hardly move, and nothing lasts."""
    cal = Calibrator(W, LIVE)
    hiccup = between(12.0, 14.0, 20.0, every=20)
    assert serve(cal, 60.0, hiccup, hiccup) == []
    assert cal.planned.factor("resnet50", "v100") == 1.0 and cal.planned_overhead_ms == 4.0


def test_a_stall_lingering_in_the_window_does_not_replan():
    """Every batch 3x slower for 7 s and every hop 10x for 2 s: in the 30 s window they keep the P84 and
    the P95 beyond the band for longer than `sustain_s`, but not the newer half of that span."""
    seen: list = []
    replans = serve(Calibrator(W, LIVE), 90.0, between(40.0, 47.0, 3.0), between(40.0, 42.0, 10.0), seen)
    assert replans == [], [c.reasons for _, c in replans]
    out_exec = [t for t, m in seen if m.exec["resnet50", "v100"].interval[0] > 1.15]
    out_hops = [t for t, m in seen if m.overhead_interval_ms[0] > 4.0 + 1.0]
    for out in (out_exec, out_hops):  # beyond the band at every check, for longer than sustain_s
        assert out[-1] - out[0] > 10.0 and len(out) == out[-1] - out[0] + 1


@pytest.mark.parametrize("onset", [0.0, 30.0])
def test_a_sustained_slowdown_replans_after_sustain_s_with_what_it_measured(onset):
    """Batches and hops 1.5x slower for good: each figure re-plans once, `sustain_s` after the first check
    that saw it (after an onset mid-window, once enough of the window's samples are slow)."""
    cal = Calibrator(W, LIVE)
    slow = between(onset, math.inf, 1.5)
    replans = serve(cal, 90.0, slow, slow)
    exec_at = [t for t, c in replans if any(r.startswith("resnet50 on v100") for r in c.reasons)]
    hops_at = [t for t, c in replans if any(r.startswith("hop overhead") for r in c.reasons)]
    if onset == 0:  # the first check with enough samples (t = 2) drifted, and every one after it
        assert exec_at == hops_at == [2.0 + 10.0] and len(replans) == 1
    else:
        assert len(exec_at) == len(hops_at) == 1  # once planned with, 1.5x no longer drifts
        for at in (exec_at[0], hops_at[0]):
            assert onset + 10.0 < at <= onset + 10.0 + 0.25 * 30.0
    assert cal.planned.factor("resnet50", "v100") == pytest.approx(1.5, abs=0.02)
    assert cal.planned_overhead_ms == pytest.approx(1.5 * 4.0, rel=0.02)
    assert "drifting for 10 s" in replans[0][1].reasons[0]


def test_a_re_plan_moves_a_figure_at_most_max_step():
    """9.52x the profile and 10x the overhead, sustained: 2x a step, each after another sustained span."""
    cal = Calibrator(W, LIVE)
    replans = serve(cal, 80.0, lambda t, n: np.full(n, 9.52), lambda t, n: np.full(n, 10.0))
    assert [t for t, _ in replans] == [12.0, 24.0, 36.0, 48.0]
    assert [c.factor("resnet50", "v100") for _, c in replans] == pytest.approx([2.0, 4.0, 8.0, 9.52 * 7.04 / 7],
                                                                              abs=0.01)
    assert [c.overhead_ms for _, c in replans] == pytest.approx([8.0, 16.0, 32.0, 40.0], rel=0.01)
    assert "9.5" in replans[0][1].reasons[0] and "planning with 2.00x, a step of at most 2x" in replans[0][1].reasons[0]
    assert "planning with 8.00 ms" in replans[0][1].reasons[1]
    cal = Calibrator(W, LIVE, CalibrationSettings(max_step=4.0))  # down too, by the step configured
    down = serve(cal, 20.0, lambda t, n: np.full(n, 0.1), lambda t, n: np.full(n, 0.1))
    assert [(c.factor("resnet50", "v100"), c.overhead_ms) for _, c in down] == [(0.25, 1.0)]


def test_a_re_plan_that_keeps_a_figure_does_not_restart_its_drift():
    """A re-plan for rates adopts the figures in force: a drift under way goes on (rates re-planned every
    few seconds must not keep calibration waiting); one a re-plan changes starts afresh."""
    cal = Calibrator(W, LIVE)
    slow = between(0.0, math.inf, 1.5)
    assert serve(cal, 8.0, slow, slow) == []
    cal.adopt(cal.planned, 8.0)
    rng = np.random.default_rng(1)
    for t in np.arange(8.5, 12.25, 0.5):
        cal.observe_batches(float(t), "resnet50", "v100", 4, list(1.5 * (7.0 + rng.uniform(0, 0.05, 20))))
        cal.observe_hops(float(t), list(1.5 * rng.uniform(2.0, 4.1, 60)))
    c = cal.calibrated(12.0)  # drifting since t = 2, and over the newer half's samples since the re-plan
    assert len(c.reasons) == 2 and all("drifting for 10 s" in r for r in c.reasons)
    assert c.factor("resnet50", "v100") == pytest.approx(1.5, abs=0.02)
    cal.adopt(c, 12.0)
    assert cal._drifting == {}


def test_a_decode_figure_that_drifts_is_scaled_for_its_hardware_and_encoding_alone():
    doc = W.model_dump(exclude_none=True)
    doc["hardware"][0]["decode_ms_per_mpixel"] = {"jpeg": 2.0, "raw": 0.5}  # v100
    doc["apps"][0]["frame"] = {"height": 1000, "width": 1000, "encoding": "jpeg"}  # one megapixel
    w = Workload.model_validate(doc)
    cal = Calibrator(w, S, TIGHT)
    assert cal.observe_decode(1.0, "v100", "jpeg", around(3.0, 0.1, 60)) == 60  # P84 3.0: 1.5x the 2.0
    assert cal.observe_decode(1.0, "v100", "raw", around(0.5, 0.05, 60)) == 60  # as configured
    assert cal.observe_decode(1.0, "t4", "jpeg", [1.0]) == 0 and cal.unprofiled == 1  # t4 states no figure
    m = cal.measured(2.0)
    assert m.decode[("v100", "jpeg")].factor == pytest.approx(1.5) and m.decode[("v100", "raw")].factor == \
        pytest.approx(1.0)
    c = cal.calibrated(2.0)
    assert c.decode == {("v100", "jpeg"): pytest.approx(1.5)} and c.factors == {}
    (reason,) = c.reasons
    assert reason.startswith("jpeg decode on v100: measured 1.50x the configured 2 ms per megapixel")
    planned, _ = c.apply(w, S)
    assert planned.hardware_by_name["v100"].decode_ms_per_mpixel == {"jpeg": pytest.approx(3.0), "raw": 0.5}
    assert planned.hardware_by_name["t4"] is w.hardware_by_name["t4"]
    app, detect = planned.apps[0], planned.apps[0].modules[0]
    assert planned.decode_ms(app, detect, "v100") == pytest.approx(3.0)  # what the next plan charges per frame
    cal.adopt(c, 2.0)
    cal.observe_decode(3.0, "v100", "jpeg", around(3.0, 0.1, 60))
    assert cal.drift(4.0) == []  # measured as planned now
