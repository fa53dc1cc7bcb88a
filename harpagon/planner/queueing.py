"""What a tuple needs under real arrivals: the timer-padding capacity rule and a queueing allowance.

The fluid model (docs/model.md v1) assumes every module's requests arrive smoothly at exactly the
planned rate. Under the `constant` and `poisson` promises (docs/model.md v2) a tuple's latency is its
collection time `τ`, plus the wait for a busy worker, plus `d(b)` and the overhead. The planner
bounds that wait with an allowance `q` that it adds to the tuple's latency (`queue_ms` in the plan):

- **Timer padding.** With evenly spaced frames a batch holds `k = min(b, 1 + floor(r τ))` real
  requests (docs/model.md), one fewer when the stream is not perfectly even (a split between tuples, a
  burst can make the `b`-th request miss the timer). Under Poisson arrivals it holds
  `E[k] = E[min(b, 1 + N)]` on average, `N ~ Poisson(r τ)` (:func:`expected_fill`, the exact sum):
  at `r τ = 31` and `b = 32` that is 29.8, not 31. The worker's load is `ρ = (r / k) d(b) / (1000 n)`;
  it must stay within `max_utilization` (times the module's repair headroom), and the allowance
  below grows without bound as `ρ` nears 1.
- **Bursts.** A module gets each frame's `s` requests at once, and a batched parent releases its
  frames together: `g` requests at one instant fill up to `ceil(g / b)` batches at once, which wait
  `(ceil(ceil(g / b) / n) - 1) d(b)` for the `n` workers.
- **Random arrivals** (`poisson` only). The wait at a worker whose batches arrive with squared
  coefficient of variation `c² = min(1, g / (k n))` (a batch sums `k / g` bursts, round-robin sums
  `n` batches) exceeds `t` with probability about `ρ exp(-2 (1 - ρ) t / (c² d))` (the heavy-traffic
  approximation, conservative for deterministic service), so the wait that only a fraction `ε` of
  requests exceeds is `d c² ln(ρ / ε) / (2 (1 - ρ))`. `ε` is the app's allowed late fraction, halved
  for sampling noise and shared over the modules of its longest path and a frame's requests.

The allowance is a model; the replay judges the promise, and the planner's repair
(:func:`harpagon.planner.arrivals.repair_arrivals`) scales a module's allowance, adds to it, or lowers
its headroom when the replay finds the module late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from harpagon.config.schema import Workload
from harpagon.model.latency import PLAN_TOL, collection_ms, real_requests, row_latency
from harpagon.model.plan import Plan

#: Share of an app's allowed late fraction the allowance plans for (the rest is margin for noise).
EPSILON_SHARE = 0.5
#: Loads of a saturated main group tried, as fractions of what its batches can take.
MAIN_LEVELS = (1.0, 0.9, 0.8, 0.65)


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the planner assumes of one module's requests under a promise (and its repair state)."""

    poisson: bool
    """Random (Poisson) arrivals; else evenly spaced frames."""
    smooth: bool = False
    """The module's stream is exactly even (the source of a constant-rate app, scale 1)."""
    clump: int = 1
    """Most requests released at one instant (a frame's requests, times the frames a parent's batch
    releases together)."""
    epsilon: float = 0.0
    """Fraction of requests whose wait may exceed the allowance (`poisson`)."""
    jitter: bool = True
    """Count on one real request fewer per batch than the even-stream count, unless the stream is
    even and unsplit (off: the optimistic level of the model)."""
    kappa: float = 1.0
    """Multiplier on the allowance (the model's level, then repair)."""
    extra_ms: float = 0.0
    """Repair: latency added to every tuple of the module."""
    headroom: float = 1.0
    """Repair: factor on `max_utilization` for the timer-padding load."""

    def repaired(self, *, kappa: float = 1.0, extra_ms: float = 0.0, headroom: float = 1.0) -> Arrival:
        return replace(self, kappa=self.kappa * kappa, extra_ms=self.extra_ms + extra_ms,
                       headroom=self.headroom * headroom)


def allowance(b, d, n, k, rho, a: Arrival):
    """Queueing allowance `q` (ms) of groups, numpy-broadcast over its array arguments."""
    bursts = np.ceil(a.clump / b)
    q = np.maximum(0.0, np.ceil(bursts / n) - 1.0) * d
    if a.poisson:
        c2 = np.minimum(1.0, a.clump / (k * n))
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = d * c2 * np.log(np.maximum(rho / a.epsilon, 1.0)) / (2.0 * (1.0 - rho))
        q = q + np.where(rho < 1.0, tail, math.inf)
    return a.kappa * q


