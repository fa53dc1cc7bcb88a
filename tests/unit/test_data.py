"""The packaged files (harpagon/data): found without the source tree, by name, and copied out intact."""

from __future__ import annotations

import sys
from pathlib import Path

from harpagon import data
from harpagon.cli import main
from harpagon.config import load_workload
from harpagon.config.models import registry


def test_every_example_is_packaged_and_loads():
    found = data.examples()
    assert {"demo", "multi", "city", "video", "elastic", "faults"} <= set(found)
    for name, path in found.items():
        assert path.is_relative_to(data.configs_dir()), name
        assert load_workload([path]).apps, name
    assert data.registry_path().is_relative_to(data.models_dir())
    assert "resnet50" in registry(data.registry_path()).models


def test_a_config_argument_is_a_path_first_and_an_example_name_second(tmp_path, monkeypatch):
    assert data.resolve_config("demo") == data.example("demo") == data.resolve_config("demo.yaml")
    assert data.resolve_config("no-such-example") == Path("no-such-example")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("apps: []\n")  # a local file of that name is never shadowed
    assert data.resolve_config("demo") == Path("demo")
    assert data.resolve_config("sub/demo") == Path("sub/demo")


def test_copied_examples_keep_their_includes_and_are_never_overwritten(tmp_path, capsys):
    written = data.copy_examples(tmp_path)
    assert tmp_path / "configs" / "multi.yaml" in written
    assert (tmp_path / "models" / "registry.yaml").is_file()
    copy = load_workload([tmp_path / "configs" / "multi.yaml"])  # its include: ../models/... holds
    assert copy == load_workload([data.example("multi")])
    (tmp_path / "configs" / "face.yaml").write_text("# mine\n")
    assert main(["examples", "--copy", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "configs" / "face.yaml").read_text() == "# mine\n"


def test_examples_are_listed_and_planned_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert main(["examples"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in data.examples())
    assert main(["plan", "face", "--no-replay"]) == 0
    assert "face" in capsys.readouterr().out
    assert main(["plan", "nope", "--no-replay"]) == 2
    assert "nope" in capsys.readouterr().err


def test_a_missing_extra_is_named_with_the_command_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "scipy", None)  # as if the [bench] extra were not installed
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    assert main(["plan", "face", "--planner", "scrooge", "--no-replay"]) == 2
    err = capsys.readouterr().err
    assert "needs scipy" in err and "harpagon[bench]" in err
