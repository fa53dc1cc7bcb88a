"""What the edges of an app carry (the `input` of each module), as the loader checks it and the
runtime runs it. One place, so that validation, the controller's module specs and the frontend's
DAG agree.

- `frame`: each request is the frame resized to the module's input; the module gets
  `floor((f+1)s) - floor(fs)` of them for frame f (its scale s), once its parents are done.
- `crops`: one request per kept detection of its one parent, a detector that itself takes the frame
  once per frame (scale 1); the detector's worker cuts the crops out of the full-resolution frame
  (`torchvision.ops.roi_align`) at the child's own input shape (`input_shape`). Its requests belong to *objects*: the
  detections of that detector.
- `features`: the parents' outputs, flattened and concatenated, one request per key. Keys are the
  request's index for frame-level requests and the detection for object-level ones; parents joined at
  object level must follow the same detector's objects (a frame-level parent with one request per
  frame is joined to every object).
"""

from __future__ import annotations

import math

from harpagon.config import models
from harpagon.config.schema import App, Module

#: Detections a detector keeps per image (fixed-size outputs, padded with label -1).
MAX_DETECTIONS = 100


def task_of(m: Module) -> str | None:
    """The module's task: declared, or its registry model's (None: unknown)."""
    if m.task is not None:
        return m.task
    e = models.entry(m.model)
    return e.task if e else None


def output_size(m: Module) -> int | None:
    """Elements of one request's output, when known (a classifier in the registry)."""
    e = models.entry(m.model)
    return math.prod(e.output) if e and e.output and task_of(m) == "classify" else None


#: A frame or crop module's input when neither `serve.input_shape` nor the registry gives one.
DEFAULT_IMAGE = (3, 224, 224)


def input_shape(app: App, module: str, image: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """A module's input item: for frames and crops, `image` ([C, H, W], `serve.input_shape`: one size for
    every module) or else its model's own input (models/registry.yaml; DEFAULT_IMAGE for a model it does
    not give one), so that a 320x320 detector feeds 224x224 classifiers; for features, its parents' joined
    outputs (the loader ensures their sizes are known)."""
    m = app.module(module)
    if m.input == "features":
        return (sum(output_size(app.module(p)) or 0 for p in m.after),)
    if image is not None:
        return tuple(image)
    e = models.entry(m.model)
    return e.input if e is not None and len(e.input) == 3 else DEFAULT_IMAGE


def crop_labels(app: App, module: str) -> tuple[int, ...]:
    """A crops module's label filter as the detector's label ids (names resolved; empty: all)."""
    m = app.module(module)
    if m.crops is None:
        return ()
    names = models.registry().label_names(app.module(m.after[0]).model)
    out = []
    for label in m.crops.labels:
        resolved = models.resolve_label(names, label)
        if resolved is None:
            raise ValueError(f"module {module!r}: label {label!r} is not a label of the detector")
        out.append(resolved)
    return tuple(out)


def check(app: App) -> list[tuple[int, tuple[str | int, ...], str]]:
    """Problems with the app's edges, as (module index, field path within the module, message)."""
    issues: list[tuple[int, tuple[str | int, ...], str]] = []
    objects = app.objects
    for j, m in enumerate(app.modules):
        e = models.entry(m.model)
        if m.task is not None and e is not None and m.task != e.task:
            issues.append((j, ("task",), (f"model {m.model!r} is a {e.task} model (models/registry.yaml), "
                                         f"not {m.task}")))
        if m.crops is not None and m.input != "crops":
            issues.append((j, ("crops",), f"a crop filter needs `input: crops`, got input {m.input!r}"))
        if m.input == "frame" or not m.after:
            if m.input != "frame":
                issues.append((j, ("input",), f"the source module takes the frame, got input {m.input!r}"))
            continue
        if m.input == "crops":
            if len(m.after) != 1:
                issues.append((j, ("after",), f"a crops module has one parent, the detector; got {list(m.after)}"))
                continue
            parent = app.module(m.after[0])
            if task_of(parent) != "detect":
                what = task_of(parent) or "unknown (not in models/registry.yaml)"
                issues.append((j, ("input",), (f"crops need a detector parent, but {parent.name!r} (model "
                                              f"{parent.model!r}) outputs {what}; give a profile-only "
                                              f"detector `task: detect`")))
                continue
            if parent.input != "frame" or parent.scale != 1.0:
                issues.append((j, ("input",), (f"crops are cut from a detector that sees each frame once (input "
                                              f"frame, scale 1); {parent.name!r} has input {parent.input!r}, "
                                              f"scale {parent.scale:g}")))
            names = models.registry().label_names(parent.model)
            for k, label in enumerate(m.crops.labels if m.crops else ()):
                if isinstance(label, str) and not names:
                    issues.append((j, ("crops", "labels", k), (f"label {label!r}: {parent.model!r} has no label "
                                                              f"names in models/registry.yaml; give label ids")))
                elif models.resolve_label(names, label) is None:
                    issues.append((j, ("crops", "labels", k), f"label {label!r} is not a label of {parent.model!r}"))
        else:  # features
            sizes = []
            for k, p in enumerate(m.after):
                size = output_size(app.module(p))
                if size is None:
                    issues.append((j, ("after", k), (f"features of {p!r} (model {app.module(p).model!r}) have no "
                                                    f"known size: its model needs a classify entry with an "
                                                    f"`output` in models/registry.yaml")))
                sizes.append(size)
            grains = sorted({objects[p] for p in m.after} - {None})
            if len(grains) > 1:
                issues.append((j, ("after",), (f"a join pairs one detector's objects; its parents follow the "
                                              f"objects of {grains}")))
            elif grains:
                for k, p in enumerate(m.after):
                    if objects[p] is None and app.module(p).scale != 1.0:
                        issues.append((j, ("after", k), (f"{p!r} is frame-level with scale "
                                                        f"{app.module(p).scale:g}: only one request per frame "
                                                        f"can be joined to each object")))
            if e is not None and None not in sizes and tuple(e.input) != (sum(sizes),):  # type: ignore[arg-type]
                issues.append((j, ("model",), (f"model {m.model!r} takes {list(e.input)}, but its parents' "
                                              f"features are [{sum(sizes)}]")))  # type: ignore[arg-type]
    return issues
