"""How a frame becomes each module's requests, and its modules' results the reply's: the one place
that knows what an app's edges carry (the `input` of each module, config/pipeline.py), as plain data
and no event loop, so that the data plane only admits, dispatches and answers.

- `frame`: the app's f-th frame gives a module `floor((f + 1) s) - floor(f s)` requests (its scale s,
  as the planner assumes), each the frame as it came: an `EncodedFrame`, JPEG or PNG bytes, or raw
  UINT8 pixels (H x W x 3, made once per frame by :func:`as_frame` from a numpy frame). The worker
  decodes and resizes it to the module's input inside the batch, on its device: the frontend never
  touches pixels.
- `crops`: one request per crop its detector's worker cut for it (from the full-resolution frame),
  keyed by the detection.
- `features`: the parents' outputs joined per key (a frame-level parent's one request joins every object).

A detector's boxes come back in its input's pixels; they are kept, and answered, in the frame's (an
encoded frame's dimensions are read from its header, a raw frame's are its own).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from harpagon.model.latency import requests_for
from harpagon.runtime.wire.errors import InvalidArgument, Unavailable
from harpagon.runtime.wire.frames import EncodedFrame, dimensions
from harpagon.runtime.wire.routes import AppRoute

__all__ = ["Detections", "Frame", "FrameCounter", "Image", "Item", "ItemResult", "SinkResult", "as_frame"]

#: A frame as the data plane takes it: UINT8 pixels [H, W, 3] (in-process callers), or an `EncodedFrame`
#: (JPEG / PNG bytes or raw pixels, checked at the servicer); a frame travels as the latter (:func:`as_frame`).
Image = np.ndarray | EncodedFrame
#: A module's request as its worker is sent it: the frame (`frame` modules), or a crop or features array.
Item = EncodedFrame | np.ndarray


def as_frame(image: Image) -> EncodedFrame:
    """A frame as the workers are sent it: an `EncodedFrame` as it is, UINT8 pixels [H, W, 3] as a raw
    frame of their bytes (one copy; the servicer makes its raw frames from the request's bytes itself)."""
    if isinstance(image, EncodedFrame):
        return image
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidArgument(f"a frame is UINT8 pixels [H, W, 3] or an EncodedFrame, got {got}")
    return EncodedFrame(image.tobytes(), "raw", int(image.shape[0]), int(image.shape[1]))


def to_frame(boxes: np.ndarray, input_shape: tuple[int, ...], frame_shape: tuple[int, ...]) -> np.ndarray:
    """A detector's boxes [.., 4] from its input's pixels ([C, h, w]) to the frame's ([H, W, ...])."""
    sy, sx = frame_shape[0] / input_shape[1], frame_shape[1] / input_shape[2]
    return (np.asarray(boxes, np.float32) * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)


@dataclass(slots=True)
class ItemResult:
    """One request's result: its outputs and, from a detector, its crops per child module (the
    detection indices they were cut from, and the crops)."""

    outputs: list[np.ndarray]
    crops: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass(slots=True)
class _Out:
    """A module's request for a frame, done: its key (the request's index for frame-level requests, the
    detection's index for object-level ones) and its result."""

    key: int
    result: ItemResult


@dataclass(slots=True)
class Detections:
    """A detector's detections of one frame, boxes in the client's frame pixels."""

    boxes: np.ndarray  # [D, 4] x1, y1, x2, y2
    scores: np.ndarray  # [D]
    labels: np.ndarray  # [D]


@dataclass(slots=True)
class SinkResult:
    """A sink module's results for one frame: per request its outputs, and the objects they are of.
    `detector` is None for frame-level requests (`keys` are then request indices)."""

    requests: list[list[np.ndarray]]
    keys: list[int]
    detector: str | None = None
    detections: Detections | None = None
    """The detector's detections of the frame (object-level sinks): request i is of detection keys[i]."""

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, i: int) -> list[np.ndarray]:
        """Request i's outputs."""
        return self.requests[i]


