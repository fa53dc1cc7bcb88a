"""Every planner by name, with one signature: `(workload, settings) -> Plan`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import Plan
from harpagon.planner import harpagon, optimum
from harpagon.planner.baselines import clipper, inferline, nexus, scrooge
from harpagon.planner.harpagon import PlannerOptions

Planner = Callable[[Workload, Settings], Plan]


def _harpagon(name: str, options: PlannerOptions) -> Planner:
    return partial(_run_harpagon, name=name, options=options)


def _run_harpagon(workload: Workload, settings: Settings, *, name: str, options: PlannerOptions) -> Plan:
    return harpagon.plan(workload, settings, options, name=name)


PLANNERS: dict[str, Planner] = {
    "harpagon": _harpagon("harpagon", PlannerOptions()),
    "nexus": nexus.plan,
    "inferline": inferline.plan,
    "scrooge": scrooge.plan,
    "clipper": clipper.plan,
    # Ablations: Harpagon with one level turned off.
    "harpagon-request-level": _harpagon("harpagon-request-level", PlannerOptions(dispatch="request-level")),
    "harpagon-single-tuple": _harpagon("harpagon-single-tuple", PlannerOptions(multi_tuple=False)),
    "harpagon-no-dummies": _harpagon("harpagon-no-dummies", PlannerOptions(dummies=False)),
    "harpagon-greedy-split": _harpagon("harpagon-greedy-split", PlannerOptions(exact_split=False)),
    "harpagon-even-split": _harpagon("harpagon-even-split", PlannerOptions(split="even")),
}

#: The exhaustive yardstick (apps independent, hardware counts ignored).
OPTIMUM: Planner = optimum.optimum

BASELINES = ("nexus", "inferline", "scrooge", "clipper")
ABLATIONS = tuple(n for n in PLANNERS if n.startswith("harpagon-"))
