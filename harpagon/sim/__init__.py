"""Layer 4: discrete-event simulation of plans, driving :mod:`harpagon.dispatch` with a virtual clock."""

from harpagon.sim.simulator import AppStats, ModuleStats, SimResult, simulate

__all__ = ["AppStats", "ModuleStats", "SimResult", "simulate"]
