"""GPU memory as a planning input: profile rows with memory, the fit rule, the plan check, the profiler."""

from __future__ import annotations

import pytest
import yaml

from harpagon.cli import main
from harpagon.config import load_workload
from harpagon.config.schema import Profile, Workload
from harpagon.model import memory
from harpagon.model.latency import Settings
from harpagon.model.plan import AppPlan, ModulePlan, Plan, TuplePlan, check_plan

# One 4 GiB GPU: 4 * 1024 * 0.95 - 1024 = 2867.2 MiB for models.
USABLE = 4 * 1024 * (1 - memory.RESERVE_FRACTION) - memory.RESERVE_MB


def _workload(memory_gb=4, apps=()) -> Workload:
    hw = {"name": "g", "price_per_hour": 1.0}
    if memory_gb is not None:
        hw["memory_gb"] = memory_gb
    return Workload.model_validate({
        "hardware": [hw, {"name": "cpu", "price_per_hour": 0.1}],
        "profiles": [
            {"model": "a", "hardware": "g", "batches": [[1, 2.0, 0.0, 1000], [2, 3.0, 0.0, 1500]]},
            {"model": "b", "hardware": "g", "batches": [{"batch": 1, "mean_ms": 2.0, "memory_mb": USABLE - 1000}]},
            {"model": "c", "hardware": "g", "batches": [[1, 2.0]]},  # memory not stated
            {"model": "a", "hardware": "cpu", "batches": [[1, 20.0, 1.0, 300]]},
        ],
        "apps": list(apps),
    })


# --- rows ---------------------------------------------------------------------------------------


def test_rows_state_memory_in_list_and_dict_forms():
    p = Profile.model_validate({"model": "m", "hardware": "g", "batches": [
        [1, 2.0], [2, 3.0, 0.1], [4, 5.0, 0.2, 900], {"batch": 8, "mean_ms": 9.0, "memory_mb": 1200.5}]})
    assert [(r.batch, r.std_ms, r.memory_mb) for r in p.batches] == [
        (1, 0.0, None), (2, 0.1, None), (4, 0.2, 900.0), (8, 0.0, 1200.5)]
    w = _workload()
    assert w.hardware_by_name["g"].memory_gb == 4.0 and w.hardware_by_name["cpu"].memory_gb is None