def expected_fill(b, mean, clump: int = 1):
    """`E[min(b, g (1 + N))]` with `N ~ Poisson(mean / g)`: the real requests a timer-padded batch holds
    on average when requests arrive as a Poisson process in clumps of `g` and `mean` of them are
    expected while it collects (`r τ / 1000`). A batch opens with a clump and ships after `τ` or when
    full, so the tuple runs `r / E[k]` batches a second. The exact sum
    `Σ_{j<b} P(N ≥ floor(j / g))`, numpy-broadcast over `b` and `mean`."""
    b, mean = np.broadcast_arrays(np.asarray(b, dtype=float), np.asarray(mean, dtype=float))
    shape = b.shape
    b, mean = b.reshape(-1), mean.reshape(-1)
    lam = np.maximum(mean, 0.0) / clump
    pmf = np.exp(-lam)  # P(N = 0)
    tail = np.ones_like(lam)  # P(N ≥ m), m = floor(j / g)
    total = np.zeros_like(lam)
    top = int(b.max()) if b.size else 0
    whole = bool(b.size) and bool((b >= top).all())  # every element sums all `top` terms
    for j in range(top):  # in place (a planner's hot loop), the same operations in the same order
        m = j // clump
        if j and m != (j - 1) // clump:  # step the tail to the next m
            np.subtract(tail, pmf, out=tail)
            np.maximum(tail, 0.0, out=tail)
            np.multiply(pmf, lam, out=pmf)
            np.divide(pmf, m, out=pmf)
        if whole:
            np.add(total, tail, out=total)
        else:
            np.add(total, tail, out=total, where=j < b)
    return total.reshape(shape)[()] if shape == () else total.reshape(shape)


def real_per_batch(b, r, tau, a: Arrival, split: bool):
    """Real requests a batch can be counted on to hold. Even streams: `min(b, 1 + floor(r τ))`, less
    one unless the stream is even and unsplit. Poisson arrivals: the expected fill (the worker's
    long-run load is `r d / E[k]` exactly), and for clumped streams the lesser of that and the fill
    with the clumps' own Poisson count (a clump of `g` lands whole or not at all)."""
    if not a.poisson:
        return np.maximum(1.0, real_requests(b, r, tau) - jitter_of(a, split))
    mean = np.asarray(r) * tau / 1000.0
    fill = expected_fill(b, mean)
    if a.clump > 1:
        fill = np.minimum(fill, expected_fill(b, mean, a.clump))
    return np.maximum(1.0, fill)


def jitter_of(a: Arrival, split: bool) -> float:
    return 0.0 if (not a.jitter or (a.smooth and not split)) else 1.0


def evaluate(b, d, n, r, tau, a: Arrival, u: float, overhead_ms: float, split: bool):
    """Latency (inf where infeasible) and allowance of groups that collect for `τ` ms.

    Feasible: the fluid capacity `r + δ ≤ n T u` (so `τ ≥ 1000 (b - 1) / (n T u)`, docs/model.md) and
    the timer-padding load within `u` times the module's headroom."""
    k = real_per_batch(b, r, tau, a, split)
    rho = r * d / (1000.0 * n * k)
    q = allowance(b, d, n, k, rho, a)
    tau_min = np.where(b > 1, 1000.0 * (b - 1) * d / (n * 1000.0 * b * u), 0.0)
    ok = (rho <= u * a.headroom * (1 + PLAN_TOL)) & (tau >= tau_min * (1 - PLAN_TOL)) & np.isfinite(q)
    lat = tau + d + overhead_ms + a.extra_ms + q
    return np.where(ok, lat, math.inf), q


def _taus(b, d, n, r, a: Arrival, u: float, split: bool) -> list:
    """Collection times worth trying (each clipped to what the fluid capacity allows and to no
    dummies at all): the least, the least that gives the timer-padding load its whole number of real
    requests per batch (docs/model.md) and the next two, and under Poisson arrivals those plus one to three
    standard deviations of the count (the expected fill reaches `need` only if more are expected)."""
    tau_lo = np.where(b > 1, (b - 1) * d / (n * b * u), 0.0)
    tau_hi = np.where(b > 1, 1000.0 * (b - 1) / r, 0.0)  # no dummies at all
    need = np.ceil(r * d / (1000.0 * n * u * a.headroom) * (1 - PLAN_TOL)) + jitter_of(a, split)
    extras = (0, 1, 2) if not a.poisson else (0, 1, 2, *(c * np.sqrt(need) for c in (1.0, 2.0, 3.0)))
    raw = (tau_lo, *(1000.0 * (need - 1 + extra) / r for extra in extras), tau_hi)
    return [np.minimum(np.maximum(tau_lo, tau), tau_hi) for tau in raw]


