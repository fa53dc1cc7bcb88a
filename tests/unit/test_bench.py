"""The planner benchmark end to end on a few small workloads."""

from __future__ import annotations

import csv
import math

from harpagon.bench.planner import evaluate, summarise, write_report
from harpagon.bench.workloads import grid, many_apps
from harpagon.model.latency import Settings


def test_grid_covers_the_space_and_samples_reproducibly():
    cases = grid(Settings())
    assert len(cases) >= 500
    assert {c.rate for c in cases} >= {10.0, 10000.0} and len({c.catalog for c in cases}) >= 3
    assert [c.id for c in grid(Settings(), 20, seed=3)] == [c.id for c in grid(Settings(), 20, seed=3)]
    assert len(many_apps(30).apps) == 30


def test_bench_rows_summary_and_report(tmp_path):
    cases = [c for c in grid(Settings()) if c.rate <= 30 and c.catalog == "aws" and c.slo_factor in (2.0, 10.0)][:4]
    rows = [r for c in cases for r in evaluate(c, ("harpagon", "clipper"), Settings(), seed=0)]
    assert {r.planner for r in rows} == {"harpagon", "clipper", "optimum"}
    h = [r for r in rows if r.planner == "harpagon"]
    assert all(not r.refused and not r.infeasible and r.late_constant >= 0 for r in h)
    summary = {s["planner"]: s for s in summarise(rows)}
    assert summary["harpagon"]["cost_vs_harpagon_geomean"] == 1.0
    assert 0.0 <= summary["clipper"]["infeasible"] <= 1.0
    assert not math.isnan(summary["optimum"]["at_optimum"])
    path = write_report(rows, tmp_path, "test", [(10, 0.1, 10.0)])
    text = path.read_text()
    assert "| harpagon |" in text and "| clipper |" in text and "| 10 | 0.10 | 10.00 |" in text
    assert (tmp_path / "planner_cost_cdf.png").stat().st_size > 0
    with (tmp_path / "planner.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
