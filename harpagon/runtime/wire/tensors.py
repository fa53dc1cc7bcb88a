"""harpagon.v1.Tensor <-> numpy, with the checks a server owes its clients."""

from __future__ import annotations

import math

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
