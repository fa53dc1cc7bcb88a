"""Self-calibration: compare what the live system measures with what the plan in force assumed.

The planner plans with guesses: each profile row's `mean_ms + std_ms` (times the safety) is a
batch's latency `d(b)`, and `overhead_ms` is added to every request after its batch. Workers report
each batch's execution time and the frontend each batch's hop overhead; when, over a window, they
drift beyond a band from the figures the plan in force was made with, the controller re-plans with
the measured ones.

This module is the policy only: pure, clock-injected (every call takes `now`), no asyncio, gRPC or
logging. It returns reasons as text; the controller logs them, sets its metrics and re-plans:

    cal = Calibrator(workload, settings)                 # the CONFIGURED inputs
    cal.observe_batches(now, "resnet50", "v100", 8, [9.1, 9.3])
    cal.observe_hops(now, [1.2, 0.9])
    if reasons := cal.drift(now):                        # against the figures in force
        cal.adopt(cal.calibrated(now), now)              # measured figures for what drifted
    workload, settings = cal.planned.apply(workload, settings)   # what to plan with

Execution times are compared as `mean + std` per batch size, before the safety, with the profile's
`mean_ms + std_ms` at that size: an emulated device sleeps exactly `mean + std`, so its measured
mean is about the profile's `mean + std` and its measured std about 0, and it does not drift. The
sizes of one `(model, hardware)` combine into one factor, weighted by their batch counts, and a
drifted pair's whole profile (every row, mean and std) is scaled by it. Factors are always relative
to the configured profile, so calibrating again never compounds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from harpagon.config.schema import Profile, ProfileRow, Workload
from harpagon.model.latency import Settings

Pair = tuple[str, str]
"""`(model, hardware)`."""


@dataclass(frozen=True, slots=True)
class CalibrationSettings:
    """When measured figures replace the planned ones."""

    band: float = 0.15
    """Relative drift that counts: `|measured / planned - 1| > band` (> 0). Live figures jitter: an
    emulated device on a busy 2-core host measures 1.1x its profile one window and 1.0x the next."""
    window_s: float = 30.0
    """Observations older than this many seconds are forgotten (> 0)."""
    min_batches: int = 50
    """Batches of one `(model, hardware)`, over its profiled sizes, before its drift is judged (>= 1)."""
    min_hops: int = 200
    """Hop overhead samples before the overhead's drift is judged (>= 1)."""
    overhead_quantile: float = 0.95
    """The overhead figure planned with, a quantile of the samples (in (0, 1)): the planner adds one
    overhead to every request, so a typical value would leave the slow hops' frames late."""
    overhead_floor_ms: float = 1.0
    """Overhead drift must also exceed this many ms (>= 0): at small values the band is below noise
    (the P95 of loopback hops moves by ~1 ms between windows on a busy host)."""
    max_samples: int = 20_000
    """Most samples kept per `(model, hardware, batch)` and of hop overheads, the newest (>= min_batches
    and >= min_hops): memory stays bounded whatever the report rate."""

    def __post_init__(self) -> None:
        def positive_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        def real(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        checks = (
            ("band", self.band, real(self.band) and self.band > 0, "must be a finite number > 0"),
            ("window_s", self.window_s, real(self.window_s) and self.window_s > 0, "must be a finite number > 0"),
            ("min_batches", self.min_batches, positive_int(self.min_batches), "must be an integer >= 1"),
            ("min_hops", self.min_hops, positive_int(self.min_hops), "must be an integer >= 1"),
            ("overhead_quantile", self.overhead_quantile,
             real(self.overhead_quantile) and 0 < self.overhead_quantile < 1, "must be in (0, 1)"),
            ("overhead_floor_ms", self.overhead_floor_ms,
             real(self.overhead_floor_ms) and self.overhead_floor_ms >= 0, "must be a finite number >= 0"),
            ("max_samples", self.max_samples, positive_int(self.max_samples), "must be an integer >= 1"),
        )
        for name, value, ok, rule in checks:
            if not ok:
                raise ValueError(f"calibration {name} {rule}, got {value!r}")
        if self.max_samples < max(self.min_batches, self.min_hops):
            raise ValueError(f"calibration max_samples must be >= min_batches ({self.min_batches}) and "
                             f">= min_hops ({self.min_hops}), got {self.max_samples!r}")


@dataclass(frozen=True, slots=True)
class Calibration:
    """Figures a plan is made with, relative to the configured inputs: the identity (the default) plans
    with the configured profiles and overhead."""

    factors: Mapping[Pair, float] = field(default_factory=dict)
    """`(model, hardware) -> factor` on the configured profile's mean and std; absent means 1."""
    overhead_ms: float | None = None
    """The overhead per hop to plan with; None means the configured `settings.overhead_ms`."""
    reasons: tuple[str, ...] = ()
    """Why these figures differ from those in force when they were made (empty if they do not)."""

    def factor(self, model: str, hardware: str) -> float:
        return self.factors.get((model, hardware), 1.0)

    def apply(self, workload: Workload, settings: Settings) -> tuple[Workload, Settings]:
        """The inputs to plan with. `workload` must carry the configured profiles (its apps may differ,
        e.g. re-measured rates); profiles at factor 1 are kept as they are."""
        profiles = tuple(_scaled(p, f) if (f := self.factor(p.model, p.hardware)) != 1.0 else p
                         for p in workload.profiles)
        if any(new is not old for new, old in zip(profiles, workload.profiles, strict=True)):
            # a new model, not model_copy: model_copy would carry the cached `profile_rows` of the old one
            workload = Workload(**{**{name: getattr(workload, name) for name in Workload.model_fields},
                                   "profiles": profiles})
        if self.overhead_ms is not None:
            settings = replace(settings, overhead_ms=self.overhead_ms)
        return workload, settings


def _scaled(profile: Profile, factor: float) -> Profile:
    rows = tuple(ProfileRow(batch=r.batch, mean_ms=r.mean_ms * factor, std_ms=r.std_ms * factor)
                 for r in profile.batches)
    return Profile(model=profile.model, hardware=profile.hardware, batches=rows)


@dataclass(frozen=True, slots=True)
class ExecMeasure:
    """What one `(model, hardware)` measured, over its profiled batch sizes."""

    factor: float
    """Measured `mean + std` over the profile's `mean_ms + std_ms`, per size, weighted by batch counts."""
    batches: int
    span_s: float
    """Seconds from the oldest batch counted to now."""
    by_batch: Mapping[int, tuple[int, float, float]]
    """`batch size -> (batches, mean_ms, std_ms)` measured."""


@dataclass(frozen=True, slots=True)
class Measured:
    """The figures judged now: observations in the window and since the figures in force were adopted."""

    exec: Mapping[Pair, ExecMeasure]
    overhead_ms: float | None
    """The `overhead_quantile` of the hop overheads; None without any."""
    hops: int
    hops_span_s: float
    rejected: int
    """Samples ignored since the start as not finite, negative (or, for execution times, zero)."""
    unprofiled: int
    """Batch samples ignored since the start: their `(model, hardware, batch)` has no profile row."""


class _Samples:
    """Timestamped samples, oldest first, at most `cap` of them (the oldest go first)."""

    __slots__ = ("cap", "chunks", "size")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: deque[tuple[float, np.ndarray]] = deque()
        self.size = 0

    def add(self, now: float, values: np.ndarray) -> None:
        if not len(values):
            return
        values = values[-self.cap:]
        self.chunks.append((now, values))
        self.size += len(values)
        while self.size > self.cap:
            t, oldest = self.chunks[0]
            extra = self.size - self.cap
            if len(oldest) <= extra:
                self.chunks.popleft()
                self.size -= len(oldest)
            else:
                self.chunks[0] = (t, oldest[extra:].copy())
                self.size -= extra

    def expire(self, before: float) -> None:
        while self.chunks and self.chunks[0][0] < before:
            self.size -= len(self.chunks.popleft()[1])

    def between(self, start: float, since: float) -> tuple[np.ndarray, float]:
        """Samples observed at `start` or later and after `since`, and when the oldest of them was."""
        got = [(t, v) for t, v in self.chunks if t >= start and t > since]
        if not got:
            return np.empty(0), math.inf
        return np.concatenate([v for _, v in got]), min(t for t, _ in got)


class Calibrator:
    """Measured execution times and hop overheads against the figures the plan in force assumed.

    Drift is judged against `planned` (the identity until `adopt`), so after re-planning with the
    measured figures the same measurements no longer drift, and a return to the profile's figures
    drifts back. Only observations since the last `adopt` count: those before it were judged already."""

    def __init__(self, workload: Workload, settings: Settings,
                 calibration: CalibrationSettings | None = None) -> None:
        """`workload` and `settings` are the configured inputs, what every factor is relative to."""
        self.config = calibration if calibration is not None else CalibrationSettings()
        self._profile: dict[Pair, dict[int, float]] = {
            (p.model, p.hardware): {r.batch: r.mean_ms + r.std_ms for r in p.batches} for p in workload.profiles}
        self.configured_overhead_ms = settings.overhead_ms
        self.planned = Calibration()
        """The figures the plan in force was made with (set by `adopt`)."""
        self._since = -math.inf  # observations before this were judged by the last adopt
        self._exec: dict[tuple[str, str, int], _Samples] = {}
        self._hops = _Samples(self.config.max_samples)
        self.rejected = 0
        self.unprofiled = 0

    # --- observations --------------------------------------------------------------------------

    def observe_batches(self, now: float, model: str, hardware: str, batch: int, exec_ms: Sequence[float]) -> int:
        """Execution times (ms) of batches of size `batch` of `model` on `hardware`; returns how many were
        kept. Samples that are not finite and positive, or without a profile row, are counted and ignored."""
        values = self._clean(exec_ms, positive=True)
        self._expire(now)
        key = (model, hardware, batch)
        if batch not in self._profile.get((model, hardware), {}):
            self.unprofiled += len(values)
            return 0
        if len(values):
            self._exec.setdefault(key, _Samples(self.config.max_samples)).add(now, values)
        return len(values)

    def observe_hops(self, now: float, overhead_ms: Sequence[float]) -> int:
        """Hop overheads (ms) of batches; returns how many were kept (not finite or negative: ignored)."""
        values = self._clean(overhead_ms, positive=False)
        self._expire(now)
        self._hops.add(now, values)
        return len(values)

    def _clean(self, samples: Sequence[float], positive: bool) -> np.ndarray:
        try:
            values = np.asarray(samples, dtype=np.float64).ravel()
        except (TypeError, ValueError):  # something that is not a number among them: sort them one by one
            values = np.array([_number(s) for s in samples], dtype=np.float64)
        ok = np.isfinite(values) & ((values > 0) if positive else (values >= 0))
        self.rejected += int(len(values) - np.count_nonzero(ok))
        return values[ok]

    def _expire(self, now: float) -> None:
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite time, got {now!r}")
        cutoff = now - self.config.window_s
        for key in list(self._exec):
            self._exec[key].expire(cutoff)
            if not self._exec[key].size:
                del self._exec[key]
        self._hops.expire(cutoff)

    # --- judgement ---------------------------------------------------------------------------------

    def measured(self, now: float) -> Measured:
        """The figures judged at `now`, whether or not there are enough of them for a verdict."""
        start = now - self.config.window_s
        per_pair: dict[Pair, dict[int, tuple[int, float, float]]] = {}
        oldest: dict[Pair, float] = {}
        for (model, hardware, batch), samples in self._exec.items():
            values, first = samples.between(start, self._since)
            if len(values):
                pair = (model, hardware)
                per_pair.setdefault(pair, {})[batch] = (len(values), float(values.mean()), float(values.std()))
                oldest[pair] = min(oldest.get(pair, math.inf), first)
        exec_: dict[Pair, ExecMeasure] = {}
        for pair, rows in sorted(per_pair.items()):
            profile = self._profile[pair]
            n = sum(c for c, _, _ in rows.values())
            factor = sum(c * (mean + std) / profile[b] for b, (c, mean, std) in rows.items()) / n
            exec_[pair] = ExecMeasure(factor, n, now - oldest[pair], dict(sorted(rows.items())))
        hops, first = self._hops.between(start, self._since)
        quantile = float(np.quantile(hops, self.config.overhead_quantile)) if len(hops) else None
        return Measured(exec_, quantile, len(hops), now - first if len(hops) else 0.0, self.rejected,
                        self.unprofiled)

    @property
    def planned_overhead_ms(self) -> float:
        """The overhead per hop the plan in force was made with."""
        return self.configured_overhead_ms if self.planned.overhead_ms is None else self.planned.overhead_ms

    def calibrated(self, now: float, measured: Measured | None = None) -> Calibration:
        """The figures to plan with now: the planned ones, with each that drifted replaced by its
        measurement; its `reasons` say which and why (empty, and the figures in force, if none).
        `measured` is `self.measured(now)` when the caller has it already."""
        c = self.config
        m = measured if measured is not None else self.measured(now)
        factors = dict(self.planned.factors)
        overhead = self.planned.overhead_ms
        reasons: list[str] = []
        for (model, hardware), e in m.exec.items():
            planned = self.planned.factor(model, hardware)
            if e.batches >= c.min_batches and abs(e.factor / planned - 1) > c.band:
                factors[(model, hardware)] = e.factor
                reasons.append(f"{model} on {hardware}: measured d(b) {e.factor:.2f}x the profile's against "
                               f"{planned:.2f}x planned ({e.batches} batches over {e.span_s:.0f} s)")
        was = self.planned_overhead_ms
        if (m.overhead_ms is not None and m.hops >= c.min_hops
                and abs(m.overhead_ms - was) > max(c.band * was, c.overhead_floor_ms)):
            overhead = m.overhead_ms
            reasons.append(f"hop overhead P{c.overhead_quantile * 100:g} {m.overhead_ms:.1f} ms against "
                           f"{was:.1f} ms planned ({m.hops} hops over {m.hops_span_s:.0f} s)")
        if not reasons:
            return Calibration(factors, overhead)
        return Calibration(factors, overhead, tuple(reasons))

    def drift(self, now: float) -> list[str]:
        """Why the measured figures no longer match those in force, one reason per figure; empty if they
        match or there are too few measurements to tell."""
        return list(self.calibrated(now).reasons)

    def adopt(self, calibration: Calibration, now: float) -> None:
        """The plan in force is (being) made with `calibration`: judge against it from now on, over
        observations after `now` only."""
        self.planned = calibration
        self._since = now


def _number(sample: object) -> float:
    try:
        return float(sample)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
