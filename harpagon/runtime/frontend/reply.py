"""What a client gets for a frame: each sink module's results as Triton output tensors, as the app's
route describes them (`AppModule.outputs`, the same in ModelMetadata and ModelConfig).

Per sink module `S` (k = its requests for the frame; a dimension of -1 varies):

- `S_0`, `S_1`, ...: the model's outputs, [k, ...] (a classifier's scores [k, classes]; a detector's
  boxes [k, 100, 4] in frame pixels, scores [k, 100] and labels [k, 100], label -1 padding).
- A classifier also gets `S_top_class` INT64 [k, K] and `S_top_score` FP32 [k, K]: its K (at most
  :data:`~harpagon.runtime.wire.routes.TOP_K`) best classes and their softmax probabilities, best first.
- A sink whose requests are objects (below a `crops` edge) also gets, per request, the detection it is
  of: `S_detection` INT32 [k] (its index in the detector's outputs for the frame), `S_box` FP32 [k, 4]
  (x1, y1, x2, y2 in the frame's pixels), `S_score` FP32 [k], `S_label` INT64 [k] and, when the
  detector's labels have names, `S_label_name` BYTES [k].
"""

from __future__ import annotations

import numpy as np

from harpagon.runtime.frontend.pipeline import SinkResult
from harpagon.runtime.wire.routes import TOP_K, AppRoute, OutputSpec

_NUMPY = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


def sink_tensors(app: AppRoute, sink: str, result: SinkResult) -> list[tuple[OutputSpec, np.ndarray]]:
    """The sink's outputs for one frame, as its route describes them (BYTES as object arrays)."""
    specs = {s.name: s for s in app.module(sink).outputs}
    k = len(result.requests)
    out: list[tuple[OutputSpec, np.ndarray]] = []

    def add(name: str, value: np.ndarray) -> None:
        spec = specs[name]
        out.append((spec, value if spec.datatype == "BYTES" else value.astype(_NUMPY[spec.datatype], copy=False)))

    def empty(spec: OutputSpec) -> np.ndarray:
        return np.zeros((0, *(max(d, 0) for d in spec.dims[1:])), _NUMPY[spec.datatype])

    raw = [s for s in specs.values() if s.name[len(sink) + 1:].isdigit()]
    for i, spec in enumerate(raw):
        add(spec.name, np.stack([np.asarray(r[i]) for r in result.requests]) if k else empty(spec))
    if f"{sink}_top_class" in specs:
        scores = (np.stack([np.asarray(r[0], np.float64).ravel() for r in result.requests]) if k
                  else np.zeros((0, max(specs[f"{sink}_top_class"].dims[1], 0))))
        top = min(TOP_K, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
        probs = np.exp(scores - scores.max(axis=1, keepdims=True)) if k else scores
        probs = probs / probs.sum(axis=1, keepdims=True) if k else probs
        add(f"{sink}_top_class", order)
        add(f"{sink}_top_score", np.take_along_axis(probs, order, axis=1) if k else np.zeros((0, top)))
    if result.detector is not None:
        d = result.detections
        idx = np.asarray(result.keys, np.int64)
        if d is None:  # no detector output to tie them to (cannot happen below a crops edge)
            raise ValueError(f"sink {sink!r}: objects without their detector's detections")
        add(f"{sink}_detection", idx)
        add(f"{sink}_box", d.boxes[idx] if k else np.zeros((0, 4)))
        add(f"{sink}_score", d.scores[idx] if k else np.zeros(0))
        add(f"{sink}_label", d.labels[idx] if k else np.zeros(0))
        if f"{sink}_label_name" in specs:
            names = app.module(result.detector).labels
            add(f"{sink}_label_name", np.array([names[int(x)].encode() if 0 <= x < len(names) else b""
                                                for x in (d.labels[idx] if k else [])], dtype=object))
    return out


def serialize_bytes(values: np.ndarray) -> bytes:
    """A BYTES tensor as Triton's raw contents: each element as a 4-byte little-endian length and its bytes."""
    return b"".join(len(v).to_bytes(4, "little") + v for v in values.ravel())
