"""harpagon.v1.Tensor <-> numpy, with the checks a server owes its clients, a detector's crops, and
big byte fields cut out of a serialized message without copying them (:func:`cut_bytes_field`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harpagon.runtime.wire.errors import InvalidArgument
from harpagon.v1 import worker_pb2

DTYPES = {name: np.dtype(name).newbyteorder("<") for name in
          ("uint8", "int32", "int64", "float16", "float32", "float64")}


#: The most top-level fields :func:`cut_bytes_field` reads one at a time before it leaves the message
#: to the protobuf parser (a request holds a handful; a body of millions of tiny fields would otherwise
#: cost the Python loop seconds).
CUT_MAX_FIELDS = 256


def _varint(data: bytes | memoryview, at: int) -> tuple[int, int] | None:
    """The varint at `at` and the offset after it; None if it runs past the end or past 10 bytes."""
    value = shift = 0
    for i in range(at, min(at + 10, len(data))):
        b = data[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    return None


def cut_bytes_field(data: bytes, field: int,
                    max_fields: int = CUT_MAX_FIELDS) -> tuple[bytes, list[memoryview]] | None:
    """A serialized message without its length-delimited field `field` (every occurrence), and that
    field's values as views of `data`, in order: parsing the first gives the message without the field,
    and the views are what the parser would have copied out (parsing copies a bytes field twice, once
    into the message and once more when it is read, each a stall of the event loop for a big frame).
    None when the top level is not plain wire format (groups, a truncated field, `field` with another
    wire type) or has more than `max_fields` fields: parse it whole then, as before."""
    view = memoryview(data)
    kept: list[memoryview] = []
    cut: list[memoryview] = []
    at = start = fields = 0
    size = len(data)
    while at < size:
        fields += 1
        if fields > max_fields:
            return None
        tag = _varint(view, at)
        if tag is None:
            return None
        key, body = tag
        number, wire = key >> 3, key & 7
        if number == 0:
            return None
        if wire == 0:
            end = _varint(view, body)
            if end is None:
                return None
            after = end[1]
        elif wire == 1:
            after = body + 8
        elif wire == 5:
            after = body + 4
        elif wire == 2:
            length = _varint(view, body)
            if length is None:
                return None
            after = length[1] + length[0]
        else:  # groups (3, 4) and invalid wire types
            return None
        if after > size or (number == field and wire != 2):
            return None
        if number == field:
            kept.append(view[start:at])
            cut.append(view[length[1]:after])
            start = after
        at = after
    if not cut:
        return data, []
    kept.append(view[start:size])
    return b"".join(kept), cut


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
