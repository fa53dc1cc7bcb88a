"""Layer 2: the cost and latency model of docs/model.md, the frozen Plan and its feasibility check."""
