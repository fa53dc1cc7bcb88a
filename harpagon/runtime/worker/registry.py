"""The model registry (models/registry.yaml) on a worker: torchvision architectures by name, randomly
initialised unless a local weights file is given. Nothing is downloaded. What each entry is (input,
output, task) is read by :mod:`harpagon.config.models`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harpagon.config.models import ModelEntry, registry

#: Hidden width of the `mlp` heads.
MLP_HIDDEN = 256


def entries() -> dict[str, ModelEntry]:
    return registry().models


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

    if e.arch is None:
        raise ValueError(f"model {e.name!r} has no architecture in the registry: it runs on emulated workers only")
    if e.arch == "mlp":  # a small head over a feature vector (a `features` edge's child)
        if len(e.input) != 1 or not e.output or len(e.output) != 1:
            raise ValueError(f"model {e.name!r}: an mlp takes an [n] input and gives an [k] output")
        model = torch.nn.Sequential(torch.nn.Linear(e.input[0], MLP_HIDDEN), torch.nn.ReLU(),
                                    torch.nn.Linear(MLP_HIDDEN, e.output[0]))
    elif e.task == "detect":
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
