"""How many workers of each hardware kind the live system should hold (docs/model.md, "The fleet").

Policy only: pure, clock-injected, no asyncio, gRPC or logging. The controller feeds it the workers
each plan needs and reads the desired fleet, which a scaler (`harpagon serve`'s local one, or KEDA on
`harpagon_fleet_desired_workers`) turns into workers:

    policy = FleetPolicy(config, quota={"t4": 8})
    policy.observe(now, plan.workers_by_hardware())     # at every plan
    policy.desired(now)                                  # at every plan and every tick: {"t4": 3}

A kind's target is what the plan needs plus its spare, within [minimum, quota]. Rising targets count
at once (a plan short of workers refuses frames); falling ones only once every target of the last
`scale_down_delay_s` was as low (the stabilisation window of Kubernetes' HPA): a lull between two
peaks does not stop workers that the next peak needs again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from harpagon.config.schema import FleetConfig


def targets(needed: Mapping[str, int], quota: Mapping[str, int | None], config: FleetConfig) -> dict[str, int]:
    """Per hardware kind of the quota: what the plan needs plus the spare, at least the minimum and at
    most the quota (None: no limit)."""
    out = {}
    for kind, most in quota.items():
        want = max(needed.get(kind, 0) + config.of("spare", kind), config.of("minimum", kind))
        out[kind] = want if most is None else min(want, most)
    return out


def fits(needed: Mapping[str, int], have: Mapping[str, int]) -> bool:
    """Whether the workers `have` hold what a plan `needed` per kind."""
    return all(n <= have.get(kind, 0) for kind, n in needed.items())


@dataclass
class FleetPolicy:
    """The desired fleet over time: targets from each plan, lowered only after the scale-down delay."""

    config: FleetConfig
    quota: Mapping[str, int | None]
    """Hardware kind -> its configured `count` (None: no limit): the most the fleet may hold."""
    needed: dict[str, int] = field(default_factory=dict)
    """What the latest plan needs, per kind."""
    _history: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)

    def observe(self, now: float, needed: Mapping[str, int]) -> None:
        """A plan was made at `now` that needs these workers per kind (its kinds only)."""
        self.needed = {k: n for k, n in needed.items() if n > 0}
        self._history.append((now, targets(self.needed, self.quota, self.config)))

    def desired(self, now: float) -> dict[str, int]:
        """Per kind, the highest target of the last `scale_down_delay_s` (the latest target counts
        until a newer one replaces it); before any plan, the minimum."""
        delay = self.config.scale_down_delay_s
        # targets older than the window go, but the newest of them still holds until `now`
        while len(self._history) > 1 and self._history[1][0] <= now - delay:
            self._history.popleft()
        if not self._history:
            return targets({}, self.quota, self.config)
        kinds = self.quota.keys()
        return {k: max(t.get(k, 0) for _, t in self._history) for k in kinds}

    def shrinking(self, now: float) -> dict[str, float]:
        """Per kind whose desired count is above its latest target: seconds until it may fall (the
        scale-down the delay holds back, for logs and the benchmark's events)."""
        if not self._history:
            return {}
        latest = self._history[-1][1]
        desired = self.desired(now)
        out = {}
        for kind, want in desired.items():
            if want > latest.get(kind, 0):
                # the newest target above the latest one ends its hold `delay` after the next target
                above = [i for i, (_, t) in enumerate(self._history) if t.get(kind, 0) > latest.get(kind, 0)]
                ends = self._history[above[-1] + 1][0] + self.config.scale_down_delay_s
                out[kind] = max(0.0, ends - now)
        return out
