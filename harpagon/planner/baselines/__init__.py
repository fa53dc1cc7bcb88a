"""Baseline planners over the same inputs and the same model, each faithful to its system.

They exist to measure Harpagon against (`harpagon bench planner`). Each module's docstring cites its
source; where a system's rule needs a choice to fit docs/model.md, the docstring says which.
"""
