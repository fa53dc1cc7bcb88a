"""Measure `d(b)` of a model on a device and write it in the `profiles` format the planner reads.

Each batch size is warmed up, then run `repeats` times through the same runner a worker uses
(padding and host-device copies included; on a GPU every run ends with a synchronisation), and its
mean and standard deviation are recorded in milliseconds. With `memory=True` each row also records
the memory the model held at that batch size (`ProfileRow.memory_mb`), so that plans sharing a GPU
can be checked against its memory (harpagon/model/memory.py).

`profile_decode` measures the other term of a module's `d(b)`: what decoding and resizing the frames
clients send costs the worker per frame (`Hardware.decode_ms_per_mpixel`).
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from harpagon.runtime.wire.frames import encode_frame, synthetic_frame
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.worker.executor import TorchExecutor
from harpagon.runtime.worker.registry import entry

MIB = 1024 * 1024


class _CudaMemory:
    """The allocator's peak while a batch size is loaded and run: the model's weights, activations and
    workspace (cuDNN's and cuBLAS's scratch is allocated through it too); the CUDA context is not in it."""

    def __init__(self, device: str):
        import torch

        self.torch, self.device = torch, torch.device(device)

    def start(self) -> None:
        gc.collect()  # the previous batch size's model, if anything still holds it
        self.torch.cuda.synchronize(self.device)
        self.base = self.torch.cuda.memory_allocated(self.device)
        self.torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self) -> float | None:
        self.torch.cuda.synchronize(self.device)
        grown = self.torch.cuda.max_memory_allocated(self.device) - self.base
        return grown / MIB if grown > 0 else None


class _CpuMemory:
    """The process's peak resident set while a batch size is loaded and run, over its resident set
    just before. On Linux the peak is reset per batch size (VmHWM, cleared through /proc/self/clear_refs)
    after freed heap is handed back (malloc_trim), so that no batch size is charged for an earlier
    one's memory. Elsewhere the peak is the process's so far (ru_maxrss) over its value before the
    first batch size, which over-counts a batch size measured after a larger one."""

    def __init__(self) -> None:
        self.linux = _has_proc()
        try:
            self.trim = ctypes.CDLL("libc.so.6").malloc_trim if self.linux else None
        except (OSError, AttributeError):
            self.trim = None
        self.base = self._maxrss()

    @staticmethod
    def _status(key: str) -> int:
        """A size from /proc/self/status, bytes."""
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
        raise RuntimeError(f"no {key} in /proc/self/status")

    @staticmethod
    def _maxrss() -> int:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kB elsewhere

    def start(self) -> None:
        gc.collect()
        if not self.linux:
            return
        if self.trim is not None:
            self.trim(0)
        try:
            self.base = self._status("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current RSS
        except (OSError, RuntimeError):
            self.linux, self.base = False, self._maxrss()

    def stop(self) -> float | None:
        grown = (self._status("VmHWM") if self.linux else self._maxrss()) - self.base
        return grown / MIB if grown > 0 else None


def _has_proc() -> bool:
    return Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()


def memory_label(device: str) -> str:
    """What `profile(..., memory=True)` records as `memory_mb` on `device`, for the profiles file."""
    if device.startswith("cuda"):
        return f"peak allocated on {device} (torch.cuda.max_memory_allocated)"
    if _has_proc():
        return "process peak RSS growth on CPU (VmHWM over the RSS before the model was loaded)"
    return "process peak RSS growth on CPU (ru_maxrss over its value before the first batch size)"


def profile(model: str, device: str, batches: Sequence[int], input_shape: Sequence[int] | None = None,
            repeats: int = 20, warmup: int = 3, threads: int | None = None, hardware: str | None = None,
            progress: Callable[[int], None] | None = None,
            memory: bool = False) -> tuple[str, list[list[float]]]:
    """Rows `[b, mean_ms, std_ms]` per batch size, and the hardware name they were measured on.

    With `memory`, a row is `[b, mean_ms, std_ms, memory_mb]` (`memory_label(device)` says what was
    measured); a batch size whose memory did not show (no growth) keeps three elements."""
    executor = TorchExecutor(device, hardware, threads)
    shape = tuple(input_shape) if input_shape else entry(model).input
    probe: _CudaMemory | _CpuMemory | None = None
    if memory:
        # One untimed load first: lazily loaded libraries, thread pools and library handles are the
        # process's, not the first batch size's.
        executor.load(ModuleSpec(f"profile/{model}", model, batches[0], shape))
        probe = _CudaMemory(device) if device.startswith("cuda") else _CpuMemory()
    rows = []
    for b in batches:
        if probe:
            probe.start()  # before the load: the weights count
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
        row = [b, round(statistics.fmean(times), 4), round(statistics.pstdev(times), 4)]
        if probe and (mb := probe.stop()) is not None:
            row.append(round(mb, 1))
        rows.append(row)
        del runner, x  # freed before the next batch size loads its own copy of the model
    return executor.hardware, rows


def write_profiles(path: Path, model: str, hardware: str, rows: list[list[float]], command: str,
                   memory_label: str | None = None) -> None:
    """Write (or update) a profiles file: the (model, hardware) entry is replaced, others kept.

    `memory_label` says what the rows' 4th element measured; the header keeps every label the file's
    entries were measured with, since entries of other devices stay."""
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    profiles = [p for p in (data or {}).get("profiles", []) if (p["model"], p["hardware"]) != (model, hardware)]
    profiles.append({"model": model, "hardware": hardware, "batches": rows})
    profiles.sort(key=lambda p: (p["hardware"], p["model"]))
    labels = _memory_labels(path) | ({memory_label} if memory_label else set())
    header = "# Measured by harpagon profile; rows are [batch, mean_ms, std_ms(, memory_mb)].\n"
    header += "".join(f"# memory_mb: {label}\n" for label in sorted(labels))
    header += f"# Last command: {command}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({"profiles": profiles}, sort_keys=False, default_flow_style=None,
                                            width=110))


def _memory_labels(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.removeprefix("# memory_mb: ").strip() for line in path.read_text().splitlines()
            if line.startswith("# memory_mb: ")}


# --- frame decode ------------------------------------------------------------------------------

def profile_decode(device: str, height: int, width: int, encoding: str, batches: Sequence[int],
                   input_shape: Sequence[int] = (3, 224, 224), repeats: int = 20, warmup: int = 3,
                   threads: int | None = None, progress: Callable[[int], None] | None = None) -> list[float]:
    """Median ms per frame to decode and resize batches of `height` x `width` frames in `encoding` to
    `input_shape` on `device`, as a worker does inside a batch (worker/decode.py: a CPU worker on a
    thread pool of `threads`, by default every core; CUDA synchronised at the end), per batch size:
    the decode term of `d(b)` is `b` times it (docs/model.md, "Inputs: frame decode")."""
    import torch

    from harpagon.runtime.worker.decode import decode_frames

    if threads and not device.startswith("cuda"):
        torch.set_num_threads(threads)  # as a CPU worker of `threads` runs its resize
    one = encode_frame(synthetic_frame(height, width), encoding)
    shape = tuple(input_shape)
    out = []
    with ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="decode") as pool:
        for b in batches:
            frames = [one] * b
            times = []
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                decoded = decode_frames(frames, shape, device, pool)
                if device.startswith("cuda"):
                    torch.cuda.synchronize(device)
                if decoded.errors:
                    raise ValueError(f"synthetic {encoding} frame did not decode: {next(iter(decoded.errors.values()))}")
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1000.0 / b)
                    if progress:
                        progress(1)
            out.append(statistics.median(times))
    return out
