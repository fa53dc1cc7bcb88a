"""Harpagon: cost-minimising inference serving for DAGs of DNN modules under latency SLOs."""

__version__ = "0.1.0"