@pytest.mark.parametrize(("row", "fragments"), [
    ("[2, 3.0, 0.1, -5]", ["profiles[0].batches[1].memory_mb", "greater than 0", "got -5"]),
    ("[2, 3.0, 0.1, 0]", ["profiles[0].batches[1].memory_mb", "greater than 0", "got 0"]),
    ("[2, 3.0, 0.1, lots]", ["profiles[0].batches[1].memory_mb", "valid number", "got 'lots'"]),
    ("{batch: 2, mean_ms: 3.0, memory_mb: .nan}", ["profiles[0].batches[1].memory_mb", "finite number"]),
    ("[2, 3.0, 0.1, 900, 1]", ["profiles[0].batches", "a row is [batch, mean_ms]", "memory_mb], got [2, 3.0"]),
])
def test_a_bad_memory_is_one_line_with_file_and_line(write_yaml, capsys, row, fragments):
    path = write_yaml(
        "hardware:\n"
        "  - {name: g, price_per_hour: 1.0, memory_gb: 16}\n"
        "profiles:\n"
        "  - model: m\n"
        "    hardware: g\n"
        "    batches:\n"
        "      - [1, 2.0, 0.1, 800]\n"
        f"      - {row}\n"
        "apps:\n"
        "  - {name: a, rate: 10, slo_ms: 100, modules: [{name: m, model: m}]}\n")
    assert main(["plan", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    where = 6 if "a row is" in fragments[1] else 8  # a malformed row is reported at `batches:`
    assert line.startswith(f"{path}:{where}: ")
    for fragment in fragments:
        assert fragment in line


def test_a_bad_memory_gb_is_one_line(write_yaml, capsys):
    path = write_yaml("hardware:\n  - {name: g, price_per_hour: 1.0, memory_gb: -16}\n")
    assert main(["plan", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"{path}:2: hardware[0].memory_gb: must be greater than 0, got -16"


# --- the rule -----------------------------------------------------------------------------------


def test_usage_is_the_rows_memory():
    w = _workload()
    assert memory.usage_mb(w, "a", "g", 2) == 1500.0
    assert memory.usage_mb(w, "c", "g", 1) is None  # not stated
    assert memory.usage_mb(w, "a", "g", 4) is None  # not profiled
    assert memory.usable_mb(w, "g") == pytest.approx(2867.2) == pytest.approx(USABLE)


def test_fits_on_hand_checked_cases():
    w = _workload()
    one = [("a", 1)]
    assert memory.fits(w, "g", one) and memory.known(w, "g", one)
    assert memory.free_mb(w, "g", one) == pytest.approx(1867.2)
    # exactly the usable memory: fits
    edge = [("a", 1), ("b", 1)]
    assert memory.fits(w, "g", edge) and memory.free_mb(w, "g", edge) == pytest.approx(0.0, abs=1e-9)
    # 3367.2 MiB: within 95% of 4 GiB (3891.2) but not once the 1024 MiB reserve is kept: the reserve binds
    reserve_binds = [("a", 2), ("b", 1)]
    assert sum(memory.usage_mb(w, m, "g", b) or 0 for m, b in reserve_binds) <= 4 * 1024 * 0.95
    assert not memory.fits(w, "g", reserve_binds) and memory.known(w, "g", reserve_binds)
    assert memory.free_mb(w, "g", reserve_binds) == pytest.approx(-500.0)
    # the same model twice is loaded twice
    assert memory.fits(w, "g", [("a", 2)]) and not memory.fits(w, "g", [("a", 2), ("a", 2)])
    assert "a b=2 1500 MiB + b b=1 1867 MiB = 3367 MiB of 2867 MiB usable on 'g'" in memory.describe(
        w, "g", reserve_binds)


def test_unknown_memory_fits_but_is_not_known():
    w = _workload()
    for members in ([("c", 1)], [("a", 1), ("c", 1)], [("a", 4)], [("z", 1)]):
        assert memory.fits(w, "g", members) and not memory.known(w, "g", members)
        assert memory.free_mb(w, "g", members) is None
    # the hardware's memory unknown: rows alone tell nothing
    w = _workload(memory_gb=None)
    big = [("a", 2), ("a", 2), ("b", 1)]
    assert memory.fits(w, "g", big) and not memory.known(w, "g", big)
    assert "has no memory_gb" in memory.describe(w, "g", big)
    assert memory.fits(w, "cpu", [("a", 1)]) and not memory.known(w, "cpu", [("a", 1)])
    assert memory.fits(w, "nope", [("a", 1)]) and not memory.known(w, "nope", [("a", 1)])


# --- the plan check -----------------------------------------------------------------------------


def _shared_plan(w: Workload, batches: tuple[int, int]) -> Plan:
    """Apps x (model a) and y (model b), each 10/s within 100 ms, on one shared GPU with a 50 ms cycle."""
    apps = []
    for (name, model), b in zip((("x", "a"), ("y", "b")), batches, strict=True):
        d = w.profile_rows[(model, "g")][b].mean_ms
        t = TuplePlan("g", b, 1, 10.0, 0.0, 50.0 + d, gpu="gpu-0", cycle_ms=50.0)
        apps.append(AppPlan(name, 10.0, 100.0, t.latency_ms, (ModulePlan("m", model, 10.0, 100.0, t.latency_ms, (t,)),)))
    return Plan.build("hand", "request-level", Settings(arrivals="fluid"), tuple(apps), (), w)


def _apps():
    return [{"name": n, "rate": 10, "slo_ms": 100, "modules": [{"name": "m", "model": m}]} for n, m in (("x", "a"), ("y", "b"))]


def test_check_plan_refuses_a_shared_gpu_whose_models_do_not_fit():
    w = _workload(apps=_apps())
    assert check_plan(_shared_plan(w, (1, 1)), w) == []  # 1000 + 1867.2: exactly fits
    (problem,) = check_plan(_shared_plan(w, (2, 1)), w)
    assert problem.startswith("shared GPU 'gpu-0': its models do not fit in memory: a b=2 1500 MiB + b b=1")
    assert "of 2867 MiB usable on 'g' (4 GiB less 5% and a 1024 MiB reserve)" in problem
    # a bigger GPU takes them; an unknown memory is not checked
    for memory_gb in (8, None):
        w = _workload(memory_gb, apps=_apps())
        assert check_plan(_shared_plan(w, (2, 1)), w) == []


# --- the profiler -------------------------------------------------------------------------------


def test_the_cpu_profiler_records_the_models_memory(tmp_path):
    from harpagon.profiler import memory_label, profile, write_profiles

    hardware, rows = profile("mlp_head", "cpu", [1, 2], repeats=2, warmup=1, threads=1, hardware="test-cpu",
                             memory=True)
    assert [r[0] for r in rows] == [1, 2] and all(len(r) == 4 for r in rows), rows
    # the weights alone are 0.99 MiB (1000 x 256 + 256 x 16 values and biases, FP32)
    assert all(0.5 < r[3] < 256 for r in rows), rows
    path = tmp_path / "cpu.yaml"
    write_profiles(path, "mlp_head", hardware, rows, "test", memory_label("cpu"))
    text = path.read_text()
    assert "# memory_mb: process peak RSS growth on CPU" in text
    (entry,) = yaml.safe_load(text)["profiles"]
    assert entry["batches"] == rows
    apps = tmp_path / "apps.yaml"
    apps.write_text(yaml.safe_dump({"hardware": [{"name": "test-cpu", "price_per_hour": 0.1}],
                                    "apps": [{"name": "a", "rate": 1, "slo_ms": 1000,
                                              "modules": [{"name": "m", "model": "mlp_head"}]}]}))
    w = load_workload([path, apps])
    assert memory.usage_mb(w, "mlp_head", "test-cpu", 2) == rows[1][3]


def test_without_memory_the_rows_keep_three_elements():
    from harpagon.profiler import profile

    _, rows = profile("mlp_head", "cpu", [1], repeats=1, warmup=0, threads=1)
    assert len(rows[0]) == 3


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_the_cuda_profiler_records_the_weights_at_least():
    from harpagon.profiler import memory_label, profile

    _, rows = profile("resnet18", "cuda:0", [1, 8], (3, 64, 64), repeats=2, warmup=1, memory=True)
    # resnet18: 11.7 M parameters, 44.6 MiB in FP32, on the device for every batch size
    assert all(len(r) == 4 and r[3] > 44 for r in rows), rows
    assert rows[1][3] >= rows[0][3]
    assert memory_label("cuda:0").startswith("peak allocated on cuda:0")
