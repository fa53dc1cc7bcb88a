"""Frame decode is planned (docs/model.md, "Inputs: frame decode"): an app's declared frames add
`b × decode_ms_per_mpixel × megapixels` to the d(b) of every module that takes the frame, in the
options, the plan and its check, the replay, and the configuration sent to workers."""

from __future__ import annotations

import pytest
import yaml

from harpagon.config.loader import ConfigError, load_workload
from harpagon.config.schema import Workload
from harpagon.model.latency import Settings, module_latencies, options_for
from harpagon.model.plan import check_plan
from harpagon.planner.harpagon import plan
from harpagon.runtime.controller.assignment import WorkerInfo, assign
from harpagon.sim import simulate

FRAME = {"height": 720, "width": 1280, "encoding": "jpeg"}  # 0.9216 megapixels
PER_MP = 2.0  # ms per megapixel: 1.8432 ms per 720p frame


def workload(frame: dict | None = FRAME, figures: dict | None = None) -> Workload:
    app = {"name": "cam", "rate": 100.0, "slo_ms": 200.0,
           "modules": [{"name": "detect", "model": "det", "task": "detect"},
                       {"name": "car", "model": "cls", "after": ["detect"], "input": "crops", "scale": 2.0}]}
    if frame is not None:
        app["frame"] = frame
    return Workload.model_validate({
        "hardware": [{"name": "gpu", "price_per_hour": 1.0,
                      "decode_ms_per_mpixel": {"jpeg": PER_MP} if figures is None else figures}],
        "profiles": [{"model": m, "hardware": "gpu", "batches": [[1, 5.0, 1.0], [4, 12.0], [8, 20.0]]}
                     for m in ("det", "cls")],
        "apps": [app]})


def test_a_frame_module_pays_its_frames_decode_per_request_and_a_crops_module_none():
    w, s = workload(), Settings(safety=1.5)
    app = w.apps[0]
    detect, car = app.modules
    per_frame = PER_MP * 0.9216
    assert w.decode_ms(app, detect, "gpu") == pytest.approx(per_frame)
    assert w.decode_ms(app, car, "gpu") == 0.0
    d = {o.batch: o.d_ms for o in options_for(w, app, detect, s)}
    assert d == pytest.approx({1: (5.0 + per_frame + 1.0) * 1.5, 4: (12.0 + 4 * per_frame) * 1.5,
                               8: (20.0 + 8 * per_frame) * 1.5})
    assert {o.batch: o.d_ms for o in options_for(w, app, car, s)} == pytest.approx({1: 9.0, 4: 18.0, 8: 30.0})
    assert module_latencies(w, app, detect, "gpu", 1.5) == pytest.approx(d)
    # without a declared frame nothing is added
    plain = workload(frame=None)
    assert {o.batch: o.d_ms for o in options_for(plain, plain.apps[0], plain.apps[0].modules[0], s)} == \
        pytest.approx({1: 9.0, 4: 18.0, 8: 30.0})


def test_the_plan_counts_decode_and_its_check_and_replay_see_it():
    heavy = workload(figures={"jpeg": 40.0})  # 36.9 ms a frame: the detector needs more GPUs
    cheap = plan(workload(frame=None))
    costly = plan(heavy)
    assert not costly.refused and costly.cost_per_hour > cheap.cost_per_hour
    assert check_plan(costly, heavy) == []
    # the plan made without decode is over capacity once decode is counted: the check and the replay say so
    assert any("over capacity" in p for p in check_plan(cheap, heavy))
    ok = simulate(costly, heavy, frames=2000, seed=3, arrivals="constant")
    late = simulate(cheap, heavy, frames=2000, seed=3, arrivals="constant")
    assert ok.apps[0].over_slo == 0.0 and late.apps[0].over_slo > 0.5


def test_workers_are_told_their_modules_decode_time():
    w = workload()
    p = plan(w)
    workers = [WorkerInfo(f"w{i}", f"127.0.0.1:{9000 + i}", "gpu", "emulated:gpu", True) for i in range(8)]
    a = assign(p, w, workers, (3, 16, 16), version=1)
    specs = {s.name.split("@")[0]: s for ms in a.modules.values() for s in ms}
    assert specs["cam/detect"].decode_ms == pytest.approx(PER_MP * 0.9216)
    assert specs["cam/car"].decode_ms == 0.0


def test_a_declared_encoding_without_a_figure_is_refused_naming_the_hardware(tmp_path):
    doc = workload().model_dump(mode="json", exclude_none=True)
    doc["hardware"][0]["decode_ms_per_mpixel"] = {"raw": 0.5}  # no jpeg figure
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_workload([path])
    (issue,) = err.value.issues
    assert issue.field == "apps[0].frame.encoding" and "'gpu'" in issue.message and "'jpeg'" in issue.message
    doc["apps"][0]["frame"]["encoding"] = "raw"  # the figure it has
    path.write_text(yaml.safe_dump(doc))
    assert load_workload([path]).apps[0].frame.encoding == "raw"


@pytest.mark.parametrize("bad", [{"height": 0, "width": 10}, {"height": 10, "width": 10, "encoding": "gif"}])
def test_a_bad_frame_is_refused(bad):
    with pytest.raises(ValueError, match="frame"):
        workload(frame=bad)
