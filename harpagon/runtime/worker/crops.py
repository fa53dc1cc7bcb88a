"""A detector's crops: which detections each `crops` edge keeps, cut at the child's input shape on the
device that ran the detector (`torchvision.ops.roi_align`, one call per edge and batch), so that only
the small crops cross to the host and on to the child's workers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from harpagon.runtime.wire.modules import CropEdge
from harpagon.runtime.wire.tensors import Crops

if TYPE_CHECKING:
    import torch

#: Bilinear samples per output pixel and axis: fixed, so that the cost of a crop does not grow with
#: the size of its box (roi_align's adaptive default would). One sample is a plain bilinear resize:
#: `scripts/bench_crops.py` on one CPU thread measured 2.8 ms a 224 x 224 crop at 2, 1.2 ms at 1.
SAMPLING_RATIO = 1


def select(edge: CropEdge, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """Per item, the indices of the detections `edge` keeps, highest score first, at most
    `edge.max_crops` (0: all). `boxes` [n, D, 4] is not read; it is taken to keep the outputs together."""
    # as CropEdge.keeps compares (in float64), and padding rows (label -1) never pass
    keep = (labels >= 0) & (scores.astype(np.float64) >= edge.min_score)
    if edge.labels:
        keep &= np.isin(labels, edge.labels)
    out = []
    for i in range(scores.shape[0]):
        idx = np.flatnonzero(keep[i])
        idx = idx[np.argsort(-scores[i, idx], kind="stable")]
        out.append(idx[:edge.max_crops] if edge.max_crops > 0 else idx)
    return out


def cut(images: torch.Tensor, boxes: Sequence[np.ndarray], shape: tuple[int, ...]) -> torch.Tensor:
    """Crops of `images` ([n', C, H, W] floats in [0, 1], n' >= len(boxes)) inside item i's `boxes[i]`
    ([k, 4] x1, y1, x2, y2 in its pixels), resized to `shape` (C, h, w): [total, C, h, w] uint8 on
    the host, cut and converted on the images' device."""
    import torch
    from torchvision.ops import roi_align

    c, h, w = shape
    if images.shape[1] != c:
        raise ValueError(f"crops of {c} channels asked for, but the images have {images.shape[1]}")
    if len(boxes) > images.shape[0]:
        raise ValueError(f"boxes for {len(boxes)} items, but only {images.shape[0]} images")
    counts = [len(b) for b in boxes]
    total = sum(counts)
    if total == 0:
        return torch.zeros((0, c, h, w), dtype=torch.uint8)
    rois = np.empty((total, 5), np.float32)  # [batch index, x1, y1, x2, y2]: one copy to the device
    rois[:, 0] = np.repeat(np.arange(len(boxes)), counts)
    rois[:, 1:] = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes])
    if images.dtype != torch.float32:  # float16 boxes lose whole pixels past 2048 (autocast does this too)
        images = images.float()
    at = torch.from_numpy(rois).to(images.device)
    out = roi_align(images, at, output_size=(h, w), spatial_scale=1.0, sampling_ratio=SAMPLING_RATIO,
                    aligned=True)
    return out.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).cpu()


def cut_frames(frames: Sequence[torch.Tensor | None], boxes: Sequence[np.ndarray],
               shape: tuple[int, ...]) -> torch.Tensor:
    """As `cut`, each item from its own image `frames[i]` ([C, H, W] uint8, sizes may differ; None: an
    item with no boxes), `boxes[i]` in that image's pixels: one roi_align call per distinct size (per
    chunk of it: `decode.chunks`, the float copies bounded as the frames' resize is)."""
    import torch

    from harpagon.runtime.worker.decode import chunks

    c, h, w = shape
    counts = [len(b) for b in boxes]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, k in enumerate(counts):
        if k:
            image = frames[i]
            if image is None:
                raise ValueError(f"item {i} has {k} boxes but no image")
            groups.setdefault(tuple(image.shape), []).append(i)
    per_item: list[torch.Tensor | None] = [None] * len(boxes)
    for size, same in groups.items():
        for items in chunks(same, size[1], size[2]):
            stacked = torch.stack([frames[i] for i in items]).float().div_(255.0)  # type: ignore[misc]
            out = cut(stacked, [boxes[i] for i in items], shape)
            for i, part in zip(items, torch.split(out, [counts[i] for i in items]), strict=True):
                per_item[i] = part
    parts = [p for p in per_item if p is not None]
    return torch.cat(parts) if parts else torch.zeros((0, c, h, w), dtype=torch.uint8)


def crop_sets(edges: Sequence[CropEdge], boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
              images: torch.Tensor, frames: Sequence[torch.Tensor | None] | None = None) -> dict[str, Crops]:
    """Each edge's crops of a batch's detections (boxes [n, D, 4], scores and labels [n, D]),
    cut from `images` (the detector's input, on its device), or, given `frames` (each item's
    full-resolution frame, [C, H, W] uint8; None: an item in error, which gets no crops), from the
    frames: boxes in the input's pixels are scaled to each frame's, so crops keep the frame's detail."""
    out = {}
    scale = None
    if frames is not None:
        ih, iw = images.shape[-2:]
        scale = [None if f is None else np.array([f.shape[2] / iw, f.shape[1] / ih] * 2, np.float32)
                 for f in frames]
    for edge in edges:
        kept = select(edge, boxes, scores, labels)
        if scale is None:
            items = cut(images, [boxes[i, k] for i, k in enumerate(kept)], edge.shape)
        else:
            kept = [k if scale[i] is not None else k[:0] for i, k in enumerate(kept)]
            items = cut_frames(frames, [boxes[i, k] * s if s is not None else boxes[i, k]  # type: ignore[arg-type]
                                        for i, (k, s) in enumerate(zip(kept, scale, strict=True))], edge.shape)
        detection = np.concatenate(kept).astype(np.int32) if kept else np.zeros(0, np.int32)
        out[edge.child] = Crops(np.array([len(k) for k in kept], np.int64), detection, items.numpy())
    return out
