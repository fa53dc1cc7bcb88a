"""Executors: how a worker turns a module configuration into something that runs batches.

- :class:`TorchExecutor` runs torchvision models with PyTorch on `cpu` or `cuda:N`
  (`torch.inference_mode`, a CUDA stream per module and pinned host buffers on a GPU, optional
  float16 on a GPU).
- :class:`EmulatedExecutor` is an **emulated device**: a batch "runs" by sleeping the profiled
  `mean + std` of its batch size on the named hardware. It exists to test the control and data
  planes at scale on machines without GPUs, and says so in every health and stats reply.
  For fault tests only, it can play a broken device (:data:`FAULT_ENV`).

Every runner always runs its configured batch size: a short batch is padded with dummy (zero)
inputs, so shapes stay fixed (as CUDA graphs and compiled engines need). A detector returns
MAX_DETECTIONS rows per item, highest score first (padding: label -1), and the crops of its `crops`
edges (:mod:`harpagon.runtime.worker.crops`).

A batch is either a tensor the caller resized ([n, *input_shape]) or encoded frames
(:class:`EncodedFrame`): a PyTorch runner decodes and resizes them on its device
(:mod:`harpagon.runtime.worker.decode`) and cuts a detector's crops from the full-resolution frames;
an emulated one checks their headers and sleeps the module's `decode_ms` per frame. A frame that
cannot be read is an error of its item (`BatchResult.errors`), never of the batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harpagon.config import models
from harpagon.config.pipeline import MAX_DETECTIONS
from harpagon.runtime.wire import frames as wire_frames
from harpagon.runtime.wire.errors import FailedPrecondition, Internal, InvalidArgument
from harpagon.runtime.wire.frames import EncodedFrame
from harpagon.runtime.wire.modules import CropEdge, ModuleSpec
from harpagon.runtime.wire.tensors import Crops
from harpagon.runtime.worker import crops, registry

log = logging.getLogger("harpagon.worker")

#: Threads that decode a runner's frames on the CPU (libjpeg-turbo and libpng release the GIL).
DECODE_THREADS = 4

#: TEST-ONLY FAULT INJECTION, emulated devices only: `HARPAGON_EMULATED_FAULT=internal` in a worker's
#: environment makes every batch of its emulated device fail after its sleep, as a broken GPU does (the
#: worker answers INTERNAL), so fault tests can run a worker the frontend must route around. Unset or
#: empty: no fault; any other value is refused at startup, so a misspelt fault cannot pass unnoticed.
FAULT_ENV = "HARPAGON_EMULATED_FAULT"
FAULTS = ("", "internal")
#: TEST-ONLY, emulated devices only: the same fault, only while the file this variable names exists (the
#: fault suite turns a running worker's device broken and healthy again).
FAULT_FILE_ENV = "HARPAGON_EMULATED_FAULT_FILE"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch gives: outputs of its real items (each [n, ...]), a detector's crops per child, and
    the items whose frame could not be read (their outputs are meaningless)."""

    outputs: list[np.ndarray]
    crops: dict[str, Crops] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    decode_ms: float = 0.0
    """Of the batch's time, what decoding and resizing its frames took (planned apart from the model's
    profile: docs/model.md, "Inputs: frame decode"), so that calibration measures the model alone."""


#: A batch as a runner takes it: a tensor [n, *input_shape], or n encoded frames.
Batch = np.ndarray | Sequence[EncodedFrame]


