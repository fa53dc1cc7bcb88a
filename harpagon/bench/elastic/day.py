"""The benchmark's day: a diurnal rate curve compressed into minutes, and its Poisson arrivals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Day:
    """A day compressed into `seconds`: the rate factor runs from `low` at midnight to 1 at noon and
    back, as a cosine."""

    seconds: float
    low: float = 0.25

    def factor(self, t: float | np.ndarray) -> Any:
        return self.low + (1.0 - self.low) * (1.0 - np.cos(2.0 * np.pi * np.asarray(t) / self.seconds)) / 2.0


def day_arrivals(peak: float, day: Day, warmup_s: float, rng: np.random.Generator) -> np.ndarray:
    """Send offsets (s) of a Poisson process at `peak` x the day's factor (thinning), after `warmup_s`
    at the night's rate."""
    span = warmup_s + day.seconds
    n = rng.poisson(peak * span)
    t = np.sort(rng.uniform(0.0, span, n))
    keep = rng.uniform(0.0, 1.0, n) < np.where(t < warmup_s, day.low, day.factor(t - warmup_s))
    return t[keep]
