"""Measure `d(b)` of a model on a device and write it in the `profiles` format the planner reads.

Each batch size is warmed up, then run `repeats` times through the same runner a worker uses
(padding and host-device copies included; on a GPU every run ends with a synchronisation), and its
mean and standard deviation are recorded in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml

from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.worker.executor import TorchExecutor
from harpagon.runtime.worker.registry import entry


def profile(model: str, device: str, batches: Sequence[int], input_shape: Sequence[int] | None = None,
            repeats: int = 20, warmup: int = 3, threads: int | None = None, hardware: str | None = None,
            progress: Callable[[int], None] | None = None) -> tuple[str, list[list[float]]]:
    """Rows `[b, mean_ms, std_ms]` per batch size, and the hardware name they were measured on."""
    executor = TorchExecutor(device, hardware, threads)
    shape = tuple(input_shape) if input_shape else entry(model).input
    rows = []
    for b in batches:
        runner = executor.load(ModuleSpec(f"profile/{model}", model, b, shape))
        x = np.random.default_rng(0).random((b, *shape), dtype=np.float32)
        for _ in range(warmup):
            runner(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner(x)
            times.append((time.perf_counter() - t0) * 1000)
            if progress:
                progress(1)
        rows.append([b, round(statistics.fmean(times), 4), round(statistics.pstdev(times), 4)])
    return executor.hardware, rows


def write_profiles(path: Path, model: str, hardware: str, rows: list[list[float]], command: str) -> None:
    """Write (or update) a profiles file: the (model, hardware) entry is replaced, others kept."""
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    profiles = [p for p in (data or {}).get("profiles", []) if (p["model"], p["hardware"]) != (model, hardware)]
    profiles.append({"model": model, "hardware": hardware, "batches": rows})
    profiles.sort(key=lambda p: (p["hardware"], p["model"]))
    header = f"# Measured by harpagon profile; rows are [batch, mean_ms, std_ms].\n# Last command: {command}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({"profiles": profiles}, sort_keys=False, default_flow_style=None,
                                            width=110))
