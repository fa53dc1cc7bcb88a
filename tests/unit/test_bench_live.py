"""The live bench's pure parts: attainment from per-frame records, the capacity search over a fake
`measure`, the hop split, perf_analyzer's outputs, and the report built from plain results."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from harpagon.bench.live.capacity import search_capacity
from harpagon.bench.live.configs import (
    DEFAULT_FRAME_KINDS,
    FrameKind,
    capacity_workload,
    parse_frame_kinds,
    planned_for,
    with_emulated_serve,
)
from harpagon.bench.live.load import DROPPED, FAILED, NO_REPLY, OK, _requests, request_bytes
from harpagon.bench.live.markdown import build_markdown
from harpagon.bench.live.measure import app_load, hop_rows, kept, lateness
from harpagon.bench.live.perf_analyzer import intervals_file, pa_records, parse_pa_csv
from harpagon.bench.live.plots import plots
from harpagon.bench.live.results import (
    AppResult,
    Capacity,
    ClusterResult,
    ModuleResult,
    Report,
    RunResult,
    ScaleOut,
    Step,
)
from harpagon.bench.report import md_table
from harpagon.config.schema import Hardware, Workload

# --- attainment from records ----------------------------------------------------------------------


def test_app_load_counts_dropped_failed_and_unanswered_frames_as_late():
    ld = app_load("cam", 10, 100.0, [50, 100, 150, math.nan, math.nan, math.nan],
                  [OK, OK, OK, DROPPED, FAILED, NO_REPLY], {"UNAVAILABLE: x": 1})
    assert (ld.sent, ld.answered, ld.within_slo, ld.dropped, ld.failed) == (6, 3, 2, 1, 2)
    assert ld.attainment == pytest.approx(2 / 6)  # 100 ms is within a 100 ms SLO; 150 is not
    assert ld.latencies == [50, 100, 150]
    assert ld.errors == {"UNAVAILABLE: x": 1}


def test_app_load_ignores_the_latency_of_a_frame_that_was_not_answered():
    ld = app_load("cam", 10, 100.0, [1.0, 1.0], [OK, DROPPED])
    assert ld.latencies == [1.0] and ld.attainment == 0.5


def test_app_load_rejects_records_of_different_lengths():
    with pytest.raises(ValueError):
        app_load("cam", 10, 100.0, [1.0, 2.0], [OK])


def test_kept_against_the_promise():
    ld = app_load("cam", 10, 100.0, [10.0] * 99 + [200.0], [OK] * 100)
    assert kept(ld, 0.99) is True
    assert kept(ld, 1.0) is False  # constant arrivals promise every frame
    assert kept(ld, None) is None  # no promise for these arrivals
    assert kept(app_load("cam", 10, 100.0, [], []), 0.5) is False  # nothing done keeps nothing


def test_lateness_of_the_client():
    lag = lateness([0.0, 0.1, 0.2, 0.3], [0.001, 0.1, 0.3, math.nan])
    assert lag["max"] == pytest.approx(100.0)
    assert lag["late_share"] == pytest.approx(1 / 3)  # of the frames sent; 1 ms late is not late
    assert math.isnan(lateness([0.0], [math.nan])["p99"])


# --- the capacity search --------------------------------------------------------------------------


def fake(capacity: float):
    calls: list[float] = []

    def measure(rate: float) -> Step:
        calls.append(rate)
        return Step(rate, rate <= capacity)

    return measure, calls


def test_search_doubles_then_bisects_to_the_capacity():
    measure, calls = fake(1300)
    cap = search_capacity(measure, 250, 8000, bisect_steps=3)
    assert calls[:4] == [250, 500, 1000, 2000]  # doubling until the first failure
    assert calls[4:] == [1500, 1250, 1375]  # bisection between 1000 (kept) and 2000 (missed)
    assert cap.best == 1250 and cap.first_failure == 1375
    assert [s.rate for s in cap.steps] == calls


def test_search_stops_at_the_limit_when_every_step_keeps_the_promise():
    measure, calls = fake(1e9)
    cap = search_capacity(measure, 250, 3000, bisect_steps=3)
    assert calls == [250, 500, 1000, 2000, 3000]  # the last doubling is clipped to the limit
    assert cap.best == 3000 and cap.first_failure is None


def test_search_reports_no_capacity_when_the_first_step_fails():
    measure, calls = fake(100)
    cap = search_capacity(measure, 250, 8000, bisect_steps=3)
    assert calls == [250] and cap.best is None and cap.first_failure == 250


def test_search_never_measures_a_rate_twice_and_reports_progress():
    measure, calls = fake(501)
    seen: list[float] = []
    cap = search_capacity(measure, 250, 8000, bisect_steps=10, progress=lambda s: seen.append(s.rate))
    assert len(calls) == len(set(calls)) and seen == calls
    assert cap.best == 501 and cap.first_failure == 502


def test_search_rejects_a_bad_range():
    with pytest.raises(ValueError):
        search_capacity(lambda r: Step(r, True), 0, 10)
    with pytest.raises(ValueError):
        search_capacity(lambda r: Step(r, True), 500, 250)


# --- hop split, perf_analyzer, tables -------------------------------------------------------------


def test_hop_rows_from_module_stats():
    s = SimpleNamespace(requests=4, batches=2, dummies=1, latency_ms=[5.0, 7.0, 9.0, 11.0],
                        prepare_ms=[0.1, 0.3], collect_ms=[2.0], transport_ms=[1.0, 3.0],
                        worker_queue_ms=[], exec_ms=[4.0, 4.0])
    (row,) = hop_rows({("cam", "detect"): s})
    assert (row["app"], row["module"], row["requests"], row["batches"], row["dummies"]) == ("cam", "detect", 4, 2, 1)
    assert row["latency_ms"][:2] == (pytest.approx(8.0), pytest.approx(10.94))
    assert row["exec_ms"] == (4.0, 4.0, 4.0, 2)
    assert math.isnan(row["worker_queue_ms"][1]) and row["worker_queue_ms"][3] == 0
    assert row["overhead_p99_ms"] == pytest.approx(np.percentile([0.1, 0.3], 99) + np.percentile([1.0, 3.0], 99))
    assert hop_rows(None) == []


def test_parse_pa_csv():
    text = ("Concurrency,Inferences/Second,Client Send,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency\n"
            "1,35.2,10,16000,20000,21000,24000,17000\n4,120.5,10,30000,40000,41000,52000,33000\n")
    rows = parse_pa_csv(text)
    assert [r["level"] for r in rows] == [1, 4]
    assert rows[1]["throughput"] == 120.5 and rows[1]["p99_ms"] == 52.0 and rows[0]["p50_ms"] == 16.0


def test_pa_records_from_a_profile_export():
    export = {"experiments": [{"requests": [
        {"timestamp": 1_000_000_000, "response_timestamps": [1_020_000_000]},
        {"timestamp": 2_000_000_000, "response_timestamps": []},
        {"timestamp": 3_000_000_000, "response_timestamps": [3_001_000_000, 3_005_000_000]}]}]}
    rec = pa_records(export, 100.0)
    assert rec["status"] == [OK, NO_REPLY, OK] and rec["requests"] == 3 and rec["span_s"] == 2.0
    assert rec["latency_ms"][0] == 20.0 and rec["latency_ms"][2] == 5.0 and math.isnan(rec["latency_ms"][1])


def test_intervals_file_holds_the_gaps_in_microseconds(tmp_path):
    path = tmp_path / "iv.txt"
    intervals_file(np.array([0.0, 0.01, 0.0105, 0.0105]), path)
    assert path.read_text().split() == ["1", "10000", "500", "1"]  # a gap is at least 1 us


def test_md_table_escapes_and_checks_widths():
    lines = md_table(["a", "b"], [["x|y", 1]])
    assert lines == ["| a | b |", "|:---|---:|", "| x\\|y | 1 |"]
    with pytest.raises(ValueError):
        md_table(["a", "b"], [["only one"]])


def test_a_config_without_serve_gets_emulated_workers_of_its_declared_counts():
    w = Workload(hardware=(Hardware(name="t4", price_per_hour=0.5, count=3),
                           Hardware(name="v100", price_per_hour=3.0, count=2)))
    served = with_emulated_serve(w, "request-level")
    assert [(g.device, g.count) for g in served.serve.workers] == [("emulated:t4", 3), ("emulated:v100", 2)]
    assert served.serve.dispatch == "request-level"


def test_a_config_with_real_devices_is_refused():
    w = Workload.model_validate({"serve": {"workers": [{"device": "cpu"}]}})
    with pytest.raises(ValueError, match="emulated"):
        with_emulated_serve(w)


# --- the report -----------------------------------------------------------------------------------


def _app(name: str, att: float, ok: bool | None, goal: float | None = 0.99) -> AppResult:
    return AppResult(name, 40, 250, 100, 100, int(att * 100), 0, 0, att, goal, 1.0, ok, 10.0, 20.0, 30.0)


def _run(dispatch: str, arrivals: str, apps: list[AppResult], cost: float) -> RunResult:
    return RunResult("configs/demo.yaml", dispatch, arrivals, 5, "python sender", cost, {"t4": 2}, "promise", 0,
                     apps, server_cpu_s=2.0, wall_s=4.0, frames=200, client_cpu_s=1.0,
                     lag={"p50": 0.1, "p99": 1.0, "max": 2.0, "late_share": 0.0}, offered_share=1.0)


def _report(hops) -> Report:
    clusters = [ClusterResult("configs/demo.yaml", d, [_run(d, a, [_app("traffic", att, att >= 0.99)], cost)
                                                       for a in ("constant", "poisson")],
                              [ModuleResult("traffic", "detect", 12.0, 20.0, 5.0, 100, 8.0, 15.0, 18.0, "stats")], hops)
                for d, att, cost in (("batch-aware", 1.0, 2.63), ("request-level", 0.9, 3.5))]
    cap = Capacity(1000, 2000, [Step(500, True, 1.0, 0.99, 500, 500, 5, 9, 0.5, 0.25, 0.1, 1),
                                Step(1000, True, 0.995, 0.99, 1000, 1000, 5, 9, 0.5, 0.5, 0.2, 1),
                                Step(2000, False, 0.5, 0.99, 1500, 1400, 50, 300, 0.6, 1.0, 0.4, 2,
                                     why="client-bound: got out 1500 of 2000 frames/s")])
    return Report("harpagon bench live --quick", "2025-01-01", 5, clusters, cap, "perf_analyzer")


def test_report_states_emulation_promise_verdicts_and_capacity():
    md = build_markdown(_report(None))
    assert "EMULATED" in md and "harpagon bench live --quick" in md
    assert "| demo.yaml | batch-aware | constant | traffic |" in md
    assert "**missed**" in md and "| kept |" in md  # request-level at 90% misses; batch-aware keeps
    assert "**1000 frames/s**" in md and "lowest that did not: 2000" in md and "**not met**" in md
    assert "client-bound: got out 1500 of 2000 frames/s" in md
    assert "$2.630/h" in md and "$3.500/h" in md  # the two policies' costs side by side
    assert "**Missing**" in md  # no hop split without stats()
    # CPU per frame: 2 CPU s over 200 frames = 10 ms; 2 s over 4 s of wall = 0.5 cores
    assert "| demo.yaml | batch-aware | constant | 40 | 200 | 10.00 | 0.50 | 0.25 | 100.0% |" in md


def test_report_has_the_hop_split_when_stats_exist():
    s = SimpleNamespace(requests=2, batches=1, dummies=0, latency_ms=[3.0], prepare_ms=[0.5], collect_ms=[1.0],
                        transport_ms=[1.0], worker_queue_ms=[0.0], exec_ms=[2.0])
    md = build_markdown(_report(hop_rows({("traffic", "detect"): s})))
    assert "**Missing**" not in md
    assert "| demo.yaml | batch-aware | traffic | detect | 2 | 1 | 0 | 0.50 / 0.50 | 1.00 / 1.00 |" in md
    assert "| 1.50 |" in md  # overhead P99 = 0.5 + 1.0


def test_report_shows_the_unary_and_the_streaming_capacity_and_plots_both(tmp_path):
    rep = _report(None)
    rep.capacity_streaming = Capacity(2000, None, [Step(2000, True, 1.0, 0.99, 2000, 1990, 5, 9, 0.3, 0.6, 0.2, 1)])
    rep.elapsed_s = 12.0
    md = build_markdown(rep)
    assert "**unary `ModelInfer`" in md and "**1000 frames/s**" in md
    assert "**`ModelStreamInfer`" in md and "**2000 frames/s** (goal ≥ 2,000 frames/s: met)" in md
    pytest.importorskip("matplotlib")
    names = plots(rep, tmp_path, "live")
    assert "live_capacity.png" in names and (tmp_path / "live_capacity.png").stat().st_size > 0


def test_report_compares_worker_transports_side_by_side():
    rep = _report(None)
    rep.transports = [{"transport": "tcp", "hops": 100, "p50_ms": 2.0, "p99_ms": 4.0},
                      {"transport": "unix", "hops": 100, "p50_ms": 1.5, "p99_ms": 3.0}]
    md = build_markdown(rep)
    assert "### Workers on loopback TCP against Unix sockets" in md
    assert "| unix | 100 | 1.50 | 3.00 | 0.75 / 0.75 |" in md and "| tcp | 100 | 2.00 | 4.00 | - |" in md


# --- frame kinds ----------------------------------------------------------------------------------


def test_frame_kinds_parse_width_first_with_an_optional_encoding():
    kinds = parse_frame_kinds("8x8, 640x480:jpeg,1280x720:raw,1280x720,640X480:JPEG")
    assert kinds == (FrameKind(8, 8, "raw"), FrameKind(480, 640, "jpeg"), FrameKind(720, 1280, "raw"))
    assert [k.name for k in kinds] == ["8x8 raw", "640x480 JPEG", "1280x720 raw"]
    assert [k.spec for k in kinds] == ["8x8", "640x480:jpeg", "1280x720"]
    assert kinds[1].shape == (480, 640, 3)
    assert parse_frame_kinds("none") == () == parse_frame_kinds("")
    assert [k.name for k in DEFAULT_FRAME_KINDS] == ["8x8 raw", "640x480 raw", "640x480 JPEG", "1280x720 raw",
                                                     "1280x720 JPEG"]


@pytest.mark.parametrize("text, named", [("8x8,640x", "'640x'"), ("640x480:png", "'640x480:png'"),
                                         ("0x8", "'0x8'"), ("8x8,,640x480", "''"), ("9000x8", "'9000x8'"),
                                         ("640*480", "'640*480'")])
def test_a_bad_frame_kind_is_named(text, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_frame_kinds(text)


def test_the_capacity_app_declares_the_frame_kind_it_is_sent():
    w = capacity_workload(500.0, FrameKind(720, 1280, "jpeg"))
    assert w.serve.frame_shape == (720, 1280, 3)
    assert (w.apps[0].frame.height, w.apps[0].frame.width, w.apps[0].frame.encoding) == (720, 1280, "jpeg")
    w0 = capacity_workload(500.0)
    assert w0.apps[0].frame is None and w0.serve.frame_shape == (8, 8, 3)


def test_the_sender_builds_a_jpeg_as_one_length_prefixed_bytes_element():
    (req,), = _requests({"frame_shape": [48, 64, 3], "encoding": "jpeg", "apps": [{"name": "one"}]})
    assert req.model_name == "one"
    (tensor,) = req.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("FRAME", "BYTES", [1])
    (raw,) = req.raw_input_contents
    n = int.from_bytes(raw[:4], "little")
    assert n == len(raw) - 4 and raw[4:7] == b"\xff\xd8\xff"  # JPEG's start-of-image marker
    assert request_bytes((48, 64, 3), "jpeg") == req.ByteSize()


def test_the_sender_builds_raw_uint8_frames():
    reqs, = _requests({"frame_shape": [4, 6, 3], "apps": [{"name": "one"}]})
    assert len(reqs) == 8
    assert [(t.datatype, list(t.shape)) for t in reqs[0].inputs] == [("UINT8", [4, 6, 3])]
    assert len(reqs[0].raw_input_contents[0]) == 4 * 6 * 3
    assert request_bytes((4, 6, 3)) > 72
    with pytest.raises(ValueError, match="png"):
        _requests({"frame_shape": [4, 6, 3], "encoding": "png", "apps": [{"name": "one"}]})


def _kind_cap(best: float | None, fail: float | None, cpu: float, workers: int = 1,
              first_cpu: float | None = None) -> Capacity:
    """Steps at 250 (the first: `first_cpu`, default `cpu`), 500, the failure and the best, CPU `cpu`."""
    steps = [Step(r, r == best or (best is not None and r < best), 1.0, 0.99, r, r, 5, 9,
                  first_cpu if r == 250.0 and first_cpu is not None else cpu, 0.5, 0.2, workers)
             for r in (250.0, 500.0) if best is None or r <= best]
    steps += [Step(fail, False, 0.5, 0.99, fail, fail, 50, 300, cpu, 1.0, 0.3, workers, why="missed")] if fail else []
    if best is not None and best not in (250.0, 500.0):
        steps.append(Step(best, True, 1.0, 0.99, best, best, 5, 9, cpu, 0.5, 0.2, workers))
    return Capacity(best, fail, steps)


def test_report_compares_frame_kinds_with_8x8_and_judges_the_goals():
    rep = _report(None)
    rep.frame_kinds = [("8x8 raw", 221, _kind_cap(1000.0, 2000.0, 0.5)),
                       ("640x480 raw", 921_632, _kind_cap(500.0, 1000.0, 2.0)),
                       ("1280x720 JPEG", 249_077, _kind_cap(875.0, 1000.0, 0.6, workers=2))]
    md = build_markdown(rep)
    assert "### Frame sizes and encodings" in md
    assert md.index("## 6. Capacity") < md.index("### Frame sizes and encodings") < md.index("## 7. perf_analyzer")
    assert "Emulated workers charge the planned decode per frame" in md
    assert "| 8x8 raw | 221 | 1000 | 2000 | 1 | 1.00x | 0.500 | 0.500 (250/s) | 1.00x |" in md
    assert "| 640x480 raw | 921,632 | 500 | 1000 | 1 | 0.50x | 2.000 | 2.000 (250/s) | 4.00x |" in md
    assert "| 1280x720 JPEG | 249,077 | 875 | 1000 | 2 | 0.88x | 0.600 | 0.600 (250/s) | 1.20x |" in md
    # 0.875 >= 0.8 at 1.2 <= 1.3: met; 0.5 < 0.6: missed
    assert "- 1280x720 JPEG: capacity ≥ 0.8x the 8x8 raw capacity at ≤ 1.3x its server CPU per frame: " \
           "met (0.88x, CPU 1.20x)" in md
    assert "- 640x480 raw: capacity ≥ 0.6x the 8x8 raw capacity: **missed** (0.50x)" in md


def test_frame_goals_miss_on_cpu_and_say_what_was_not_measured():
    rep = _report(None)
    rep.frame_kinds = [("8x8 raw", 221, _kind_cap(1000.0, 2000.0, 0.5)),
                       ("1280x720 JPEG", 249_077, _kind_cap(1000.0, 2000.0, 0.7))]
    md = build_markdown(rep)
    assert "1.3x its server CPU per frame: **missed** (1.00x, CPU 1.40x)" in md
    assert "- 640x480 raw: capacity ≥ 0.6x the 8x8 raw capacity: not measured (this kind was not searched)" in md
    rep.frame_kinds = [("1280x720 JPEG", 249_077, _kind_cap(None, 250.0, 0.7))]
    md = build_markdown(rep)
    assert "| 1280x720 JPEG | 249,077 | none | 250 | - | - | - | 0.700 (250/s) | - |" in md
    assert "sender, not the server" not in md
    rep.frame_kinds[0][2].steps[0].why = "client-bound: got out 4 of 250 frames/s"
    assert "- 1280x720 JPEG at 250/s: client-bound: got out 4 of 250 frames/s (server 0.700 ms/frame" \
        in build_markdown(rep)
    assert md.count("not measured (no 8x8 raw capacity in this run)") == 2
    rep.frame_kinds = []
    assert "Frame sizes and encodings" not in build_markdown(rep)


def test_kinds_cpu_per_frame_is_compared_at_the_searches_common_first_rate():
    """CPU per frame falls as the rate rises: a kind kept only at a lower rate is not charged for it."""
    rep = _report(None)
    rep.frame_kinds = [("8x8 raw", 221, _kind_cap(2000.0, 4000.0, 0.3, first_cpu=0.6)),
                       ("1280x720 JPEG", 249_077, _kind_cap(1750.0, 2000.0, 0.4, first_cpu=0.72))]
    md = build_markdown(rep)
    assert "| 1280x720 JPEG | 249,077 | 1750 | 2000 | 1 | 0.88x | 0.400 | 0.720 (250/s) | 1.20x |" in md
    assert "met (0.88x, CPU 1.20x)" in md  # 0.72 / 0.6 at 250/s, not 0.4 / 0.3 at different rates


def test_a_frame_kind_at_the_search_limit_is_a_lower_bound():
    rep = _report(None)
    rep.frame_kinds = [("8x8 raw", 221, _kind_cap(1000.0, 2000.0, 0.5)),
                       ("640x480 raw", 921_632, _kind_cap(2000.0, None, 0.5))]
    md = build_markdown(rep)
    assert "| 640x480 raw | 921,632 | ≥ 2000 | - | 1 | ≥ 2.00x |" in md
    assert "- 640x480 raw: capacity ≥ 0.6x the 8x8 raw capacity: met (≥ 2.00x)" in md


def test_the_frame_kinds_steps_are_written_as_a_csv_beside_the_report(tmp_path):
    import csv

    from harpagon.bench.live.run import write_frames_csv

    rep = _report(None)
    rep.frame_kinds = [("8x8 raw", 221, _kind_cap(1000.0, 2000.0, 0.5)),
                       ("1280x720 JPEG", 249_077, _kind_cap(None, 250.0, 0.7))]
    rep.frame_kinds[1][2].steps[0].why = "client-bound: got out 4 of 250 frames/s"
    path = tmp_path / "live_frames.csv"
    write_frames_csv(rep, path)
    rows = list(csv.DictReader(path.open()))
    assert [(r["frames"], r["rate"], r["kept"]) for r in rows if r["frames"] == "8x8 raw"] == [
        ("8x8 raw", "250", "True"), ("8x8 raw", "500", "True"), ("8x8 raw", "2000", "False"),
        ("8x8 raw", "1000", "True")]
    jpeg = [r for r in rows if r["frames"] == "1280x720 JPEG"]
    assert len(jpeg) == len(rep.frame_kinds[1][2].steps) and jpeg[0]["request_bytes"] == "249077"
    assert jpeg[0]["why"].startswith("client-bound") and jpeg[0]["server_cpu_ms_per_frame"] == "0.7000"


def test_report_shows_the_frontend_scale_out_per_core_and_the_plan_cost():
    rep = _report(None)
    one = Capacity(1000.0, 2000.0, [Step(1000.0, True, 1.0, 0.99, 1000, 990, 5, 9, 0.5, 0.5, 0.2, 1),
                                    Step(2000.0, False, 0.5, 0.99, 2000, 1500, 50, 300, 0.6, 1.0, 0.4, 2, why="missed")])
    two = Capacity(1500.0, None, [Step(1500.0, True, 1.0, 0.99, 1500, 1490, 5, 9, 0.6, 1.0, 0.3, 2)])
    rep.scale_out = [ScaleOut(1, one, 3.06, 3.06), ScaleOut(2, two, 6.12, 3.06), ScaleOut(4, Capacity(None, 250.0, []))]
    md = build_markdown(rep)
    assert "### Frontend scale-out" in md
    # per core: 1000 / 0.5 = 2000; 1500 / 1.0 = 1500, 0.75x of one frontend's
    assert "| 1 | 1000 | 2000 | 1 | 0.50 | 0.500 | 2000 | 1.00x | $3.060 / $3.060 |" in md
    assert "| 2 | ≥ 1500 | - | 2 | 1.00 | 0.600 | 1500 | 0.75x | $6.120 / $3.060 |" in md
    assert "| 4 | none | 250 | - | - | - | - | - | - |" in md


def test_bench_live_takes_frontend_counts():
    from harpagon.cli.bench import _counts

    assert _counts("1,2,4,2") == (1, 2, 4) and _counts("none") == ()
    for bad, named in (("0", "from 1 to 16"), ("two", "'two' is not a whole number"), ("17", "from 1 to 16")):
        with pytest.raises(ValueError, match=named):
            _counts(bad)


def test_the_capacity_app_is_sized_for_its_streams_over_the_frontends():
    one, two = capacity_workload(1000.0), capacity_workload(1000.0, frontends=2)
    assert one.serve.workers[0].count >= 1 and two.serve.workers[0].count >= 1
    assert [a.name for a in planned_for(two, two.serve, 2).apps] == ["one#0", "one#1"]  # 500/s each: split
    assert [a.name for a in planned_for(one, one.serve, 2).apps] == ["one#0", "one#1"]
    assert [a.name for a in planned_for(capacity_workload(600.0), one.serve, 2).apps] == ["one"]  # 300/s: owned


def test_cpu_of_reads_a_live_process_and_skips_a_gone_one():
    import os

    from harpagon.bench.live.measure import cpu_of

    sum(i * i for i in range(200_000))  # some CPU of this process's own
    assert cpu_of([os.getpid()]) > 0 and cpu_of([2**22 + 12345]) == 0.0
