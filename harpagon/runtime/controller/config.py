"""The controller's tunables in one place: what `harpagon serve` and `harpagon controller` choose, and
what tests shorten."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harpagon.runtime.controller.calibration import CalibrationSettings
from harpagon.runtime.controller.validation import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    above,
    at_least,
    real,
    require,
    whole,
)
from harpagon.runtime.controller.watches import WatchSettings


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """How the controller keeps its workers, when it re-plans, and how it treats reports."""

    heartbeat_ms: int = 500
    """How often workers heartbeat (they are told at registration), and how often the controller looks
    for workers that stopped (>= 1)."""
    missed_heartbeats: int = 3
    """A worker that misses this many heartbeats in a row is dropped and the plan made without it (>= 1)."""
    apply_timeout_s: float = 120.0
    """Deadline of one ApplyConfig (> 0): loading and warming up a module on a GPU takes seconds, not
    minutes. A worker that stops heartbeating meanwhile is dropped at once, without waiting for it."""
    max_refusals: int = 3
    """A worker that refuses this many configurations in a row (it answers, with an error) is removed
    (>= 1)..."""
    quarantine_s: float = 60.0
    """...and its registrations are refused for this long (>= 0): a worker that cannot take what it is
    given (a full GPU, a version it cannot hold) must not keep every re-plan failing while spares stand
    idle."""
    retry_s: tuple[float, float] = (0.5, 8.0)
    """A failed re-plan retries after the first, doubling up to the second (`0 < first <= second`)."""
    coalesce_s: float = 0.2
    """A re-plan starts this long after it is asked for (>= 0), so that a burst of joins makes one
    re-plan."""
    poll_s: float = 0.05
    """How often the wait before the first plan looks at the registrations (> 0)."""
    expect_workers: int = 0
    """Workers to wait for before the first plan (>= 0; `serve` starts this many locally), so that a
    normal start plans once instead of once per joining worker..."""
    expect_timeout_s: float = 60.0
    """...but not longer than this (>= 0): then it plans with the workers it has and says so."""
    settle_s: float | None = None
    """Without `expect_workers`, the first plan waits for a lull in registrations this long (>= 0;
    None: two heartbeat periods; live workers retry every 0.25 s, so they are back within one heartbeat
    of a controller restart), so that a restarted controller plans once, with every running worker, and
    moves nothing."""
    drain_s: float = 0.0
    """After a routing table that stops routing to some module, wait this long before its workers unload
    it (>= 0): remote frontends cannot say when their old batches are done (an embedded frontend's
    `push_routes` waits for them itself). Nothing is unloaded: no wait."""
    planning: Literal["process", "thread"] = "process"
    """Where plans are made, off the event loop. The planner's replay is seconds of pure Python: in a
    thread it holds the GIL against the embedded frontend's data plane (scripts/bench_replan.py on the
    demo: frame P99 0.6-1.1 s while planning, against 37 ms in a process), so a planner process does it."""
    follow_rates: bool = True
    """Re-plan when measured rates leave the band (off: plans stay at the configured rates, as a
    benchmark with idle gaps between its runs wants)."""
    follow_fanout: bool = True
    """Re-plan when a module's measured fan-out leaves the band around its planned scale (off: plans
    keep the configured scales)."""
    watches: WatchSettings = field(default_factory=WatchSettings)
    """When measured rates and fan-out move the plan."""
    max_rate_factor: float = 100.0
    """A reported rate above this multiple of the app's configured rate is dropped as bogus (> 0): a
    typo, an attack or a unit error would otherwise re-plan, or crash the planner with `inf`."""
    max_fanout: int = 1000
    """A fan-out report with more requests than this many per frame is dropped as bogus (>= 1)."""
    calibration: CalibrationSettings | None = field(default_factory=CalibrationSettings)
    """When measured batch latencies and hop overheads replace the profile's and `overhead_ms` in
    plans (None: never; plans keep the configured figures)."""
    calibration_check_s: float = 1.0
    """How often drift of the measured batch latencies and hop overheads is judged (>= 0, seconds)."""

    def __post_init__(self) -> None:
        retry = self.retry_s
        require("controller", (
            ("heartbeat_ms", self.heartbeat_ms, whole(self.heartbeat_ms) and self.heartbeat_ms < 2**32,
             "must be an integer in [1, 2^32)"),
            ("missed_heartbeats", self.missed_heartbeats, whole(self.missed_heartbeats), COUNT),
            ("apply_timeout_s", self.apply_timeout_s, above(self.apply_timeout_s, 0), POSITIVE),
            ("max_refusals", self.max_refusals, whole(self.max_refusals), COUNT),
            ("quarantine_s", self.quarantine_s, at_least(self.quarantine_s, 0), NON_NEGATIVE),
            ("retry_s", retry, isinstance(retry, tuple) and len(retry) == 2 and all(real(r) for r in retry)
             and 0 < retry[0] <= retry[1], "must be a (first, most) pair of seconds with 0 < first <= most"),
            ("coalesce_s", self.coalesce_s, at_least(self.coalesce_s, 0), NON_NEGATIVE),
            ("poll_s", self.poll_s, above(self.poll_s, 0), POSITIVE),
            ("expect_workers", self.expect_workers, whole(self.expect_workers, 0), "must be an integer >= 0"),
            ("expect_timeout_s", self.expect_timeout_s, at_least(self.expect_timeout_s, 0), NON_NEGATIVE),
            ("settle_s", self.settle_s, self.settle_s is None or at_least(self.settle_s, 0),
             "must be None or a finite number >= 0"),
            ("drain_s", self.drain_s, at_least(self.drain_s, 0), NON_NEGATIVE),
            ("planning", self.planning, self.planning in ("process", "thread"),
             "must be 'process' or 'thread'"),
            ("follow_rates", self.follow_rates, isinstance(self.follow_rates, bool), "must be True or False"),
            ("follow_fanout", self.follow_fanout, isinstance(self.follow_fanout, bool),
             "must be True or False"),
            ("watches", self.watches, isinstance(self.watches, WatchSettings), "must be a WatchSettings"),
            ("max_rate_factor", self.max_rate_factor, above(self.max_rate_factor, 0), POSITIVE),
            ("max_fanout", self.max_fanout, whole(self.max_fanout), COUNT),
            ("calibration", self.calibration, self.calibration is None
             or isinstance(self.calibration, CalibrationSettings), "must be None or a CalibrationSettings"),
            ("calibration_check_s", self.calibration_check_s, at_least(self.calibration_check_s, 0),
             NON_NEGATIVE),
        ))

    @property
    def heartbeat_s(self) -> float:
        """The heartbeat period in seconds."""
        return self.heartbeat_ms / 1000.0

    @property
    def heartbeat_timeout_s(self) -> float:
        """Silence after which a worker is dropped (and its id and address may be taken)."""
        return self.missed_heartbeats * self.heartbeat_ms / 1000.0

    @property
    def lull_s(self) -> float:
        """The lull in registrations the first plan waits for when it expects no number of workers."""
        return 2 * self.heartbeat_ms / 1000.0 if self.settle_s is None else self.settle_s
