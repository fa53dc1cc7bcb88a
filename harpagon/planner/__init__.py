"""Layer 5: planners (pure functions from a workload and settings to a frozen Plan)."""
