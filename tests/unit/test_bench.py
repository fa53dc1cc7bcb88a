"""The planner benchmark: the equal-attainment wrapper, the workload grids, the summary and the report."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from harpagon.bench.attainment import (
    SLO_FACTORS,
    UTILIZATIONS,
    at_equal_attainment,
    keeps_promise,
    optimum_floor,
    replay_key,
    tightened,
    whole_worker_floor,
    with_real_slos,
)
from harpagon.bench.planner import (
    Row,
    evaluate,
    geomean,
    premium,
    read_csv,
    summarise,
    write_report,
)
from harpagon.bench.report import ROOT
from harpagon.bench.workloads import RATES, Case, fastest_path_ms, grid, many_apps, multi_app_grid
from harpagon.bench.workloads import SLO_FACTORS as GRID_SLO_FACTORS
from harpagon.config import load_workload
from harpagon.config.schema import App, Hardware, Module, Profile, Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import AppPlan, ModulePlan, Plan, TuplePlan, check_resources
from harpagon.planner.registry import OPTIMUM, PLANNERS
from harpagon.sim import simulate

FRAMES, SCREEN = 2000, 500


def tiny(rate: float = 60.0, slo_ms: float = 40.0) -> Workload:
    """One app, one module, two kinds of hardware: small enough to replay every candidate in a test."""
    return Workload(
        hardware=(Hardware(name="small", price_per_hour=1.0), Hardware(name="big", price_per_hour=2.5)),
        profiles=(Profile(model="m", hardware="small", batches=[[1, 10.0], [2, 16.0], [4, 28.0]]),
                  Profile(model="m", hardware="big", batches=[[1, 4.0], [2, 6.0], [4, 10.0]])),
        apps=(App(name="a", rate=rate, slo_ms=slo_ms, modules=(Module(name="x", model="m"),)),),
    )


def _candidates(planner, w: Workload) -> list[Plan]:
    """Every plan the wrapper's grid yields, with the real SLOs, cheapest first (grid order on ties)."""
    out = []
    for f in SLO_FACTORS:
        for u in UTILIZATIONS:
            p = planner(tightened(w, f), Settings(max_utilization=u))
            if p.apps and not p.refused:
                out.append(with_real_slos(p, w))
    return sorted(out, key=lambda p: p.cost_per_hour)


def _kept(p: Plan, w: Workload, frames: int) -> bool:
    const = simulate(p, w, "constant", frames=frames, seed=1)
    pois = simulate(p, w, "poisson", frames=frames, seed=1)
    return all(a.over_slo == 0 for a in const.apps) and all(a.attainment >= 0.99 for a in pois.apps)


# --- the wrapper --------------------------------------------------------------------------------


def test_wrapper_picks_the_cheapest_candidate_that_keeps_the_promise():
    w = tiny()
    planner = PLANNERS["harpagon-fluid"]
    own = planner(w, Settings())
    assert not _kept(own, w, FRAMES)  # the fluid plan as made misses the promise: the wrapper has work to do
    got = at_equal_attainment(planner, w, Settings(), seed=1, frames=FRAMES, screen_frames=SCREEN)
    assert got.plan is not None and got.cost == got.plan.cost_per_hour > own.cost_per_hour
    # Its choice keeps the promise in a replay of its own, against the real SLO ...
    assert [a.slo_ms for a in got.plan.apps] == [a.slo_ms for a in w.apps]
    assert _kept(got.plan, w, FRAMES)
    # ... and every cheaper candidate of the grid fails the screen or the full replay.
    cheaper = [p for p in _candidates(planner, w) if p.cost_per_hour < got.cost * (1 - 1e-9)]
    assert cheaper
    assert all(not _kept(p, w, SCREEN) or not _kept(p, w, FRAMES) for p in cheaper)
    assert 1 <= got.replays <= got.screens <= got.candidates <= len(SLO_FACTORS) * len(UTILIZATIONS)


