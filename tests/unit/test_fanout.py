"""Poisson fan-out as an option of the replay (an extension of docs/model.md v2, whose replay is
deterministic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harpagon.cli import main
from harpagon.config.schema import Workload
from harpagon.model.latency import Settings, batch_aware_latency, poisson_requests, requests_for
from harpagon.model.plan import AppPlan, ModulePlan, Plan, Promise, TuplePlan
from harpagon.planner.arrivals import frame_requests
from harpagon.planner.harpagon import PlannerOptions, plan
from harpagon.sim import judge, simulate

ROWS = [[1, 5.0], [2, 6.0], [4, 8.0]]  # d(1) = 5, d(2) = 6, d(4) = 8 ms (as in test_replay)


def tup(rate: float, workers: int = 1) -> TuplePlan:
    return TuplePlan("g", 1, workers, rate, 0.0, batch_aware_latency(1, 5.0, rate, 0.0))


def hand_plan(w: Workload, tuples: dict[str, TuplePlan]) -> Plan:
    """One b = 1 tuple per module (the plan is judged by the replay)."""
    app = w.apps[0]
    mods = tuple(ModulePlan(m.name, "m", app.module_rate(m), 5.0, 5.0, (tuples[m.name],)) for m in app.modules)
    return Plan.build("hand", "batch-aware", Settings(), (AppPlan(app.name, app.rate, app.slo_ms, 10.0, mods),),
                      (), w)


def chain(rate: float, slo: float, scale: float = 1.0) -> Workload:
    return Workload.model_validate({
        "hardware": [{"name": "g", "price_per_hour": 1.0}],
        "profiles": [{"model": "m", "hardware": "g", "batches": ROWS}],
        "apps": [{"name": "a", "rate": rate, "slo_ms": slo,
                  "modules": [{"name": "x", "model": "m"},
                              {"name": "y", "model": "m", "after": ["x"], "scale": scale}]}],
    })


def test_poisson_counts_have_mean_scale_and_are_seeded():
    counts = poisson_requests(1.5, 200_000, "7/a/y")
    assert counts.mean() == pytest.approx(1.5, abs=0.01)
    assert counts.var() == pytest.approx(1.5, abs=0.03)  # Poisson: variance = mean
    assert np.array_equal(counts, poisson_requests(1.5, 200_000, "7/a/y"))
    assert not np.array_equal(counts[:1000], poisson_requests(1.5, 1000, "8/a/y"))


def test_the_replay_draws_per_module_and_frame_and_keeps_the_source_whole():
    w = Workload.model_validate({
        "hardware": [{"name": "g", "price_per_hour": 1.0}],
        "profiles": [{"model": "m", "hardware": "g", "batches": ROWS}],
        "apps": [{"name": "a", "rate": 10.0, "slo_ms": 1000.0,
                  "modules": [{"name": "x", "model": "m"},
                              {"name": "y", "model": "m", "after": ["x"], "scale": 1.5},
                              {"name": "z", "model": "m", "after": ["x"], "scale": 1.5}]}],
    })
    p = hand_plan(w, {"x": tup(10.0), "y": tup(15.0), "z": tup(15.0)})
    frames = 20_000
    r = simulate(p, w, "constant", frames=frames, fanout="poisson").app("a")
    assert r.module("x").requests == frames  # the source gets the frame itself
    for m in ("y", "z"):
        assert r.module(m).requests / frames == pytest.approx(1.5, abs=0.03)
    assert r.module("y").requests != r.module("z").requests  # independent draws per module
    # The counts are those of poisson_requests for the seed, the app and the module.
    assert r.module("y").requests == int(poisson_requests(1.5, frames, "0/a/y").sum())


def test_seeded_replays_are_reproducible():
    w = chain(100.0, 30.0, scale=2.0)
    p = hand_plan(w, {"x": tup(100.0), "y": tup(200.0, workers=2)})
    runs = [simulate(p, w, "poisson", frames=3000, seed=s, fanout="poisson").app("a") for s in (3, 3, 4)]
    assert runs[0].over_slo == runs[1].over_slo and runs[0].p99_ms == runs[1].p99_ms
    for m in ("x", "y"):
        assert np.array_equal(runs[0].module(m).latencies, runs[1].module(m).latencies)
    assert runs[0].module("y").requests == runs[1].module("y").requests
    assert runs[0].module("y").requests != runs[2].module("y").requests


def test_the_deterministic_default_is_unchanged():
    """Default settings: the planned counts `floor((f+1)s) - floor(fs)`, whatever the seed; the plan's
    JSON has no fan-out key; the replay, the planner and the judge give what they gave before."""
    assert Settings().fanout == "deterministic"
    assert "fanout" not in Settings().to_dict()
    assert "fanout" not in Promise("poisson", 0.99).to_dict()
    w = chain(10.0, 1000.0, scale=1.5)
    p = hand_plan(w, {"x": tup(10.0), "y": tup(15.0)})
    for seed in (0, 1):
        r = simulate(p, w, "poisson", frames=1000, seed=seed).app("a")
        assert r.module("y").requests == sum(requests_for(f, 1.5) for f in range(1000)) == 1500
        explicit = simulate(p, w, "poisson", frames=1000, seed=seed, fanout="deterministic").app("a")
        assert np.array_equal(r.module("y").latencies, explicit.module("y").latencies)
    # The planner: same plan, same promise, same JSON as without the option.
    w = chain(40.0, 30.0, scale=2.0)
    opts = PlannerOptions(replay_frames=2000)
    a, b = plan(w, Settings(), opts), plan(w, Settings(fanout="deterministic"), opts)
    assert a == b and a.to_json() == b.to_json()
    assert "fanout" not in a.to_json()
    assert Plan.from_dict(json.loads(a.to_json())) == a
    v = judge(a, w, frames=2000)
    assert v.replayed == judge(a, w, frames=2000, fanout="deterministic").replayed


def test_poisson_fanout_breaks_a_tight_plan_and_planning_for_it_restores_the_promise():
    """x -> y, scale 1, 2 frames/s, d(1) = 5 ms, SLO 18 ms. The default plan gives each module one
    worker at b = 1 (5 + 5 = 10 ms). Under Poisson fan-out y gets K ~ Poisson(1) requests per frame
    on its one worker: the third finishes 15 ms after release, so every frame with K >= 3 is late,
    P(K >= 3) = 1 - 2.5/e = 8.0%: attainment about 92% < 99%. Planned for Poisson fan-out, y counts
    on 5 requests per frame (P(K > 5) < 0.25%, its late share), which 3 workers serve in 2 rounds
    (10 ms; 5 + 10 <= 18): cost 4 instead of 2, and only K >= 7 (0.01%) is late."""
    w = chain(2.0, 18.0)
    assert frame_requests(w.apps[0].module("y"), Settings(fanout="poisson"), 0.0025) == 5
    assert frame_requests(w.apps[0].module("y"), Settings(), 0.0025) == 1
    opts = PlannerOptions(replay_frames=3000)
    det = plan(w, Settings(), opts)
    assert det.promise is not None and det.promise.kept
    assert [t.workers for m in det.apps[0].modules for t in m.tuples] == [1, 1]
    same = judge(det, w, frames=3000, fanout="poisson").poisson.app("a").attainment
    assert same == pytest.approx(1 - (1 - 2.5 / np.e), abs=0.02) and same < 0.99
    pois = plan(w, Settings(fanout="poisson"), opts)
    assert pois.promise is not None and pois.promise.kept and pois.promise.fanout == "poisson"
    assert pois.cost_per_hour >= det.cost_per_hour
    assert pois.cost_per_hour == 4.0
    assert judge(pois, w, frames=3000, seed=11).poisson.app("a").attainment >= 0.99  # the plan's fan-out
    d = json.loads(pois.to_json())
    assert d["settings"]["fanout"] == "poisson" and d["promise"]["fanout"] == "poisson"
    assert Plan.from_dict(d) == pois


def test_cli_plan_fanout_flag(tmp_path, capsys):
    f = tmp_path / "w.yaml"
    f.write_text("hardware: [{name: g, price_per_hour: 1.0}]\n"
                 "profiles: [{model: m, hardware: g, batches: [[1, 5.0], [2, 6.0], [4, 8.0]]}]\n"
                 "apps:\n- {name: a, rate: 2, slo_ms: 18, modules: [{name: x, model: m},\n"
                 "   {name: y, model: m, after: [x]}]}\n")
    assert main(["plan", str(f), "--json", "--replay-frames", "2000", "--fanout", "poisson"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["fanout"] == "poisson" and out["promise"]["fanout"] == "poisson"
    assert out["cost_per_hour"] == 4.0
    assert main(["plan", str(f), "--json", "--replay-frames", "2000"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "fanout" not in out["settings"] and "fanout" not in out["promise"] and out["cost_per_hour"] == 2.0
    assert main(["plan", str(f), "--replay-frames", "2000", "--fanout", "poisson"]) == 0
    assert "fan-out: Poisson" in capsys.readouterr().out
    assert main(["plan", str(f), "--arrivals", "constant", "--fanout", "poisson"]) == 2
    assert "--fanout poisson needs --arrivals poisson" in capsys.readouterr().err
