"""The layers of docs/architecture.md, read from the imports: each package imports only the layers
below it, so the dispatch logic the simulator and the frontend share cannot come to depend on either."""

from __future__ import annotations

import ast
from pathlib import Path

import harpagon

ROOT = Path(harpagon.__file__).parent
#: Layer of each top-level part of the package (docs/architecture.md); generated code and the
#: commands on top are outside the order; data/ holds files, no code of the layers; `python -m harpagon`
#: (__main__) runs the commands.
LAYERS = {"config": 1, "model": 2, "dispatch": 3, "sim": 4, "planner": 5, "runtime": 6, "profiler": 7,
          "bench": 7, "cli": 8, "__main__": 9, "v1": 0, "data": 0}
#: The live components meet only in runtime/wire (the one contract); runtime's top-level modules
#: (serve, demo) put them together.
COMPONENTS = ("controller", "frontend", "worker")


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "harpagon" and len(parts) > 1 else None


def imported_modules(path: Path) -> set[str]:
    """The modules a file imports, anywhere in it (function-level imports too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def imports(path: Path) -> set[str]:
    """The harpagon parts a file imports."""
    return {p for n in imported_modules(path) if (p := _part(n)) is not None}


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.stem != "__init__"}
    assert parts == set(LAYERS)


def test_each_layer_imports_only_the_layers_below_it():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        part = rel.parts[0].removesuffix(".py")
        if part in ("__init__", "v1"):
            continue
        for imported in imports(path):
            if imported != part and LAYERS[imported] >= LAYERS[part] and imported != "v1":
                upward.append(f"{rel} (layer {LAYERS[part]}) imports harpagon.{imported} (layer {LAYERS[imported]})")
    assert not upward, "\n".join(upward)


def test_the_live_components_meet_only_in_wire():
    crossing = []
    for component in COMPONENTS:
        for path in sorted((ROOT / "runtime" / component).rglob("*.py")):
            for module in imported_modules(path):
                parts = module.split(".")
                if parts[:2] == ["harpagon", "runtime"] and len(parts) > 2 and parts[2] in COMPONENTS \
                        and parts[2] != component:
                    crossing.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not crossing, "\n".join(crossing)