def test_wrapper_keeps_a_plan_that_already_keeps_the_promise_and_reuses_known_verdicts():
    w = tiny()
    nexus = PLANNERS["nexus"]
    own = nexus(w, Settings())
    assert _kept(own, w, FRAMES)
    cheapest_kept = next(p for p in _candidates(nexus, w) if _kept(p, w, SCREEN) and _kept(p, w, FRAMES))
    got = at_equal_attainment(nexus, w, Settings(), seed=1, frames=FRAMES, screen_frames=SCREEN)
    assert got.cost == cheapest_kept.cost_per_hour <= own.cost_per_hour
    # A verdict the caller knows is not replayed again.
    known = {replay_key(got.plan): True}
    again = at_equal_attainment(nexus, w, Settings(), seed=1, frames=FRAMES, screen_frames=SCREEN, verdicts=known)
    assert again.cost == got.cost
    assert (again.screens, again.replays) == (got.screens - 1, got.replays - 1)


def _overloaded(workload: Workload, settings: Settings) -> Plan:
    """A 'planner' whose plans never keep a promise: one small worker at batch 1 for any rate."""
    apps = tuple(AppPlan(a.name, a.rate, a.slo_ms, 10.0, tuple(
        ModulePlan(m.name, m.model, a.module_rate(m), a.slo_ms, 10.0,
                   (TuplePlan("small", 1, 1, a.module_rate(m), 0.0, 10.0),)) for m in a.modules))
        for a in workload.apps)
    return Plan.build("overloaded", "batch-aware", settings, apps, (), workload)


def test_wrapper_yields_nan_when_no_candidate_keeps_the_promise():
    w = tiny(rate=150.0)  # 150/s on a worker that serves 100/s: the constant replay already fails
    got = at_equal_attainment(_overloaded, w, Settings(), seed=1, frames=FRAMES, screen_frames=SCREEN)
    assert math.isnan(got.cost) and got.plan is None and got.point is None
    assert got.candidates == 1  # every grid point gave the same plan: replayed once
    assert got.screens == 1 and got.replays == 0

    def refuses(workload: Workload, settings: Settings) -> Plan:
        return OPTIMUM(tightened(workload, 0.01), settings)  # below every fastest path: refused

    none = at_equal_attainment(refuses, w, Settings(), seed=1, frames=FRAMES, screen_frames=SCREEN)
    assert math.isnan(none.cost) and none.candidates == 0 and none.screens == 0


def test_wrapper_gives_no_planner_more_gpus_than_exist():
    """The baselines ignore hardware counts: a candidate that uses more GPUs of a kind than its count
    cannot be deployed, so the wrapper drops it however well it replays."""
    w = tiny(rate=400.0)
    nexus = PLANNERS["nexus"]
    free = at_equal_attainment(nexus, w, Settings(), seed=1, frames=FRAMES, screen_frames=SCREEN)
    assert free.plan is not None and free.plan.workers_by_hardware() == {"big": 2} and free.unfit == 0
    one_big = w.model_copy(update={"hardware": tuple(h.model_copy(update={"count": 1}) if h.name == "big" else h
                                                     for h in w.hardware)})
    over = [pt for pt in ((f, u) for f in SLO_FACTORS for u in UTILIZATIONS)
            if check_resources(nexus(tightened(one_big, pt[0]), Settings(max_utilization=pt[1])), one_big)]
    assert over
    got = at_equal_attainment(nexus, one_big, Settings(), seed=1, frames=FRAMES, screen_frames=SCREEN)
    assert got.unfit == len(over)
    assert got.plan is None or check_resources(got.plan, one_big) == []
    assert got.plan is None or got.cost > free.cost


