#!/usr/bin/env python3
"""Regenerates constraints.txt, the exact versions the Docker images install.

The images' pip steps all run with PIP_CONSTRAINT=constraints.txt, so a rebuild months later gets the
versions the tests passed with rather than whatever the index holds that day. The pins are the versions
installed in the environment this script runs in (the project's .venv, where the suite runs), over the
closure of what the images install: the build requirement (setuptools), the base dependencies and the
[worker] extra (torch, torchvision), followed through every requirement whose marker holds here (Linux,
this Python) and through the extras each one is asked for (tritonclient[grpc], cuda-toolkit[...]).

A local version label is dropped (torch 2.14.1+cu130 is pinned as 2.14.1), so one pin fits PyTorch's
CPU index (2.14.1+cpu) and PyPI's CUDA build alike. Packages that only the CPU build lacks (the nvidia-*
wheels) are pinned too; a constraint on a package nobody asks for is ignored.

    .venv/bin/python scripts/update_constraints.py            # rewrite constraints.txt
    .venv/bin/python scripts/update_constraints.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ModuleNotFoundError:  # pip vendors it, and every venv has pip
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: The extras of pyproject.toml the images install (the slim image: traces; the worker image: both).
IMAGE_EXTRAS = ("worker", "traces")
HEADER = """\
# Exact versions of everything the Docker images install (the Dockerfile's PIP_CONSTRAINT): the build
# requirement, the base dependencies and the [worker] and [traces] extras, with their dependencies. Generated from the
# project's test environment by scripts/update_constraints.py; do not edit by hand, rerun it:
#   .venv/bin/python scripts/update_constraints.py
"""


class Unpinnable(Exception):
    """A requirement this environment cannot pin: not installed, or installed at a version outside it."""


def roots(pyproject: Path) -> list[tuple[Requirement, str]]:
    """(requirement, who asks for it) for what the images install directly."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    out = [(Requirement(r), "build-system") for r in data["build-system"]["requires"]]
    out += [(Requirement(r), "harpagon") for r in data["project"]["dependencies"]]
    for extra in IMAGE_EXTRAS:
        out += [(Requirement(r), f"harpagon[{extra}]") for r in data["project"]["optional-dependencies"][extra]]
    return out


def _applies(req: Requirement, extras: set[str]) -> bool:
    """Whether a requirement holds here, for a package asked for with these extras."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in extras | {""})


def closure(start: list[tuple[Requirement, str]]) -> dict[str, tuple[str, set[str]]]:
    """canonical name -> (pinned version, who asks for it), following installed metadata."""
    pins: dict[str, tuple[str, set[str]]] = {}
    expanded: dict[str, set[str]] = {}  # name -> the extras its requirements were followed for
    todo = [(req, who) for req, who in start if _applies(req, set())]
    while todo:
        req, who = todo.pop()
        name = canonicalize_name(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise Unpinnable(f"{req.name} (asked for by {who}) is not installed here: "
                             "pip install -e '.[test]' first") from None
        version = Version(dist.version)
        if not req.specifier.contains(version, prereleases=True):
            raise Unpinnable(f"{req.name}: installed {version}, but {who} asks for {req}")
        pins.setdefault(name, (str(version.public), set()))[1].add(who)
        wanted = {canonicalize_name(e) for e in req.extras}
        if name in expanded and wanted <= expanded[name]:
            continue
        extras = expanded.setdefault(name, set())
        extras |= wanted
        todo += [(dep, name) for dep in map(Requirement, dist.requires or []) if _applies(dep, extras)]
    return pins


def render(pins: dict[str, tuple[str, set[str]]]) -> str:
    lines = [HEADER]
    for name in sorted(pins):
        version, who = pins[name]
        lines.append(f"{name}=={version}  # via {', '.join(sorted(who))}\n")
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if constraints.txt is out of date")
    parser.add_argument("--out", type=Path, default=ROOT / "constraints.txt", help="default: constraints.txt")
    args = parser.parse_args(argv)
    try:
        text = render(closure(roots(ROOT / "pyproject.toml")))
    except Unpinnable as exc:
        print(f"update_constraints: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"update_constraints: {args.out} is out of date with this environment; rerun without --check",
                  file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {text.count('==')} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
