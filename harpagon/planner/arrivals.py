"""Each module's arrival model (:class:`.queueing.Arrival`) as the planner sets it under a promise:
before any plan, once a plan's batches show the bursts they make, and after a replay finds the app late.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from harpagon.config.schema import App, Module, Workload
from harpagon.model.latency import PLAN_TOL, REL_TOL, Settings, collection_ms, real_requests
from harpagon.model.plan import AppPlan
from harpagon.planner.levels import Level, Levels
from harpagon.planner.queueing import EPSILON_SHARE, Arrival
from harpagon.planner.replays import app_kept


def workload_app(workload: Workload, name: str) -> App:
    return next(a for a in workload.apps if a.name == name)


def late_share(app: App, settings: Settings) -> dict[str, float]:
    """The fraction of an app's frames each module may make late: the allowed late fraction, halved
    for sampling noise, shared over the modules of the longest path through it."""
    late = (1 - settings.attainment) * EPSILON_SHARE
    return {m.name: late / max(len(p) for p in app.paths if m.name in p) for m in app.modules}


def initial_arrivals(app: App, settings: Settings) -> dict[str, Arrival]:
    """Each module's arrival model before any plan: bursts of a frame's requests only."""
    poisson = settings.arrivals == "poisson"
    share = late_share(app, settings)
    out = {}
    for m in app.modules:
        per_frame = frame_requests(m, settings, share[m.name])
        eps = share[m.name] / per_frame
        out[m.name] = Arrival(poisson=poisson, smooth=not poisson and not m.after and m.scale == 1.0,
                              clump=per_frame, epsilon=eps)
    return out


def frame_requests(module: Module, settings: Settings, late: float) -> int:
    """Most requests one frame brings a module, as the planner counts them: `ceil(s)` (the replay's
    planned counts), or under Poisson fan-out (`settings.fanout`, below the source) the least count
    that a Poisson(s) draw exceeds for at most a fraction `late` of the frames (the module's late share)."""
    if settings.fanout != "poisson" or not module.after:
        return max(1, math.ceil(module.scale - PLAN_TOL))
    k, pmf = 0, math.exp(-module.scale)
    cdf = pmf
    while cdf < 1 - late and k < 10_000:
        k += 1
        pmf *= module.scale / k
        cdf += pmf
    return max(1, k)


def with_bursts(app: App, ap: AppPlan, arrivals: Mapping[str, Arrival],
                settings: Settings | None = None) -> dict[str, Arrival]:
    """Arrival models whose bursts are those the plan makes: a module gets a frame's requests at once,
    for every frame that a parent's batch finishes together (a frame's requests as
    :func:`frame_requests` counts them under `settings`; `ceil(s)` without)."""
    frames_per_batch = {}
    for mp in ap.modules:
        scale = app.module(mp.name).scale
        waits = [(t, collection_ms("batch-aware", t.batch, 1, t.rate + t.dummy_rate)) for t in mp.tuples]
        real = max(float(real_requests(t.batch, t.rate, wait)) for t, wait in waits)
        frames_per_batch[mp.name] = max(1, math.ceil(real / max(1.0, scale) - PLAN_TOL))
    share = late_share(app, settings) if settings is not None else {}
    out = {}
    for m in app.modules:
        together = max((frames_per_batch[p] for p in m.after), default=1)
        per_frame = max(1, math.ceil(m.scale - PLAN_TOL)) if settings is None else \
            frame_requests(m, settings, share[m.name])
        out[m.name] = replace(arrivals[m.name], clump=per_frame * together)
    return out


def repair_arrivals(levels: Levels, late: list[tuple[AppPlan, Any, Any]], workload: Workload,
                    settings: Settings) -> dict[str, Level]:
    """New arrival models after a replay. `levels`: arrival-model levels, by app; `late`: each late
    app's plan with its constant and Poisson replay stats. A module whose replayed latency exceeds its
    prediction gets a larger allowance (under Poisson), the excess seen with constant arrivals, and
    more headroom; when none stands out, every module of the app gets a larger allowance and more
    headroom."""
    out = dict(levels)
    for ap, const, pois in late:
        app = workload_app(workload, ap.name)
        mods = levels[ap.name].models
        late_const = const.over_slo > 0
        late_pois = pois is not None and not app_kept(const, pois, settings)
        share = late_share(app, settings)
        found = False
        for mp in ap.modules:
            over = const.module(mp.name).max_ms - mp.predicted_latency_ms if late_const else 0.0
            if late_pois:
                over = max(over, pois.module(mp.name).quantile(1 - share[mp.name]) - mp.predicted_latency_ms)
            if over > REL_TOL * max(1.0, mp.predicted_latency_ms):
                found = True
                mods[mp.name] = mods[mp.name].repaired(kappa=1.5 if late_pois else 1.0, headroom=0.92,
                                                       extra_ms=over / 2 if late_const else 0.0)
        if not found:
            mods = {m: a.repaired(kappa=1.5, headroom=0.95) for m, a in mods.items()}
        out[ap.name] = levels[ap.name].with_arrivals(mods)
    return out
