"""The checks the controller's settings share: each names the field and the value it refuses."""

from __future__ import annotations

import math
from collections.abc import Iterable

POSITIVE = "must be a finite number > 0"
NON_NEGATIVE = "must be a finite number >= 0"
COUNT = "must be an integer >= 1"
BAND = "must be a (low, high) pair with 0 < low <= 1 <= high"


def real(value: object) -> bool:
    """A finite number (a bool is not one: `True` as a duration is a typo)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def at_least(value: object, least: float) -> bool:
    """A finite number >= `least`."""
    return real(value) and value >= least  # type: ignore[operator]


def above(value: object, least: float) -> bool:
    """A finite number > `least`."""
    return real(value) and value > least  # type: ignore[operator]


def whole(value: object, least: int = 1) -> bool:
    """An integer of at least `least` (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def band(value: object) -> bool:
    """A `(low, high)` pair of finite numbers with `0 < low <= 1 <= high`: a band around a planned figure."""
    return (isinstance(value, tuple) and len(value) == 2 and all(real(v) for v in value)
            and 0 < value[0] <= 1 <= value[1])


def require(owner: str, checks: Iterable[tuple[str, object, bool, str]]) -> None:
    """Raise ValueError for the first `(field, value, ok, rule)` that is not ok, naming `owner`, the
    field, the rule and the value."""
    for name, value, ok, rule in checks:
        if not ok:
            raise ValueError(f"{owner} {name} {rule}, got {value!r}")
