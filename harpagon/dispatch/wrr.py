"""Smooth weighted round-robin: a deterministic split of a stream in proportion to weights.

Each pick adds every weight to its current value, takes the largest, and subtracts the total from
it. Over any window the counts stay within one of the exact shares, and picks of one member are
spread evenly rather than bunched (the scheme nginx uses for upstream weights).
"""

from __future__ import annotations

from collections.abc import Sequence


class SmoothWRR:
    def __init__(self, weights: Sequence[float]):
        if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)!r}")
        self._weights = list(weights)
        self._total = float(sum(weights))
        self._current = [0.0] * len(weights)

    def __len__(self) -> int:
        return len(self._weights)

    def next(self) -> int:
        """Index of the member that takes the next item."""
        cur = self._current
        for i, w in enumerate(self._weights):
            cur[i] += w
        best = max(range(len(cur)), key=cur.__getitem__)
        cur[best] -= self._total
        return best
