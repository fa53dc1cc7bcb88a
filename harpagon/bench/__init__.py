"""Benchmarks: workload grids, the planner benchmark, reports and plots."""
