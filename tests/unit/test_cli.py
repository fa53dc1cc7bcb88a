"""`harpagon plan` output: the table, the JSON and the refusal exit code."""

from __future__ import annotations

import copy
import json

import pytest

from harpagon.cli import main
from harpagon.config import load_workload
from harpagon.model.plan import Plan, check_plan
from tests.conftest import BASE


def test_table_lists_every_tuple_and_the_total(write_yaml, capsys):
    assert main(["plan", str(write_yaml(BASE))]) == 0
    out = capsys.readouterr().out
    for text in ("traffic", "detect", "cars", "v100", "t4", "end to end", "total", "6.646"):
        assert text in out


def test_json_output_passes_the_feasibility_check(write_yaml, capsys):
    path = write_yaml(BASE)
    assert main(["plan", str(path), "--json", "--safety", "1.1", "--overhead-ms", "2", "--max-utilization",
                 "0.9"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["planner"] == "harpagon" and data["dispatch"] == "batch-aware"
    assert data["settings"] == {"safety": 1.1, "overhead_ms": 2.0, "max_utilization": 0.9, "arrivals": "poisson",
                                "attainment": 0.99}
    replayed = data["promise"]["replayed"]
    assert data["promise"]["arrivals"] == "poisson" and replayed["seconds"] == 60.0
    assert replayed["frames"] == max(10_000, 60 * min(a["rate"] for a in data["apps"]))
    assert "refused" not in data
    module = data["apps"][0]["modules"][0]
    assert set(module) == {"name", "model", "rate", "budget_ms", "predicted_latency_ms", "tuples"}
    assert set(module["tuples"][0]) - {"queue_ms"} == {"hardware", "batch", "workers", "rate", "dummy_rate",
                                                      "latency_ms"}
    assert check_plan(Plan.from_dict(data), load_workload([path])) == []


def test_refused_app_exits_3_and_the_rest_is_planned(write_yaml, capsys):
    data = copy.deepcopy(BASE)
    data["apps"].append({"name": "tight", "rate": 10, "slo_ms": 4, "modules": [{"name": "d", "model": "ssd"}]})
    assert main(["plan", str(write_yaml(data)), "--json"]) == 3
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert [a["name"] for a in plan["apps"]] == ["traffic"]
    assert plan["refused"][0]["name"] == "tight"
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("refused: app 'tight': SLO 4 ms is below its fastest possible path, 6.30 ms")


def test_plan_with_a_baseline_marks_shared_gpus(write_yaml, capsys):
    data = copy.deepcopy(BASE)
    data["apps"] = [{"name": n, "rate": r, "slo_ms": 100, "modules": [{"name": "m", "model": "resnet50"}]}
                    for n, r in (("a", 10), ("b", 20))]
    data["hardware"] = data["hardware"][:1]
    data["profiles"] = data["profiles"][:1]
    path = write_yaml(data)
    assert main(["plan", str(path), "--planner", "nexus"]) == 0
    out = capsys.readouterr().out
    assert "nexus plan (request-level dispatch)" in out and "shared nexus-gpu-0" in out
    assert main(["plan", str(path), "--planner", "nexus", "--json"]) == 0
    tuples = [m["tuples"][0] for a in json.loads(capsys.readouterr().out)["apps"] for m in a["modules"]]
    assert {t["gpu"] for t in tuples} == {"nexus-gpu-0"} and all(t["cycle_ms"] > 0 for t in tuples)
    with pytest.raises(SystemExit) as info:
        main(["plan", str(path), "--planner", "nope"])
    assert info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_plan_for_several_frontends_plans_their_streams(write_yaml, capsys):
    data = copy.deepcopy(BASE)
    data["apps"] = [{"name": n, "rate": r, "slo_ms": 100, "modules": [{"name": "m", "model": "resnet50"}]}
                    for n, r in (("big", 1200), ("small", 20))]
    path = str(write_yaml(data))
    assert main(["plan", path, "--json", "--frontends", "2", "--split-rate", "500", "--arrivals", "fluid"]) == 0
    captured = capsys.readouterr()
    assert sorted(a["name"] for a in json.loads(captured.out)["apps"]) == ["big#0", "big#1", "small"]
    assert "frontend-0: 620 frames/s, streams ['big#0', 'small']" in captured.err  # small: the least loaded, first id
    assert "frontend-1: 600 frames/s, streams ['big#1']" in captured.err
    assert main(["plan", path, "--frontends", "2", "--split-rate", "0"]) == 2
    assert "--split-rate must be a number > 0, got 0" in capsys.readouterr().err


def test_version_and_log_level(capsys):
    import logging

    from harpagon import __version__
    from harpagon.runtime import logs

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"harpagon {__version__}"
    try:
        logs.LEVEL = "warning"  # as `harpagon --log-level warning` sets it
        logs.setup("text", logging.INFO)
        assert logging.getLogger().level == logging.WARNING
        logs.LEVEL = None
        logs.setup("text", logging.INFO)
        assert logging.getLogger().level == logging.INFO
    finally:
        logs.LEVEL = None
        logging.getLogger().setLevel(logging.WARNING)


def test_the_demo_fails_when_a_promise_is_missed():
    from harpagon.runtime.demo import AppLoad, kept_promise

    ld = AppLoad("cam", 10, 100, sent=100, answered=100, within_slo=98)
    assert kept_promise(ld, 0.99) is False and kept_promise(ld, 0.95) is True and kept_promise(ld, None) is None
    assert kept_promise(AppLoad("idle", 10, 100), 0.99) is False  # nothing came back: not kept


def test_log_times_are_rfc3339_in_text_and_json():
    import io
    import json
    import logging
    import re

    from harpagon.runtime import logs

    stream = io.StringIO()
    try:
        for fmt in ("text", "json"):
            logs.setup(fmt)
            logging.getLogger().handlers[0].setStream(stream)
            logging.getLogger("harpagon.test").info("hello %s", fmt)
        text, js = stream.getvalue().splitlines()
        rfc3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"
        assert re.fullmatch(rfc3339 + r" INFO harpagon\.test: hello text", text), text
        record = json.loads(js)
        assert re.fullmatch(rfc3339, record["time"]) and record["message"] == "hello json", record
    finally:
        logging.getLogger().handlers.clear()
        logging.getLogger().setLevel(logging.WARNING)


def test_banners_are_json_lines_in_json_mode(capsys):
    import json
    import re

    from harpagon.runtime import logs

    try:
        logs.FORMAT = "json"
        logs.banner("worker listening on 127.0.0.1:5", "harpagon.worker", address="127.0.0.1:5", emulated=True)
        record = json.loads(capsys.readouterr().out)
        assert record["message"] == "worker listening on 127.0.0.1:5" and record["logger"] == "harpagon.worker"
        assert record["level"] == "INFO" and record["address"] == "127.0.0.1:5" and record["emulated"] is True
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["time"])
        logs.FORMAT = "text"
        logs.banner("worker listening on 127.0.0.1:5", address="127.0.0.1:5")
        assert capsys.readouterr().out == "worker listening on 127.0.0.1:5\n"
    finally:
        logs.FORMAT = "text"


@pytest.mark.parametrize("argv", [
    ["--log-level", "debug", "--log-format", "json", "plan", "face"],
    ["plan", "face", "--log-level", "debug", "--log-format", "json"],
    ["--log-level", "error", "--log-format", "text", "plan", "face", "--log-level", "debug", "--log-format", "json"],
    ["bench", "live", "--log-level", "debug", "--log-format", "json"],
])
def test_log_flags_go_before_or_after_the_subcommand(argv):
    from harpagon.cli import _build_parser

    args = _build_parser().parse_args(argv)
    assert (args.log_level, args.log_format) == ("debug", "json")


def test_log_flags_default_when_given_nowhere():
    from harpagon.cli import _build_parser

    args = _build_parser().parse_args(["worker", "--device", "cpu"])
    assert (args.log_level, args.log_format) == (None, "text")


@pytest.mark.parametrize(("args", "says"), [
    (["--minutes", "0"], "--minutes 0.0: must be in (0, 1440]"),
    (["--low", "1.5"], "--low 1.5: must be in (0, 1]"),
    (["--config", "nowhere.yaml"], "--config nowhere.yaml: no such file"),
])
def test_bench_elastic_refuses_bad_arguments_by_name(args, says, capsys):
    assert main(["bench", "elastic", *args]) == 2
    assert says in capsys.readouterr().err


def test_bench_elastic_needs_a_fleet(write_yaml, capsys):
    assert main(["bench", "elastic", "--config", str(write_yaml(BASE))]) == 2
    assert "needs a `serve.fleet` section" in capsys.readouterr().err


def test_the_frontend_reads_the_frame_shape_from_the_config_and_refuses_a_second_differing_one(write_yaml, capsys):
    from harpagon.data import example

    text = example("demo").read_text()
    assert "include: [../models/" in text and "frame_shape: [120, 160, 3]" in text
    config = write_yaml(text.replace("include: [../models/", "include: [harpagon:models/")
                        .replace("../models/", "harpagon:models/").replace("[120, 160, 3]", "[720, 1280, 3]"))
    argv = ["frontend", "--controller", "127.0.0.1:1", "--insecure", "--config", str(config)]
    assert main([*argv, "--frame-shape", "480,640,3"]) == 2
    assert "--frame-shape 480,640,3 differs from serve.frame_shape [720, 1280, 3]" in capsys.readouterr().err


def test_a_config_may_include_the_packaged_catalog_from_anywhere(write_yaml):
    config = write_yaml({"include": ["harpagon:models/profiles/catalog.yaml", "harpagon:models/profiles/hardware.yaml"],
                         "apps": [{"name": "a", "rate": 10, "slo_ms": 200, "modules": [{"name": "m",
                                                                                        "model": "resnet50"}]}]})
    workload = load_workload([config])
    assert any(p.model == "resnet50" for p in workload.profiles) and workload.hardware


def test_repeated_warnings_are_logged_once_a_window_with_a_count_of_those_held_back():
    import logging

    from harpagon.runtime.logs import Repeats

    now = [0.0]
    kept: list[str] = []
    logger = logging.getLogger("harpagon.test.repeats")
    handler = logging.Handler()
    handler.emit = lambda record: kept.append(record.getMessage())
    handler.addFilter(Repeats(window_s=60.0, clock=lambda: now[0]))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        for t in range(0, 125, 5):  # every 5 s for two minutes: a controller down, say
            now[0] = float(t)
            logger.warning("controller %s unreachable", "10.0.0.1:50051")
            logger.info("retrying")  # info is never held back
        logger.warning("another kind of warning")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    warnings = [m for m in kept if "unreachable" in m]
    assert warnings == ["controller 10.0.0.1:50051 unreachable",
                        "controller 10.0.0.1:50051 unreachable (and 11 more like it in the last 60 s, not shown)",
                        "controller 10.0.0.1:50051 unreachable (and 11 more like it in the last 60 s, not shown)"]
    assert kept.count("retrying") == 25 and kept[-1] == "another kind of warning"
