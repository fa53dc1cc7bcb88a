"""What a run of the elastic benchmark measured, and the figures and goals drawn from it (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harpagon.bench.elastic.day import Day
from harpagon.bench.live.load import DROPPED, FAILED, NO_REPLY, OK
from harpagon.bench.report import ROOT, fmt
from harpagon.data import configs_dir

DEFAULT_CONFIG = configs_dir() / "elastic.yaml"
DEFAULT_OUT = ROOT / "docs" / "benchmarks" / "elastic.md"
#: The fleet's goals: allocated GPU-hours against the plans' and against a fleet fixed at the peak, and
#: the time from a rise of the desired count to the new workers serving.
MAX_VS_PLAN, MAX_VS_PEAK, MAX_SCALE_UP_S = 1.15, 0.65, 15.0
SAMPLE_S = 0.25


@dataclass
class Sample:
    t: float  # seconds since the day began (negative: warm-up)
    desired: int
    started: int  # worker processes alive: what a cloud bills (starting and draining ones included)
    registered: int
    planned: int  # workers the plan in force uses
    plan_workers: int  # workers registered when the plan in force was made
    plan_cost: float
    allocated_cost: float
    planned_rate: float


@dataclass
class Rise:
    at: float
    desired: int
    serving_at: float | None  # the first time a plan in force was made with that many workers


@dataclass
class ElasticResult:
    config: str
    day: Day
    warmup_s: float
    peak_rate: float
    slo_ms: dict[str, float]
    target: float
    samples: list[Sample]
    frames: dict[str, dict[str, Any]]  # app -> times, status, latency_ms
    events: list[tuple[float, str, str]]  # (t, action, worker)
    peak_cost: float  # the plan at the configured (peak) rates, $/h
    peak_workers: int
    price: float
    spare: int  # the fleet's spare workers at the peak
    command: str
    wall_s: float

    @property
    def rises(self) -> list[Rise]:
        return rises(self.samples)


def rises(samples: Sequence[Sample]) -> list[Rise]:
    """Each rise of the desired count during the day, and when a plan was first made with that many
    workers (the new capacity serving)."""
    out = []
    for prev, s in zip(samples, samples[1:], strict=False):
        if s.t >= 0 and s.desired > prev.desired:
            serving = next((x.t for x in samples if x.t >= s.t and x.plan_workers >= s.desired), None)
            out.append(Rise(s.t, s.desired, serving))
    return out


def integrate(samples: Sequence[Sample], attr: str, start: float, end: float) -> float:
    """The time integral (units x hours) of a sampled step function over [start, end] s."""
    total = 0.0
    for s, nxt in zip(samples, samples[1:], strict=False):
        a, b = max(s.t, start), min(nxt.t, end)
        if b > a:
            total += getattr(s, attr) * (b - a)
    return total / 3600.0


def windows(result: ElasticResult) -> list[tuple[float, float]]:
    """Scale-up windows: from each rise of the desired count to its capacity serving."""
    return [(r.at, r.serving_at if r.serving_at is not None else result.day.seconds) for r in result.rises]


def minute_rows(result: ElasticResult) -> list[dict[str, Any]]:
    """Per app and minute of the day: frames, share within the SLO, and whether a scale-up window
    overlaps it."""
    rows = []
    spans = windows(result)
    for app, f in result.frames.items():
        t, status, lat = f["times"], f["status"], f["latency_ms"]
        good = (status == OK) & (lat <= result.slo_ms[app])
        for m in range(math.ceil(result.day.seconds / 60.0)):
            sel = (t >= 60 * m) & (t < 60 * (m + 1))
            n = int(sel.sum())
            rows.append({"app": app, "minute": m + 1, "frames": n,
                         "attainment": float(good[sel].mean()) if n else math.nan,
                         "scale_up": any(a < 60 * (m + 1) and b > 60 * m for a, b in spans)})
    return rows


def fates(result: ElasticResult) -> dict[str, dict[str, int]]:
    """Per app, what the day's frames got: within the SLO, late, refused or failed (a status),
    DEADLINE_EXCEEDED (the frontend's, past the SLO, or the client's own), or no answer at all."""
    out = {}
    for app, f in result.frames.items():
        day = f["times"] >= 0
        status, lat = f["status"][day], f["latency_ms"][day]
        ok = status == OK
        out[app] = {"sent": int(day.sum()), "within": int((ok & (lat <= result.slo_ms[app])).sum()),
                    "late": int((ok & (lat > result.slo_ms[app])).sum()), "failed": int((status == FAILED).sum()),
                    "deadline": int((status == DROPPED).sum()), "lost": int((status == NO_REPLY).sum())}
    return out


def summary(result: ElasticResult) -> dict[str, Any]:
    d = result.day.seconds
    allocated = integrate(result.samples, "allocated_cost", 0.0, d)
    planned = integrate(result.samples, "plan_cost", 0.0, d)
    fixed = result.peak_cost * d / 3600.0
    fixed_spare = (result.peak_workers + result.spare) * result.price * d / 3600.0
    delays = [r.serving_at - r.at for r in result.rises if r.serving_at is not None]
    rows = minute_rows(result)
    outside = [r for r in rows if not r["scale_up"] and r["frames"]]
    counts = fates(result)
    return {"allocated": allocated, "planned": planned, "fixed": fixed, "fixed_spare": fixed_spare,
            "vs_plan": allocated / planned if planned else math.nan,
            "vs_peak": allocated / fixed if fixed else math.nan,
            "vs_peak_spare": allocated / fixed_spare if fixed_spare else math.nan,
            "delays": delays, "max_delay": max(delays, default=math.nan),
            "unserved_rises": sum(r.serving_at is None for r in result.rises),
            "minutes_kept": all(r["attainment"] >= result.target for r in outside),
            "missed_minutes": [r for r in outside if r["attainment"] < result.target],
            "total": {app: c["within"] / c["sent"] if c["sent"] else math.nan for app, c in counts.items()},
            "lost": sum(c["lost"] for c in counts.values()), "fates": counts,
            "stops": sum(a == "stop" for t, a, _ in result.events if t >= 0),
            "starts": sum(a == "start" for t, a, _ in result.events if t >= 0)}


def goals(result: ElasticResult, s: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for each of the fleet's goals."""
    kept_total = all(v >= result.target for v in s["total"].values())
    return [
        (f"allocated GPU-hours <= {MAX_VS_PLAN:g} x the plans'", f"{s['vs_plan']:.3f} x", s["vs_plan"] <= MAX_VS_PLAN),
        (f"allocated GPU-hours <= {MAX_VS_PEAK:g} x a fleet fixed at the peak plan's",
         f"{s['vs_peak']:.3f} x", s["vs_peak"] <= MAX_VS_PEAK),
        (f"every app >= {result.target:.0%} within its SLO in every minute outside the scale-up windows",
         "kept" if s["minutes_kept"] else f"{len(s['missed_minutes'])} minutes short", s["minutes_kept"]),
        (f"every app >= {result.target:.0%} within its SLO over the day",
         ", ".join(f"{app} {v:.2%}" for app, v in s["total"].items()), kept_total),
        ("0 frames lost (no answer and no status)", str(s["lost"]), s["lost"] == 0),
        (f"new workers serving <= {MAX_SCALE_UP_S:g} s after the desired count rose",
         f"max {fmt(s['max_delay'], '.1f')} s over {len(s['delays'])} rises"
         + (f", {s['unserved_rises']} never served" if s["unserved_rises"] else ""),
         (not s["delays"] or s["max_delay"] <= MAX_SCALE_UP_S) and not s["unserved_rises"]),
    ]