def test_floor_is_a_lower_bound_and_changes_no_result():
    settings = Settings()
    cases = [c for c in grid(settings) if c.rate in (30.0, 1000.0) and c.catalog == "aws"][::7]
    for c in cases:
        for f in (1.0, 0.55, 0.3):
            for u in (1.0, 0.5):
                w, s = tightened(c.workload, f), Settings(max_utilization=u)
                floor, opt = whole_worker_floor(w, s), OPTIMUM(w, s)
                if math.isinf(floor):
                    assert not opt.apps or opt.refused
                else:
                    assert opt.cost_per_hour >= floor * (1 - 1e-9)
    saved = 0
    for rate, slo_ms in ((60.0, 40.0), (150.0, 30.0), (300.0, 25.0)):
        w = tiny(rate, slo_ms)
        plain = at_equal_attainment(PLANNERS["harpagon-fluid"], w, settings, frames=FRAMES, screen_frames=SCREEN)
        floored = at_equal_attainment(PLANNERS["harpagon-fluid"], w, settings, frames=FRAMES, screen_frames=SCREEN,
                                      floors=(whole_worker_floor, optimum_floor))
        assert floored.cost == plain.cost and floored.planned <= plain.planned
        saved += plain.planned - floored.planned
    assert saved > 0


def test_keeps_promise_replays_apps_apart_like_together():
    c = multi_app_grid(3, Settings(), seed=2)[0]
    p = PLANNERS["harpagon-fluid"](c.workload, Settings())
    assert not p.refused
    suspects: list[str] = []
    alone = keeps_promise(p, c.workload, frames=SCREEN, seed=1, attainment=0.99, suspects=suspects)
    assert alone == _kept(p, c.workload, SCREEN)
    assert alone or suspects  # a failure names the app that failed


# --- workloads ----------------------------------------------------------------------------------


def test_one_app_grid_covers_the_space_and_samples_reproducibly():
    cases = grid(Settings())
    assert len(cases) >= 500
    assert {c.rate for c in cases} >= {10.0, 10000.0} and len({c.catalog for c in cases}) >= 3
    assert [c.id for c in grid(Settings(), 20, seed=3)] == [c.id for c in grid(Settings(), 20, seed=3)]
    assert len(many_apps(30).apps) == 30


def test_multi_app_grid_shape():
    settings = Settings()
    cases = multi_app_grid(40, settings, seed=5)
    assert len(cases) == 40 and len({c.id for c in cases}) == 40
    names = {a.name for a in load_workload([ROOT / "configs" / "multi.yaml"]).apps}
    sizes = set()
    for c in cases:
        apps = c.workload.apps
        sizes.add(len(apps))
        assert 2 <= len(apps) <= 5 and len({a.name for a in apps}) == len(apps)
        assert {a.name for a in apps} <= names and c.app == "+".join(a.name for a in apps)
        assert c.rate == sum(a.rate for a in apps) and math.isnan(c.slo_factor)
        for a in apps:
            assert a.rate in RATES
            alone = c.workload.model_copy(update={"apps": (a,)})
            factor = a.slo_ms / fastest_path_ms(a, alone, settings)
            assert any(math.isclose(factor, f, rel_tol=1e-3) for f in GRID_SLO_FACTORS)
    assert sizes == {2, 3, 4, 5}  # 40 draws see every size
    assert [c.workload for c in multi_app_grid(5, settings, seed=5)] == [c.workload for c in cases[:5]]
    assert [c.app for c in multi_app_grid(5, settings, seed=6)] != [c.app for c in cases[:5]]


# --- summary and report -------------------------------------------------------------------------


def row(case: str, planner: str, **kw) -> Row:
    base = {"case": case, "kind": "one-app", "apps": 1, "app": "a", "rate": 10.0, "slo_factor": 2.0, "catalog": "aws",
                "planner": planner, "cost": 1.0, "refused": False, "feasible": True, "plan_ms": 1.0, "model_ms": 1.0, "replay_ms": 1.0,
                "over_slo_constant": 0.0, "min_attainment": 1.0, "keeps_constant": True, "keeps_poisson": True, "eq_cost": 1.0,
                "eq_slo_factor": 1.0, "eq_max_utilization": 1.0, "eq_candidates": 1, "eq_screens": 0, "eq_replays": 0,
                "eq_plan_s": 0.0, "eq_replay_s": 0.0}
    return Row(**{**base, **kw})


