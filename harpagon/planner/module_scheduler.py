"""Module scheduling (level 2): the cheapest tuple set for one module at a latency budget.

A configuration is a *main* group of `(h, b)` workers that runs saturated plus, for the rate the main
group cannot take in whole workers, a *residual* group on any `(h', b')`, possibly other hardware or
another batch size. The residual's dummy rate is sized by the dummy generator (least `δ` that meets
the budget, docs/model.md), so a small residual still collects full batches in time. A single group of
`ceil(λ / T)` workers is a candidate too, so the result never costs more than the best single tuple.

Everything is vectorised over budgets with numpy: one call evaluates the module's whole cost curve
`C_m(B)` at all its breakpoints, which is what the latency splitter walks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harpagon.model.latency import (
    PLAN_TOL,
    Dispatch,
    Option,
    Settings,
    collection_ms,
    dummy_rate,
    tuple_latency,
)
from harpagon.model.plan import TuplePlan
from harpagon.planner import queueing
from harpagon.planner.queueing import Arrival

#: Upper bound on the workers of one group when enumerating breakpoints (keeps curves finite).
MAX_GROUP_WORKERS = 4096
#: Sizes tried for a main group: the most whole workers the rate fills, and up to this many fewer
#: (a smaller main group can leave a residual that another kind serves more cheaply).
MAIN_SIZES = 4
#: The same under a promise, where each size is also tried at several loads (`queueing.MAIN_LEVELS`).
PROMISE_MAIN_SIZES = 3


@dataclass(frozen=True, slots=True)
class Mode:
    """The dispatch policy a plan assumes, and whether tuples may be padded with dummies.

    Harpagon is batch-aware with dummies; the other modes exist for the ablations."""

    dispatch: Dispatch = "batch-aware"
    dummies: bool = True

    @property
    def padded_batch_aware(self) -> bool:
        return self.dispatch == "batch-aware" and self.dummies


HARPAGON = Mode()


@dataclass(frozen=True, slots=True)
class Group:
    """`workers` workers of one option; the first group of a choice is the main one."""

    option: Option
    workers: int
    rate: float | None = None
    """Real rate of a main group under a promise (it runs below saturation); None: all it can take."""

    @property
    def cost(self) -> float:
        return self.workers * self.option.price


@dataclass(frozen=True, slots=True)
class Choice:
    """A module's tuple set before rates are assigned."""

    groups: tuple[Group, ...]
    arrival: Arrival | None = None
    """The arrival model the choice was made for (None: the fluid model)."""

    @property
    def cost(self) -> float:
        return sum(g.cost for g in self.groups)


def shares(choice: Choice, rate: float, settings: Settings) -> list[float]:
    """Real rates of a choice's groups: each but the last takes all it can (or its set rate), the
    last the rest."""
    out, left = [], rate
    for i, g in enumerate(choice.groups):
        cap = g.workers * g.option.throughput * settings.max_utilization if g.rate is None else g.rate
        r = left if i == len(choice.groups) - 1 else min(cap, left)
        out.append(r)
        left -= r
    return out


def tight_budget(choice: Choice, rate: float, settings: Settings, mode: Mode = HARPAGON) -> float:
    """Least budget at which every group is feasible: with dummies each group may fill to capacity,
    without them it fills at its real rate (the reassigner's tight budget)."""
    s = settings
    if choice.arrival is not None:
        split = len(choice.groups) > 1
        return max(float(queueing.least_latency(g.option.batch, g.option.d_ms, g.workers, r, choice.arrival,
                                                s.max_utilization, s.overhead_ms, split))
                   for g, r in zip(choice.groups, shares(choice, rate, s), strict=True))
    worst = 0.0
    for g, r in zip(choice.groups, shares(choice, rate, s), strict=True):
        o = g.option
        fill = g.workers * o.throughput * s.max_utilization if mode.dummies else r
        worst = max(worst, collection_ms(mode.dispatch, o.batch, g.workers, fill) + o.d_ms + s.overhead_ms)
    return worst


@dataclass(frozen=True)
class CostCurve:
    """`C_m(B)` as steps: `budgets` ascending, `costs` strictly descending; `C(B)` is the cost of the
    last step whose budget is at most `B` (infinite below the first)."""

    budgets: np.ndarray
    costs: np.ndarray

    def __len__(self) -> int:
        return len(self.budgets)


