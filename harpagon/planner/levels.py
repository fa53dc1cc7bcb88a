"""A level: the setting the planner plans one app at, and searches over under a promise.

The fluid formulas (docs/model.md v1) count on every module's requests arriving smoothly; under a promise
about real arrivals (docs/model.md v2) a plan buys room for their queues and bursts, either by the arrival
models of :mod:`.queueing` or by planning the fluid formulas with latency and capacity to spare (a
tighter SLO, less of each worker). :mod:`.promise_levels` searches each app's levels for the cheapest
whose plan keeps its promise in a replay; :mod:`.shared_levels` does the same for plans with shared GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from harpagon.config.schema import App
from harpagon.model.latency import Settings
from harpagon.planner.queueing import Arrival


@dataclass(frozen=True)
class Level:
    """How one app is planned.

    - Fluid (no `arrivals`): the fluid formulas, for the app's SLO times `slo_factor`, with `cap` times
      `max_utilization` of each worker. `Level()` is the fluid promise's; a lower factor or cap leaves
      latency and capacity to spare for real arrivals.
    - An arrival model: each module's tuples planned for its :class:`Arrival` (the timer-padding
      capacity rule, bursts and a queueing allowance), again with `cap` times `max_utilization`.

    Either way the app's plan keeps its own SLO; the level only sets what it is planned for."""

    slo_factor: float = 1.0
    """The app is planned for its SLO times this."""
    cap: float = 1.0
    """Factor on `max_utilization` for everything the app's plan does."""
    arrivals: tuple[tuple[str, Arrival], ...] = ()
    """Each module's arrival model, sorted by module name (a level is a key of the planner's memo);
    none: the fluid formulas."""

    @staticmethod
    def modelled(arrivals: Mapping[str, Arrival], cap: float = 1.0) -> Level:
        """The level of these arrival models at `cap`."""
        return Level(cap=cap).with_arrivals(arrivals)

    def with_arrivals(self, arrivals: Mapping[str, Arrival]) -> Level:
        return replace(self, arrivals=tuple(sorted(arrivals.items())))

    @property
    def fluid(self) -> bool:
        return not self.arrivals

    @property
    def models(self) -> dict[str, Arrival]:
        """Each module's arrival model (empty for a fluid level)."""
        return dict(self.arrivals)

    def arrival(self, module: str) -> Arrival | None:
        """The module's arrival model; None: the fluid formulas."""
        return next((a for name, a in self.arrivals if name == module), None)

    def app(self, app: App) -> App:
        """The app as planned: its SLO times `slo_factor`."""
        if self.slo_factor == 1.0:
            return app
        return app.model_copy(update={"slo_ms": app.slo_ms * self.slo_factor})

    def settings(self, settings: Settings) -> Settings:
        """The settings the app is planned with: `max_utilization` times `cap`."""
        if self.cap == 1.0:
            return settings
        return replace(settings, max_utilization=settings.max_utilization * self.cap)


#: app -> its level.
Levels = Mapping[str, Level]
