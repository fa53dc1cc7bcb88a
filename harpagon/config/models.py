"""What Harpagon knows of a model beyond its profile (models/registry.yaml): how a worker builds it,
its input, and what it outputs, so that the loader can check that an edge fits its parent's output
and the runtime can shape the data an edge carries. Light to import (YAML only): the planner's
loader reads it; only workers build the torch modules (:mod:`harpagon.runtime.worker.registry`).

A model that is in no registry entry (the profile catalog's stand-ins, such as `yolo9000`) runs on
emulated workers only; a module of such a model says what it outputs with its own `task:`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml

from harpagon.data import registry_path

REGISTRY = registry_path()

Task = Literal["classify", "detect"]
TASKS: tuple[str, ...] = ("classify", "detect")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str | None
    """The torchvision architecture (or `mlp`); None: a profile-only model, for emulated workers."""
    input: tuple[int, ...]
    task: Task
    output: tuple[int, ...] | None = None
    """The shape of one item's output (classifiers; None: not stated)."""
    labels: str | None = None
    """A detector's label set (a key of the registry's `labels`)."""


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelEntry]
    labels: dict[str, tuple[str, ...]]

    def label_names(self, model: str) -> tuple[str, ...]:
        """The names of a detector's labels (index = label), empty when unknown."""
        entry = self.models.get(model)
        return self.labels.get(entry.labels, ()) if entry and entry.labels else ()


@cache
def registry(path: Path = REGISTRY) -> Registry:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    models = {}
    for name, e in data["models"].items():
        if e["task"] not in TASKS:
            raise ValueError(f"{path}: model {name!r}: task must be one of {TASKS}, got {e['task']!r}")
        models[name] = ModelEntry(name, e.get("arch"), tuple(e["input"]), e["task"],
                                  tuple(e["output"]) if e.get("output") else None, e.get("labels"))
    labels = {k: tuple(v) for k, v in (data.get("labels") or {}).items()}
    return Registry(models, labels)


def entry(name: str) -> ModelEntry | None:
    return registry().models.get(name)


def resolve_label(names: tuple[str, ...], label: int | str) -> int | None:
    """A crop filter's label as the detector returns it: an id as given, a name by its index in the
    detector's label set (None: not a name of it)."""
    if isinstance(label, int):
        return label
    return names.index(label) if label in names and label != "N/A" else None