def synthetic() -> list[Row]:
    """Three workloads: Harpagon's default, its fluid plan, Nexus and the optimum."""
    nan = math.nan
    return [
        row("w1", "harpagon", cost=4.0, eq_cost=4.0, model_ms=2.0),
        row("w1", "harpagon-fluid", cost=2.0, keeps_poisson=False, eq_cost=5.0),
        row("w1", "nexus", cost=8.0, eq_cost=8.0),  # dearer, both keep
        row("w1", "optimum", cost=2.0, eq_cost=nan),
        row("w2", "harpagon", cost=3.0, eq_cost=3.0, apps=2, model_ms=8.0, kind="multi-app"),
        row("w2", "harpagon-fluid", cost=3.0, eq_cost=3.0, apps=2, kind="multi-app"),
        row("w2", "nexus", cost=1.5, eq_cost=1.5, apps=2, kind="multi-app"),  # cheaper, both keep
        row("w2", "optimum", cost=3.0, eq_cost=nan, apps=2, kind="multi-app"),
        row("w3", "harpagon", cost=nan, refused=True, feasible=False, keeps_constant=False, keeps_poisson=False,
            eq_cost=nan),
        row("w3", "harpagon-fluid", cost=1.0, keeps_constant=False, keeps_poisson=False, eq_cost=nan),
        row("w3", "nexus", cost=1.0, keeps_poisson=False, eq_cost=2.0),
        row("w3", "optimum", cost=1.0, eq_cost=nan),
    ]


def test_summary_arithmetic():
    s = {x["planner"]: x for x in summarise(synthetic())}
    assert "optimum" not in s
    h, f, n = s["harpagon"], s["harpagon-fluid"], s["nexus"]
    assert h["refused"] == pytest.approx(1 / 3) and h["keeps_poisson"] == pytest.approx(2 / 3)
    assert h["keeps_poisson_planned"] == 1.0 and h["eq_ratio"] == 1.0 and h["ref_equal"] == 1.0
    # Nexus: 2x and 0.5x as planned (both keep on w1, w2): geo-mean 1; w3 has no Harpagon plan.
    assert n["planned_ratio"] == pytest.approx(geomean([2.0, 0.5])) == pytest.approx(1.0) and n["planned_n"] == 2
    assert n["eq_ratio"] == pytest.approx(1.0) and n["eq_n"] == 2
    assert (n["ref_cheaper"], n["ref_equal"], n["ref_dearer"]) == (0.5, 0.0, 0.5)
    assert n["eq_none"] == 0.0 and n["keeps_constant"] == 1.0 and n["keeps_poisson"] == pytest.approx(2 / 3)
    # The fluid plan keeps the promise on w2 only; through the wrapper it costs 5/4 and 3/3.
    assert f["planned_ratio"] == 1.0 and f["planned_n"] == 1
    assert f["eq_ratio"] == pytest.approx(geomean([1.25, 1.0])) and f["eq_none"] == pytest.approx(1 / 3)
    assert (f["ref_cheaper"], f["ref_equal"]) == (0.5, 0.5)
    assert f["at_optimum"] == 1.0 and h["at_optimum"] == 0.5  # 4 against 2 on w1, 3 against 3 on w2
    # Model time per app: 2 ms for one app, 8 ms for two.
    assert h["model_ms_p50"] == 2.0 and h["model_ms_p99"] == 4.0
    assert sorted(x for _, x in premium(synthetic())) == [1.0, 2.0]


