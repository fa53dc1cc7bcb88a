"""The formulas of docs/model.md and nothing else.

Units: milliseconds, requests per second, dollars per hour per worker. Every function here is a
direct transcription of one line of docs/model.md; planners, the feasibility checker, the simulator and
the runtime all call these, so the promise and its check cannot drift apart.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harpagon.config.schema import App, Module, ProfileRow, Workload

Dispatch = Literal["batch-aware", "request-level"]
#: What a plan promises (docs/model.md v2): the fluid model only, every frame within the SLO under evenly
#: spaced arrivals, or an attainment under Poisson arrivals (which includes the constant promise).
Arrivals = Literal["fluid", "constant", "poisson"]
ARRIVALS: tuple[Arrivals, ...] = ("fluid", "constant", "poisson")
#: How many requests a module gets per frame in the replay: today's rule (`requests_for`, the
#: default of docs/model.md v2), or a draw from Poisson(scale) per module and frame (an extension, see
#: `poisson_requests`).
Fanout = Literal["deterministic", "poisson"]
FANOUTS: tuple[Fanout, ...] = ("deterministic", "poisson")

#: Comparisons of the feasibility check hold within this relative tolerance (docs/model.md).
REL_TOL = 1e-6
#: Planners decide with a much tighter margin, so their plans pass the check with room to spare.
PLAN_TOL = 1e-9


def within(value: float, bound: float, tol: float = REL_TOL) -> bool:
    """`value <= bound`, within a relative tolerance."""
    return value <= bound + tol * max(abs(bound), abs(value))


@dataclass(frozen=True, slots=True)
class Settings:
    """Planner settings (the `settings` object of a plan)."""

    safety: float = 1.0
    """Multiplier on `mean + std` of every profile row (>= 1)."""
    overhead_ms: float = 0.0
    """Dispatch and transfer time added per module hop (>= 0)."""
    max_utilization: float = 1.0
    """Fraction of a worker's throughput a plan may use (0 < u <= 1)."""
    arrivals: Arrivals = "poisson"
    """The promise the plan is made for (docs/model.md, "What a plan promises")."""
    attainment: float = 0.99
    """Under `poisson`: the least fraction of each app's frames within its SLO (0 < a < 1)."""
    fanout: Fanout = "deterministic"
    """Requests per frame of the modules below the source in the replays that measure attainment (Poisson
    arrivals): the planned counts (`requests_for`, docs/model.md v2) or Poisson(scale) draws (an
    extension)."""

    def __post_init__(self) -> None:
        checks = (
            ("safety", self.safety, math.isfinite(self.safety) and self.safety >= 1, "must be >= 1"),
            ("overhead_ms", self.overhead_ms, math.isfinite(self.overhead_ms) and self.overhead_ms >= 0,
             "must be >= 0"),
            ("max_utilization", self.max_utilization, 0 < self.max_utilization <= 1, "must be in (0, 1]"),
            ("arrivals", self.arrivals, self.arrivals in ARRIVALS, f"must be one of {', '.join(ARRIVALS)}"),
            ("attainment", self.attainment, 0 < self.attainment < 1, "must be in (0, 1)"),
            ("fanout", self.fanout, self.fanout in FANOUTS, f"must be one of {', '.join(FANOUTS)}"),
        )
        for name, value, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {value!r}")

    def to_dict(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {"safety": self.safety, "overhead_ms": self.overhead_ms,
                                       "max_utilization": self.max_utilization, "arrivals": self.arrivals,
                                       "attainment": self.attainment}
        if self.fanout != "deterministic":  # absent at the default, so plans print as before
            out["fanout"] = self.fanout
        return out

    @property
    def fluid(self) -> bool:
        return self.arrivals == "fluid"


def effective_latency(mean_ms: float, std_ms: float, safety: float) -> float:
    """`d(b) = (mean_ms + std_ms) * safety`."""
    return (mean_ms + std_ms) * safety


def throughput(batch: int, d_ms: float) -> float:
    """`T(b) = 1000 * b / d(b)`, requests per second of one worker."""
    return 1000.0 * batch / d_ms


def capacity(workers: int, batch: int, d_ms: float, max_utilization: float) -> float:
    """Most requests per second (real + dummy) a group of workers may take: `n * T(b) * u`."""
    return workers * throughput(batch, d_ms) * max_utilization


def batch_aware_latency(batch: int, d_ms: float, rate: float, overhead_ms: float) -> float:
    """`ℓ = 1000 (b - 1) / (r + δ) + d(b) + overhead`: one open batch per tuple, filled at its full rate."""
    if batch == 1:
        return d_ms + overhead_ms
    return 1000.0 * (batch - 1) / rate + d_ms + overhead_ms


def request_level_latency(batch: int, d_ms: float, workers: int, rate: float, overhead_ms: float) -> float:
    """`ℓ = 1000 (b - 1) n / r + d(b) + overhead`: each of the n workers collects at r / n."""
    if batch == 1:
        return d_ms + overhead_ms
    return 1000.0 * (batch - 1) * workers / rate + d_ms + overhead_ms


def collection_ms(dispatch: Dispatch, batch: int, workers: int, rate: float) -> float:
    """How long a batch may collect: the tuple's latency less `d(b)` and the overhead.

    This is the dispatcher's flush timer: a batch ships when full or when its oldest request has
    waited this long, padded with dummies (docs/model.md)."""
    if batch == 1:
        return 0.0
    per_worker = workers if dispatch == "request-level" else 1
    return 1000.0 * (batch - 1) * per_worker / rate


def tuple_latency(dispatch: Dispatch, batch: int, d_ms: float, workers: int, rate: float,
                  dummy_rate: float, overhead_ms: float) -> float:
    """A tuple's worst-case latency under the plan's dispatch policy."""
    return collection_ms(dispatch, batch, workers, rate + dummy_rate) + d_ms + overhead_ms


def dummy_rate(batch: int, d_ms: float, real_rate: float, budget_ms: float, overhead_ms: float,
               dispatch: Dispatch = "batch-aware", workers: int = 1) -> float:
    """Least dummy rate that brings a tuple's latency within the budget (inf if none can)."""
    if batch == 1:
        return 0.0 if d_ms + overhead_ms <= budget_ms * (1 + PLAN_TOL) else math.inf
    room = budget_ms - d_ms - overhead_ms
    if room <= 0:
        return math.inf
    per_worker = workers if dispatch == "request-level" else 1
    return max(0.0, 1000.0 * (batch - 1) * per_worker / room - real_rate)


def group_threshold(batch: int, d_ms: float, workers: int, max_utilization: float, overhead_ms: float) -> float:
    """Least budget at which `workers` workers of `(h, b)` are feasible with optimal dummies
    (docs/model.md)."""
    return batch_aware_latency(batch, d_ms, capacity(workers, batch, d_ms, max_utilization), overhead_ms)


def min_workers(batch: int, d_ms: float, max_utilization: float, budget_ms: float, overhead_ms: float) -> int | None:
    """Fewest workers of `(h, b)` feasible at `budget_ms` with optimal dummies; None if no count is."""
    room = budget_ms - d_ms - overhead_ms
    if batch == 1:
        return 1 if room >= -PLAN_TOL * budget_ms else None
    if room <= 0:
        return None
    need = 1000.0 * (batch - 1) / (throughput(batch, d_ms) * max_utilization * room)
    return max(1, math.ceil(need * (1 - PLAN_TOL)))


def real_requests(batch, rate, wait_ms):
    """Real requests a timer-padded batch holds when requests come `1000 / rate` ms apart and it ships
    after `wait_ms`: `k = min(b, 1 + floor(r τ / 1000 + 1e-9))` (docs/model.md, "Capacity under timer
    padding"). Works on numpy arrays as on numbers."""
    return np.minimum(batch, 1.0 + np.floor(np.asarray(rate) * wait_ms / 1000.0 + 1e-9))


def requests_for(frame: int, scale: float) -> int:
    """Requests a module of scale `s` gets for an app's `frame`-th frame: `floor((f+1)s) - floor(fs)`,
    so its long-run rate is `λ_a s` (the planner's `λ_m`) with whole requests per frame."""
    return math.floor((frame + 1) * scale + 1e-9) - math.floor(frame * scale + 1e-9)


def poisson_requests(scale: float, frames: int, seed: int | str) -> np.ndarray:
    """Requests a module of scale `s` gets for each of `frames` frames under Poisson fan-out: independent
    draws from Poisson(s) (mean `s`, so the long-run rate is still `λ_a s`), whatever its parents got
    (the planner's `scale` is per source frame). Reproducible for a given `seed` (any int or str: the
    simulator uses `"seed/app/module"`, so each module's counts are independent of the others')."""
    rng = np.random.default_rng(random.Random(f"fanout/{seed}").getrandbits(64))
    return rng.poisson(scale, frames)


@dataclass(frozen=True, slots=True)
class Option:
    """A `(hardware, batch)` choice for one model, with its effective latency and price."""

    hardware: str
    batch: int
    d_ms: float
    price: float

    @property
    def throughput(self) -> float:
        return throughput(self.batch, self.d_ms)


def options_for(workload: Workload, app: App, module: Module, settings: Settings) -> list[Option]:
    """Every profiled `(hardware, batch)` of a module's model, with `d(b)` under the settings' safety;
    a module that takes its app's declared frames pays their decode per request (docs/model.md, "Inputs: frame decode")."""
    out = []
    for hw in workload.hardware_for(module.model):
        price = workload.hardware_by_name[hw].price_per_hour
        decode = workload.decode_ms(app, module, hw)
        for row in sorted(workload.profile_rows[(module.model, hw)].values(), key=lambda r: r.batch):
            out.append(Option(hw, row.batch, row_latency(row, decode, settings.safety), price))
    return out


def module_latencies(workload: Workload, app: App, module: Module, hardware: str, safety: float) -> dict[int, float]:
    """`d(b)` of a module on a kind of hardware, by batch size: its model's profile, plus its frames' decode."""
    decode = workload.decode_ms(app, module, hardware)
    return {b: row_latency(r, decode, safety) for b, r in workload.profile_rows[(module.model, hardware)].items()}


def row_latency(row: ProfileRow, decode_ms: float, safety: float) -> float:
    """`d(b)` of a profile row whose requests each add `decode_ms` (their frame's decode and resize)."""
    return effective_latency(row.mean_ms + row.batch * decode_ms, row.std_ms, safety)
