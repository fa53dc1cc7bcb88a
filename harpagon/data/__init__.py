"""Files shipped inside the package: the model registry, the profile catalog and the example configs.

They are found through :mod:`importlib.resources`, so an installed wheel has them wherever it is run
from; the source tree's top-level `configs/` and `models/` are links to the same files. The example
configs include the catalog by relative paths (`../models/profiles/...`), which hold here and in a
copy made by :func:`copy_examples`.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

__all__ = ["PACKAGED", "catalog_path", "configs_dir", "copy_examples", "data_root", "packaged", "example", "examples", "models_dir", "registry_path",
           "resolve_config", "summary"]


def data_root() -> Path:
    """The folder of the packaged files (`harpagon:` includes are relative to it)."""
    return _root()


def _root() -> Path:
    root = files(__name__)
    if not isinstance(root, Path):  # a zipped install: the loader's relative includes need real files
        raise RuntimeError(f"harpagon's data files are not on a file system ({root!r}); install the wheel unzipped")
    return root


#: A path naming a file shipped in the package, wherever the config or command is (`harpagon:models/...`).
PACKAGED = "harpagon:"


def packaged(text: str | Path) -> Path:
    """`harpagon:REL` as the packaged file REL; any other path as given."""
    text = str(text)
    return data_root() / text.removeprefix(PACKAGED) if text.startswith(PACKAGED) else Path(text)


def models_dir() -> Path:
    return _root() / "models"


def configs_dir() -> Path:
    return _root() / "configs"


def registry_path() -> Path:
    return models_dir() / "registry.yaml"


def catalog_path() -> Path:
    return models_dir() / "profiles" / "catalog.yaml"


def examples() -> dict[str, Path]:
    """The example configs by name (the file name without `.yaml`), sorted."""
    return {p.stem: p for p in sorted(configs_dir().glob("*.yaml"))}


def example(name: str) -> Path | None:
    return examples().get(name.removesuffix(".yaml"))


def resolve_config(arg: str | Path) -> Path:
    """A config argument as a file: an existing path as given, else a packaged example of that name.

    A path that exists wins, so a local `demo.yaml` is never shadowed; anything else is returned as
    given, for the loader to report as missing.
    """
    path = Path(arg)
    if path.exists() or len(path.parts) != 1:
        return path
    return example(str(arg)) or path


def summary(path: Path, width: int = 100) -> str:
    """An example's opening comment, to its first sentence's end, cut at `width` characters."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words += line.lstrip("#").split()
    text = " ".join(words)
    end = text.find(". ")
    text = text if end < 0 else text[:end + 1]
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def copy_examples(dest: Path) -> list[Path]:
    """Copies the example configs and the model files they include into `dest` (as `configs/` and
    `models/`, so their relative includes hold); refuses to overwrite an existing file."""
    pairs = [(src, dest / "configs" / src.relative_to(configs_dir())) for src in configs_dir().rglob("*.yaml")]
    pairs += [(src, dest / "models" / src.relative_to(models_dir()))
              for src in models_dir().rglob("*") if src.is_file() and src.suffix in (".yaml", ".md")]
    clash = [str(d) for _, d in pairs if d.exists()]
    if clash:
        raise FileExistsError(f"{clash[0]} exists (and {len(clash) - 1} more); not overwriting")
    for src, d in sorted(pairs):
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, d)
    return [d for _, d in sorted(pairs)]
