"""Every planner by name, with one signature: `(workload, settings) -> Plan`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import Plan, Promise
from harpagon.planner import harpagon, optimum
from harpagon.planner.baselines import clipper, inferline, nexus, scrooge
from harpagon.planner.harpagon import PlannerOptions

Planner = Callable[[Workload, Settings], Plan]


def _harpagon(name: str, options: PlannerOptions) -> Planner:
    return partial(_run_harpagon, name=name, options=options)


def _run_harpagon(workload: Workload, settings: Settings, *, name: str, options: PlannerOptions) -> Plan:
    return harpagon.plan(workload, settings, options, name=name)


def _fluid_only(fn: Callable[[Workload, Settings], Plan]) -> Planner:
    """The baselines, the ablations' reference and the optimum plan in the fluid model whatever the
    setting asks: their plans say so (`settings.arrivals` is `fluid`)."""

    def run(workload: Workload, settings: Settings) -> Plan:
        return fn(workload, replace(settings, arrivals="fluid"))

    run.__name__ = getattr(fn, "__name__", "planner")
    return run


PLANNERS: dict[str, Planner] = {
    "harpagon": _harpagon("harpagon", PlannerOptions()),
    # Harpagon in the fluid model (docs/model.md v1): the paper's planner, without the promise levers.
    "harpagon-fluid": _fluid_only(_harpagon("harpagon-fluid", PlannerOptions())),
    "nexus": _fluid_only(nexus.plan),
    "inferline": _fluid_only(inferline.plan),
    "scrooge": _fluid_only(scrooge.plan),
    "clipper": _fluid_only(clipper.plan),
    # Ablations: Harpagon (fluid) with one level turned off.
    "harpagon-request-level": _fluid_only(_harpagon("harpagon-request-level",
                                                    PlannerOptions(dispatch="request-level"))),
    "harpagon-single-tuple": _fluid_only(_harpagon("harpagon-single-tuple", PlannerOptions(multi_tuple=False))),
    "harpagon-no-dummies": _fluid_only(_harpagon("harpagon-no-dummies", PlannerOptions(dummies=False))),
    "harpagon-greedy-split": _fluid_only(_harpagon("harpagon-greedy-split", PlannerOptions(exact_split=False))),
    "harpagon-even-split": _fluid_only(_harpagon("harpagon-even-split", PlannerOptions(split="even"))),
    "harpagon-no-sharing": _fluid_only(_harpagon("harpagon-no-sharing", PlannerOptions(sharing=False))),
}

#: The exhaustive yardstick (apps independent, hardware counts ignored; fluid model).
OPTIMUM: Planner = _fluid_only(optimum.optimum)

BASELINES = ("nexus", "inferline", "scrooge", "clipper")
ABLATIONS = tuple(n for n in PLANNERS if n.startswith("harpagon-") and n != "harpagon-fluid")


def plan_with(name: str, workload: Workload, settings: Settings, *, replay: bool = True, frames: int | None = None,
              seed: int = 0) -> Plan:
    """Plan with the named planner (or "optimum"). Harpagon replays (and repairs) its own plans for the
    promise of `settings`; any other plan is replayed here, so that it too says what it keeps."""
    from harpagon.sim.replay import PROMISE_FRAMES, judge

    frames = frames or PROMISE_FRAMES
    if name == "harpagon":
        return harpagon.plan(workload, settings, PlannerOptions(replay=replay, replay_frames=frames, seed=seed))
    p = (OPTIMUM if name == "optimum" else PLANNERS[name])(workload, settings)
    if not replay or not p.apps:
        return p
    verdict = judge(p, workload, "poisson", frames=frames, seed=seed, fanout=settings.fanout)
    return replace(p, promise=Promise(p.settings.arrivals, settings.attainment, verdict.replayed, settings.fanout))
