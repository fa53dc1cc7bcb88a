"""Self-calibration: compare what the live system measures with what the plan in force assumed.

The planner plans with guesses: each profile row's `mean_ms + std_ms` (times the safety) is a
batch's latency `d(b)`, and `overhead_ms` is added to every request after its batch. Workers report
each batch's execution time and the frontend each batch's hop overhead; when they drift from the
figures the plan in force was made with, significantly and for long enough, the controller re-plans
with the measured ones, a bounded step at a time.

This module is the policy only: pure, clock-injected (every call takes `now`), no asyncio, gRPC or
logging. It returns reasons as text; the controller logs them, sets its metrics and re-plans:

    cal = Calibrator(workload, settings)                 # the CONFIGURED inputs
    cal.observe_batches(now, "resnet50", "v100", 8, [9.1, 9.3])
    cal.observe_decode(now, "v100", "jpeg", [0.15, 0.16])     # ms per megapixel of frames decoded
    cal.observe_hops(now, [1.2, 0.9])
    calibration = cal.calibrated(now)                    # one check, against the figures in force
    if calibration.reasons:                              # a drift that lasted `sustain_s`
        cal.adopt(calibration, now)
    workload, settings = cal.planned.apply(workload, settings)   # what to plan with

What is measured. Per batch size, the P84 of the execution times (the quantile at which a normal
distribution's `mean + std` lies) against the profile's `mean_ms + std_ms`: a device with normal
times measures its `mean + std`, and so does an emulated device, which sleeps exactly that. Not a
`mean + std` over the raw samples: a host starved for a moment adds a few samples 20x the rest, and
they drag a mean + std to several times the device's (9.5x on a busy 2-core host); the P84 moves only
once a sixth of the samples are slow. Not the median against the profile's mean either: an emulated
device's median is its `mean + std`. The sizes of one `(model, hardware)` combine into one factor,
weighted by their batch counts, and a drifted pair's whole profile (every row, mean and std) is scaled
by it. Frame decode (docs/model.md, "Inputs: frame decode") is measured apart from the model's run: the
P84 of the batches' decode time per megapixel against the hardware's `decode_ms_per_mpixel` for that
encoding, whose figure is scaled the same way. The overhead is a high quantile of the hops
(`overhead_quantile`) against `overhead_ms`.

When it counts. A figure drifts when, at every check (each `calibrated` call) for `sustain_s`,
enough samples (`min_batches`, `min_hops`) put the quantile's 95% interval (order statistics around
its rank, whatever the distribution) wholly beyond the band, the same way (a check with too few
samples leaves it as it was, and a re-plan that keeps the figure too); and when the samples of
the newer half of that span alone do too: a stall's samples linger in the window for `window_s`, and
the P95 of the hops moves once a twentieth of them are slow, but a stall that began the span has left
its newer half. The figure re-planned with is the one measured over that half, bounded to `max_step`
times the one in force: a larger drift takes another sustained span after the re-plan.
Factors are always relative to the configured profile, so calibrating again never compounds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from harpagon.config.schema import Hardware, Profile, ProfileRow, Workload
from harpagon.model.latency import Settings
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

Pair = tuple[str, str]
"""`(model, hardware)`."""
Decode = tuple[str, str]
"""`(hardware, encoding)`: a hardware kind's `decode_ms_per_mpixel` figure for one encoding."""
Figure = Pair | tuple[str, str, str] | str
"""A figure that drifts: a `Pair`'s profile, `("decode", hardware, encoding)`, or the hop overhead."""

EXEC_QUANTILE = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
"""P84.1, where a normal distribution's `mean + std` lies: the execution time figure per batch size."""
CONFIDENCE_Z = 1.96
"""A quantile's interval spans this many binomial standard deviations of its rank either way (95%)."""
_OVERHEAD = "overhead"