def test_report_files_and_csv_round_trip(tmp_path):
    rows = synthetic()
    path = write_report(rows, tmp_path, "harpagon bench planner --test", [(10, 0.1, 10.0, 1.5), (100, 1.0, 10.0, math.nan)],
                        seed=1)
    text = path.read_text()
    assert "harpagon bench planner --test" in text
    for name in ("harpagon", "harpagon-fluid", "nexus"):
        assert f"| {name} |" in text
    assert "| 10 | 0.10 | 10.00 | 1.5 |" in text and "not run" in text
    assert "w3" in text  # the workload Harpagon refused is named
    back = read_csv(tmp_path / "planner.csv")
    assert len(back) == len(rows)
    for a, b in zip(back, rows, strict=True):
        for fld in fields(Row):
            x, y = getattr(a, fld.name), getattr(b, fld.name)
            assert x == y or (isinstance(y, float) and math.isnan(x) and math.isnan(y))
    assert (tmp_path / "planner_cost_cdf.png").stat().st_size > 0
    assert (tmp_path / "planner_time.png").stat().st_size > 0


def test_evaluate_records_promises_and_the_wrapper():
    w = tiny()
    case = Case("tiny", "a", 60.0, 2.0, "test", w)
    r = evaluate(case, "harpagon-fluid", Settings(), seed=1, frames=FRAMES)
    assert r.feasible and not r.refused and r.keeps_constant == (r.over_slo_constant == 0.0)
    assert not r.keeps_poisson and not _kept(PLANNERS["harpagon-fluid"](w, Settings()), w, FRAMES)
    assert r.eq_cost > r.cost and r.eq_candidates >= 1
    o = evaluate(case, "optimum", Settings(), seed=1, frames=FRAMES)
    assert o.cost <= r.cost and math.isnan(o.eq_cost) and o.replay_ms == 0.0
    h = evaluate(case, "harpagon", Settings(), seed=1, frames=FRAMES, wrapper=False)
    assert 0 < h.model_ms < h.plan_ms and h.replay_ms > 0 and math.isnan(h.eq_cost)
    assert h.keeps_poisson == _kept(PLANNERS["harpagon"](w, Settings()), w, FRAMES)


# --- the lower bound and "never dearer" ---------------------------------------------------------


def bounded() -> list[Row]:
    """Two multi-app workloads and one example config, bound 2 each: Harpagon, two baselines, the optimum."""
    nan = math.nan

    def r(case: str, planner: str, cost: float, eq: float, **kw) -> Row:
        kw = {"kind": "multi-app", "apps": 2, **kw}
        return row(case, planner, cost=cost, eq_cost=eq, bound=2.0, distance=cost / 2.0,
                   eq_distance=eq / 2.0 if not math.isnan(eq) else nan, **kw)

    return [
        r("m1", "harpagon", 3.0, 4.0),
        r("m1", "nexus", 2.5, 5.0),
        r("m1", "scrooge", 2.2, 8.0),
        r("m1", "optimum", 2.0, nan),
        r("m2", "harpagon", 4.0, 6.0),
        r("m2", "nexus", 3.0, 3.0),  # Harpagon dearer than Nexus here
        r("m2", "scrooge", 1.0, 12.0, feasible=False),  # below the bound: not fluid-feasible, left out
        r("m2", "optimum", 4.0, nan),
        r("config/city", "harpagon", 2.0, 2.0, catalog="config", apps=20),
        r("config/city", "nexus", 4.0, 4.0, catalog="config", apps=20),
        r("config/city", "scrooge", 2.0, 2.0, catalog="config", apps=20),
        r("config/city", "optimum", 2.0, nan, catalog="config", apps=20),
    ]


