"""The Harpagon planner: a pure function from a workload and settings to a frozen Plan.

Its layers (the paper's three levels; README, "How the planner works"):

1. batch-aware dispatch, which enters through its latency formula;
2. module scheduling (:mod:`.module_scheduler`): main + residual tuples with dummy sizing;
3. latency splitting (:mod:`.splitter`): latency-cost efficiency, refined by an exact split over
   the same cost curves (a Pareto dynamic program on trees, branch and bound on other DAGs).

A module's cost curve steps exactly at the tightest budget its tuples need (their threshold
latency), so the splitter never gives a module budget it cannot turn into a lower cost; what one
module cannot use stays with the app for the others. The latency reassigner
(:mod:`.reassigner`) then sets the final budgets and hands the slack left over to the modules
that pad with dummies.

Hardware counts are shared by all apps (:mod:`.allocation`); an app that cannot be served is refused
with the reason and the rest are planned. Light tuples share GPUs where that is cheaper
(:mod:`.sharing`, :mod:`.shared_levels`).

Under the `constant` and `poisson` promises (docs/model.md v2, the default) the same layers run on
latencies that hold under real arrivals (:mod:`.queueing`: the timer-padding capacity rule, bursts
and a queueing allowance); each app is planned at a :class:`.levels.Level` found by replaying its
plans (:mod:`.promise_levels`), and while the replay finds an app late, the modules found late are
repaired (:mod:`.arrivals`: a larger allowance, more headroom) and the app re-planned. The `fluid`
promise is the version-1 planner, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from harpagon.config.schema import Workload
from harpagon.model.latency import Dispatch, Settings
from harpagon.model.plan import Plan, Promise
from harpagon.planner.allocation import allocate
from harpagon.planner.module_scheduler import Mode
from harpagon.planner.promise_levels import plan_promise
from harpagon.planner.replays import Replays
from harpagon.planner.shared_levels import shared, tightened

__all__ = ["PlannerOptions", "plan", "tightened"]


@dataclass(frozen=True, slots=True)
class PlannerOptions:
    """Switches for the planner's layers (all on for Harpagon; the ablations turn one off)."""

    multi_tuple: bool = True
    """Allow a residual tuple beside the main one (else one tuple per module)."""
    exact_split: bool = True
    """Refine the greedy split with an exact one over the same cost curves (see :mod:`.splitter`)."""
    split: Literal["efficiency", "even"] = "efficiency"
    """How the SLO is split: by latency-cost efficiency, or evenly along the longest path."""
    dispatch: Dispatch = "batch-aware"
    """The dispatch policy the plan assumes (its latency formula)."""
    dummies: bool = True
    """Pad slow tuples with dummy requests (else a tuple collects at its real rate only)."""
    sharing: bool = True
    """Let light tuples (and the idle part of others), of any modules and apps, share GPUs (:mod:`.sharing`)."""
    replay: bool = True
    """Under a `constant` or `poisson` promise, replay the plan and repair it until the replay bears
    the promise out (`harpagon plan --no-replay` turns this off: the model part only)."""
    replay_frames: int = 10_000
    """Frames per app of each replay (at least)."""
    replay_seconds: float = 60.0
    """Seconds of each app's frames in a judging replay, when that is more frames than `replay_frames`
    (docs/model.md's steady state: a tuple loaded just past its capacity looks fine for a second). The
    levels are screened on `replay_frames` alone; the plan returned is judged on both."""
    seed: int = 0
    """Seed of the Poisson replay."""

    @property
    def mode(self) -> Mode:
        return Mode(self.dispatch, self.dummies)

    @property
    def full(self) -> bool:
        """Every layer on (the promise levers are built for Harpagon's own mode)."""
        return self.multi_tuple and self.mode.padded_batch_aware


def plan(workload: Workload, settings: Settings | None = None, options: PlannerOptions | None = None,
         *, name: str = "harpagon") -> Plan:
    """Plan every app of the workload for the promise of `settings.arrivals` (see the module doc);
    apps that cannot be served are listed in `Plan.refused`."""
    settings = settings or Settings()
    options = options or PlannerOptions()
    if settings.fluid:
        return replace(shared(allocate(workload, settings, options, name), workload, settings, options),
                       promise=Promise("fluid", settings.attainment, fanout=settings.fanout))
    if not options.full:
        return _ablation(workload, settings, options, name)
    return plan_promise(workload, settings, options, name)


def _ablation(workload: Workload, settings: Settings, options: PlannerOptions, name: str) -> Plan:
    """An ablation under a promise: the fluid formulas (the promise levers are built for Harpagon's own
    mode), judged by the replay."""
    p = shared(allocate(workload, settings, options, name), workload, settings, options)
    if not options.replay or not p.apps:
        return p
    replays = Replays(workload, settings, options)
    replays.run(p)
    return replace(p, promise=Promise(settings.arrivals, settings.attainment, replays.replayed(p),
                                      settings.fanout))
