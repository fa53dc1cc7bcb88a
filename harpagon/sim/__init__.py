"""Layer 4: the replay, a discrete-event simulation of plans driving :mod:`harpagon.dispatch` with a
virtual clock, and the judge of a plan's promise."""

from harpagon.sim.replay import PROMISE_FRAMES, Verdict, judge
from harpagon.sim.simulator import AppStats, ModuleStats, SimResult, simulate

__all__ = ["PROMISE_FRAMES", "AppStats", "ModuleStats", "SimResult", "Verdict", "judge", "simulate"]
