"""Every kind of bad input gets one line naming file, field and value, and exit code 2."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml

from harpagon.cli import main
from harpagon.config import ConfigError, load_workload
from tests.conftest import BASE


def _mutated(fn):
    data = copy.deepcopy(BASE)
    fn(data)
    return data


def _set(path, value):
    def apply(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


def _app(**changes):
    return _set(("apps", 0), {**BASE["apps"][0], **changes})


def _modules(*mods):
    return _set(("apps", 0, "modules"), list(mods))


CASES = [
    # (id, mutation, expected fragments of the one error line)
    ("unknown-hardware", _set(("profiles", 1, "hardware"), "a100"),
     ["profiles[1].hardware", "unknown hardware 'a100'"]),
    ("unknown-model", _set(("apps", 0, "modules", 1, "model"), "bert"),
     ["apps[0].modules[1].model", "unknown model 'bert'", "no profile on any hardware"]),
    ("model-only-on-undeclared-hardware",
     lambda d: d["profiles"].append({"model": "yolo", "hardware": "k80", "batches": [[1, 5.0]]})
     or d["apps"][0]["modules"].append({"name": "y", "model": "yolo", "after": ["detect"]}),
     ["unknown hardware 'k80'"]),
    ("cycle", _modules({"name": "a", "model": "ssd"}, {"name": "b", "model": "resnet50", "after": ["a", "c"]},
                       {"name": "c", "model": "resnet50", "after": ["b"]}),
     ["apps[0].modules", "cycle: b -> c -> b"]),
    ("self-loop", _modules({"name": "a", "model": "ssd"}, {"name": "b", "model": "resnet50", "after": ["b"]}),
     ["apps[0].modules[1].after[0]", "its own parent"]),
    ("two-sources", _modules({"name": "a", "model": "ssd"}, {"name": "b", "model": "resnet50"}),
     ["apps[0].modules", "more than one source module: a, b"]),
    ("no-source-is-a-cycle", _modules({"name": "a", "model": "ssd", "after": ["b"]},
                                      {"name": "b", "model": "resnet50", "after": ["a"]}),
     ["apps[0].modules", "cycle: a -> b -> a"]),
    ("no-modules", _modules(), ["apps[0].modules", "needs at least one module"]),
    ("no-rows", _set(("profiles", 1, "batches"), []), ["profiles[1].batches", "needs at least one row"]),
    ("unknown-edge", _set(("apps", 0, "modules", 1, "after"), ["detector"]),
     ["apps[0].modules[1].after[0]", "edge to unknown module 'detector'"]),
    ("zero-rate", _app(rate=0), ["apps[0].rate", "greater than 0", "got 0"]),
    ("negative-slo", _app(slo_ms=-5), ["apps[0].slo_ms", "greater than 0", "got -5"]),
    ("string-rate", _app(rate="fast"), ["apps[0].rate", "valid number", "got 'fast'"]),
    ("zero-price", _set(("hardware", 0, "price_per_hour"), 0), ["hardware[0].price_per_hour", "got 0"]),
    ("negative-scale", _set(("apps", 0, "modules", 1, "scale"), -0.5),
     ["apps[0].modules[1].scale", "greater than 0", "got -0.5"]),
    ("negative-count", _set(("hardware", 1, "count"), -1), ["hardware[1].count", "got -1"]),
    ("duplicate-hardware", lambda d: d["hardware"].append({"name": "t4", "price_per_hour": 1.0}),
     ["hardware[2].name", "duplicate hardware name 't4'"]),
    ("duplicate-app", lambda d: d["apps"].append(copy.deepcopy(d["apps"][0])),
     ["apps[1].name", "duplicate app name 'traffic'"]),
    ("duplicate-module", _modules({"name": "a", "model": "ssd"}, {"name": "b", "model": "resnet50", "after": ["a"]},
                                  {"name": "b", "model": "ssd", "after": ["a"]}),
     ["apps[0].modules[2].name", "duplicate module name 'b'"]),
    ("duplicate-profile", lambda d: d["profiles"].append(copy.deepcopy(d["profiles"][1])),
     ["profiles[3]", "duplicate profile (model, hardware) ('resnet50', 't4')"]),
    ("duplicate-batch", _set(("profiles", 1, "batches"), [[1, 3.52], [2, 5.21], [2, 5.3]]),
     ["profiles[1].batches[2]", "duplicate batch size 2"]),
    ("fractional-batch", _set(("profiles", 1, "batches"), [[1, 3.52], [2.5, 5.21]]),
     ["profiles[1].batches[1].batch", "valid integer", "got 2.5"]),
    ("zero-batch", _set(("profiles", 1, "batches"), [[0, 3.52]]),
     ["profiles[1].batches[0].batch", "greater than 0", "got 0"]),
    ("string-batch", _set(("profiles", 1, "batches"), [["4", 3.52]]),
     ["profiles[1].batches[0].batch", "got '4'"]),
    ("zero-latency", _set(("profiles", 1, "batches"), [[1, 0]]),
     ["profiles[1].batches[0].mean_ms", "greater than 0", "got 0"]),
    ("negative-latency", _set(("profiles", 1, "batches"), [[1, -3.5]]),
     ["profiles[1].batches[0].mean_ms", "got -3.5"]),
    ("text-latency", _set(("profiles", 1, "batches"), [[1, "slow"]]),
     ["profiles[1].batches[0].mean_ms", "got 'slow'"]),
    ("negative-std", _set(("profiles", 1, "batches"), [[1, 3.0, -0.1]]),
     ["profiles[1].batches[0].std_ms", "got -0.1"]),
    ("short-row", _set(("profiles", 1, "batches"), [[1]]), ["profiles[1].batches", "a row is [batch, mean_ms]"]),
    ("unknown-field", _set(("apps", 0, "fps"), 30), ["apps[0].fps", "unknown field"]),
    ("missing-field", lambda d: d["apps"][0].pop("slo_ms"), ["apps[0].slo_ms", "missing"]),
    ("unknown-section", _set(("models",), []), ["models", "unknown section"]),
    ("section-not-list", _set(("apps",), {"name": "x"}), ["apps", "must be a list"]),
    # edges that do not fit what their parent outputs
    ("crops-of-a-classifier", _modules({"name": "detect", "model": "resnet50"},
                                       {"name": "cars", "model": "resnet50", "after": ["detect"], "input": "crops"}),
     ["apps[0].modules[1].input", "crops need a detector parent", "'detect' (model 'resnet50') outputs classify"]),
    ("crops-of-an-unknown-model", _modules({"name": "detect", "model": "ssd"},
                                           {"name": "cars", "model": "resnet50", "after": ["detect"], "input": "crops"}),
     ["apps[0].modules[1].input", "outputs unknown", "`task: detect`"]),
    ("label-name-without-label-set", _modules(
        {"name": "detect", "model": "ssd", "task": "detect"},
        {"name": "cars", "model": "resnet50", "after": ["detect"], "input": "crops", "crops": {"labels": ["car"]}}),
     ["apps[0].modules[1].crops.labels[0]", "'ssd' has no label names", "give label ids"]),
    ("filter-without-crops", _modules({"name": "detect", "model": "ssd", "task": "detect"},
                                      {"name": "cars", "model": "resnet50", "after": ["detect"], "crops": {"max": 2}}),
     ["apps[0].modules[1].crops", "needs `input: crops`"]),
    ("features-of-unknown-size", _modules({"name": "detect", "model": "ssd"},
                                          {"name": "cars", "model": "resnet50", "after": ["detect"],
                                           "input": "features"}),
     ["apps[0].modules[1].after[0]", "features of 'detect'", "no known size"]),
    ("bad-crop-filter", _modules({"name": "detect", "model": "ssd", "task": "detect"},
                                 {"name": "cars", "model": "resnet50", "after": ["detect"], "input": "crops",
                                  "crops": {"min_score": 1.5}}),
     ["apps[0].modules[1].crops.min_score", "less than or equal to 1", "got 1.5"]),
]


#: Absurd sizes, refused at load rather than handed to the planner or the runtime.
BOUNDS = [
    ("huge-count", _set(("hardware", 1, "count"), 1_000_000_000),
     ["hardware[1].count", "less than or equal to 10000", "got 1000000000"]),
    ("huge-serve-count", _set(("serve",), {"workers": [{"device": "emulated:t4", "count": 1_000_000_000}]}),
     ["serve.workers[0].count", "less than or equal to 1024", "got 1000000000"]),
    ("huge-rate", _app(rate=1e9), ["apps[0].rate", "less than or equal to 1000000", "got 1000000000.0"]),
    ("huge-batch", _set(("profiles", 1, "batches"), [[1_000_000_000, 3.52]]),
     ["profiles[1].batches[0].batch", "less than or equal to 1024", "got 1000000000"]),
    ("huge-frame", _set(("serve",), {"frame_shape": [100_000, 640, 3]}),
     ["serve.frame_shape[0]", "less than or equal to 8192", "got 100000"]),
    ("zero-frame-side", _set(("serve",), {"input_shape": [3, 0, 224]}),
     ["serve.input_shape[1]", "greater than or equal to 1", "got 0"]),
]


@pytest.mark.parametrize(("mutate", "fragments"), [c[1:] for c in BOUNDS], ids=[c[0] for c in BOUNDS])
def test_absurd_sizes_are_refused_naming_field_and_value(write_yaml, mutate, fragments):
    """Checked on the loader alone: a plan of such a workload would not end."""
    path = write_yaml(_mutated(mutate))
    with pytest.raises(ConfigError) as info:
        load_workload([path])
    (issue,) = info.value.issues
    assert issue.file == str(path) and issue.line
    for fragment in fragments:
        assert fragment in str(issue)


@pytest.mark.parametrize(("mutate", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_file_and_field(write_yaml, capsys, mutate, fragments):
    path = write_yaml(_mutated(mutate))
    assert main(["plan", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in err


def test_error_line_numbers_point_at_the_field(write_yaml, capsys):
    text = (
        "hardware:\n"
        "  - {name: v100, price_per_hour: 3.06}\n"
        "profiles:\n"
        "  - model: r\n"
        "    hardware: v100\n"
        "    batches: [[1, 2.0], [2, -1]]\n"
        "apps:\n"
        "  - name: a\n"
        "    rate: 100\n"
        "    slo_ms: -1\n"
        "    modules: [{name: m, model: r}]\n"
    )
    path = write_yaml(text)
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{path}:6: profiles[0].batches[1].mean_ms: must be greater than 0, got -1",
        f"{path}:10: apps[0].slo_ms: must be greater than 0, got -1",
    ]


def test_malformed_yaml(write_yaml, capsys):
    path = write_yaml("apps:\n  - name: [unclosed\n    rate: 3\n")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path}:") and "malformed YAML" in err[0]


def test_duplicate_yaml_key(write_yaml, capsys):
    path = write_yaml("hardware:\n  - {name: a, name: b, price_per_hour: 1}\n")
    assert main(["plan", str(path)]) == 2
    assert "duplicate key 'name'" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "fragment"), [("", "file is empty"), ("- 1\n- 2\n", "top level must be a mapping")])
def test_empty_or_non_mapping_file(write_yaml, capsys, text, fragment):
    path = write_yaml(text)
    assert main(["plan", str(path)]) == 2
    assert fragment in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read file" in capsys.readouterr().err


def test_missing_sections_across_files(write_yaml, capsys):
    path = write_yaml({"hardware": BASE["hardware"]})
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "profiles: no profiles given" in err and "apps: no apps given" in err


def test_sections_merge_across_files_and_errors_name_each_file(write_yaml, capsys):
    hw = write_yaml({"hardware": BASE["hardware"]}, "hw.yaml")
    prof = write_yaml({"profiles": BASE["profiles"]}, "profiles.yaml")
    apps = write_yaml({"apps": BASE["apps"]}, "apps.yaml")
    assert len(load_workload([hw, prof, apps]).apps) == 1
    bad = write_yaml({"hardware": [{"name": "t4", "price_per_hour": 0.5}]}, "more.yaml")
    with pytest.raises(ConfigError) as info:
        load_workload([hw, prof, apps, bad])
    (issue,) = info.value.issues
    assert issue.file == str(bad) and "duplicate hardware name 't4'" in issue.message
    assert f"first at {hw}:" in issue.message


def test_include_is_relative_to_the_including_file(write_yaml, capsys):
    write_yaml({"hardware": BASE["hardware"], "profiles": BASE["profiles"]}, "catalog.yaml")
    apps = write_yaml({"include": ["catalog.yaml"], "apps": BASE["apps"]}, "apps.yaml")
    assert main(["plan", str(apps)]) == 0
    missing = write_yaml({"include": ["nope.yaml"], "apps": BASE["apps"]}, "bad.yaml")
    assert main(["plan", str(missing)]) == 2
    assert "include: no such file 'nope.yaml'" in capsys.readouterr().err


def test_every_problem_is_reported_at_once(write_yaml, capsys):
    data = _mutated(lambda d: (_app(rate=-1, slo_ms=0)(d), _set(("hardware", 0, "price_per_hour"), -2)(d)))
    assert main(["plan", str(write_yaml(data))]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 3


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [("--safety", "0.5", "--safety must be >= 1, got 0.5"),
     ("--overhead-ms", "-2", "--overhead-ms must be >= 0, got -2.0"),
     ("--max-utilization", "1.2", "--max-utilization must be in (0, 1], got 1.2"),
     ("--safety", "abc", "invalid float value: 'abc'")],
)
def test_bad_settings_exit_2(write_yaml, capsys, flag, value, fragment):
    with pytest.raises(SystemExit) if value == "abc" else _no_raise() as info:
        code = main(["plan", str(write_yaml(BASE)), flag, value])
    code = info.value.code if value == "abc" else code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


class _no_raise:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_console_script_prints_no_traceback(write_yaml):
    """The installed entry point, in its own process, on the worst kind of input."""
    path = write_yaml("apps: [\n")
    proc = subprocess.run([sys.executable, "-m", "harpagon.cli", "plan", str(path)], check=False, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr and "malformed YAML" in proc.stderr


def _plan_bounded(path, memory=1 << 30) -> subprocess.CompletedProcess:
    """`harpagon plan` in its own process with at most `memory` bytes of address space; the timeout
    only stops a process that would block forever (it fails the test, it measures nothing)."""
    # the limit is set by the child itself: a preexec_fn runs in the forked copy of this process, where
    # gRPC's fork handlers (this test process has loaded gRPC) write errors of their own to stderr
    code = (f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory})); "
            "sys.argv = ['harpagon', 'plan', sys.argv[1]]; runpy.run_module('harpagon.cli', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, str(path)], check=False, capture_output=True, text=True,
                          timeout=120)


def _alias_bomb(levels: int = 9) -> str:
    """A few hundred bytes that stand for 10^levels nodes once every alias is expanded."""
    lines = ['lol: &a0 ["lol"]']
    lines += [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nhardware: [{{name: t4, price_per_hour: 1, count: *a{levels}}}]\n"


def test_an_alias_bomb_is_refused_in_bounded_memory(write_yaml):
    path = write_yaml(_alias_bomb())
    assert len(path.read_bytes()) < 1000
    proc = _plan_bounded(path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:")
    assert "refused: the document expands to more than 250000 nodes" in lines[0]


def test_aliases_within_the_budget_still_load(write_yaml):
    text = yaml.safe_dump({k: v for k, v in BASE.items() if k != "apps"}, sort_keys=False)
    text += yaml.safe_dump({"apps": BASE["apps"]}, sort_keys=False).replace("modules:", "modules: &mods")
    text += "- {name: traffic2, rate: 10, slo_ms: 100, modules: *mods}\n"
    workload = load_workload([write_yaml(text)])
    assert [a.name for a in workload.apps] == ["traffic", "traffic2"]
    assert workload.apps[1].modules == workload.apps[0].modules


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: " + "[" * 100 + "]" * 100 + "\n"], ids=["recursive", "deep"])
def test_a_recursive_or_deeply_nested_document_is_refused(write_yaml, text):
    with pytest.raises(ConfigError) as info:
        load_workload([write_yaml(text)])
    (issue,) = info.value.issues
    assert issue.message.startswith("refused: ")


@pytest.mark.parametrize(("text", "fragment"), [
    ("hardware: [{name: a, price_per_hour: 1, count: " + "9" * 5000 + "}]\n", "malformed YAML: Exceeds the limit"),
    ("hardware: 2020-13-45\n", "malformed YAML: month must be in 1..12"),
], ids=["int-of-5000-digits", "month-13"])
def test_a_scalar_yaml_cannot_convert_is_one_line(write_yaml, capsys, text, fragment):
    path = write_yaml(text)
    assert main(["plan", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}:") and fragment in lines[0]


def test_a_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"apps: [{name: caf\xe9}]\n")
    assert main(["plan", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"{path}: cannot read file: not UTF-8 text (at byte offset 17)"


def test_a_file_over_the_size_bound_is_refused(write_yaml, capsys):
    path = write_yaml("# " + "x" * (1 << 20) + "\n")
    assert main(["plan", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"{path}: cannot read file: larger than 1048576 bytes"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_an_include_that_is_not_a_regular_file_is_refused_without_blocking(write_yaml, tmp_path, kind):
    if kind == "fifo":
        target, what = tmp_path / "pipe", "a FIFO"
        os.mkfifo(target)
    elif kind == "dev-zero":
        target, what = "/dev/zero", "a character device"
    else:
        target, what = tmp_path, "a directory"
    path = write_yaml({"include": [str(target)], **BASE})
    proc = _plan_bounded(path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == f"{target}: cannot read file: not a regular file ({what})"
