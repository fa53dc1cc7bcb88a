"""A plan's promise (docs/model.md v2, "What a plan promises") in the words the live side reports it in:
the controller's log and metrics, and the demo's verdict on the traffic it measured.
"""

from __future__ import annotations

import math

from harpagon.model.plan import Promise
from harpagon.planner.streams import app_of

#: How the demo and the docs name each arrival process.
ARRIVALS_NAME = {"poisson": "Poisson", "constant": "constant", "fluid": "fluid"}


def target(promise: Promise | None, arrivals: str) -> float | None:
    """The attainment a plan promises for frames sent with `arrivals` ("poisson" or "constant"):
    every frame (1.0) under constant arrivals, which the Poisson promise includes, the promised
    attainment under Poisson; None where the plan makes no promise for them (fluid, or a constant
    promise met with Poisson traffic)."""
    if promise is None or promise.arrivals == "fluid":
        return None
    if arrivals == "constant":
        return 1.0
    return promise.attainment if promise.arrivals == "poisson" else None


def predicted(promise: Promise | None, arrivals: str, app: str) -> float | None:
    """What the planner's replay measured for `app` under `arrivals` (None when not replayed).
    The replay reports per-app attainment under the promise's own arrivals, and for constant
    arrivals only whether every frame was within the SLO."""
    r = promise.replayed if promise else None
    if r is None or promise is None:
        return None
    if arrivals == "constant":
        return 1.0 if r.constant_all_within else None
    if promise.arrivals != "poisson":
        return None
    streams = [v for name, v in r.apps if app_of(name) == app]  # an app shared among frontends: its worst stream
    return min(streams) if streams else None


def pct(x: float) -> str:
    """99.0% -> "99%", 0.995 -> "99.5%"."""
    return f"{100 * x:.4g}%"


def floor_pct(x: float | None) -> str:
    """A measured share, rounded down (99.96% is not 100%)."""
    return "-" if x is None or math.isnan(x) else f"{math.floor(x * 1000) / 10:.1f}%"


def goal_text(goal: float | None, none: str = "no promise") -> str:
    """A promised attainment as a table shows it: "100%" (constant arrivals) or "≥99%"."""
    return none if goal is None else "100%" if goal >= 1 else f"≥{pct(goal)}"


def describe(promise: Promise | None) -> str:
    """One line: the promise and what its replay measured (as the controller logs it)."""
    if promise is None:
        return "no promise"
    if promise.arrivals == "fluid":
        return "promise fluid (the version-1 model; not replayed)"
    head = (f"promise poisson ≥{pct(promise.attainment)}" if promise.arrivals == "poisson"
            else "promise constant (every frame within its SLO)")
    r = promise.replayed
    if r is None:
        return f"{head}: not replayed"
    horizon = f" or {r.seconds:g} s of each app" if r.seconds else ""
    parts = [f"replayed {r.frames} frames{horizon} (seed {r.seed})"]
    if promise.arrivals == "poisson":
        apps = ", ".join(f"{name} {a:.1%}" for name, a in r.apps)
        parts.append(f"min attainment {r.min_app_attainment:.1%}" + (f" ({apps})" if len(r.apps) > 1 else ""))
    parts.append("constant all within" if r.constant_all_within else "constant NOT all within")
    return f"{head}: {', '.join(parts)}"
