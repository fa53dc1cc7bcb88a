"""Drift watchers: when the arrival rates or the fan-out the frontends measure should move the plan.

Policy only, like :mod:`harpagon.runtime.controller.calibration`: pure, clock-injected (every call
takes `now`), no asyncio, gRPC or logging. The controller validates each frontend's report and
hands it over (`observe`), tells the watchers when a plan goes in force (`in_force`), and asks them
whether what they measured moved (`decide`); it logs what moved, `adopt`s it and re-plans with what
they say to plan for (`rate`, `scale`):

    rates = RateWatch({"cam": 40.0})                    # the CONFIGURED rates
    rates.observe(now, "frontend-1", {"cam": 12.0}, 1.0)
    if (move := rates.decide(now)) is not None:
        rates.adopt(move)                               # then re-plan at rates.rate("cam")
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from harpagon.runtime.controller.validation import (
    BAND,
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    above,
    at_least,
    band,
    real,
    require,
    whole,
)


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """When measured rates and fan-out move the plan."""

    rate_band: tuple[float, float] = (0.8, 1.1)
    """Re-plan when an app's measured rate leaves this band around its planned rate, as Nexus does
    (`0 < low <= 1 <= high`)."""
    min_epoch_s: float = 10.0
    """...but not more often than this many seconds after the plan in force (>= 0; the calibration
    waits as long before it judges a plan)."""
    rate_window_s: float = 30.0
    """Rates are judged over the reports since the plan in force, at most this many seconds of them (> 0)."""
    rate_noise_z: float = 4.0
    """...and only a move beyond this many standard deviations of a Poisson count at the planned rate
    counts (>= 0): under Poisson arrivals (what plans are promised for) a 1 s count of a 40/s app
    leaves 0.8-1.1x about one second in four, which re-planned the demo twice in 20 s."""
    rate_hold_s: float = 3.0
    """An app's rate (a module's scale) must stay out of the band this long before it re-plans (>= 0;
    hysteresis: one burst is not a trend)."""
    report_expiry_s: float = 5.0
    """A frontend whose latest report is older than this is gone: what it measured no longer counts (> 0)."""
    surge_factor: float = 1.5
    """A rate past this multiple of the planned one over the last `rate_recent_s` (and past Poisson
    noise) is a surge (> 1): it re-plans after `surge_hold_s`, even within `min_epoch_s` of the plan in
    force, at the recent rate. At that excess the plan is overloaded and admission refuses frames
    within seconds; judged over the reports since the plan (up to `rate_window_s`), a rate back from a
    45 s lull at 1 of 40 frames/s climbed 5 -> 10 -> 37 frames/s over three re-plans 10 s apart, 96% of
    frames failing."""
    rate_recent_s: float = 2.0
    rise_window_s: float = 10.0
    """A rise out of the band is also judged over the last this many seconds (> 0, <= `rate_window_s`):
    on a ramp the mean since the plan lags the rate by half the plan's age, and a 30 s old plan was
    re-planned only once the rate was 1.2x what it was made for, past its headroom (the elastic
    benchmark's day: 40-65% within the SLO for the seconds before each late re-plan)."""
    """The span a surge is judged over (> 0, <= `rate_window_s`)."""
    surge_hold_s: float = 2.0
    """How long a surge must last (>= 0): as long as `rate_recent_s`, one second's burst (one report)
    passes without a re-plan."""
    min_rate_fraction: float = 0.25
    """An app is planned for at least this fraction of its configured rate, whatever was measured (in
    [0, 1]): after a lull the plan still holds a quarter of the configured capacity (and admission a
    quarter of the configured frames in flight) while a surge re-plans."""
    idle_reset_s: float = 20.0
    """An app planned above its configured rate that got no frame at any frontend for this long since
    the plan in force is planned at its configured rate again (> 0, <= `rate_window_s`, so that the
    reports that show the idleness are still kept): an app refused at a rate measured in a burst (its
    frames refused, its clients gone) would otherwise stay refused for good, and an idle one would hold
    the burst's GPUs."""
    scale_band: tuple[float, float] = (0.8, 1.25)
    """Re-plan when a module's measured fan-out (requests per frame) leaves this band around its
    planned scale by more than Poisson noise (`rate_noise_z`), held `rate_hold_s`, at most once per
    `min_epoch_s` (`0 < low <= 1 <= high`)."""
    min_fanout_frames: int = 50
    """...judged only over at least this many frames that reached the module since the plan in force
    (>= 1)."""
    min_scale: float = 0.01
    """A measured scale is planned as at least this (> 0): a detector that finds nothing must not plan
    its children at scale 0 (the schema wants scale > 0; the planner divides by module rates)."""

    def __post_init__(self) -> None:
        window = self.rate_window_s
        up_to_window = f"must be in (0, rate_window_s = {window!r}]"
        require("watch", (
            ("rate_band", self.rate_band, band(self.rate_band), BAND),
            ("min_epoch_s", self.min_epoch_s, at_least(self.min_epoch_s, 0), NON_NEGATIVE),
            ("rate_window_s", window, above(window, 0), POSITIVE),
            ("rate_noise_z", self.rate_noise_z, at_least(self.rate_noise_z, 0), NON_NEGATIVE),
            ("rate_hold_s", self.rate_hold_s, at_least(self.rate_hold_s, 0), NON_NEGATIVE),
            ("report_expiry_s", self.report_expiry_s, above(self.report_expiry_s, 0), POSITIVE),
            ("surge_factor", self.surge_factor, above(self.surge_factor, 1), "must be a finite number > 1"),
            ("rate_recent_s", self.rate_recent_s, above(self.rate_recent_s, 0) and real(window)
             and self.rate_recent_s <= window,
             up_to_window),
            ("rise_window_s", self.rise_window_s, above(self.rise_window_s, 0) and real(window)
             and self.rise_window_s <= window, up_to_window),
            ("surge_hold_s", self.surge_hold_s, at_least(self.surge_hold_s, 0), NON_NEGATIVE),
            ("min_rate_fraction", self.min_rate_fraction,
             at_least(self.min_rate_fraction, 0) and self.min_rate_fraction <= 1, "must be in [0, 1]"),
            ("idle_reset_s", self.idle_reset_s, above(self.idle_reset_s, 0) and real(window)
             and self.idle_reset_s <= window,
             up_to_window),
            ("scale_band", self.scale_band, band(self.scale_band), BAND),
            ("min_fanout_frames", self.min_fanout_frames, whole(self.min_fanout_frames), COUNT),
            ("min_scale", self.min_scale, above(self.min_scale, 0), POSITIVE),
        ))


_Report = TypeVar("_Report", bound=tuple)
_Key = TypeVar("_Key")
Module = tuple[str, str]
"""`(app, module)`."""


def record(reports: dict[str, deque[_Report]], frontend: str, report: _Report, now: float,
           settings: WatchSettings) -> None:
    """Keep a frontend's report (a tuple, its time first) with its latest ones: at most `rate_window_s`
    of them, and none of a frontend gone quiet for `report_expiry_s` (what it measured goes with it)."""
    reports.setdefault(frontend, deque()).append(report)
    for name, kept in list(reports.items()):
        while kept and kept[0][0] < now - settings.rate_window_s:
            kept.popleft()
        if not kept or kept[-1][0] < now - settings.report_expiry_s:
            del reports[name]


def held(since: dict[_Key, float], key: _Key, out: bool, now: float, hold_s: float) -> bool:
    """Whether `key` has been out of its band for `hold_s` (hysteresis: one burst is not a trend)."""
    if not out:
        since.pop(key, None)
        return False
    return now - since.setdefault(key, now) >= hold_s


@dataclass(frozen=True)
class RateMove:
    """What moved: apps to plan at a measured rate, and apps idle since they were planned above their
    configured rate (back to it)."""

    moved: Mapping[str, float]
    idle: tuple[str, ...] = ()


@dataclass
class RateWatch:
    """Each app's offered rate, summed over the frontends, against the rate its plan was made for."""

    configured: Mapping[str, float]
    """App -> its configured rate."""
    settings: WatchSettings = field(default_factory=WatchSettings)
    planned: dict[str, float] = field(default_factory=dict)
    """App -> the measured rate plans are made for (absent: the configured one)."""
    reports: dict[str, deque[tuple[float, dict[str, float], float]]] = field(default_factory=dict)
    """Frontend -> (time, app -> frames/s, window s) of its latest reports."""
    since: float = -math.inf
    """When the plan in force went in force."""
    ceiling: dict[str, float] = field(default_factory=dict)
    """App -> the least measured rate the inventory could not serve it at: no move goes that high
    (until :meth:`lift` after the inventory grows)."""
    _out_of_band: dict[str, float] = field(default_factory=dict)  # app -> since when
    _surging: dict[str, float] = field(default_factory=dict)  # app -> since when

    def rate(self, app: str) -> float:
        """The rate to plan `app` for."""
        return self.planned.get(app, self.configured[app])

    def observe(self, now: float, frontend: str, rates: Mapping[str, float], window_s: float) -> None:
        """Frames per second each app was offered at `frontend` over the last `window_s` (validated)."""
        record(self.reports, frontend, (now, dict(rates), window_s), now, self.settings)

    def in_force(self, now: float) -> None:
        """A plan went in force: rates are judged afresh against it."""
        self.since = now
        self._out_of_band.clear()
        self._surging.clear()

    def unservable(self, app: str, rate: float) -> None:
        """Planned at `rate` (above its configured rate), `app` was refused: the hardware runs out. Plan
        it at its configured rate again (admission refuses what is beyond), and move it to no rate as
        high as `rate` from now on: an overload measured as offered frames must not take the app down."""
        self.ceiling[app] = min(self.ceiling.get(app, math.inf), rate)
        self.planned.pop(app, None)

    def lift(self) -> None:
        """The inventory grew: rates found unservable may be served now."""
        self.ceiling.clear()

    def decide(self, now: float) -> RateMove | None:
        """Whether the rates moved the plan. An app's total over the reports since the plan in force (at
        most `rate_window_s` of them, from the app's first frame on) out of `rate_band` around its
        planned rate by more than Poisson noise (a rise: or over the last `rise_window_s`), held
        `rate_hold_s`, at most once per `min_epoch_s` (a rise planned at the last `rate_recent_s` when they
        were busier); at once (held `surge_hold_s`) when the last `rate_recent_s` surge past `surge_factor` times it;
        back at the configured rate when an app planned above it got no frame for `idle_reset_s`. Every
        app is planned for at least `min_rate_fraction` of its configured rate. None when nothing moved."""
        s = self.settings
        settled = now - self.since >= s.min_epoch_s
        total, span = self._rates_since(self.since)
        recent, recent_span = self._rates_since(max(self.since, now - s.rate_recent_s))
        climb, climb_span = self._rates_since(max(self.since, now - s.rise_window_s))
        # reports that cover idle_reset_s since the plan: enough to call an app without frames idle
        covered = any(t <= now - s.idle_reset_s for reports in self.reports.values()
                      for t, _, _ in reports if t > self.since)
        moved: dict[str, float] = {}
        idle = []
        for app, configured in self.configured.items():
            planned = self.rate(app)
            floor = s.min_rate_fraction * configured
            if app in recent:
                got = max(recent[app], floor)
                surge = (got > s.surge_factor * planned and got < self.ceiling.get(app, math.inf)
                         and got - planned > s.rate_noise_z * math.sqrt(planned / recent_span[app]))
                if held(self._surging, app, surge, now, s.surge_hold_s):
                    moved[app] = got
                    continue
            else:
                self._surging.pop(app, None)
            if app not in total:
                if covered and planned > configured:
                    idle.append(app)
                continue
            if not settled:
                continue
            got = max(total[app], floor)
            noise = s.rate_noise_z * math.sqrt(planned / span[app])  # std of a Poisson count at the planned rate, per s
            low, high = s.rate_band
            out = (not low * planned <= got <= high * planned and abs(got - planned) > noise
                   and got < self.ceiling.get(app, math.inf))
            if not out and app in climb:  # a rise, judged over the last rise_window_s too
                rose = climb[app]
                out = (rose > high * planned and rose - planned > s.rate_noise_z * math.sqrt(planned / climb_span[app])
                       and rose < self.ceiling.get(app, math.inf))
                got = max(got, rose) if out else got
            if held(self._out_of_band, app, out, now, s.rate_hold_s):
                # a rise is planned at its latest rate when that is higher: on a ramp, the mean since the
                # plan lags the rate by half the plan's age, and the plan would be short until the next one
                moved[app] = max(got, recent.get(app, 0.0)) if got > planned else got
        return RateMove(moved, tuple(idle)) if moved or idle else None

    def adopt(self, move: RateMove) -> None:
        """Plan for what moved from now on."""
        self.planned.update(move.moved)
        for app in move.moved:
            self._out_of_band.pop(app, None)
            self._surging.pop(app, None)
        for app in move.idle:
            self.planned.pop(app, None)

    def _rates_since(self, cutoff: float) -> tuple[dict[str, float], dict[str, float]]:
        """Per app, its rate summed over the frontends' reports after `cutoff`, each frontend's judged
        from the app's first frame there (a stream that starts late is not slow), and the seconds of
        reports behind it (the least over the frontends)."""
        total: dict[str, float] = {}
        span: dict[str, float] = {}
        for reports in self.reports.values():
            recent = [(r, w) for t, r, w in reports if t > cutoff]
            for app in {app for r, _ in recent for app in r}:
                first = next((i for i, (r, _) in enumerate(recent) if r.get(app, 0.0) > 0), None)
                if first is None:
                    continue
                seconds = sum(w for _, w in recent[first:])
                span[app] = min(span.get(app, math.inf), seconds)
                total[app] = total.get(app, 0.0) + sum(r.get(app, 0.0) * w for r, w in recent[first:]) / seconds
        return total, span


@dataclass(frozen=True)
class FanoutView:
    """What the fan-out reports show: each module's measured scale (over `min_fanout_frames` frames or
    more since the plan in force), and the modules whose scale moved: (planned, measured)."""

    measured: Mapping[Module, float]
    moved: Mapping[Module, tuple[float, float]]


@dataclass
class FanoutWatch:
    """Each module's requests per frame, over every frontend, against the scale its plan was made for."""

    configured: Mapping[Module, float]
    """(app, module) -> its configured scale."""
    settings: WatchSettings = field(default_factory=WatchSettings)
    scales: dict[Module, float] = field(default_factory=dict)
    """(app, module) -> the measured scale plans are made for (absent: the configured one)."""
    reports: dict[str, deque[tuple[float, dict[Module, tuple[int, int]]]]] = field(default_factory=dict)
    """Frontend -> (time, (app, module) -> (frames, requests)) of its latest reports."""
    since: float = -math.inf
    """When the plan in force went in force."""
    _out_of_band: dict[Module, float] = field(default_factory=dict)  # module -> since when

    def scale(self, key: Module) -> float:
        """The scale to plan the module for."""
        return self.scales.get(key, self.configured[key])

    def observe(self, now: float, frontend: str, counts: Mapping[Module, tuple[int, int]]) -> None:
        """Per module, the frames that reached it at `frontend` since its last report and the requests
        it got for them (validated)."""
        record(self.reports, frontend, (now, dict(counts)), now, self.settings)

    def in_force(self, now: float) -> None:
        """A plan went in force: scales are judged afresh against it."""
        self.since = now
        self._out_of_band.clear()

    def decide(self, now: float, follow: bool = True) -> FanoutView:
        """Each module's scale over the reports since the plan in force (at most `rate_window_s` of them,
        from every frontend); moved when it leaves `scale_band` around its planned scale by more than
        Poisson noise, over at least `min_fanout_frames` frames and for `rate_hold_s`, at most once per
        `min_epoch_s` (never when not `follow`). A measured scale is planned as at least `min_scale`: a
        detector that finds nothing does not plan its children at scale 0."""
        s = self.settings
        frames: dict[Module, int] = {}
        requests: dict[Module, int] = {}
        for reports in self.reports.values():
            for t, report in reports:
                if t > self.since:
                    for key, (f, r) in report.items():
                        frames[key] = frames.get(key, 0) + f
                        requests[key] = requests.get(key, 0) + r
        measured: dict[Module, float] = {}
        moved: dict[Module, tuple[float, float]] = {}
        moving = follow and now - self.since >= s.min_epoch_s
        for key in self.configured:
            n = frames.get(key, 0)
            if n < s.min_fanout_frames:
                self._out_of_band.pop(key, None)
                continue
            measured[key] = requests[key] / n
            if not moving:
                continue
            planned = self.scale(key)
            got = max(measured[key], s.min_scale)
            noise = s.rate_noise_z * math.sqrt(planned / n)  # std of the mean of n Poisson counts at the planned scale
            low, high = s.scale_band
            out = not low * planned <= got <= high * planned and abs(got - planned) > noise
            if held(self._out_of_band, key, out, now, s.rate_hold_s):
                moved[key] = (planned, got)
        return FanoutView(measured, moved)

    def adopt(self, moved: Mapping[Module, tuple[float, float]]) -> None:
        """Plan for the measured scales of what moved from now on."""
        for key, (_, got) in moved.items():
            self.scales[key] = got
            self._out_of_band.pop(key, None)
