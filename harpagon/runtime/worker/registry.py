"""The model registry (models/registry.yaml): torchvision architectures by name, randomly
initialised unless a local weights file is given. Nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REGISTRY = Path(__file__).resolve().parents[3] / "models" / "registry.yaml"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str
    input: tuple[int, ...]
    task: str  # "classify" or "detect"


@cache
def entries(path: Path = REGISTRY) -> dict[str, ModelEntry]:
    data = yaml.safe_load(path.read_text())["models"]
    return {n: ModelEntry(n, e["arch"], tuple(e["input"]), e["task"]) for n, e in data.items()}


def entry(name: str) -> ModelEntry:
    known = entries()
    if name not in known:
        raise KeyError(f"model {name!r} is not in the registry ({', '.join(sorted(known))})")
    return known[name]


def weights_file(folder: Path, name: str) -> Path | None:
    """`name` resolved under `folder` (`..` and links followed), or None when it lies outside it: a
    configuration names a path, and nothing outside the weights folder is read."""
    folder = folder.resolve()
    path = (folder / name).resolve()
    return path if path.is_relative_to(folder) else None


def build(e: ModelEntry, weights: str | None = None) -> Any:
    """The torch module of an entry, in eval mode (random weights unless `weights` names a file)."""
    import torch
    from torchvision import models

    if e.task == "detect":
        model = getattr(models.detection, e.arch)(weights=None, weights_backbone=None)
    else:
        model = getattr(models, e.arch)(weights=None)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {weights!r} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()
