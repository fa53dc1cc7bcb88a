"""`harpagon examples`: the example configs shipped in the package, listed or copied out to edit."""

from __future__ import annotations

import argparse
from pathlib import Path

from harpagon import data


def add_parser(sub) -> None:
    """`harpagon examples`."""
    ex = sub.add_parser("examples", help="list the example configs, or copy them to a folder",
                        description="The example configs shipped with Harpagon. `harpagon plan`, `demo`, `serve` "
                                    "and `controller` take an example's name where they take a file. --copy "
                                    "writes DIR/configs/ and the model files they include, DIR/models/, so that "
                                    "the copies keep working when edited.")
    ex.add_argument("--copy", type=Path, metavar="DIR", default=None,
                    help="copy the examples and the models they include into DIR (an existing file is never "
                         "overwritten)")
    ex.set_defaults(func=cmd_examples)


def cmd_examples(args: argparse.Namespace) -> int:
    if args.copy is not None:
        written = data.copy_examples(args.copy)
        print(f"wrote {len(written)} files under {args.copy}: configs/ and models/; "
              f"e.g. harpagon plan {args.copy / 'configs' / 'multi.yaml'}")
        return 0
    found = data.examples()
    width = max(map(len, found))
    for name, path in found.items():
        print(f"{name:<{width}}  {data.summary(path)}")
    print(f"\n(files in {data.configs_dir()}; e.g. harpagon plan multi, harpagon demo demo)")
    return 0
