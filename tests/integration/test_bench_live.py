"""The live bench end to end on a tiny config: a cluster of emulated workers, the Python sender in its
own process, and the report built from what they measured."""

from __future__ import annotations

import asyncio

import pytest
from rich.console import Console

from harpagon.bench.live.cluster import run_cluster
from harpagon.bench.live.markdown import build_markdown
from harpagon.bench.live.results import Report
from tests.conftest import cam_workload

pytestmark = pytest.mark.integration

WORKLOAD = cam_workload(2)


def test_a_cluster_run_measures_attainment_cpu_and_modules():
    result = asyncio.run(run_cluster("tiny.yaml", WORKLOAD, "batch-aware", 2.0, 0, Console(quiet=True),
                                     perf_analyzer=False, quick=True))
    assert [r.arrivals for r in result.runs] == ["constant", "poisson"]
    const = result.runs[0]
    (cam,) = const.apps
    assert cam.sent == 40 and cam.answered + cam.dropped + cam.failed == cam.sent  # 20/s for 2 s, all accounted
    assert cam.goal == 1.0 and 0 <= cam.attainment <= 1
    assert const.server_cpu_s > 0 and const.frames == 40
    assert {(m.app, m.module) for m in result.modules} == {("cam", "detect"), ("cam", "classify")}
    assert all(m.requests > 0 for m in result.modules)
    md = build_markdown(Report("cmd", "today", 2.0, [result], None, "python"))
    assert "| tiny.yaml | batch-aware | constant | cam |" in md