class Runner(ABC):
    """A loaded module: runs one padded batch."""

    def __init__(self, spec: ModuleSpec):
        self.spec = spec

    @abstractmethod
    def __call__(self, x: Batch) -> BatchResult:
        """Run `x` ([n, *input_shape] or n frames, n <= batch) padded to the batch size; results of
        the n real items."""


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
        except KeyError as exc:
            raise FailedPrecondition(f"module {spec.name!r}: cannot load {spec.model!r}: {exc}") from None
        if spec.crops and entry.task != "detect":
            raise FailedPrecondition(f"module {spec.name!r}: crops edges {[e.child for e in spec.crops]} need a "
                                     f"detector, but {spec.model!r} is a {entry.task} model")
        for e in spec.crops:
            if len(spec.input_shape) != 3 or e.shape[0] != spec.input_shape[0]:
                raise FailedPrecondition(f"module {spec.name!r}: crops for {e.child!r} of shape {list(e.shape)} "
                                         f"cannot be cut from inputs of shape {list(spec.input_shape)}")
        try:
            model = registry.build(entry, str(weights) if weights else None)
        except Exception as exc:  # noqa: BLE001 - a bad weights file, an unknown architecture: reject this config
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
        self._decoders: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        """Threads for CPU decodes, started with the first batch of frames."""
        if self._decoders is None:
            self._decoders = ThreadPoolExecutor(min(DECODE_THREADS, os.cpu_count() or 1),
                                                thread_name_prefix=f"decode-{self.spec.name}")
        return self._decoders

    def __call__(self, x: Batch) -> BatchResult:
        import torch

        if not isinstance(x, np.ndarray):
            return self._frames(x)
        n = x.shape[0]
        src = torch.from_numpy(np.ascontiguousarray(x))
        if src.dtype == torch.uint8:
            src = src.to(torch.float32).div_(255.0)
        self.host[:n].copy_(src)
        self.host[n:].zero_()  # dummy inputs
        on_stream = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), on_stream:
            images = self.host.to(self.device, dtype=self.dtype, non_blocking=True)
            result = self._results(self.model(images), n, images)
        if self.stream is not None:
            self.stream.synchronize()
        return result

    def _frames(self, frames: Sequence[EncodedFrame]) -> BatchResult:
        """Decode and resize on the device into a padded batch, run it; a detector's crops come from
        the full-resolution frames."""
        import torch

        from harpagon.runtime.worker import decode

        n = len(frames)
        on_stream = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), on_stream:
            t0 = time.perf_counter()
            images = torch.empty((self.spec.batch, *self.spec.input_shape), dtype=self.dtype, device=self.device)
            images[n:].zero_()  # dummy inputs; the frames fill the rest
            got = decode.decode_frames(frames, self.spec.input_shape, self.device, self._pool(), out=images)
            if self.stream is not None:  # the decode's own time, not the model's after it
                self.stream.synchronize()
            decode_ms = (time.perf_counter() - t0) * 1000.0
            result = self._results(self.model(images), n, images, got.full)
        if self.stream is not None:
            self.stream.synchronize()
        return BatchResult(result.outputs, result.crops, got.errors, decode_ms)

    def _results(self, out: Any, n: int, images: Any, full: Sequence[Any] | None = None) -> BatchResult:
        import torch

        if self.task == "classify":
            return BatchResult([out[:n].float().cpu().numpy()])
        boxes = np.zeros((n, MAX_DETECTIONS, 4), np.float32)
        scores = np.zeros((n, MAX_DETECTIONS), np.float32)
        labels = np.full((n, MAX_DETECTIONS), -1, np.int64)
        for i, det in enumerate(out[:n]):
            order = torch.argsort(det["scores"], descending=True, stable=True)[:MAX_DETECTIONS]
            k = order.shape[0]
            boxes[i, :k] = det["boxes"][order].float().cpu().numpy()
            scores[i, :k] = det["scores"][order].float().cpu().numpy()
            labels[i, :k] = det["labels"][order].cpu().numpy()
        return BatchResult([boxes, scores, labels],
                           crops.crop_sets(self.spec.crops, boxes, scores, labels, images, full))


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
    """EMULATED DEVICE: batches sleep their profiled latency on `hardware`; outputs are zeros, and a
    module with crops edges (an emulated detector) gets synthetic detections and blank crops."""

    emulated = True

    def __init__(self, hardware: str, profiles: Mapping[tuple[str, str], Mapping[int, tuple[float, float]]],
                 slowdown: float = 1.0, fault: str | None = None):
        if not slowdown > 0 or slowdown == float("inf"):
            raise InvalidArgument(f"slowdown must be a finite number > 0, got {slowdown!r}")
        fault = os.environ.get(FAULT_ENV, "") if fault is None else fault
        if fault not in FAULTS:
            raise InvalidArgument(f"{FAULT_ENV} must be one of {', '.join(f for f in FAULTS if f)} or empty, "
                                  f"got {fault!r}")
        self.fault = fault
        """Test-only fault injection (FAULT_ENV): "internal" fails every batch."""
        self.fault_file = os.environ.get(FAULT_FILE_ENV) or None
        """Test-only fault injection (FAULT_FILE_ENV): every batch fails while this file exists."""
        if fault:
            log.warning("emulated %s: test-only fault injection %s=%s: every batch fails", hardware, FAULT_ENV, fault)
        if self.fault_file:
            log.warning("emulated %s: test-only fault injection %s=%s: every batch fails while it exists",
                        hardware, FAULT_FILE_ENV, self.fault_file)
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
        return _SleepRunner(spec, (mean + std) * self.slowdown / 1000.0, self.fault, self.fault_file,
                            spec.decode_ms * self.slowdown / 1000.0)


