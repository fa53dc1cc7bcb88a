"""The module-by-module replay (harpagon.sim.sweep) against the event simulator, the reference: the
same frames, the same latencies, the same batches, on random plans of both dispatch policies."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from harpagon.model.latency import Settings, requests_for
from harpagon.planner.baselines.nexus import plan as nexus_plan
from harpagon.planner.harpagon import PlannerOptions
from harpagon.planner.harpagon import plan as harpagon_plan
from harpagon.sim import simulate
from harpagon.sim.sweep import frame_counts, linked, sweepable
from tests.strategies import settings, workloads
from tests.unit.test_replay import CHAIN, hand_plan, tup, workload


def same(a, b) -> None:
    assert [x.name for x in a.apps] == [y.name for y in b.apps]
    for x, y in zip(a.apps, b.apps, strict=True):
        assert (x.frames, x.over_slo, x.p50_ms, x.p99_ms, x.max_ms, x.late_se) == \
               (y.frames, y.over_slo, y.p50_ms, y.p99_ms, y.max_ms, y.late_se), x.name
        for mx, my in zip(x.modules, y.modules, strict=True):
            assert (mx.requests, mx.batches, mx.dummies, mx.max_ms) == (my.requests, my.batches, my.dummies, my.max_ms)
            assert np.array_equal(np.sort(mx.latencies), np.sort(my.latencies))


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(max_modules=4, max_apps=2), settings, st.sampled_from(["constant", "poisson"]),
       st.sampled_from(["deterministic", "poisson"]), st.booleans())
def test_the_sweep_replays_exactly_what_the_events_replay(w, s, arrivals, fanout, request_level):
    p = nexus_plan(w, s) if request_level else harpagon_plan(w, s, PlannerOptions(sharing=False))
    p = replace(p, apps=tuple(ap for ap in p.apps if sweepable(replace(p, apps=(ap,)))))  # Nexus packs GPUs
    if not p.apps:
        return
    kw = {"frames": 400, "seed": 11, "fanout": fanout}
    same(simulate(p, w, arrivals, engine="events", **kw), simulate(p, w, arrivals, engine="sweep", **kw))


def test_auto_takes_the_events_for_shared_gpus_and_the_sweep_refuses_them():
    w = workload(50.0, CHAIN)
    p = hand_plan(w, {"x": tup(50.0, gpu="g0", cycle_ms=10.0), "y": tup(50.0, gpu="g0", cycle_ms=10.0)})
    assert not sweepable(p)
    same(simulate(p, w, frames=200), simulate(p, w, frames=200, engine="events"))
    with pytest.raises(ValueError, match="shared GPUs"):
        simulate(p, w, frames=200, engine="sweep")


def test_frame_counts_match_the_replay_rule():
    for scale in (0.3, 1.0, 1.5, 2.0, 3.7):
        assert frame_counts(scale, 50).tolist() == [requests_for(f, scale) for f in range(50)]


def test_seconds_set_the_steady_state_horizon():
    """docs/model.md: at least `frames` per app or `seconds` of its frames, whichever is longer."""
    w = workload(500.0, [{"name": "x", "model": "m"}])
    p = hand_plan(w, {"x": tup(500.0, workers=3)})
    assert simulate(p, w, frames=1000, seconds=4.0).app("a0").frames == 2000
    assert simulate(p, w, frames=3000, seconds=4.0).app("a0").frames == 3000
    assert simulate(p, w, frames=1000).app("a0").frames == 1000
    assert Settings().arrivals == "poisson"


def test_apps_on_shared_gpus_replay_by_events_and_the_rest_by_the_sweep_with_one_result():
    """Apps meet only on shared GPUs: replaying the others apart changes nothing."""
    w = workload(50.0, CHAIN, apps=3)
    tuples = {"x": tup(50.0, gpu="g0", cycle_ms=10.0), "y": tup(50.0, batch=2, workers=2)}
    p = hand_plan(w, tuples)
    alone = hand_plan(w, {"x": tup(50.0, batch=2, workers=1), "y": tup(50.0, batch=2, workers=2)})
    p = replace(p, apps=(p.apps[0], alone.apps[1], p.apps[2]))
    for arrivals in ("constant", "poisson"):
        same(simulate(p, w, arrivals, frames=300, seed=2), simulate(p, w, arrivals, frames=300, seed=2, engine="events"))


def test_linked_groups_the_apps_that_meet_on_shared_gpus_directly_or_through_others():
    w = workload(50.0, CHAIN, apps=4)

    def placed(gpus: dict[str, tuple[str | None, str | None]]):
        p = hand_plan(w, {"x": tup(50.0), "y": tup(50.0)})
        return replace(p, apps=tuple(
            replace(ap, modules=tuple(replace(mp, tuples=tuple(replace(t, gpu=g, cycle_ms=10.0 if g else None)
                                                               for t in mp.tuples))
                                      for mp, g in zip(ap.modules, gpus[ap.name], strict=True)))
            for ap in p.apps))

    def names(p):
        return {name: [x.name for x in g] for name, g in linked(p).items()}

    p = placed({"a0": ("g0", None), "a1": (None, None), "a2": (None, "g1"), "a3": ("g0", "g0")})
    assert names(p) == {"a0": ["a0", "a3"], "a1": ["a1"], "a2": ["a2"], "a3": ["a0", "a3"]}
    # a1 bridges g0 and g1: a0, a1, a2 and a3 all meet, through it
    p = placed({"a0": ("g0", None), "a1": ("g0", "g1"), "a2": (None, "g1"), "a3": ("g0", "g0")})
    assert all(v == ["a0", "a1", "a2", "a3"] for v in names(p).values())
