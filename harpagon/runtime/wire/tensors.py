"""harpagon.v1.Tensor <-> numpy, with the checks a server owes its clients, and a detector's crops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harpagon.runtime.wire.errors import InvalidArgument
from harpagon.v1 import worker_pb2

DTYPES = {name: np.dtype(name).newbyteorder("<") for name in
          ("uint8", "int32", "int64", "float16", "float32", "float64")}


def to_numpy(t: worker_pb2.Tensor) -> np.ndarray:
    """Decode a tensor; a wrong dtype, a negative dimension or a byte length that does not match the
    shape is an InvalidArgument naming what was expected."""
    dtype = DTYPES.get(t.dtype)
    if dtype is None:
        raise InvalidArgument(f"dtype {t.dtype!r} is not one of {', '.join(DTYPES)}")
    shape = tuple(t.shape)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"shape {list(shape)} has a negative dimension")
    want = math.prod(shape) * dtype.itemsize
    if len(t.data) != want:
        raise InvalidArgument(f"{len(t.data)} bytes do not hold a {t.dtype} tensor of shape {list(shape)} "
                              f"({want} bytes)")
    return np.frombuffer(t.data, dtype=dtype).reshape(shape)


def from_numpy(a: np.ndarray) -> worker_pb2.Tensor:
    a = np.ascontiguousarray(a)
    name = a.dtype.name
    if name not in DTYPES:
        raise TypeError(f"cannot send dtype {name}")
    return worker_pb2.Tensor(dtype=name, shape=list(a.shape), data=a.astype(DTYPES[name], copy=False).tobytes())


@dataclass(frozen=True, slots=True)
class Crops:
    """A detector's crops of one batch for one child module: item i's are `items[offsets[i]:offsets[i+1]]`,
    cut from its detections `detection[offsets[i]:offsets[i+1]]` (indices into the item's outputs)."""

    counts: np.ndarray  # [n] per item
    detection: np.ndarray  # [total] int32
    items: np.ndarray  # [total, C, H, W] uint8

    def __post_init__(self) -> None:
        total = int(self.counts.sum()) if len(self.counts) else 0
        if len(self.detection) != total or len(self.items) != total:
            raise ValueError(f"crops: counts add up to {total}, but {len(self.detection)} detection indices and "
                             f"{len(self.items)} crops came")

    def of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item i's detection indices and crops."""
        start = int(self.counts[:i].sum())
        end = start + int(self.counts[i])
        return self.detection[start:end], self.items[start:end]

    def to_proto(self, child: str) -> worker_pb2.CropSet:
        return worker_pb2.CropSet(child=child, counts=[int(c) for c in self.counts],
                                  detection=from_numpy(self.detection.astype(np.int32, copy=False)),
                                  items=from_numpy(self.items))

    @staticmethod
    def from_proto(c: worker_pb2.CropSet) -> Crops:
        """Decode; a set whose parts disagree raises InvalidArgument."""
        try:
            return Crops(np.asarray(c.counts, np.int64), to_numpy(c.detection), to_numpy(c.items))
        except ValueError as exc:
            raise InvalidArgument(f"crops for {c.child!r}: {exc}") from None
