"""Layer 6: the live system (worker, frontend, controller) over the dispatch and planner layers."""