@dataclass(frozen=True, slots=True)
class CalibrationSettings:
    """When measured figures replace the planned ones."""

    band: float = 0.15
    """Relative drift that counts: the measured figure's whole interval beyond `planned * (1 +- band)`
    (> 0). Live figures jitter: an emulated device on a busy 2-core host measures 1.1x its profile one
    window and 1.0x the next."""
    window_s: float = 30.0
    """Observations older than this many seconds are forgotten (> 0)."""
    sustain_s: float = 10.0
    """Seconds a drift must last before it is re-planned for (>= 0; 0: each check alone decides): beyond
    the band, the same way, at every check over this span, and over the samples of its newer half alone.
    A host starved for a few seconds leaves slow samples in the window, but not in that half."""
    max_step: float = 2.0
    """Most one re-plan moves a figure (> 1): a factor to within `[1 / max_step, max_step]` times the
    one in force, the overhead to within `[in force / max_step, max_step * max(in force,
    overhead_floor_ms)]` (unbounded up from 0 ms with no floor). A larger drift goes further after
    another sustained span, so one bad minute cannot plan 9.5x the GPUs."""
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
        require("calibration", (
            ("band", self.band, above(self.band, 0), POSITIVE),
            ("window_s", self.window_s, above(self.window_s, 0), POSITIVE),
            ("sustain_s", self.sustain_s, at_least(self.sustain_s, 0), NON_NEGATIVE),
            ("max_step", self.max_step, above(self.max_step, 1), "must be a finite number > 1"),
            ("min_batches", self.min_batches, whole(self.min_batches), COUNT),
            ("min_hops", self.min_hops, whole(self.min_hops), COUNT),
            ("overhead_quantile", self.overhead_quantile,
             real(self.overhead_quantile) and 0 < self.overhead_quantile < 1, "must be in (0, 1)"),
            ("overhead_floor_ms", self.overhead_floor_ms, at_least(self.overhead_floor_ms, 0), NON_NEGATIVE),
            ("max_samples", self.max_samples, whole(self.max_samples), COUNT),
        ))
        if self.max_samples < max(self.min_batches, self.min_hops):
            raise ValueError(f"calibration max_samples must be >= min_batches ({self.min_batches}) and "
                             f">= min_hops ({self.min_hops}), got {self.max_samples!r}")


@dataclass(frozen=True, slots=True)
class Calibration:
    """Figures a plan is made with, relative to the configured inputs: the identity (the default) plans
    with the configured profiles and overhead."""

    factors: Mapping[Pair, float] = field(default_factory=dict)
    """`(model, hardware) -> factor` on the configured profile's mean and std; absent means 1."""
    decode: Mapping[Decode, float] = field(default_factory=dict)
    """`(hardware, encoding) -> factor` on the configured `decode_ms_per_mpixel`; absent means 1."""
    overhead_ms: float | None = None
    """The overhead per hop to plan with; None means the configured `settings.overhead_ms`."""
    reasons: tuple[str, ...] = ()
    """Why these figures differ from those in force when they were made (empty if they do not)."""

    def factor(self, model: str, hardware: str) -> float:
        return self.factors.get((model, hardware), 1.0)

    def decode_factor(self, hardware: str, encoding: str) -> float:
        return self.decode.get((hardware, encoding), 1.0)

    def apply(self, workload: Workload, settings: Settings) -> tuple[Workload, Settings]:
        """The inputs to plan with. `workload` must carry the configured profiles (its apps may differ,
        e.g. re-measured rates); profiles at factor 1 are kept as they are."""
        profiles = tuple(_scaled(p, f) if (f := self.factor(p.model, p.hardware)) != 1.0 else p
                         for p in workload.profiles)
        hardware = tuple(_decode_scaled(h, {enc: f for (hw, enc), f in self.decode.items() if hw == h.name})
                         for h in workload.hardware)
        if any(new is not old for new, old in zip((*profiles, *hardware), (*workload.profiles, *workload.hardware),
                                                  strict=True)):
            # a new model, not model_copy: model_copy would carry the cached `profile_rows` of the old one
            workload = Workload(**{**{name: getattr(workload, name) for name in Workload.model_fields},
                                   "profiles": profiles, "hardware": hardware})
        if self.overhead_ms is not None:
            settings = replace(settings, overhead_ms=self.overhead_ms)
        return workload, settings


def _decode_scaled(hardware: Hardware, factors: Mapping[str, float]) -> Hardware:
    """`hardware` with its decode figures scaled (itself where no factor moves one)."""
    figures = hardware.decode_ms_per_mpixel
    if all(factors.get(enc, 1.0) == 1.0 for enc in figures):
        return hardware
    return hardware.model_copy(update={"decode_ms_per_mpixel": {enc: ms * factors.get(enc, 1.0)
                                                                for enc, ms in figures.items()}})


