"""Executors: how a worker turns a module configuration into something that runs batches.

- :class:`TorchExecutor` runs torchvision models with PyTorch on `cpu` or `cuda:N`
  (`torch.inference_mode`, a CUDA stream per module and pinned host buffers on a GPU, optional
  float16 on a GPU).
- :class:`EmulatedExecutor` is an **emulated device**: a batch "runs" by sleeping the profiled
  `mean + std` of its batch size on the named hardware. It exists to test the control and data
  planes at scale on machines without GPUs, and says so in every health and stats reply.

Every runner always runs its configured batch size: a short batch is padded with dummy (zero)
inputs, so shapes stay fixed (as CUDA graphs and compiled engines need).
"""

from __future__ import annotations

import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harpagon.runtime.wire.errors import FailedPrecondition, InvalidArgument
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.worker import registry

#: Detections kept per image in a detector's fixed-size output.
MAX_DETECTIONS = 100


class Runner(ABC):
    """A loaded module: runs one padded batch."""

    def __init__(self, spec: ModuleSpec):
        self.spec = spec

    @abstractmethod
    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Run `x` ([n, *input_shape], n <= batch) padded to the batch size; outputs of the n real items."""


class Executor(ABC):
    device: str
    hardware: str
    emulated: bool = False

    @abstractmethod
    def load(self, spec: ModuleSpec) -> Runner:
        """Build, place and warm up a module; raise FailedPrecondition with the reason if it cannot."""


# --- PyTorch -------------------------------------------------------------------------------------


class TorchExecutor(Executor):
    def __init__(self, device: str = "cpu", hardware: str | None = None, threads: int | None = None,
                 weights_dir: str | os.PathLike | None = None):
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise FailedPrecondition(f"device {device!r} asked for, but this machine has no CUDA device")
        self.device = device
        self.hardware = hardware or default_hardware_name(device)
        self.weights_dir = Path(weights_dir).resolve() if weights_dir is not None else None
        if device == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)

    def weights_path(self, spec: ModuleSpec) -> Path | None:
        """The module's weights file, which must lie under the worker's weights directory: a
        configuration names a path, and a worker must not open any file it is sent."""
        if not spec.weights:
            return None
        if self.weights_dir is None:
            raise FailedPrecondition(f"module {spec.name!r}: weights {spec.weights!r} asked for, but this worker "
                                     f"reads no weights (start it with --weights-dir DIR)")
        path = registry.weights_file(self.weights_dir, spec.weights)
        if path is None:
            raise FailedPrecondition(f"module {spec.name!r}: weights {spec.weights!r} lie outside the worker's "
                                     f"--weights-dir {str(self.weights_dir)!r}")
        return path

    def load(self, spec: ModuleSpec) -> Runner:
        weights = self.weights_path(spec)
        try:
            entry = registry.entry(spec.model)
            model = registry.build(entry, str(weights) if weights else None)
        except Exception as exc:  # a bad weights file, an unknown architecture: reject this config
            raise FailedPrecondition(f"module {spec.name!r}: cannot load {spec.model!r}: {exc}") from None
        runner = _TorchRunner(spec, entry.task, model, self.device)
        runner(np.zeros((spec.batch, *spec.input_shape), dtype=np.float32))  # warm up at the batch size
        return runner


class _TorchRunner(Runner):
    def __init__(self, spec: ModuleSpec, task: str, model: Any, device: str):
        import torch

        super().__init__(spec)
        self.task = task
        self.cuda = device.startswith("cuda")
        self.dtype = torch.float16 if (spec.half and self.cuda) else torch.float32
        self.model = model.to(device=device, dtype=self.dtype)
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(device=self.device) if self.cuda else None
        self.host = torch.zeros((spec.batch, *spec.input_shape), dtype=torch.float32, pin_memory=self.cuda)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        n = x.shape[0]
        src = torch.from_numpy(np.ascontiguousarray(x))
        if src.dtype == torch.uint8:
            src = src.to(torch.float32).div_(255.0)
        self.host[:n].copy_(src)
        self.host[n:].zero_()  # dummy inputs
        with torch.inference_mode():
            if self.stream is not None:
                with torch.cuda.stream(self.stream):
                    out = self.model(self.host.to(self.device, dtype=self.dtype, non_blocking=True))
                self.stream.synchronize()
            else:
                out = self.model(self.host.to(dtype=self.dtype))
            return self._outputs(out, n)

    def _outputs(self, out: Any, n: int) -> list[np.ndarray]:
        if self.task == "classify":
            return [out[:n].float().cpu().numpy()]
        boxes = np.zeros((n, MAX_DETECTIONS, 4), np.float32)
        scores = np.zeros((n, MAX_DETECTIONS), np.float32)
        labels = np.full((n, MAX_DETECTIONS), -1, np.int64)
        for i, det in enumerate(out[:n]):
            k = min(MAX_DETECTIONS, det["boxes"].shape[0])
            boxes[i, :k] = det["boxes"][:k].float().cpu().numpy()
            scores[i, :k] = det["scores"][:k].float().cpu().numpy()
            labels[i, :k] = det["labels"][:k].cpu().numpy()
        return [boxes, scores, labels]


def default_hardware_name(device: str) -> str:
    """The hardware kind a device is planned as: the GPU's name (`h200`), or `cpu-` and the CPU's
    model name from /proc/cpuinfo, as lower-case words joined by dashes."""
    if device.startswith("cuda"):
        import torch

        return _slug(torch.cuda.get_device_name(torch.device(device)))
    name = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1] for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return "cpu-" + _slug(name)


def _slug(name: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in name.lower().replace("(r)", " ").replace("(tm)", " "))
    return "-".join(w for w in words.split() if w not in ("nvidia", "cpu", "processor")) or "unknown"


# --- emulated ------------------------------------------------------------------------------------


class EmulatedExecutor(Executor):
    """EMULATED DEVICE: batches sleep their profiled latency on `hardware`; outputs are zeros."""

    emulated = True

    def __init__(self, hardware: str, profiles: Mapping[tuple[str, str], Mapping[int, tuple[float, float]]],
                 slowdown: float = 1.0):
        if not slowdown > 0 or slowdown == float("inf"):
            raise InvalidArgument(f"slowdown must be a finite number > 0, got {slowdown!r}")
        self.hardware = hardware
        self.device = f"emulated:{hardware}"
        self.profiles = profiles
        self.slowdown = slowdown
        """Batches sleep this many times their profile (a slow device, for calibration tests)."""
        # The device thread must wake on time while gRPC threads decode the next batches: hand the GIL
        # over every 0.5 ms rather than every 5 (a worker process runs one device).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))

    def load(self, spec: ModuleSpec) -> Runner:
        rows = self.profiles.get((spec.model, self.hardware))
        if not rows or spec.batch not in rows:
            have = sorted(rows) if rows else []
            raise FailedPrecondition(
                f"module {spec.name!r}: emulated {self.hardware!r} has no profile of {spec.model!r} at batch "
                f"{spec.batch} (profiled batches: {have or 'none'})")
        mean, std = rows[spec.batch]
        return _SleepRunner(spec, (mean + std) * self.slowdown / 1000.0)


class _SleepRunner(Runner):
    def __init__(self, spec: ModuleSpec, seconds: float):
        super().__init__(spec)
        self.seconds = seconds

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        # One sleep, no spinning: a GPU does not burn host CPU while it runs a batch, and dozens of
        # emulated workers share a few cores (sleep overshoots by ~0.1 ms; calibration measures it).
        time.sleep(self.seconds)
        return [np.zeros((x.shape[0], 1), np.float32)]
