"""Benchmarks: the planner benchmark (workload grids, cost at equal attainment), the live bench, the fault
suite, and the report pieces they share (`report`)."""
