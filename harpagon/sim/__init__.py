"""Layer 4: the replay, a discrete-event simulation of plans driving :mod:`harpagon.dispatch` with a
virtual clock (and its module-by-module sweep, where no GPU is shared), and the judge of a plan's
promise."""

from harpagon.sim.replay import PROMISE_FRAMES, PROMISE_SECONDS, Verdict, judge
from harpagon.sim.simulator import AppStats, ModuleReplay, SimResult, simulate

__all__ = ["PROMISE_FRAMES", "PROMISE_SECONDS", "AppStats", "ModuleReplay", "SimResult", "Verdict", "judge",
           "simulate"]