def least_latency(b, d, n, r, a: Arrival, u: float, overhead_ms: float, split: bool):
    """Least latency of groups of `n` workers at real rate `r` (inf where none), over the collection
    times worth trying (:func:`_taus`)."""
    b, d, n, r = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (b, d, n, r)))
    # Every collection time at once (one array per time, stacked): elementwise, so each latency is what
    # evaluating that time alone gives, in one pass of the expected fill's loop instead of one per time.
    lat, _ = evaluate(b[None], d[None], n[None], r[None], np.stack(_taus(b, d, n, r, a, u, split)), a, u,
                      overhead_ms, split)
    best = np.full(b.shape, math.inf)
    for row in lat:
        best = np.minimum(best, row)
    return best


def collection_for(b: int, d: float, n: int, r: float, budget: float, a: Arrival, u: float, overhead_ms: float,
                   split: bool) -> tuple[float, float] | None:
    """The collection time `τ` and allowance `q` a tuple uses at a budget: the longest that fits (the
    fewest dummies, the smallest allowance), of every whole number of real requests per batch and
    the times :func:`least_latency` tries; None if none fits."""
    if b == 1:
        lat, q = evaluate(np.float64(1), d, n, r, np.float64(0.0), a, u, overhead_ms, split)
        return (0.0, float(q)) if lat <= budget * (1 + PLAN_TOL) else None
    tau_lo = (b - 1) * d / (n * b * u)
    tau_hi = 1000.0 * (b - 1) / r
    grid = [min(max(tau_lo, 1000.0 * (kk - 1) / r), tau_hi) for kk in range(b, 0, -1)]
    tried = [float(t) for t in _taus(np.float64(b), np.float64(d), np.float64(n), np.float64(r), a, u, split)]
    for tau in sorted(set(grid + tried), reverse=True):
        lat, q = evaluate(np.float64(b), d, n, r, np.float64(tau), a, u, overhead_ms, split)
        if lat <= budget * (1 + PLAN_TOL):
            return tau, float(q)
    return None


def expected_loads(plan: Plan, workload: Workload, poisson: bool) -> dict[str, tuple[float, frozenset[str]]]:
    """Each worker group's expected long-run load (busy time per second) in a replay of `plan`, with
    the apps it serves, keyed `app/module[tuple]` (or `gpu ID` for a shared GPU): batches a second,
    `Σ r_c / E[k_c]` over its collectors, times `d(b)`, over its workers. `E[k]` is the Poisson fill
    (:func:`expected_fill`), or the even-stream count with constant arrivals. A group at a load of 1 or
    more grows its queue without bound, however long the stream is judged."""
    safety = plan.settings.safety
    load: dict[str, float] = {}
    apps: dict[str, set[str]] = {}
    apps_in = {a.name: a for a in workload.apps}
    for ap in plan.apps:
        app = apps_in[ap.name]
        for mp in ap.modules:
            module = app.module(mp.name)
            for i, t in enumerate(mp.tuples):
                row = workload.profile_rows[(module.model, t.hardware)][t.batch]
                d = row_latency(row, workload.decode_ms(app, module, t.hardware), safety)
                per = t.workers if plan.dispatch == "request-level" and t.gpu is None else 1
                rate = t.rate / per  # each collector's real rate
                tau = t.cycle_ms if t.gpu is not None and t.cycle_ms is not None else \
                    collection_ms(plan.dispatch, t.batch, t.workers, t.rate + t.dummy_rate)
                fill = expected_fill(t.batch, rate * tau / 1000.0) if poisson else real_requests(t.batch, rate, tau)
                busy = per * rate / max(1.0, float(fill)) * d / 1000.0
                key = f"gpu {t.gpu}" if t.gpu is not None else f"{ap.name}/{mp.name}[{i}]"
                load[key] = load.get(key, 0.0) + busy / (1 if t.gpu is not None else t.workers)
                apps.setdefault(key, set()).add(ap.name)
    return {k: (v, frozenset(apps[k])) for k, v in load.items()}


def overloaded(plan: Plan, workload: Workload, poisson: bool) -> dict[str, str]:
    """The apps of `plan` that cannot keep a promise in a steady-state replay, each with why (its most
    loaded group expected at full load or more): the planner's screen before any replay."""
    out: dict[str, tuple[float, str]] = {}
    for key, (load, apps) in expected_loads(plan, workload, poisson).items():
        if load < 1.0:
            continue
        for app in apps:
            if load > out.get(app, (0.0, ""))[0]:
                out[app] = (load, (f"{key} expected at {load:.1%} load under {'Poisson' if poisson else 'constant'} "
                                  "arrivals"))
    return {a: why for a, (_, why) in out.items()}