def _scaled(profile: Profile, factor: float) -> Profile:
    rows = tuple(ProfileRow(batch=r.batch, mean_ms=r.mean_ms * factor, std_ms=r.std_ms * factor)
                 for r in profile.batches)
    return Profile(model=profile.model, hardware=profile.hardware, batches=rows)


@dataclass(frozen=True, slots=True)
class ExecMeasure:
    """What one `(model, hardware)` measured, over its profiled batch sizes."""

    factor: float
    """Measured P84 over the profile's `mean_ms + std_ms`, per size, weighted by batch counts."""
    interval: tuple[float, float]
    """The factor's 95% interval: each size's interval, weighted alike."""
    batches: int
    span_s: float
    """Seconds from the oldest batch counted to now."""
    by_batch: Mapping[int, tuple[int, float]]
    """`batch size -> (batches, P84 ms)` measured."""


@dataclass(frozen=True, slots=True)
class Measured:
    """The figures judged now: observations in the window and since the figures in force were adopted."""

    exec: Mapping[Pair, ExecMeasure]
    decode: Mapping[Decode, ExecMeasure]
    """Per `(hardware, encoding)`: the P84 of the batches' decode time per megapixel over the configured
    figure (`factor`), `batches` counting the batches measured (`by_batch` empty)."""
    overhead_ms: float | None
    """The `overhead_quantile` of the hop overheads; None without any."""
    overhead_interval_ms: tuple[float, float] | None
    """Its 95% interval; None without any."""
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
    drifts back. Only observations since the last `adopt` count: those before it were judged already.
    Each `calibrated` call is a check: it remembers since when each figure has drifted."""

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
        self._decode_figure: dict[Decode, float] = {
            (h.name, enc): ms for h in workload.hardware for enc, ms in h.decode_ms_per_mpixel.items() if ms > 0}
        self._decode: dict[Decode, _Samples] = {}
        self._hops = _Samples(self.config.max_samples)
        # figure -> (since when, +1 above / -1 below)
        self._drifting: dict[Figure, tuple[float, int]] = {}
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

    def observe_decode(self, now: float, hardware: str, encoding: str, ms_per_mpixel: Sequence[float]) -> int:
        """Frame decode times of batches on `hardware`, per megapixel of `encoding` frames (each a batch's
        decode time over its frames' megapixels); returns how many were kept. Samples that are not finite
        and positive, or for a figure the configuration does not state, are counted and ignored."""
        values = self._clean(ms_per_mpixel, positive=True)
        self._expire(now)
        key = (hardware, encoding)
        if key not in self._decode_figure:
            self.unprofiled += len(values)
            return 0
        if len(values):
            self._decode.setdefault(key, _Samples(self.config.max_samples)).add(now, values)
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
        for held in (self._exec, self._decode):
            for key in list(held):
                held[key].expire(cutoff)
                if not held[key].size:
                    del held[key]
        self._hops.expire(cutoff)

    # --- judgement ---------------------------------------------------------------------------------

    def measured(self, now: float) -> Measured:
        """The figures judged at `now`, whether or not there are enough of them for a verdict."""
        return self._measure(now, now - self.config.window_s)

    def _measure(self, now: float, start: float) -> Measured:
        """The figures of the observations at `start` or later (and since the last `adopt`)."""
        per_pair: dict[Pair, dict[int, tuple[int, float, float, float]]] = {}
        oldest: dict[Pair, float] = {}
        for (model, hardware, batch), samples in self._exec.items():
            values, first = samples.between(start, self._since)
            if len(values):
                pair = (model, hardware)
                per_pair.setdefault(pair, {})[batch] = (len(values), *_quantile(values, EXEC_QUANTILE))
                oldest[pair] = min(oldest.get(pair, math.inf), first)
        exec_: dict[Pair, ExecMeasure] = {}
        for pair, rows in sorted(per_pair.items()):
            profile = self._profile[pair]
            n = sum(row[0] for row in rows.values())
            # factor, low, high: each size's figures over its profiled d(b), weighted by batch counts
            factor, low, high = (sum(row[0] * row[i] / profile[b] for b, row in rows.items()) / n for i in (1, 2, 3))
            exec_[pair] = ExecMeasure(factor, (low, high), n, now - oldest[pair],
                                      {b: (row[0], row[1]) for b, row in sorted(rows.items())})
        decode: dict[Decode, ExecMeasure] = {}
        for key, samples in sorted(self._decode.items()):
            values, first = samples.between(start, self._since)
            if len(values):
                figure = self._decode_figure[key]
                point, low, high = _quantile(values, EXEC_QUANTILE)
                decode[key] = ExecMeasure(point / figure, (low / figure, high / figure), len(values), now - first, {})
        hops, first = self._hops.between(start, self._since)
        overhead, low, high = _quantile(hops, self.config.overhead_quantile) if len(hops) else (None, 0.0, 0.0)
        return Measured(exec_, decode, overhead, None if overhead is None else (low, high), len(hops),
                        now - first if len(hops) else 0.0, self.rejected, self.unprofiled)

    @property
    def planned_overhead_ms(self) -> float:
        """The overhead per hop the plan in force was made with."""
        return self.configured_overhead_ms if self.planned.overhead_ms is None else self.planned.overhead_ms

    def calibrated(self, now: float, measured: Measured | None = None) -> Calibration:
        """One check: the figures to plan with now, the planned ones with each that drifted for
        `sustain_s` replaced by its measurement (bounded by `max_step`); its `reasons` say which and why
        (empty, and the figures in force, if none). `measured` is `self.measured(now)` when the caller
        has it already."""
        c = self.config
        m = measured if measured is not None else self.measured(now)
        factors = dict(self.planned.factors)
        decode = dict(self.planned.decode)
        overhead = self.planned.overhead_ms
        reasons: list[str] = []
        newer: list[Measured] = [m] if c.sustain_s == 0 else []  # the newer half of the span, once needed

        def newer_half() -> Measured:
            if not newer:
                newer.append(self._measure(now, now - min(c.sustain_s / 2, c.window_s)))
            return newer[0]

        for pair, e in m.exec.items():
            planned = self.planned.factor(*pair)
            if (got := self._sustained(pair, e, lambda p=pair: newer_half().exec.get(p), planned, now)) is None:
                continue
            factors[pair] = min(max(got.factor, planned / c.max_step), planned * c.max_step)
            reasons.append(f"{pair[0]} on {pair[1]}: measured d(b) {got.factor:.2f}x the profile's against "
                           f"{planned:.2f}x planned ({got.batches} batches over {got.span_s:.0f} s"
                           f"{self._lasted(pair, now)})" + self._bounded(got.factor, factors[pair], "x"))
        for key, e in m.decode.items():
            planned, figure = self.planned.decode_factor(*key), ("decode", *key)
            if (got := self._sustained(figure, e, lambda k=key: newer_half().decode.get(k), planned, now)) is None:
                continue
            decode[key] = min(max(got.factor, planned / c.max_step), planned * c.max_step)
            reasons.append(f"{key[1]} decode on {key[0]}: measured {got.factor:.2f}x the configured "
                           f"{self._decode_figure[key]:g} ms per megapixel against {planned:.2f}x planned "
                           f"({got.batches} batches over {got.span_s:.0f} s{self._lasted(figure, now)})"
                           + self._bounded(got.factor, decode[key], "x"))
        was = self.planned_overhead_ms
        margin = max(c.band * was, c.overhead_floor_ms)
        if (m.overhead_interval_ms is not None and m.hops >= c.min_hops
                and (way := self._drifted(_OVERHEAD, m.overhead_interval_ms, was, margin, now))):
            got_hops = newer_half()
            if (got_hops.overhead_ms is not None and got_hops.overhead_interval_ms is not None
                    and got_hops.hops >= c.min_hops and _way(got_hops.overhead_interval_ms, was, margin) == way):
                overhead = max(got_hops.overhead_ms, was / c.max_step)
                if (basis := max(was, c.overhead_floor_ms)) > 0:  # from 0 with no floor there is nothing to scale
                    overhead = min(overhead, basis * c.max_step)
                reasons.append(f"hop overhead P{c.overhead_quantile * 100:g} {got_hops.overhead_ms:.1f} ms against "
                               f"{was:.1f} ms planned ({got_hops.hops} hops over {got_hops.hops_span_s:.0f} s"
                               f"{self._lasted(_OVERHEAD, now)})" + self._bounded(got_hops.overhead_ms, overhead, " ms"))
        return Calibration(factors, decode, overhead, tuple(reasons))

    def _sustained(self, key: Figure, e: ExecMeasure, newer: Callable[[], ExecMeasure | None], planned: float,
                   now: float) -> ExecMeasure | None:
        """A factor figure's measure over the newer half of its span (`newer()`), when it drifted beyond
        the band the same way at every check for `sustain_s` and that half agrees; else None."""
        c = self.config
        margin = c.band * planned
        if e.batches < c.min_batches or not (way := self._drifted(key, e.interval, planned, margin, now)):
            return None
        got = newer()
        if got is None or got.batches < c.min_batches or _way(got.interval, planned, margin) != way:
            return None
        return got

    def _drifted(self, key: Figure, interval: tuple[float, float], planned: float, margin: float,
                 now: float) -> int:
        """Record this check's verdict on `key`; the way it has drifted (+1 above the band, -1 below) if
        that way at every check for `sustain_s` or longer, else 0. Checks with too few samples to tell
        are not made."""
        if not (way := _way(interval, planned, margin)):
            self._drifting.pop(key, None)
            return 0
        since, before = self._drifting.get(key, (now, way))
        self._drifting[key] = (since if before == way else now, way)  # turned the other way: a new drift
        return way if now - self._drifting[key][0] >= self.config.sustain_s else 0

    def _lasted(self, key: Figure, now: float) -> str:
        return f", drifting for {now - self._drifting[key][0]:.0f} s" if self.config.sustain_s > 0 else ""

    def _bounded(self, measured: float, planned: float, unit: str) -> str:
        if planned == measured:
            return ""
        return f"; planning with {planned:.2f}{unit}, a step of at most {self.config.max_step:g}x"

    def drift(self, now: float) -> list[str]:
        """One check (as `calibrated`): why the measured figures no longer match those in force, one
        reason per figure; empty if they match, have not drifted for `sustain_s`, or are too few to tell."""
        return list(self.calibrated(now).reasons)

    def adopt(self, calibration: Calibration, now: float) -> None:
        """The plan in force is (being) made with `calibration`: judge against it from now on, over
        observations after `now` only. A figure it changes drifts afresh; one it keeps goes on drifting
        (any re-plan adopts: a re-plan for rates must not restart the calibration's wait)."""
        old, self.planned, self._since = self.planned, calibration, now
        def same(key: Figure) -> bool:
            if key == _OVERHEAD:
                return calibration.overhead_ms == old.overhead_ms
            if len(key) == 3:  # ("decode", hardware, encoding)
                return calibration.decode_factor(*key[1:]) == old.decode_factor(*key[1:])
            return calibration.factor(*key) == old.factor(*key)

        kept = {key for key in self._drifting if same(key)}
        self._drifting = {key: self._drifting[key] for key in kept}


def _quantile(values: np.ndarray, p: float) -> tuple[float, float, float]:
    """The `p` quantile of `values`, and its 95% interval: the order statistics at the ranks `n p -+ z
    sqrt(n p (1 - p))` bound it whatever the distribution (the count of samples below it is binomial)."""
    x = np.sort(values)
    n = len(x)
    point = float(np.quantile(x, p))
    half = CONFIDENCE_Z * math.sqrt(n * p * (1 - p))
    low = float(x[min(max(math.floor(n * p - half) - 1, 0), n - 1)])
    high = float(x[min(max(math.ceil(n * p + half), 0), n - 1)])
    return point, min(low, point), max(high, point)


def _way(interval: tuple[float, float], planned: float, margin: float) -> int:
    """+1 when all of `interval` lies above `planned + margin`, -1 when below `planned - margin`, else 0."""
    low, high = interval
    return 1 if low > planned + margin else -1 if high < planned - margin else 0


def _number(sample: object) -> float:
    try:
        return float(sample)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