def _undominated(options: Sequence[Option], limits: Mapping[str, int | None]) -> list[Option]:
    """Drop an option when another is at most as dear, at least as fast per batch, has at least the
    throughput, collects a batch at least as fast, and is at least as available: any group of it
    can then be swapped for the same number of workers of the other."""

    def limit(o: Option) -> float:
        n = limits.get(o.hardware)
        return math.inf if n is None else n

    def beats(q: Option, o: Option) -> bool:
        return (q.price <= o.price and q.d_ms <= o.d_ms and q.throughput >= o.throughput
                and (q.batch - 1) / q.throughput <= (o.batch - 1) / o.throughput and limit(q) >= limit(o))

    keep: list[Option] = []
    for i, o in enumerate(options):
        # a twin that beats it both ways is kept only once (the first)
        if not any(beats(q, o) and (not beats(o, q) or j < i) for j, q in enumerate(options) if j != i):
            keep.append(o)
    return keep


class ModuleScheduler:
    """Cheapest tuple sets of one module (a model at a rate) over its options."""

    def __init__(self, options: Sequence[Option], rate: float, settings: Settings,
                 limits: Mapping[str, int | None] | None = None, *, multi_tuple: bool = True,
                 mode: Mode = HARPAGON, arrival: Arrival | None = None):
        if not options:
            raise ValueError("a module needs at least one profiled option")
        if arrival is not None and not (mode.padded_batch_aware and multi_tuple):
            raise ValueError("promises under real arrivals are planned for Harpagon's full mode only")
        self.arrival = arrival
        lim = limits or {}
        self.options = _undominated(options, lim)
        self.rate = rate
        self.settings = settings
        self.multi_tuple = multi_tuple
        self.mode = mode
        s = settings
        options = self.options
        self._b = np.array([o.batch for o in options], dtype=float)
        self._d = np.array([o.d_ms for o in options], dtype=float)
        self._p = np.array([o.price for o in options], dtype=float)
        self._cap = 1000.0 * self._b / self._d * s.max_utilization  # requests/s of one worker
        hw_names = sorted({o.hardware for o in options})
        self._hw = np.array([hw_names.index(o.hardware) for o in options])
        self._limit = np.array([math.inf if lim.get(o.hardware) is None else float(lim[o.hardware])
                                for o in options])
        # Whole workers each option needs for the full rate, and main-group candidates (m saturated
        # workers of option k, leaving a residual rate).
        self._need = np.ceil(rate / self._cap * (1 - PLAN_TOL))
        mains_k, mains_m = [], []
        if multi_tuple:
            # Most cost-efficient first, so that ties go to the better main group.
            for k in sorted(range(len(options)), key=lambda k: self._p[k] / self._cap[k]):
                cap = self._cap[k]
                full = math.floor(rate / cap * (1 + PLAN_TOL))
                for m in range(full, max(0, full - MAIN_SIZES), -1):
                    if m >= 1 and rate - m * cap > PLAN_TOL * rate:
                        mains_k.append(k)
                        mains_m.append(m)
        self._main_k = np.array(mains_k, dtype=int)
        self._main_m = np.array(mains_m, dtype=float)
        self._resid = rate - self._main_m * self._cap[self._main_k] if mains_k else np.zeros(0)
        self._curves: dict[float, CostCurve] = {}
        self._choices: dict[float, Choice | None] = {}
        self._candidates = self._promise_candidates() if arrival is not None else None

    @property
    def fastest_ms(self) -> float:
        """A lower bound on any budget this module can meet: its fastest batch plus the overhead."""
        return float(self._d.min()) + self.settings.overhead_ms

    # --- evaluation ---------------------------------------------------------------------------

    def _min_workers(self, budgets: np.ndarray) -> np.ndarray:
        """`n_min[k, j]`: fewest workers of option k feasible at budget j (inf if none)."""
        s = self.settings
        room = budgets[None, :] - self._d[:, None] - s.overhead_ms
        with np.errstate(divide="ignore", invalid="ignore"):
            need = 1000.0 * (self._b[:, None] - 1) / (self._cap[:, None] * room)
            n = np.maximum(1.0, np.ceil(need * (1 - PLAN_TOL)))
        n = np.where(room > 0, n, math.inf)
        batch1 = self._b[:, None] == 1
        ok1 = room >= -PLAN_TOL * budgets[None, :]
        return np.where(batch1, np.where(ok1, 1.0, math.inf), n)

    def _latency(self, k: np.ndarray | slice, workers: np.ndarray, real: np.ndarray) -> np.ndarray:
        """Least latency of groups of option(s) `k` (broadcast with `workers` and `real`) in this mode:
        with dummies a group may fill to capacity, without them at its real rate."""
        b, d, cap = self._b[k], self._d[k], self._cap[k]
        fill = workers * cap if self.mode.dummies else real
        per = workers if self.mode.dispatch == "request-level" else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            wait = np.where(b == 1, 0.0, 1000.0 * (b - 1) * per / fill)
        return wait + d + self.settings.overhead_ms

    def _fits(self, k: np.ndarray | slice, workers: np.ndarray, real: np.ndarray, budgets: np.ndarray) -> np.ndarray:
        """Whole-worker groups of the minimal size for their real rate: their count where they meet
        the budget (last axis), inf where they do not (the modes without the batch-aware dummies)."""
        lat = self._latency(k, workers, real)[..., None]
        return np.where(lat <= budgets * (1 + PLAN_TOL), workers[..., None], math.inf)

    def _evaluate(self, budgets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Costs of every candidate at every budget: single groups `(K, J)` and main+residual
        `(M, K, J)`, plus the residual workers `(M, K, J)`."""
        padded = self.mode.padded_batch_aware
        n_min = self._min_workers(budgets) if padded else None
        if padded:
            n_single = np.maximum(n_min, self._need[:, None])
        else:
            n_single = self._fits(slice(None), self._need, np.full(len(self.options), self.rate), budgets)
        single = np.where(n_single <= self._limit[:, None], n_single * self._p[:, None], math.inf)
        if not len(self._main_k):
            empty = np.zeros((0, len(self.options), len(budgets)))
            return single, empty, empty
        mk, mm = self._main_k, self._main_m
        main_lat = self._latency(mk, mm, mm * self._cap[mk])  # saturated: fills at capacity
        main_ok = (main_lat[:, None] <= budgets * (1 + PLAN_TOL)) & (mm[:, None] <= self._limit[mk][:, None])
        r_need = np.ceil(self._resid[:, None] / self._cap[None, :] * (1 - PLAN_TOL))  # (M, K)
        if padded:
            r_n = np.maximum(n_min[None, :, :], r_need[:, :, None])  # (M, K, J)
        else:
            ks = np.broadcast_to(np.arange(len(self.options)), r_need.shape)
            r_n = self._fits(ks, r_need, np.broadcast_to(self._resid[:, None], r_need.shape), budgets)
        same_hw = self._hw[mk][:, None] == self._hw[None, :]  # (M, K)
        room = self._limit[None, :] - np.where(same_hw, mm[:, None], 0.0)  # (M, K)
        r_ok = r_n <= room[:, :, None]
        pair = np.where(r_ok & main_ok[:, None, :], (mm * self._p[mk])[:, None, None] + r_n * self._p[None, :, None],
                        math.inf)
        return single, pair, r_n

    def curve(self, max_budget: float) -> CostCurve:
        """The cost curve at every breakpoint up to `max_budget` (computed once per budget)."""
        if max_budget not in self._curves:
            self._curves[max_budget] = self._curve(max_budget)
        return self._curves[max_budget]

    def _curve(self, max_budget: float) -> CostCurve:
        if self._candidates is not None:
            return self._candidates.curve(max_budget)
        budgets = self.breakpoints(max_budget)
        if not len(budgets):
            return CostCurve(budgets, budgets.copy())
        single, pair, _ = self._evaluate(budgets)
        cost = single.min(axis=0)
        if pair.size:
            cost = np.minimum(cost, pair.min(axis=(0, 1)))
        cost = np.round(cost, 9)
        keep: list[int] = []
        best = math.inf
        for j, c in enumerate(cost):
            if c < best:
                keep.append(j)
                best = c
        return CostCurve(budgets[keep], cost[keep])

    def breakpoints(self, max_budget: float) -> np.ndarray:
        """Budgets where `C_m` can step: the threshold of every `(h, b, n)` group (docs/model.md), or in
        the other modes the least latency of every candidate group."""
        if not self.mode.padded_batch_aware:
            ks = np.arange(len(self.options))
            out = [self._latency(ks, self._need, np.full(len(ks), self.rate))]
            if len(self._main_k):
                out.append(self._latency(self._main_k, self._main_m, self._main_m * self._cap[self._main_k]))
                r_need = np.ceil(self._resid[:, None] / self._cap[None, :] * (1 - PLAN_TOL))
                out.append(self._latency(np.broadcast_to(ks, r_need.shape), r_need,
                                         np.broadcast_to(self._resid[:, None], r_need.shape)).ravel())
            arr = np.unique(np.concatenate(out))
            return arr[np.isfinite(arr) & (arr <= max_budget * (1 + PLAN_TOL))]
        s = self.settings
        # Groups larger than both the full rate's need and what the smallest-batch workers of the
        # dearest hardware would cost cannot be the cheapest, so the enumeration stops there.
        smallest: dict[str, int] = {}
        for k, o in enumerate(self.options):
            if o.hardware not in smallest or o.batch < self.options[smallest[o.hardware]].batch:
                smallest[o.hardware] = k
        ref = max(self._need[k] * self._p[k] for k in smallest.values())
        out = []
        for k, o in enumerate(self.options):
            if o.batch == 1:
                out.append(o.d_ms + s.overhead_ms)
                continue
            top = int(min(MAX_GROUP_WORKERS, max(self._need[k], math.floor(ref / o.price)),
                          self._limit[k]))
            n = np.arange(1, top + 1, dtype=float)
            out.extend(1000.0 * (o.batch - 1) / (n * self._cap[k]) + o.d_ms + s.overhead_ms)
        arr = np.unique(np.array(out, dtype=float))
        return arr[arr <= max_budget * (1 + PLAN_TOL)]

    def choose(self, budget: float) -> Choice | None:
        """The cheapest tuple set at `budget` (fewest groups on ties); None if nothing fits."""
        if budget not in self._choices:
            self._choices[budget] = self._choose(budget)
        return self._choices[budget]

    def _choose(self, budget: float) -> Choice | None:
        if self._candidates is not None:
            return self._candidates.choose(budget)
        single, pair, r_n = self._evaluate(np.array([budget]))
        single, pair = np.round(single[:, 0], 9), np.round(pair[:, :, 0], 9)
        k1 = int(np.argmin(single))
        best = float(single[k1])
        if pair.size:
            m, k2 = np.unravel_index(int(np.argmin(pair)), pair.shape)
            if pair[m, k2] < best:
                main = Group(self.options[self._main_k[m]], int(self._main_m[m]))
                return Choice((main, Group(self.options[k2], int(r_n[m, k2, 0]))))
        if not math.isfinite(best):
            return None
        n = int(single[k1] / self._p[k1] + 0.5)
        return Choice((Group(self.options[k1], n),))


    # --- under a promise (constant or Poisson arrivals) -------------------------------------------

    def _promise_candidates(self) -> _Candidates:
        """Every candidate tuple set with its least latency under the arrival model (see
        :mod:`.queueing`): single groups of `n` workers, and a main group loaded to one of
        `MAIN_LEVELS` of what its batches can take plus a residual group. The cost curve is their
        Pareto front, so no budget grid is needed."""
        a, s = self.arrival, self.settings
        assert a is not None
        u, o, lam = s.max_utilization, s.overhead_ms, self.rate
        b, d, p = self._b, self._d, self._p
        K = len(self.options)
        # Requests per second one worker takes at the timer-padding load (full batches less the jitter).
        single_rate = 1000.0 * np.maximum(1.0, b - queueing.jitter_of(a, False)) / d * u * a.headroom
        split_rate = 1000.0 * np.maximum(1.0, b - queueing.jitter_of(a, True)) / d * u * a.headroom
        need = np.maximum(1.0, np.ceil(lam / single_rate * (1 - PLAN_TOL)))
        ref = float((need * p).min()) * 4.0
        # Single groups: n workers of option k, from what the rate needs to 4x the cheapest such group.
        top = np.minimum(np.minimum(MAX_GROUP_WORKERS, self._limit), np.maximum(need + 3, np.floor(ref / p)))
        sizes = [_group_sizes(int(need[k]), int(top[k])) for k in range(K)]
        sk = np.repeat(np.arange(K), [len(x) for x in sizes])
        sn = np.concatenate(sizes).astype(float)
        lat = [queueing.least_latency(b[sk], d[sk], sn, lam, a, u, o, split=False)]
        cost = [sn * p[sk]]
        main_k, main_m, main_r = [sk * 0 - 1], [sn * 0], [sn * 0.0]
        res_k, res_n = [sk], [sn]
        if self.multi_tuple:
            mk, mm, mr = [], [], []
            for k in range(K):
                for level in queueing.MAIN_LEVELS:
                    r1 = split_rate[k] * level
                    full = math.floor(lam / r1 * (1 + PLAN_TOL))
                    for m in range(full, max(0, full - PROMISE_MAIN_SIZES), -1):
                        if 1 <= m <= self._limit[k] and lam - m * r1 > PLAN_TOL * lam:
                            mk.append(k)
                            mm.append(m)
                            mr.append(m * r1)
            if mk:
                mk_a, mm_a, mr_a = np.array(mk), np.array(mm, dtype=float), np.array(mr)
                main_lat = queueing.least_latency(b[mk_a], d[mk_a], mm_a, mr_a, a, u, o, split=True)
                M = len(mk_a)
                # Residual groups: every option, what the rest needs and one worker more.
                i = np.repeat(np.arange(M), K * 2)
                k2 = np.tile(np.repeat(np.arange(K), 2), M)
                resid = lam - mr_a[i]
                n2 = np.maximum(1.0, np.ceil(resid / split_rate[k2] * (1 - PLAN_TOL))) + np.tile([0.0, 1.0], M * K)
                res_lat = queueing.least_latency(b[k2], d[k2], n2, resid, a, u, o, split=True)
                same = self._hw[mk_a[i]] == self._hw[k2]
                ok = n2 <= self._limit[k2] - np.where(same, mm_a[i], 0.0)
                both = np.where(ok, np.maximum(main_lat[i], res_lat), math.inf)
                lat.append(both)
                cost.append(mm_a[i] * p[mk_a[i]] + n2 * p[k2])
                main_k.append(mk_a[i])
                main_m.append(mm_a[i])
                main_r.append(mr_a[i])
                res_k.append(k2)
                res_n.append(n2)
        cat = np.concatenate
        return _Candidates(self, cat(lat), np.round(cat(cost), 9), cat(main_k).astype(int), cat(main_m).astype(int),
                           cat(main_r), cat(res_k).astype(int), cat(res_n).astype(int))


def _group_sizes(low: int, high: int) -> np.ndarray:
    """Worker counts tried for a single group: every count up to 8 above the least, then 5% apart (a
    large group's latency barely moves per worker, and fewer curve steps keep the split fast)."""
    if high < low:
        return np.zeros(0, dtype=int)
    dense = np.arange(low, min(high, low + 8) + 1)
    if high <= low + 8:
        return dense
    steps = 1 + int(math.log(high / (low + 8)) / math.log(1.05))
    sparse = np.round(np.geomspace(low + 8, high, max(2, steps))).astype(int)
    return np.unique(np.concatenate((dense, sparse)))


class _Candidates:
    """Candidate tuple sets under a promise: least latency and cost of each, and its groups (an
    optional main group `main_*`, `main_k` -1 when there is none, and the last group `res_*`)."""

    def __init__(self, sched: ModuleScheduler, lat: np.ndarray, cost: np.ndarray, main_k: np.ndarray,
                 main_m: np.ndarray, main_r: np.ndarray, res_k: np.ndarray, res_n: np.ndarray):
        ok = np.isfinite(lat)
        self.sched = sched
        self.lat, self.cost = lat[ok], cost[ok]
        self.main_k, self.main_m, self.main_r = main_k[ok], main_m[ok], main_r[ok]
        self.res_k, self.res_n = res_k[ok], res_n[ok]
        # By latency, then cost, then fewer groups (a single group beats a pair).
        self.order = np.lexsort((self.main_k >= 0, self.cost, self.lat))

    def curve(self, max_budget: float) -> CostCurve:
        order = self.order[self.lat[self.order] <= max_budget * (1 + PLAN_TOL)]
        lat, cost = self.lat[order], self.cost[order]
        if not len(lat):
            return CostCurve(lat, cost)
        before = np.concatenate(([math.inf], np.minimum.accumulate(cost)[:-1]))
        keep = cost < before
        return CostCurve(lat[keep], cost[keep])

    def choose(self, budget: float) -> Choice | None:
        fits = np.flatnonzero(self.lat <= budget * (1 + PLAN_TOL))
        if not len(fits):
            return None
        i = fits[np.lexsort((self.lat[fits], self.main_k[fits] >= 0, self.cost[fits]))[0]]
        opts = self.sched.options
        last = Group(opts[self.res_k[i]], int(self.res_n[i]))
        if self.main_k[i] < 0:
            return Choice((last,), self.sched.arrival)
        main = Group(opts[self.main_k[i]], int(self.main_m[i]), float(self.main_r[i]))
        return Choice((main, last), self.sched.arrival)


def assign_rates(choice: Choice, rate: float, budget: float, settings: Settings,
                 mode: Mode = HARPAGON) -> tuple[TuplePlan, ...]:
    """Real shares, dummy rates and latencies of a tuple set at a budget.

    Groups before the last take all they can (saturated, no dummies); the last takes the rest,
    padded by the dummy generator (the least `δ` that meets the budget, within capacity)."""
    s = settings
    if choice.arrival is not None:
        return _assign_rates_promise(choice, rate, budget, s)
    tuples = []
    for g, r in zip(choice.groups, shares(choice, rate, s), strict=True):
        o = g.option
        cap = g.workers * o.throughput * s.max_utilization
        delta = 0.0
        if mode.dummies:
            delta = min(dummy_rate(o.batch, o.d_ms, r, budget, s.overhead_ms, mode.dispatch, g.workers),
                        max(0.0, cap - r))
            if delta <= PLAN_TOL * r:  # rounding dust from a budget computed as this very latency
                delta = 0.0
        lat = tuple_latency(mode.dispatch, o.batch, o.d_ms, g.workers, r, delta, s.overhead_ms)
        tuples.append(TuplePlan(o.hardware, o.batch, g.workers, r, delta, lat))
    return tuple(tuples)


def _assign_rates_promise(choice: Choice, rate: float, budget: float, s: Settings) -> tuple[TuplePlan, ...]:
    """Under a promise each group collects for the longest time whose latency (with its allowance)
    fits the budget: the fewest dummies, the fullest batches, the smallest allowance."""
    a = choice.arrival
    assert a is not None
    split = len(choice.groups) > 1
    tuples = []
    for g, r in zip(choice.groups, shares(choice, rate, s), strict=True):
        o = g.option
        got = queueing.collection_for(o.batch, o.d_ms, g.workers, r, budget, a, s.max_utilization, s.overhead_ms,
                                      split)
        if got is None:
            raise ValueError(f"no collection time fits a budget of {budget} ms")  # the scheduler chose it
        tau, q = got
        delta = 0.0 if o.batch == 1 else max(0.0, 1000.0 * (o.batch - 1) / tau - r)
        if delta <= PLAN_TOL * r:
            delta = 0.0
        queue = q + a.extra_ms
        lat = tuple_latency("batch-aware", o.batch, o.d_ms, g.workers, r, delta, s.overhead_ms) + queue
        tuples.append(TuplePlan(o.hardware, o.batch, g.workers, r, delta, lat, queue_ms=queue))
    return tuple(tuples)


def relaxed_budget(choice: Choice, tuples: tuple[TuplePlan, ...], settings: Settings, mode: Mode = HARPAGON) -> float:
    """The budget past which the tuples need no dummies at all (more budget changes nothing)."""
    s = settings
    if choice.arrival is None:
        return max(tuple_latency(mode.dispatch, t.batch, _d(choice, t), t.workers, t.rate, 0.0, s.overhead_ms)
                   for t in tuples)
    split = len(choice.groups) > 1
    worst = 0.0
    for t in tuples:
        tau = 0.0 if t.batch == 1 else 1000.0 * (t.batch - 1) / t.rate
        lat, _ = queueing.evaluate(np.float64(t.batch), _d(choice, t), t.workers, t.rate, np.float64(tau),
                                   choice.arrival, s.max_utilization, s.overhead_ms, split)
        worst = max(worst, float(lat) if math.isfinite(lat) else t.latency_ms)
    return worst


def _d(choice: Choice, t: TuplePlan) -> float:
    return next(g.option.d_ms for g in choice.groups if (g.option.hardware, g.option.batch) == (t.hardware, t.batch))