def test_distances_from_the_bound_and_never_dearer():
    from harpagon.bench.planner import distances, never_dearer

    d = {x["planner"]: x for x in distances(bounded())}
    h, s, o = d["harpagon"], d["scrooge"], d["optimum"]
    assert h["n"] == 3 and h["geo"] == pytest.approx(geomean([1.5, 2.0, 1.0])) and h["max"] == 2.0
    assert h["worst"] == "m2" and h["eq_n"] == 3 and h["eq_max"] == 3.0 and h["eq_worst"] == "m2"
    assert s["n"] == 2 and s["infeasible"] == 1 and s["below"] == 0 and s["max"] == 1.1
    assert o["eq_n"] == 0 and math.isnan(o["eq_geo"]) and o["geo"] == pytest.approx(geomean([1.0, 2.0, 1.0]))
    per, best = never_dearer(bounded())
    v = {x.baseline: x for x in per}
    assert [x.baseline for x in per] == ["nexus", "scrooge"]  # baselines absent from the rows are skipped
    assert v["nexus"].dearer == [("m2", 6.0, 3.0)] and (v["nexus"].equal, v["nexus"].cheaper) == (0, 2)
    assert v["scrooge"].dearer == [] and (v["scrooge"].equal, v["scrooge"].cheaper) == (1, 2)
    # Cheapest baseline / Harpagon: m1 5/4, m2 3/6 (the multi-app grid); city 2/2 (a config).
    assert best["multi-app"] == (pytest.approx(geomean([1.25, 0.5])), 2)
    assert best["example configs"] == (1.0, 1) and best["all"][1] == 3 and best["one-app"][1] == 0


def test_report_has_the_bound_and_never_dearer_sections(tmp_path):
    text = write_report(bounded(), tmp_path, "harpagon bench planner --test", [], seed=1).read_text()
    assert "## Distance from the lower bound" in text and "## Is Harpagon ever dearer than a baseline?" in text
    assert "| harpagon | 3 | 1.442 | 2.000 (m2) | 3 | 1.817 | 3.000 (m2) | 0 |" in text
    assert "| scrooge | 2 | 1.049 | 1.100 (m1) |" in text and "| optimum | 3 |" in text
    assert "| nexus | 3 | 1 | 0 | 2 | 0 |" in text
    assert "| nexus | m2 | 6.000 | 3.000 | 2.000 |" in text
    assert "| multi-app | 0.791 | 2 |" in text and "| example configs | 1.000 | 1 |" in text
    assert "distances below 1" not in text and "1 example configs as written (config/city" in text


def test_csv_without_the_bound_columns_reads_back(tmp_path):
    import csv

    path = tmp_path / "old.csv"
    old = [f.name for f in fields(Row) if f.name not in ("bound", "distance", "eq_distance")]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: getattr(r, k) for k in old} for r in synthetic())
    back = read_csv(path)
    assert len(back) == len(synthetic()) and all(math.isnan(r.bound) and math.isnan(r.distance) for r in back)


def test_config_cases_and_evaluate_record_the_bound():
    from harpagon.bench.planner import config_cases, example_configs
    from harpagon.planner.bound import lower_bound

    paths = example_configs()
    assert {p.stem for p in paths} >= {"city", "multi", "demo"}
    cases = config_cases([ROOT / "configs" / "city.yaml", ROOT / "configs" / "face.yaml"])
    assert [c.id for c in cases] == ["config/city", "config/face"]
    city = cases[0]
    assert len(city.workload.apps) == 20 and city.catalog == "config" and math.isnan(city.slo_factor)
    r = evaluate(cases[1], "nexus", Settings(), seed=1, frames=500, wrapper=False)
    assert r.bound == lower_bound(cases[1].workload, Settings()) > 0
    assert r.distance == pytest.approx(r.cost / r.bound) and r.distance >= 1 and math.isnan(r.eq_distance)


def test_bench_planner_flags_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import harpagon.bench.planner as bench
    from harpagon.cli import EXIT_INVALID, main

    seen = {}

    def fake_main(workloads, seed, out, jobs, command, **kw):
        seen.update(workloads=workloads, command=command, **kw)
        return out / "planner.md"

    monkeypatch.setattr(bench, "main", fake_main)
    assert main(["bench", "planner", "--planners", "harpagon", "nope"]) == EXIT_INVALID
    assert "unknown nope" in capsys.readouterr().err
    assert main(["bench", "planner", "--configs", str(tmp_path / "missing.yaml")]) == EXIT_INVALID
    assert main(["bench", "planner", "--workloads", "-1"]) == EXIT_INVALID
    assert main(["bench", "planner", "--workloads", "0", "--multi-apps", "2", "--configs", "--planners", "harpagon",
                 "nexus", "--out", str(tmp_path)]) == 0
    assert seen["workloads"] == 0 and seen["planners"] == ("harpagon", "nexus")
    assert [p.stem for p in seen["configs"]] == [p.stem for p in bench.example_configs()]
    assert seen["command"].endswith("--configs --planners harpagon nexus")


