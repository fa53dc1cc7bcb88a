"""The planner's own replays: whether a plan keeps its promise under real arrivals, by the replay of
:mod:`harpagon.sim` (the judge of every planner), run with margins for sampling noise.

Levels are screened on `replay_frames` per app and two Poisson seeds; the plan returned is judged at
the steady-state horizon (`replay_seconds`) on three. Each app plan is replayed once per horizon,
whichever level made it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from harpagon.config.schema import Workload
from harpagon.model.latency import PLAN_TOL, Settings
from harpagon.model.plan import AppPlan, Plan, Replayed
from harpagon.planner import queueing

if TYPE_CHECKING:
    from harpagon.planner.harpagon import PlannerOptions

#: The planner's own replay must show this much more than the promised attainment (sampling noise),
#: and at least `SE_MARGIN` standard errors of its late fraction (by batch means) more.
PROMISE_MARGIN = 0.004
SE_MARGIN = 3.0
#: The planner replays Poisson arrivals on its seed and on `seed + k POISSON_SECOND_SEED`: two seeds when
#: it screens the levels, three when it judges the plan it returns (at the steady-state horizon). On
#: `aws/pose/300fps/x5` two seeds kept a plan that a third (and 3 of 6 others) finds at 96.9-99.4%.
POISSON_SECOND_SEED = 7919
SCREEN_SEEDS, JUDGE_SEEDS = 2, 3
#: Frames per app of a short screening replay (:meth:`Replays.short`).
SCREEN_FRAMES = 2000


def app_kept(constant, poisson, settings: Settings) -> bool:
    """An app's promise in a replay: no frame late with constant arrivals, and under `poisson` the
    attainment with `PROMISE_MARGIN` to spare."""
    if constant.over_slo > 0:
        return False
    return poisson is None or poisson.attainment >= settings.attainment + max(PROMISE_MARGIN,
                                                                            SE_MARGIN * poisson.late_se)


def _decided(constant, poisson: list, settings: Settings) -> bool:
    """Whether an app's promise is already broken whatever further Poisson seeds show: a frame late with
    constant arrivals, or a seed whose attainment is below the least any keeping replay shows (the
    worst seed counts, and it must clear `PROMISE_MARGIN` at least)."""
    return constant.over_slo > 0 or any(r.attainment < settings.attainment + PROMISE_MARGIN for r in poisson)


class Replays:
    """Replays of app plans, each replayed once: an app that shares no GPU alone (apps meet only on
    shared GPUs), an app on shared GPUs together with the apps it meets there (keyed by all of them).

    `steady`: at least `replay_seconds` of each app's frames (the judging horizon); else
    `replay_frames` only (screening the levels). Before any replay, an app with a worker group whose
    expected load is full or more (:func:`queueing.overloaded`) is not kept, and not replayed."""

    def __init__(self, workload: Workload, settings: Settings, options: PlannerOptions, steady: bool = True,
                 runs: dict | None = None):
        self.workload, self.settings, self.options = workload, settings, options
        self.steady = steady
        self.seconds = options.replay_seconds if steady else 0.0
        self.seeds = JUDGE_SEEDS if steady else SCREEN_SEEDS
        self.runs = {} if runs is None else runs
        """Replays of `replay_frames` per app already run, shared between instances: where 60 s of an
        app is fewer frames than that, the judging replay of a screened plan is the screening one."""
        self._stats: dict[tuple, tuple] = {}  # key -> (constant AppStats, Poisson AppStats or None)
        self._screened: dict[tuple, str] = {}  # key -> why it cannot keep its promise
        self._key: dict[AppPlan, tuple] = {}  # each app plan's key in the plan last run: it, and whom it meets
        self._short: Replays | None = None

    def short(self) -> Replays:
        """Screening replays of `SCREEN_FRAMES` per app beside these (one per plan: its apps replayed once)."""
        if self._short is None:
            opts = replace(self.options, replay_frames=min(SCREEN_FRAMES, self.options.replay_frames))
            self._short = Replays(self.workload, self.settings, opts, steady=False, runs=self.runs)
        return self._short

    def run(self, p: Plan, screen: bool = True, decide: bool | None = None) -> None:
        """Replay the apps of `p` not replayed yet (with the apps they meet on shared GPUs); `screen`: not
        those the analytic screen finds overloaded. `decide` (default: when not `steady`): stop replaying
        an app's Poisson seeds once its promise is broken whatever the rest show (a candidate's replay;
        the judging of a plan, whose stats a repair reads, replays every seed)."""
        from harpagon.sim.sweep import linked  # the replay is a layer above the model, below the planner

        together = linked(p)
        for ap in p.apps:
            self._key[ap] = (ap, together[ap.name])
        fresh = [ap for ap in p.apps if self._key[ap] not in self._stats
                 and not (screen and self._key[ap] in self._screened)]
        if screen and fresh:
            part = replace(p, apps=tuple(fresh))
            why = {**queueing.overloaded(part, self.workload, poisson=False),
                   **(queueing.overloaded(part, self.workload, poisson=True) if self.settings.arrivals == "poisson"
                      else {})}
            for ap in fresh:
                if ap.name in why:
                    self._screened[self._key[ap]] = why[ap.name]
            fresh = [ap for ap in fresh if self._key[ap] not in self._screened]
        if fresh:
            self._replay(replace(p, apps=tuple(x for x in p.apps if any(x in self._key[ap][1] for ap in fresh))),
                         not self.steady if decide is None else decide)

    def _simulate(self, p: Plan, arrivals: str, seed: int, fanout: str):
        from harpagon.sim import simulate

        frames, seconds = self.options.replay_frames, self.seconds
        counts = tuple(max(frames, math.ceil(ap.rate * seconds - PLAN_TOL)) for ap in p.apps)
        key = (p.apps, arrivals, seed, fanout, counts)  # all the replay reads (settings are the planner's)
        if key in self.runs:
            return self.runs[key]
        got = simulate(p, self.workload, arrivals, frames=frames, seed=seed, fanout=fanout, seconds=seconds)
        if all(c == frames for c in counts):  # only these can be asked for again, by the other horizon
            self.runs[key] = got
        return got

    def _replay(self, p: Plan, decide: bool) -> None:
        seed = self.options.seed
        const = self._simulate(p, "constant", seed, "deterministic")
        # Poisson on several seeds, the worst counting: a heavily loaded app has rare long queues, which
        # one run may miss entirely (and then shows a tiny standard error). These replays have the
        # settings' fan-out (docs/model.md v2's planned counts by default, or Poisson draws:
        # `Settings.fanout`).
        pois: list = []
        for i in range(self.seeds if self.settings.arrivals == "poisson" else 0):
            if decide and all(_decided(const.app(ap.name), [r.app(ap.name) for r in pois], self.settings)
                              for ap in p.apps):
                break  # no further seed can keep these apps
            pois.append(self._simulate(p, "poisson", seed + i * POISSON_SECOND_SEED, self.settings.fanout))
        for ap in p.apps:
            worst = min((r.app(ap.name) for r in pois), key=lambda a: a.attainment) if pois else None
            self._stats[self._key[ap]] = (const.app(ap.name), worst)

    def stats(self, ap: AppPlan) -> tuple | None:
        """(constant AppStats, Poisson AppStats or None) of `ap` in the plan last run; None if screened."""
        return self._stats.get(self._key[ap], None) if ap in self._key else None

    def kept(self, ap: AppPlan) -> bool:
        got = self.stats(ap)
        return got is not None and app_kept(*got, self.settings)

    def replayed(self, p: Plan) -> Replayed:
        stats = [self._stats[self._key[ap]] for ap in p.apps]
        apps = tuple((ap.name, (pois or const).attainment) for ap, (const, pois) in zip(p.apps, stats, strict=True))
        frames = min((const.frames for const, _ in stats), default=self.options.replay_frames)
        return Replayed(frames, self.options.seed, min((a for _, a in apps), default=1.0),
                        all(const.over_slo == 0 for const, _ in stats), apps, self.seconds)