@dataclass(slots=True)
class Frame:
    """One frame on its way through its app's DAG: what its done modules gave, for the next ones."""

    app: AppRoute
    seq: int  # the app's frame number: how many requests each `frame` module gets for it
    image: EncodedFrame  # as the client sent it (raw pixels as their bytes): every `frame` request's item
    results: dict[str, list[_Out]] = field(default_factory=dict)  # per module done
    detections: dict[str, Detections] = field(default_factory=dict)  # per detector done

    @property
    def size(self) -> tuple[int, int]:
        """The frame's (height, width) in pixels: an encoded frame's from its header, a raw one's its own."""
        return dimensions(self.image)

    def requests(self, module: str, shape: tuple[int, ...]) -> tuple[list[int], Sequence[Item]]:
        """The module's requests for this frame, its parents done, for workers that take `shape`:
        their keys and items (a `frame` module's are the frame itself, which its worker resizes; crops
        and features are arrays)."""
        m = self.app.module(module)
        if m.input == "frame":
            n = requests_for(self.seq, m.scale)
            return list(range(n)), [self.image] * n
        if m.input == "crops":
            return self._crops(module, m.after[0], shape)
        return self._features(m.after)

    def _crops(self, module: str, detector: str, shape: tuple[int, ...]) -> tuple[list[int], list[np.ndarray]]:
        """One request per kept detection, cut by the detector's worker."""
        keys: list[int] = []
        items: list[np.ndarray] = []
        for parent in self.results[detector]:
            cut = parent.result.crops.get(module)
            if cut is None:
                raise Unavailable(f"app {self.app.name!r}: the worker of {detector!r} cut no crops for {module!r} "
                                  f"(its configuration predates the edge); retry")
            detection, crops = cut
            if len(crops) and tuple(crops.shape[1:]) != shape:
                raise Unavailable(f"app {self.app.name!r}: crops for {module!r} of shape {list(crops.shape[1:])}, "
                                  f"its workers take {list(shape)}; retry")
            keys += [int(d) for d in detection]
            items += list(crops)
        return keys, items

    def _features(self, parents: tuple[str, ...]) -> tuple[list[int], list[np.ndarray]]:
        """The parents' outputs joined per key; a frame-level parent's one request joins every object."""
        per_parent = [{o.key: o.result.outputs[0] for o in self.results[p]} for p in parents]
        object_level = [i for i, p in enumerate(parents) if self.app.module(p).objects is not None]
        keyed = [per_parent[i] for i in object_level] or per_parent
        keys = sorted(set.intersection(*(set(d) for d in keyed)))
        items = []
        for k in keys:
            parts = [d[k] if (i in object_level or not object_level) else next(iter(d.values()), None)
                     for i, d in enumerate(per_parent)]
            if any(p is None for p in parts):  # a frame-level parent without its request this frame
                return [], []
            items.append(np.concatenate([np.asarray(p, np.float32).ravel() for p in parts]))
        return keys, items

    def done(self, module: str, keys: list[int], results: list[ItemResult], shape: tuple[int, ...]) -> None:
        """The module's results for this frame, one per request (`shape`: its workers' input); a
        detector's boxes are turned into the frame's pixels."""
        self.results[module] = [_Out(k, r) for k, r in zip(keys, results, strict=True)]
        if results and self.app.module(module).task == "detect" and len(results[0].outputs) >= 3:
            size = self.size
            for r in results:  # boxes in the client's frame pixels, for the reply
                r.outputs[0] = to_frame(r.outputs[0], shape, size)
            boxes, scores, labels = results[0].outputs[:3]
            self.detections[module] = Detections(boxes, np.asarray(scores, np.float32), np.asarray(labels, np.int64))

    def sinks(self) -> dict[str, SinkResult]:
        """Each sink module's results, every module done."""
        out = {}
        for sink in self.app.sinks:
            done = self.results[sink]
            detector = self.app.module(sink).objects
            out[sink] = SinkResult([o.result.outputs for o in done], [o.key for o in done], detector,
                                   self.detections.get(detector) if detector else None)
        return out


class FrameCounter:
    """Numbers each app's frames, from 0: a module's requests for a frame follow from its number."""

    def __init__(self) -> None:
        self._next: defaultdict[str, int] = defaultdict(int)

    def frame(self, app: AppRoute, image: Image) -> Frame:
        """The app's next frame (UINT8 pixels made a raw frame here, once: :func:`as_frame`)."""
        image = as_frame(image)
        seq = self._next[app.name]
        self._next[app.name] += 1
        return Frame(app, seq, image)
