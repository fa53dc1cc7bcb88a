"""The live bench end to end on a tiny config: a cluster of emulated workers, the Python sender in its
own process, and the report built from what they measured."""

from __future__ import annotations

import asyncio

import pytest
from rich.console import Console

from harpagon.bench.live import Report, build_markdown, run_cluster
from harpagon.config.schema import Workload
from tests.conftest import BASE

pytestmark = pytest.mark.integration

WORKLOAD = Workload.model_validate({
    "hardware": [{"name": "t4", "price_per_hour": 0.526}],
    "profiles": [BASE["profiles"][1]],  # ResNet-50 on T4
    "apps": [{"name": "cam", "rate": 20, "slo_ms": 300, "modules": [
        {"name": "detect", "model": "resnet50"}, {"name": "classify", "model": "resnet50", "after": ["detect"]}]}],
    "serve": {"workers": [{"device": "emulated:t4", "count": 2}], "input_shape": [3, 16, 16],
              "frame_shape": [24, 32, 3]},
})


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