def _seed(*names: str) -> int:
    """A seed that is the same in every run and process (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256("\0".join(names).encode()).digest()[:8], "little")


class _SleepRunner(Runner):
    def __init__(self, spec: ModuleSpec, seconds: float, fault: str = "", fault_file: str | None = None,
                 decode_seconds: float = 0.0):
        super().__init__(spec)
        self.seconds = seconds
        self.decode_seconds = decode_seconds
        """Charged per frame of a batch of frames, as a device would spend decoding them."""
        self.fault = fault
        self.fault_file = fault_file
        e = models.entry(spec.model)
        self.output = e.output if e is not None and e.task == "classify" and e.output else (1,)
        self.detector = bool(spec.crops) or (e is not None and e.task == "detect")
        """It answers as a detector (boxes, scores, labels), with or without children to crop for."""
        self.served = {edge.child: 0 for edge in spec.crops}
        """Items each edge has counted so far (the deterministic rule's f)."""
        self.draws = {edge.child: np.random.default_rng(_seed(spec.name, edge.child)) for edge in spec.crops}
        self.boxes = np.random.default_rng(_seed(spec.name))

    def __call__(self, x: Batch) -> BatchResult:
        errors: dict[int, str] = {}
        decode = 0.0
        if not isinstance(x, np.ndarray):  # frames: not decoded, but read as a decoder would refuse them
            for i, frame in enumerate(x):
                try:
                    wire_frames.check(frame)
                except InvalidArgument as exc:
                    errors[i] = str(exc)
            decode = self.decode_seconds * len(x)
        seconds = self.seconds + decode
        # One sleep, no spinning: a GPU does not burn host CPU while it runs a batch, and dozens of
        # emulated workers share a few cores (sleep overshoots by ~0.1 ms; calibration measures it).
        time.sleep(seconds)
        if self.fault == "internal" or (self.fault_file is not None and os.path.exists(self.fault_file)):
            raise Internal(f"module {self.spec.name!r}: emulated device fault (test-only injection): "
                           f"the device failed the batch")
        n = len(x)
        if not self.detector:
            return BatchResult([np.zeros((n, *self.output), np.float32)], errors=errors, decode_ms=decode * 1000.0)
        result = self._detections(n)
        return BatchResult(result.outputs, result.crops, errors, decode * 1000.0)

    def _counts(self, edge: CropEdge, n: int) -> np.ndarray:
        """Detections of the edge's next n items: [n]."""
        if edge.poisson:
            c = self.draws[edge.child].poisson(edge.scale, n)
        else:
            f = np.arange(self.served[edge.child], self.served[edge.child] + n, dtype=np.float64)
            c = np.floor((f + 1) * edge.scale) - np.floor(f * edge.scale)
        self.served[edge.child] += n
        c = c.astype(np.int64)
        return np.minimum(c, edge.max_crops) if edge.max_crops > 0 else c

    def _detections(self, n: int) -> BatchResult:
        """Per item and edge, detections the edge keeps, laid out highest score first as a real
        detector's; their crops are blank (cutting would spend CPU a GPU would not)."""
        shape = self.spec.input_shape
        h, w = shape[-2:] if len(shape) >= 2 else (1, shape[0])
        scores = np.zeros((n, MAX_DETECTIONS), np.float32)
        labels = np.full((n, MAX_DETECTIONS), -1, np.int64)
        counts = {e.child: self._counts(e, n) for e in self.spec.crops}  # every edge counts every item
        rows = np.zeros(n, np.int64)  # detections laid out so far per item
        cols = np.arange(MAX_DETECTIONS)
        sets = {}
        for e in sorted(self.spec.crops, key=lambda e: -_score(e)):  # stable: rows stay sorted by score
            c = np.minimum(counts[e.child], MAX_DETECTIONS - rows)
            mine = (cols >= rows[:, None]) & (cols < (rows + c)[:, None])
            scores[mine] = _score(e)
            labels[mine] = e.labels[0] if e.labels else 1
            detection = np.nonzero(mine)[1].astype(np.int32)  # item-major, as Crops wants
            sets[e.child] = Crops(c, detection, np.zeros((len(detection), *e.shape), np.uint8))
            rows += c
        boxes = np.zeros((n, MAX_DETECTIONS, 4), np.float32)
        u = self.boxes.random((int(rows.sum()), 4))
        x1, y1 = u[:, 0] * w / 2, u[:, 1] * h / 2  # inside the image, and never empty
        boxes[cols < rows[:, None]] = np.stack([x1, y1, x1 + (0.1 + 0.9 * u[:, 2]) * (w - x1),
                                                y1 + (0.1 + 0.9 * u[:, 3]) * (h - y1)], axis=1)
        return BatchResult([boxes, scores, labels], {e.child: sets[e.child] for e in self.spec.crops})


def _score(edge: CropEdge) -> np.float32:
    """Synthetic detections' score: one the edge keeps once stored as float32, as outputs are."""
    want = min(max(edge.min_score, 0.9), 1.0)
    score = np.float32(want)
    return np.nextafter(score, np.float32(1.0)) if float(score) < want else score
