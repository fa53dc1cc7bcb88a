"""Drift watchers: when the arrival rates or the fan-out the frontends measure should move the plan.

Policy only, like :mod:`harpagon.runtime.controller.calibration`: pure, clock-injected (every call
takes `now`), no asyncio, gRPC or logging. The controller validates each frontend's report and
hands it over (`observe`), tells the watchers when a plan goes in force (`in_force`), and asks them
whether what they measured moved (`judge`); it logs what moved, `adopt`s it and re-plans with what
they say to plan for (`rate`, `scale`):

    rates = RateWatch({"cam": 40.0})                    # the CONFIGURED rates
    rates.observe(now, "frontend-1", {"cam": 12.0}, 1.0)
    if (move := rates.judge(now)) is not None:
        rates.adopt(move)                               # then re-plan at rates.rate("cam")
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

#: Re-plan when an app's measured rate leaves this band around its planned rate (as Nexus does).
RATE_BAND = (0.8, 1.1)
#: ...but not more often than this (seconds).
MIN_EPOCH_S = 10.0
#: Rates are judged over the reports since the plan in force, at most this many seconds of them...
RATE_WINDOW_S = 30.0
#: ...and only a move beyond this many standard deviations of a Poisson count at the planned rate
#: counts: under Poisson arrivals (what plans are promised for) a 1 s count of a 40/s app leaves
#: 0.8-1.1x about one second in four, which re-planned the demo twice in 20 s.
RATE_NOISE_Z = 4.0
#: An app's rate must stay out of the band this long before it re-plans (hysteresis: one burst is not a trend).
RATE_HOLD_S = 3.0
#: A frontend whose latest report is older than this is gone: what it measured no longer counts.
REPORT_EXPIRY_S = 5.0
#: A rate past this multiple of the planned one over the last RATE_RECENT_S (and past Poisson noise)
#: is a surge: it re-plans after SURGE_HOLD_S, even within MIN_EPOCH_S of the plan in force, at the
#: recent rate. At that excess the plan is overloaded and admission refuses frames within seconds;
#: judged over the reports since the plan (up to RATE_WINDOW_S), a rate back from a 45 s lull at 1 of
#: 40 frames/s climbed 5 -> 10 -> 37 frames/s over three re-plans 10 s apart, 96% of frames failing.
SURGE_FACTOR = 1.5
RATE_RECENT_S = 2.0
SURGE_HOLD_S = 2.0  # as long as the window: one second's burst (one report) passes without a re-plan
#: An app is planned for at least this fraction of its configured rate, whatever was measured: after
#: a lull the plan still holds a quarter of the configured capacity (and admission a quarter of the
#: configured frames in flight) while a surge re-plans.
MIN_RATE_FRACTION = 0.25
#: An app planned above its configured rate that got no frame at any frontend for this long since the
#: plan in force is planned at its configured rate again: an app refused at a rate measured in a burst
#: (its frames refused, its clients gone) would otherwise stay refused for good, and an idle one would
#: hold the burst's GPUs.
IDLE_RESET_S = 20.0  # within RATE_WINDOW_S: the reports that show the idleness are still kept
#: Re-plan when a module's measured fan-out (requests per frame) leaves this band around its planned
#: scale by more than Poisson noise (RATE_NOISE_Z), held RATE_HOLD_S, at most once per MIN_EPOCH_S.
SCALE_BAND = (0.8, 1.25)
#: ...judged only over at least this many frames that reached the module since the plan in force.
MIN_FANOUT_FRAMES = 50
#: A measured scale is planned as at least this: a detector that finds nothing must not plan its
#: children at scale 0 (the schema wants scale > 0; the planner divides by module rates).
MIN_SCALE = 0.01

_Report = TypeVar("_Report", bound=tuple)
_Key = TypeVar("_Key")
Module = tuple[str, str]
"""`(app, module)`."""


def record(reports: dict[str, deque[_Report]], frontend: str, report: _Report, now: float) -> None:
    """Keep a frontend's report (a tuple, its time first) with its latest ones: at most RATE_WINDOW_S
    of them, and none of a frontend gone quiet for REPORT_EXPIRY_S (what it measured goes with it)."""
    reports.setdefault(frontend, deque()).append(report)
    for name, kept in list(reports.items()):
        while kept and kept[0][0] < now - RATE_WINDOW_S:
            kept.popleft()
        if not kept or kept[-1][0] < now - REPORT_EXPIRY_S:
            del reports[name]


def held(since: dict[_Key, float], key: _Key, out: bool, now: float, hold_s: float = RATE_HOLD_S) -> bool:
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
        record(self.reports, frontend, (now, dict(rates), window_s), now)

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

    def judge(self, now: float) -> RateMove | None:
        """Whether the rates moved the plan. An app's total over the reports since the plan in force (at
        most RATE_WINDOW_S of them, from the app's first frame on) out of RATE_BAND around its planned
        rate by more than Poisson noise, held RATE_HOLD_S, at most once per MIN_EPOCH_S; at once (held
        SURGE_HOLD_S) when the last RATE_RECENT_S surge past SURGE_FACTOR times it; back at the
        configured rate when an app planned above it got no frame for IDLE_RESET_S. Every app is planned
        for at least MIN_RATE_FRACTION of its configured rate. A judge with nothing moved returns None."""
        settled = now - self.since >= MIN_EPOCH_S
        total, span = self._rates_since(self.since)
        recent, recent_span = self._rates_since(max(self.since, now - RATE_RECENT_S))
        # reports that cover IDLE_RESET_S since the plan: enough to call an app without frames idle
        covered = any(t <= now - IDLE_RESET_S for reports in self.reports.values()
                      for t, _, _ in reports if t > self.since)
        moved: dict[str, float] = {}
        idle = []
        for app, configured in self.configured.items():
            planned = self.rate(app)
            floor = MIN_RATE_FRACTION * configured
            if app in recent:
                got = max(recent[app], floor)
                surge = (got > SURGE_FACTOR * planned and got < self.ceiling.get(app, math.inf)
                         and got - planned > RATE_NOISE_Z * math.sqrt(planned / recent_span[app]))
                if held(self._surging, app, surge, now, SURGE_HOLD_S):
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
            noise = RATE_NOISE_Z * math.sqrt(planned / span[app])  # std of a Poisson count at the planned rate, per s
            out = (not RATE_BAND[0] * planned <= got <= RATE_BAND[1] * planned and abs(got - planned) > noise
                   and got < self.ceiling.get(app, math.inf))
            if held(self._out_of_band, app, out, now):
                moved[app] = got
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
    """What the fan-out reports show: each module's measured scale (over MIN_FANOUT_FRAMES frames or
    more since the plan in force), and the modules whose scale moved: (planned, measured)."""

    measured: Mapping[Module, float]
    moved: Mapping[Module, tuple[float, float]]


@dataclass
class FanoutWatch:
    """Each module's requests per frame, over every frontend, against the scale its plan was made for."""

    configured: Mapping[Module, float]
    """(app, module) -> its configured scale."""
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
        record(self.reports, frontend, (now, dict(counts)), now)

    def in_force(self, now: float) -> None:
        """A plan went in force: scales are judged afresh against it."""
        self.since = now
        self._out_of_band.clear()

    def judge(self, now: float, follow: bool = True) -> FanoutView:
        """Each module's scale over the reports since the plan in force (at most RATE_WINDOW_S of them,
        from every frontend); moved when it leaves SCALE_BAND around its planned scale by more than
        Poisson noise, over at least MIN_FANOUT_FRAMES frames and for RATE_HOLD_S, at most once per
        MIN_EPOCH_S (never when not `follow`). A measured scale is planned as at least MIN_SCALE: a
        detector that finds nothing does not plan its children at scale 0."""
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
        judge = follow and now - self.since >= MIN_EPOCH_S
        for key in self.configured:
            n = frames.get(key, 0)
            if n < MIN_FANOUT_FRAMES:
                self._out_of_band.pop(key, None)
                continue
            measured[key] = requests[key] / n
            if not judge:
                continue
            planned = self.scale(key)
            got = max(measured[key], MIN_SCALE)
            noise = RATE_NOISE_Z * math.sqrt(planned / n)  # std of the mean of n Poisson counts at the planned scale
            out = not SCALE_BAND[0] * planned <= got <= SCALE_BAND[1] * planned and abs(got - planned) > noise
            if held(self._out_of_band, key, out, now):
                moved[key] = (planned, got)
        return FanoutView(measured, moved)

    def adopt(self, moved: Mapping[Module, tuple[float, float]]) -> None:
        """Plan for the measured scales of what moved from now on."""
        for key, (_, got) in moved.items():
            self.scales[key] = got
            self._out_of_band.pop(key, None)
