"""Judge a plan's promise by the replay (docs/model.md v2, "What a plan promises").

`constant`: every frame of every app within its SLO with evenly spaced arrivals. `poisson`: at least
`attainment` of each app's frames within its SLO with Poisson arrivals, and the constant promise too.

Fan-out (`settings.fanout`, an extension of docs/model.md v2): the replay with Poisson arrivals, which
measures attainment, gives each module below the source the plan's fan-out (the planned counts, or
Poisson(scale) draws); the replay with constant arrivals, which must have every frame within the SLO,
keeps the planned counts (a random count has no worst case to promise every frame against).
"""

from __future__ import annotations

from dataclasses import dataclass

from harpagon.config.schema import Workload
from harpagon.model.latency import Arrivals, Fanout
from harpagon.model.plan import Plan, Replayed
from harpagon.sim.simulator import SimResult, simulate

#: The horizon of a judging replay (docs/model.md): at least 10,000 frames per app, or 60 s of the app's
#: frames, whichever is longer (a queue that grows slowly shows only in steady state).
PROMISE_FRAMES = 10_000
PROMISE_SECONDS = 60.0


@dataclass(frozen=True)
class Verdict:
    """A replay of both arrival patterns a promise needs, and what it shows."""

    replayed: Replayed
    constant: SimResult
    poisson: SimResult | None

    def kept(self, arrivals: Arrivals, attainment: float) -> bool:
        if not self.replayed.constant_all_within:
            return False
        return arrivals != "poisson" or self.replayed.min_app_attainment >= attainment


def judge(plan: Plan, workload: Workload, arrivals: Arrivals = "poisson", *, frames: int = PROMISE_FRAMES,
          seconds: float = PROMISE_SECONDS, seed: int = 0, fanout: Fanout | None = None) -> Verdict:
    """Replay `plan` with constant arrivals and, for the `poisson` promise (or `fluid`, to report it),
    with Poisson arrivals of the given seed; `frames` per app or `seconds` of its frames, whichever is
    more. The Poisson replay has the fan-out `fanout` (default: the plan's `settings.fanout`); the
    constant one the planned counts."""
    constant = simulate(plan, workload, "constant", frames=frames, seed=seed, fanout="deterministic",
                        seconds=seconds)
    poisson = simulate(plan, workload, "poisson", frames=frames, seed=seed, fanout=fanout, seconds=seconds) \
        if arrivals != "constant" else None
    shown = poisson or constant
    apps = tuple((a.name, a.attainment) for a in shown.apps)
    replayed = Replayed(
        frames=min(a.frames for a in constant.apps) if constant.apps else frames, seed=seed, seconds=seconds,
        min_app_attainment=min((a for _, a in apps), default=1.0),
        constant_all_within=all(a.over_slo == 0.0 for a in constant.apps),
        apps=apps,
    )
    return Verdict(replayed, constant, poisson)