def test_bench_planner_quick_is_a_stated_small_grid_on_two_jobs(tmp_path, monkeypatch):
    import harpagon.bench.planner as bench
    from harpagon.cli import main

    seen = {}

    def fake_main(workloads, seed, out, jobs, command, **kw):
        seen.clear()
        seen.update(workloads=workloads, jobs=jobs, command=command, **kw)
        return out / "planner.md"

    monkeypatch.setattr(bench, "main", fake_main)
    assert main(["bench", "planner", "--quick", "--out", str(tmp_path)]) == 0
    assert (seen["workloads"], seen["multi_apps"], seen["jobs"]) == (bench.QUICK_ONE_APP, bench.QUICK_MULTI_APP, 2)
    assert seen["scale_counts"] == bench.QUICK_SCALE and seen["command"].endswith("--quick")
    assert seen["max_rate"] == bench.QUICK_MAX_RATE
    quick = bench.cases_for(6, 0, 1, Settings(), max_rate=1000.0)
    assert len(quick) == 6 and all(c.rate <= 1000 and len(c.workload.apps) == 1 for c in quick)
    assert quick == bench.cases_for(6, 0, 1, Settings(), max_rate=1000.0)  # seeded
    assert main(["bench", "planner", "--quick", "--workloads", "1", "--jobs", "1", "--out", str(tmp_path)]) == 0
    assert (seen["workloads"], seen["jobs"]) == (1, 1)
    assert main(["bench", "planner", "--out", str(tmp_path)]) == 0
    assert (seen["workloads"], seen["multi_apps"], seen["jobs"]) == (bench.DEFAULT_ONE_APP, bench.DEFAULT_MULTI_APP, 1)
    assert "scale_counts" not in seen and "--quick" not in seen["command"]


def test_long_work_prints_a_line_per_finished_item_when_not_on_a_terminal():
    import io

    from harpagon.bench.progress import phases

    out = io.StringIO()
    with phases("bench x", stream=out) as p:
        p.phase("plans", 2)
        p.done("plans", "a harpagon: $1.000/h")
        p.done("plans", "b nexus: refused")
    lines = out.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["bench x: plans: 2 to do", "bench x: plans 1/2 a harpagon: $1.000/h",
                                                   "bench x: plans 2/2 b nexus: refused"]
    assert all(ln.endswith(" s)") for ln in lines)
    bars = io.StringIO()
    with phases("bench x", stream=bars, bars=True) as p:  # a terminal: rich bars, no per-item lines
        p.phase("plans", 1)
        p.done("plans", "a")
    assert "plans 1/1 a" not in bars.getvalue()


def test_the_report_pieces_every_bench_shares(tmp_path):
    from harpagon.bench.report import fmt, nearest_rank, percentiles, shown

    assert fmt(None) == fmt(math.nan) == "-" and fmt(math.nan, ".3f", "–") == "–"
    assert fmt(1.234, ".2f") == "1.23" and fmt(0.5, ".1%") == "50.0%" and fmt(2.0) == "2.0"
    assert nearest_rank([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0 and nearest_rank([3.0, 1.0], 0.99) == 3.0
    assert math.isnan(nearest_rank([], 0.5))
    p50, p99, mx, n = percentiles([1.0, 2.0, 3.0])
    assert (p50, mx, n) == (2.0, 3.0, 3) and p99 == pytest.approx(2.98)
    assert all(math.isnan(x) for x in percentiles([])[:3]) and percentiles([])[3] == 0
    assert shown(ROOT / "configs" / "demo.yaml") == "configs/demo.yaml" and shown(tmp_path) == str(tmp_path)
