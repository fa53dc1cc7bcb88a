"""Shared helpers: write YAML inputs to a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harpagon.config.schema import Workload

REPO = Path(__file__).resolve().parents[1]

#: A small valid workload (ResNet-50 on V100 and T4 from docs/model.md's sources, a two-module app).
BASE = {
    "hardware": [
        {"name": "v100", "price_per_hour": 3.06},
        {"name": "t4", "price_per_hour": 0.526},
    ],
    "profiles": [
        {"model": "resnet50", "hardware": "v100",
         "batches": [[1, 2.68], [2, 4.08], [4, 6.08], [8, 8.28], [16, 13.05], [32, 23.13], [48, 31.29],
                     [64, 42.53], [128, 80.56], [256, 160.73]]},
        {"model": "resnet50", "hardware": "t4", "batches": [[1, 3.52], [2, 5.21], [4, 9.37]]},
        {"model": "ssd", "hardware": "v100", "batches": [[1, 6.3], [2, 14.5], [4, 20.6], [8, 28.8], [16, 54.2]]},
    ],
    "apps": [
        {"name": "traffic", "rate": 300, "slo_ms": 200,
         "modules": [{"name": "detect", "model": "ssd"},
                     {"name": "cars", "model": "resnet50", "after": ["detect"], "scale": 0.8}]},
    ],
}


def cam_workload(workers: int) -> Workload:
    """A two-module 20 frames/s app on `workers` emulated T4s, small frames: the live tests' cluster
    (the default promise: Poisson arrivals, replayed before each plan)."""
    return Workload.model_validate({
        "hardware": [{"name": "t4", "price_per_hour": 0.526}],
        "profiles": [BASE["profiles"][1]],  # ResNet-50 on T4
        "apps": [{"name": "cam", "rate": 20, "slo_ms": 300, "modules": [
            {"name": "detect", "model": "resnet50"}, {"name": "classify", "model": "resnet50", "after": ["detect"]}]}],
        "serve": {"workers": [{"device": "emulated:t4", "count": workers}], "input_shape": [3, 16, 16],
                  "frame_shape": [24, 32, 3]},
    })


@pytest.fixture
def write_yaml(tmp_path: Path):
    """`write_yaml(data_or_text, name=...)` -> path of a YAML file in a temporary folder."""

    def write(data: object, name: str = "input.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write
