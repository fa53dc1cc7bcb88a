"""Layer 2: the cost and latency model of MODEL.md, the frozen Plan and its feasibility check."""
