"""The fault suite end to end (`harpagon bench faults --quick`): a cluster of separate processes under
mutual TLS (each in its own network namespace when the test runs as root with `ip`, else on loopback),
a stream of frames, one fault per scenario, and the goals judged from what the frames got. The suite
runs once (about 2 minutes) for every test marked `integration`; the first tests check the pure parts
it judges with."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest

from harpagon.bench.faults.cli import _only
from harpagon.bench.faults.figures import fill_figures
from harpagon.bench.faults.frames import (
    CLIENT_HOP_MS,
    OK,
    VANISHED,
    Frame,
    RecordTail,
    frame_of,
    is_late,
    summarize,
)
from harpagon.bench.faults.goals import (
    ABUSE_CHECKS,
    CHECK_TIMEOUT_S,
    CONVERGE_GOAL_S,
    DISRUPTION_GOAL_S,
    EXPECTED_REFUSAL,
    FLOOD_GOAL,
    FRONTEND_LEFT_GOAL_S,
    LEAVE_EXIT_GOAL_S,
    LEAVE_REPLAN_GOAL_S,
    LULL_GOAL,
    ORPHAN_GOAL_S,
    ScenarioResult,
    goals_of,
)
from harpagon.bench.faults.load import _LoadClient, stream_frames
from harpagon.bench.faults.logs import config_pushes, membership
from harpagon.bench.faults.markdown import build_markdown
from harpagon.bench.faults.network import stale_namespaces
from harpagon.bench.faults.processes import ExitWatch, process_tree, running
from harpagon.bench.faults.run import run_suite
from harpagon.bench.faults.scenarios import SCENARIOS, pick_scale_down

integration = pytest.mark.integration


# --- the pure parts ------------------------------------------------------------------------------


def test_frames_are_counted_by_outcome_and_the_disruption_ends_at_the_last_bad_one():
    slo = {"cam": 400.0}
    frames = [Frame("cam", 9.0, OK, 50.0),  # before the window
              Frame("cam", 10.0, OK, 50.0), Frame("cam", 10.5, "UNAVAILABLE", 1.0),
              Frame("cam", 11.0, OK, 400.0 + CLIENT_HOP_MS - 1),  # within the SLO + the client's hop
              Frame("cam", 11.5, OK, 400.0 + CLIENT_HOP_MS + 1),  # late
              Frame("cam", 12.0, VANISHED, 10400.0), Frame("cam", 13.0, OK, 40.0),
              Frame("cam", 20.0, "UNAVAILABLE", 1.0)]  # after the window
    o = summarize(frames, slo, 10.0, 20.0, fault_at=10.2)
    assert (o.sent, o.ok, o.late, o.vanished, o.failed) == (6, 3, 1, 1, {"UNAVAILABLE": 1})
    assert o.disruption_s == pytest.approx(1.8)  # the vanished frame sent at 12.0
    assert summarize(frames[1:2], slo, 10.0, 20.0, fault_at=10.2).disruption_s == 0.0
    assert summarize(frames, slo, 10.0, 20.0, fault_at=None).disruption_s is None


def test_the_clients_own_delay_is_taken_out_of_a_frames_latency_and_no_more():
    slo = {"cam": 400.0}
    over = 400.0 + CLIENT_HOP_MS + 12.0
    frames = [Frame("cam", 10.0, OK, over, client_lag_ms=14.0),  # its client read the answer late: on time
              Frame("cam", 10.1, OK, over, client_lag_ms=11.0),  # the client's delay does not cover it: late
              Frame("cam", 10.2, OK, over)]  # no delay of its own: late
    o = summarize(frames, slo, 10.0, 20.0, fault_at=None)
    assert (o.ok, o.late) == (1, 2)
    assert [is_late(f, slo) for f in frames] == [False, True, True]
    record = {"app": "cam", "t": 10.0, "code": OK, "ms": over, "client_lag_ms": 14.0}
    assert frame_of(record, 10.4) == frames[0]
    assert frame_of({k: v for k, v in record.items() if k != "client_lag_ms"}, 10.4).client_lag_ms == 0.0


def test_the_load_client_charges_a_frame_only_its_loops_delays_while_it_was_out():
    client = _LoadClient.__new__(_LoadClient)
    client.ticks = deque([(1.000, 30.0), (1.050, 5.0), (1.100, 12.0)])  # (when a check ran, how late)
    assert client.lag_since(1.020) == pytest.approx(12.0)  # the checks after the frame left; not the 30 ms before
    assert client.lag_since(1.095) == pytest.approx(5.0)  # only the part of a delay after the frame left
    assert client.lag_since(1.200) == 0.0


def test_a_deadline_at_the_clients_own_timeout_is_a_vanished_frame():
    assert frame_of({"app": "cam", "t": 1.0, "code": "DEADLINE_EXCEEDED", "ms": 10399.0}, 10.4).code == VANISHED
    assert frame_of({"app": "cam", "t": 1.0, "code": "DEADLINE_EXCEEDED", "ms": 401.0}, 10.4).code \
        == "DEADLINE_EXCEEDED"


def test_membership_follows_joins_leaves_and_restarts_at_one_address():
    lines = [(1.0, "worker a joined: t4 emulated:t4 at 10.0.0.5:9000 (EMULATED)"),
             (2.0, "worker b joined: t4 emulated:t4 at 10.0.0.6:9000 (EMULATED), running ['cam/detect@b1']"),
             (3.0, "worker a at 10.0.0.5:9000 removed: missed 3 heartbeats"),
             (4.0, "worker c joined: t4 emulated:t4 at 10.0.0.6:9000 (EMULATED)")]  # b restarted as c
    assert membership(lines) == ({"10.0.0.6:9000": "c"}, 4.0)


def test_a_worker_that_left_is_no_longer_a_member():
    lines = [(1.0, "worker a joined: t4 emulated:t4 at 10.0.0.5:9000 (EMULATED)"),
             (2.0, "worker b joined: t4 emulated:t4 at 10.0.0.6:9000 (EMULATED)"),
             (3.0, "worker a at 10.0.0.5:9000 is leaving: re-planning without it (1 modules)"),
             (3.5, "measured rates left the band around the planned ones: {}"),  # not a worker leaving
             (4.0, "worker a left")]
    assert membership(lines) == ({"10.0.0.6:9000": "b"}, 4.0)
    assert membership(lines[:3]) == ({"10.0.0.5:9000": "a", "10.0.0.6:9000": "b"}, 2.0)  # leaving: not yet gone


def _routes(*modules: tuple[str, list[list[str]]]) -> dict:
    return {"modules": [{"app": "cam", "module": name, "tuples": [{"batch": 1, "name": f"cam/{name}@b1",
                                                                    "addresses": t} for t in tuples]}
                        for name, tuples in modules], "refused": {}}


def test_a_scale_down_stops_a_busy_worker_of_each_module_and_an_idle_one():
    routes = _routes(("detect", [["A", "B"]]), ("classify", [["C"]]))
    ours = ["A", "B", "C", "D", "E", "F"]
    assert pick_scale_down(routes, ours, 3) == [("A", "cam/detect"), ("C", "cam/classify"), ("D", None)]
    assert pick_scale_down(routes, ours, 1) == [("A", "cam/detect")]
    assert pick_scale_down(routes, ours, 5) == [("A", "cam/detect"), ("C", "cam/classify"), ("D", None),
                                                ("E", None), ("F", None)]
    # no idle worker: busy ones only, one of each module first
    assert pick_scale_down(routes, ["A", "B", "C"], 3) == [("A", "cam/detect"), ("C", "cam/classify"),
                                                           ("B", "cam/detect")]
    assert pick_scale_down(routes, ["X"], 1) == [("X", None)]  # nothing of ours routed: the caller skips


def test_only_names_scenarios_of_the_suite():
    assert _only(None) == []
    assert _only("worker-sigterm, scale-down") == ["worker-sigterm", "scale-down"]
    assert _only("worker-sigterm,nope") is None and _only(",") is None


def _left(address: str, module: str | None, **kw) -> dict:
    return {"role": "w0", "address": address, "id": "worker-1", "module": module, "code": 0, "exit_s": 2.7,
            "left_s": 2.5, "gave_up": False, **kw}


def test_workers_sent_sigterm_are_judged_on_the_frames_their_exits_their_leave_and_the_plan_after():
    ok = [Frame("cam", float(t), OK, 50.0) for t in range(100)]
    r = ScenarioResult(5, "scale-down", "scale down under load", fault="SIGTERM 3 of 6 workers", extra={
        "stopped": [_left("A", "cam/detect"), _left("C", "cam/classify"), _left("D", None, left_s=0.0, exit_s=0.2)],
        "left_plan_s": 2.5, "restart_ready_s": 1.1, "since_fault": {"sent": 50, "ok": 50, "failed": {}},
        "plan_after": {"unrouted": [], "stopped_routed": [], "refused": {}, "modules": 2, "workers": 3,
                       "plan": "cam/classify: batch 1 x 1 workers; cam/detect: batch 1 x 2 workers"}})
    r.outcome = summarize(ok, {"cam": 400.0}, 0.0, 200.0, 50.0)
    goals = _goals(r)
    assert all(met for met, _ in goals.values()) and len(goals) == 7, goals
    exited = f"each exited 0 within {LEAVE_EXIT_GOAL_S:g} s"
    assert goals[exited] == (True, "3 exited 0 after 2.70 s, 2.70 s, 0.20 s")
    frames = "every frame from the SIGTERM on OK within its SLO"
    assert goals[frames] == (True, "50/50 OK")
    replan = f"a plan without them in force within {LEAVE_REPLAN_GOAL_S:g} s"

    def missed(**changes) -> dict[str, tuple[bool, str]]:
        evicted = changes.pop("_evicted", 0)
        changed = ScenarioResult(5, "scale-down", "scale down under load", extra={**r.extra, **changes},
                                 evicted=evicted)
        changed.outcome = r.outcome
        return {name: g for name, g in _goals(changed).items() if not g[0]}

    assert missed(stopped=[_left("A", "cam/detect", code=1)]) == {exited: (False, "A: code 1 after 2.70 s")}
    assert missed(stopped=[_left("A", "cam/detect", code=None, exit_s=None)]) == {
        exited: (False, "A: still running")}
    assert missed(stopped=[_left("A", "cam/detect", exit_s=LEAVE_EXIT_GOAL_S + 1)]).keys() == {exited}
    assert list(missed(stopped=[_left("A", "cam/detect", left_s=None)])) == ["each let go, not evicted"]
    assert "gave up" in missed(stopped=[_left("A", "cam/detect", gave_up=True)])["each let go, not evicted"][1]
    assert list(missed(_evicted=1)) == ["each let go, not evicted"]
    assert list(missed(stopped=[])) == [exited, "each let go, not evicted"]
    assert missed(left_plan_s=None) == {replan: (False, "no plan after they left")}
    assert list(missed(left_plan_s=LEAVE_REPLAN_GOAL_S + 0.1)) == [replan]
    served = "that plan serves every app with the remaining workers"
    assert missed(plan_after={**r.extra["plan_after"], "unrouted": ["cam/classify"], "stopped_routed": ["C"]}) == {
        served: (False, "not routed: ['cam/classify']; still routed to: ['C']")}
    assert list(missed(plan_after={})) == [served]
    assert missed(since_fault={"sent": 51, "ok": 49, "failed": {"DEADLINE_EXCEEDED": 1}, "vanished": 1}) == {
        frames: (False, "49/51 OK, failed DEADLINE_EXCEEDED 1, 1 vanished")}
    assert list(missed(since_fault={})) == [frames]  # no frame sent after the fault: nothing shown
    r.goals = goals_of(r)
    r.back_s = 4.2
    text = build_markdown([r], {"command": "x", "machine": "m", "run_s": 1.0, "load": "0", "mode": "loopback",
                                "mode_note": "", "workers": 6, "config": "c", "apps": "a", "plan": "p", "timing": "t"})
    assert ("A (cam/detect): let go 2.50 s after the SIGTERM, exited with code 0 after 2.70 s; C (cam/classify): "
            "let go 2.50 s after the SIGTERM") in text
    assert ("D (idle): let go 0.00 s after the SIGTERM, exited with code 0 after 0.20 s; frames sent from the "
            "SIGTERM on: 50 of 50 OK within the SLO;") in text
    assert ("the plan without them in force 2.50 s after the SIGTERM: cam/classify: batch 1 x 1 workers; "
            "cam/detect: batch 1 x 2 workers; started again, they were listening after 1.10 s; back 4.20 s after "
            "they started again.") in text


def test_configuration_pushes_are_told_apart_no_op_reload_load_unload():
    lines = [(1.0, "loading module cam/detect@b1 (yolo9000, batch 1) on emulated:t4"),
             (1.1, "configuration 5 in force: ['cam/detect@b1']"),
             (2.0, "configuration 6 in force: ['cam/detect@b1']"),
             (3.0, "loading module cam/detect@b1 (yolo9000, batch 1) on emulated:t4"),
             (3.1, "configuration 7 in force: ['cam/detect@b1']"),
             (4.0, "configuration 8 in force: []; unloaded ['cam/detect@b1']")]
    pushes = config_pushes(lines)
    assert [(p.loaded, p.reloaded, p.unloaded, p.noop) for p in pushes] == [
        (("cam/detect@b1",), (), (), False), ((), (), (), True), ((), ("cam/detect@b1",), (), False),
        ((), (), ("cam/detect@b1",), False)]


def test_the_verdict_names_each_goal_missed_with_its_figures():
    r = ScenarioResult(2, "worker-kill", "worker kill -9")
    r.outcome = summarize([Frame("cam", 14.0, "UNAVAILABLE", 1.0)], {"cam": 400.0}, 0.0, 20.0, fault_at=10.0)
    goals = {g.name: (g.met, g.detail) for g in goals_of(r)}
    assert goals["0 vanished"] == (True, "0 vanished")
    assert goals[f"routed around within {DISRUPTION_GOAL_S:g} s"] == (False, "disruption 4.00 s")
    hostile = ScenarioResult(9, "hostile", "hostile calls", extra={
        "calls": [_call("Register", "none", "OK"), _control("Health", OK)], "plan_changed": []})
    assert [g.met for g in goals_of(hostile)] == [True, True, False, True, True]


def _goals(r: ScenarioResult) -> dict[str, tuple[bool, str]]:
    return {g.name: (g.met, g.detail) for g in goals_of(r)}


def test_the_new_scenarios_goals_are_judged_on_their_figures():
    ok = [Frame("cam", float(t), OK, 50.0) for t in range(100)]
    lull = ScenarioResult(14, "lull", "lull", extra={"recovered_ok": 98, "recovered_sent": 100})
    lull.outcome = summarize(ok, {"cam": 400.0}, 0.0, 200.0, 0.0)
    assert _goals(lull)[f">= {LULL_GOAL:.0%} OK from 10 s after the rate returns"] == (False, "98/100 OK")
    lull.extra["recovered_ok"] = 99
    assert all(met for met, _ in _goals(lull).values())
    flood = ScenarioResult(11, "big-messages", "flood", extra={"flood": {"sent": 4, "codes": {"RESOURCE_EXHAUSTED": 4}}})
    flood.outcome = summarize([*ok, Frame("cam", 5.5, "DEADLINE_EXCEEDED", 400.0)], {"cam": 400.0}, 0.0, 200.0, 0.0)
    assert _goals(flood)[f"the other clients lose <= {FLOOD_GOAL:.0%} of their frames"] == (True, "1/101 not OK")
    flood.extra["flood"]["codes"] = {"DEADLINE_EXCEEDED": 1, "RESOURCE_EXHAUSTED": 3}  # one hung: not answered
    assert not _goals(flood)["every big message answered"][0]
    health = ScenarioResult(10, "health-abuse", "abuse", extra={"health": {
        "frontend": {"checks": 20, "ok": 20, "max_ms": 3.0}, "controller": {"checks": 20, "ok": 19, "max_ms": 1000.0}}})
    assert not _goals(health)[f"every Check SERVING within {CHECK_TIMEOUT_S:g} s"][0]
    kill = ScenarioResult(13, "serve-kill", "serve", extra={
        "orphans": {"children": 4, "survivors": [], "outlived_s": ORPHAN_GOAL_S + 0.5}, "keys_left": [], "ca_keys_left": []})
    goals = _goals(kill)
    assert not goals[f"its processes gone within {ORPHAN_GOAL_S:g} s"][0] and goals["no CA key left"][0]
    kill.extra["orphans"] = {"children": 4, "survivors": [], "outlived_s": 0.1}
    kill.extra["ca_keys_left"] = ["x/ca.key"]
    goals = _goals(kill)
    assert goals[f"its processes gone within {ORPHAN_GOAL_S:g} s"][0] and not goals["no CA key left"][0]


def test_one_of_two_frontends_killed_is_judged_on_both_clients_and_the_replan():
    ok = [Frame("cam", float(t), OK, 50.0) for t in range(100)]
    r = ScenarioResult(6, "frontend-of-two-kill", "two", extra={
        "second_client": {"sent": 40, "ok": 30, "late": 0, "vanished": 0, "failed": "UNAVAILABLE 10"},
        "alone_plan_s": 1.2})
    r.outcome = summarize(ok, {"cam": 400.0}, 0.0, 200.0, 0.0)
    goals = _goals(r)
    assert all(met for met, _ in goals.values()) and len(goals) == 5, goals
    r.extra["second_client"]["vanished"] = 1  # a frame of the killed frontend's clients got no status
    assert not _goals(r)["the killed frontend's clients: every frame answered or failed"][0]
    r.extra["second_client"]["vanished"] = 0
    r.extra["alone_plan_s"] = FRONTEND_LEFT_GOAL_S + 0.1
    assert not _goals(r)[f"re-planned for one frontend within {FRONTEND_LEFT_GOAL_S:g} s"][0]
    r.extra["alone_plan_s"] = 1.2
    r.outcome = summarize([*ok, Frame("cam", 5.5, "UNAVAILABLE", 3.0)], {"cam": 400.0}, 0.0, 200.0, 0.0)
    assert not _goals(r)["no frame failed"][0]  # the survivor's clients lost one
    r.fault, r.extra["shared_plan_s"] = "kill -9 the second frontend", 0.9
    r.goals = goals_of(r)
    text = build_markdown([r], {"command": "x", "machine": "m", "run_s": 1.0, "load": "0", "mode": "loopback",
                                "mode_note": "", "workers": 2, "config": "c", "apps": "a", "plan": "p", "timing": "t"})
    assert ("the plan sharing the app with the second frontend was in force 0.90 s after it started; kill -9 the "
            "second frontend; its clients sent 40 frames: 30 OK, failed UNAVAILABLE 10, 0 vanished, 0 late") in text
    assert "the plan for one frontend was in force 1.20 s after the kill" in text


def test_a_stopped_frontends_answer_held_in_the_process_is_reported_apart():
    r = ScenarioResult(5, "frontend-stop", "frontend SIGSTOP", fault_at=10.0, extra={"late_frozen": 1})
    r.outcome = summarize([Frame("cam", 9.96, OK, 3061.0), Frame("cam", 9.0, OK, 50.0)], {"cam": 400.0}, 0.0,
                          20.0, 10.0)
    assert _goals(r)["0 late successes"][0] and "1 answered before the frontend was stopped" in \
        _goals(r)["0 late successes"][1]
    r.outcome = summarize([Frame("cam", 9.96, OK, 3061.0), Frame("cam", 13.5, OK, 900.0)], {"cam": 400.0}, 0.0,
                          20.0, 10.0)
    assert not _goals(r)["0 late successes"][0]  # one taken after the stop and late: a late success


def test_the_process_tree_and_when_each_of_it_exits(tmp_path):
    """What the orphan goals are judged with: a grandchild is in the tree, and its exit is seen."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        for _ in range(100):  # the grandchild is up
            tree = process_tree(parent.pid)
            if len(tree) == 1:
                break
            time.sleep(0.05)
        assert len(tree) == 1 and all(running(p) for p in tree)
        watch = ExitWatch(tree, time.time() + 10.0)
        t0 = time.time()
        os.kill(tree[0][0], signal.SIGKILL)
        got = watch.result(t0)
        assert got["children"] == 1 and got["survivors"] == [] and 0 <= got["outlived_s"] < 5
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def _call(name: str, creds: str, code: str) -> dict:
    expected = EXPECTED_REFUSAL[creds]
    return {"call": name, "credentials": creds, "code": code, "expected": expected, "as_expected": code == expected,
            "control": False}


def _control(name: str, code: str) -> dict:
    return {"call": name, "credentials": "our CA, allowed role", "code": code, "expected": OK,
            "as_expected": code == OK, "control": True}


def _hostile_goals(calls: list[dict]) -> dict[str, tuple[bool, str]]:
    r = ScenarioResult(9, "hostile", "hostile calls", extra={"calls": calls, "plan_changed": []})
    return {g.name: (g.met, g.detail) for g in goals_of(r)}


def test_hostile_calls_must_be_refused_for_the_right_reason_and_the_control_must_pass():
    right = [_call("Register", "none", "UNAVAILABLE"), _call("Register", "foreign", "UNAVAILABLE"),
             _call("Register", "ours", "PERMISSION_DENIED")]
    goals = _hostile_goals([*right, _control("Worker/Health", OK)])
    assert goals["every hostile call refused"] == (True, "3/3 refused as expected")
    assert goals["allowed control calls answered OK"] == (True, "1/1 OK")
    # an unreachable address: every call UNAVAILABLE or timed out, the control too -> not met, twice
    unreachable = [_call("Register", "none", "UNAVAILABLE"), _call("Register", "foreign", "UNAVAILABLE"),
                   _call("Register", "ours", "UNAVAILABLE"), _control("Worker/Health", "UNAVAILABLE")]
    goals = _hostile_goals(unreachable)
    assert goals["every hostile call refused"][0] is False
    assert "wrong status" in goals["every hostile call refused"][1] and "not PERMISSION_DENIED" in \
        goals["every hostile call refused"][1]
    assert goals["allowed control calls answered OK"][0] is False
    assert _hostile_goals([*right, _call("x", "none", "DEADLINE_EXCEEDED"), _control("h", OK)])[
        "every hostile call refused"][0] is False
    # no control call at all proves nothing either
    assert _hostile_goals(right)["allowed control calls answered OK"] == (False, "no control call")
    # the report's table shows the control row and each call's verdict
    r = ScenarioResult(9, "hostile", "hostile control-plane calls", extra={
        "calls": [*right, _call("ReportRates", "ours", "OK"), _control("Worker/Health", OK)], "plan_changed": []})
    r.goals = goals_of(r)
    text = build_markdown([r], {"command": "x", "machine": "m", "run_s": 1.0, "load": "0", "mode": "loopback",
                                "mode_note": "", "workers": 2, "config": "c", "apps": "a", "plan": "p", "timing": "t"})
    assert "| Worker/Health (control) | our CA, allowed role | OK | OK | OK (control) |" in text
    assert "| ReportRates | ours | PERMISSION_DENIED | OK | **LET IN** |" in text
    assert "| Register | ours | PERMISSION_DENIED | PERMISSION_DENIED | refused |" in text


def test_a_controller_restart_with_no_push_parsed_is_not_a_pass():
    r = ScenarioResult(6, "controller-kill", "controller kill -9", extra={
        "converge_s": 1.0, "unloaded_routed": [], "routes_same": True, "pushes": 0})
    goal = next(g for g in goals_of(r) if g.name == "no routed module unloaded")
    assert not goal.met and "no configuration push parsed" in goal.detail
    r.extra["pushes"] = 6
    goal = next(g for g in goals_of(r) if g.name == "no routed module unloaded")
    assert goal.met, goal.detail


def test_a_frame_sent_without_an_outcome_counts_as_vanished(tmp_path):
    path = tmp_path / "load.jsonl"
    recs = [{"id": 0, "app": "cam", "t": 10.0}, {"id": 1, "app": "cam", "t": 10.1},
            {"id": 0, "app": "cam", "t": 10.0, "code": OK, "ms": 30.0},
            {"id": 2, "app": "cam", "t": 10.2}]  # the client died: 1 and 2 never answered
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tail = RecordTail(path, {"cam": 10.4})
    assert [f.code for f in tail.read()] == [OK]  # while the client runs, in flight is not lost
    frames = tail.final()
    assert sorted((f.t, f.code) for f in frames) == [(10.0, OK), (10.1, VANISHED), (10.2, VANISHED)]
    o = summarize(frames, {"cam": 400.0}, 0.0, 20.0, None)
    assert (o.sent, o.ok, o.vanished) == (3, 1, 2)


def test_the_load_client_records_frames_it_gives_up_on_as_vanished(tmp_path, monkeypatch):
    """A call that never ends (its deadline not honoured) is written VANISHED when the client gives up,
    not cancelled silently with the event loop."""
    from tritonclient.grpc import service_pb2_grpc

    calls = []

    class Stub:
        def __init__(self, channel):
            pass

        async def ModelInfer(self, request, timeout):  # the gRPC method's name
            calls.append(request.model_name)
            if len(calls) % 2 == 0:
                await asyncio.sleep(3600)  # hangs past every timeout

    monkeypatch.setattr(service_pb2_grpc, "GRPCInferenceServiceStub", Stub)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "load.jsonl"
    spec = {"address": f"127.0.0.1:{port}", "frame_shape": [4, 4, 3], "start_at": 0.0, "seconds": 0.5,
            "vanish_after_s": 0.1, "grace_s": 0.2, "apps": [{"name": "cam", "rate": 20.0, "slo_ms": 50.0}]}
    asyncio.run(stream_frames(spec, out))
    tail = RecordTail(out, {"cam": 0.15})
    frames = tail.final()
    assert tail.summary is not None and tail.summary["sent"] == tail.sent == len(calls) == len(frames) == 10
    assert sorted(f.code for f in frames) == [OK] * 5 + [VANISHED] * 5


def test_each_scenarios_figures_come_from_its_window_of_frames_and_controller_lines():
    slo = {"cam": 400.0}
    first = ScenarioResult(1, "baseline", "baseline", start=0.0)
    stop = ScenarioResult(5, "frontend-stop", "frontend SIGSTOP", start=10.0, fault_at=12.0)
    steady = [Frame("cam", 1.0, OK, 50.0), Frame("cam", 11.0, OK, 900.0),  # late, sent before the stop
              Frame("cam", 13.0, "DEADLINE_EXCEEDED", 400.0)]
    burst = [Frame("cam", 14.0, OK, 950.0)]
    lines = [(12.5, "plan 4 in force"), (13.0, "worker w at 10.0.0.5:9000 removed: missed 3 heartbeats")]
    fill_figures([first, stop], steady, burst, {"client_lag_ms_max": [[11.5, 30.0], [2.0, 99.0]]}, lines, slo,
                 stopped=20.0, lull_after_s=20.0)
    assert (first.outcome.sent, first.outcome.ok, first.evicted, first.replan_s) == (1, 1, 0, None)
    assert first.met and "late_ms_max" not in first.extra
    assert (stop.outcome.sent, stop.outcome.late, stop.evicted) == (3, 2, 1)
    assert stop.replan_s == pytest.approx(0.5)
    assert stop.extra["late_frozen"] == 1 and stop.extra["late_ms_max"] == 950.0
    assert (stop.extra["late_steady"], stop.extra["late_burst"]) == (1, 1)
    assert stop.extra["late_sent_s"] == [-1.0, 2.0] and stop.extra["client_lag_ms_max"] == 30.0
    assert [g.name for g in stop.goals if not g.met] == ["0 late successes"]  # one late after the stop


def test_a_leave_is_judged_on_the_frames_from_the_sigterm_on():
    """A frame the steady phase lost before the SIGTERM counts in the table, not against the leave."""
    slo = {"cam": 400.0}
    r = ScenarioResult(4, "worker-sigterm", "SIGTERM a busy worker", start=0.0, fault_at=5.0)
    frames = [Frame("cam", 1.0, "DEADLINE_EXCEEDED", 400.0), *(Frame("cam", t, OK, 50.0) for t in (2.0, 6.0, 9.0))]
    fill_figures([r], frames, [], {}, [(7.5, "plan 9 in force")], slo, stopped=10.0, lull_after_s=20.0)
    assert (r.outcome.sent, r.outcome.ok, r.replan_s) == (4, 3, 2.5)
    assert r.extra["since_fault"] == {"sent": 2, "ok": 2, "failed": {}, "vanished": 0, "late": 0}
    assert _goals(r)["every frame from the SIGTERM on OK within its SLO"] == (True, "2/2 OK")
    fill_figures([r], [*frames, Frame("cam", 8.0, "UNAVAILABLE", 1.0)], [], {}, [], slo, stopped=10.0,
                 lull_after_s=20.0)
    assert _goals(r)["every frame from the SIGTERM on OK within its SLO"] == (False, "2/3 OK, failed UNAVAILABLE 1")


def test_only_dead_runs_namespaces_of_this_suites_naming_are_reaped():
    names = ["hp-4026531836-100-a1b2c3-br", "hp-4026531836-100-a1b2c3-w3",  # dead run: reaped
             "hp-4026531836-200-d4e5f6-ctl",  # its run is alive
             "hp-4026531837-100-a1b2c3-fe",  # another PID namespace: its PIDs mean nothing here
             "hp-a1b2c3-ctl",  # an older naming (no PID): whose it is cannot be told
             "hp-4026531836-100-a1b2c3-eth9", "hp-something-else", "other"]
    assert stale_namespaces(names, "4026531836", lambda pid: pid == 200) == [
        "hp-4026531836-100-a1b2c3-br", "hp-4026531836-100-a1b2c3-w3"]


# --- the suite ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "faults.md"
    results, meta = run_suite(out, quick=True, command="harpagon bench faults --quick")
    return {r.key: r for r in results}, meta, out


def _figures(r) -> str:
    o = r.outcome
    return (f"{r.title}: sent {o.sent}, OK {o.ok}, failed {o.failed}, vanished {o.vanished}, late {o.late}, "
            f"disruption {o.disruption_s}, re-plan {r.replan_s}, evicted {r.evicted}, extra {r.extra}")


def _ran(results, key):
    r = results[key]
    if r.skipped:
        pytest.skip(f"{r.title}: {r.skipped}")
    return r


@integration
def test_every_scenario_ran_and_the_report_says_so(suite):
    results, meta, out = suite
    assert list(results) == [key for key, _ in SCENARIOS]
    errors = {k: r.skipped for k, r in results.items() if r.skipped and r.skipped.startswith("error")}
    assert not errors, errors
    if meta["mode"] == "netns":
        assert not results["partition"].skipped
    text = out.read_text()
    assert f"**Mode: {meta['mode']}.**" in text and "| # | scenario |" in text
    for _, title in SCENARIOS:
        assert title in text
    for r in results.values():
        assert r.skipped or r.outcome.sent > 0, r.title


@integration
@pytest.mark.parametrize("key", [key for key, _ in SCENARIOS])
def test_no_frame_vanishes_and_no_success_is_late(suite, key):
    r = _ran(suite[0], key)
    assert r.outcome.vanished == 0, _figures(r)
    assert r.outcome.late - r.extra.get("late_frozen", 0) == 0, _figures(r)  # see goals_of()


@integration
def test_the_baseline_serves_every_frame(suite):
    r = _ran(suite[0], "baseline")
    assert r.outcome.sent > 0 and r.outcome.ok == r.outcome.sent, _figures(r)


@integration
@pytest.mark.parametrize("key", ["worker-kill", "worker-stop"])
def test_a_dead_or_stalled_worker_is_routed_around_quickly(suite, key):
    r = _ran(suite[0], key)
    assert r.outcome.disruption_s is not None and r.outcome.disruption_s <= DISRUPTION_GOAL_S, _figures(r)


@integration
def test_a_restarted_controller_converges_without_unloading_routed_modules(suite):
    r = _ran(suite[0], "controller-kill")
    converge = r.extra.get("converge_s")
    assert converge is not None and converge <= CONVERGE_GOAL_S, _figures(r)
    assert r.extra["routes_same"], _figures(r)
    assert r.extra["pushes"] > 0, _figures(r)  # else nothing was checked
    assert r.extra["unloaded_routed"] == [], _figures(r)


@integration
def test_one_of_two_frontends_killed_costs_only_its_own_clients_frames(suite):
    r = _ran(suite[0], "frontend-of-two-kill")
    assert r.outcome.sent > 0 and r.outcome.failed_total == 0, _figures(r)  # the survivor's clients: nothing
    second = r.extra["second_client"]
    assert second["sent"] > 0 and second["vanished"] == 0 and second["late"] == 0, _figures(r)
    assert r.extra["alone_plan_s"] is not None and r.extra["alone_plan_s"] <= FRONTEND_LEFT_GOAL_S, _figures(r)


@integration
@pytest.mark.parametrize("key", ["worker-sigterm", "scale-down"])
def test_workers_sent_sigterm_leave_without_costing_a_frame(suite, key):
    r = _ran(suite[0], key)
    since = r.extra["since_fault"]
    assert since["sent"] > 0 and since["ok"] == since["sent"], _figures(r)
    stopped = r.extra["stopped"]
    assert len(stopped) == (1 if key == "worker-sigterm" else 3) and any(w["module"] for w in stopped), _figures(r)
    assert all(w["code"] == 0 and w["exit_s"] <= LEAVE_EXIT_GOAL_S for w in stopped), _figures(r)
    assert all(w["left_s"] is not None and not w["gave_up"] for w in stopped) and r.evicted == 0, _figures(r)
    assert r.extra["left_plan_s"] is not None and r.extra["left_plan_s"] <= LEAVE_REPLAN_GOAL_S, _figures(r)
    after = r.extra["plan_after"]
    assert not after["unrouted"] and not after["stopped_routed"] and not after["refused"], _figures(r)


@integration
def test_overload_evicts_no_healthy_worker(suite):
    r = _ran(suite[0], "overload")
    assert r.evicted == 0, _figures(r)
    # beyond capacity frames are refused or dropped with a status, never lost
    assert r.outcome.failed_total > 0 and set(r.outcome.failed) <= {"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, \
        _figures(r)


@integration
def test_every_hostile_call_is_refused_and_the_plan_stays(suite):
    r = _ran(suite[0], "hostile")
    calls = [c for c in r.extra["calls"] if not c["control"]]
    controls = [c for c in r.extra["calls"] if c["control"]]
    assert len(calls) == 12, calls
    # refused for the right reason: the handshake without our CA, the role check with it
    assert all(c["code"] == EXPECTED_REFUSAL["ours"] for c in calls if "wrong role" in c["credentials"]), calls
    assert all(c["as_expected"] for c in calls), [c for c in calls if not c["as_expected"]]
    # the positive control: the same servers, reachable, answer an allowed call
    assert len(controls) == 2 and all(c["code"] == OK for c in controls), controls
    assert r.extra["plan_changed"] == [], _figures(r)


@integration
def test_health_checks_answer_while_the_health_port_is_abused(suite):
    r = _ran(suite[0], "health-abuse")
    health = r.extra["health"]
    assert set(health) == {"frontend", "controller"}, _figures(r)
    assert all(h["ok"] == h["checks"] == ABUSE_CHECKS for h in health.values()), _figures(r)


@integration
def test_a_big_message_flood_is_answered_and_costs_the_others_next_to_nothing(suite):
    r = _ran(suite[0], "big-messages")
    assert r.extra["flood"]["sent"] > 0, _figures(r)
    assert r.outcome.sent - r.outcome.ok <= FLOOD_GOAL * r.outcome.sent, _figures(r)


@integration
def test_a_worker_answering_internal_costs_no_frame(suite):
    r = _ran(suite[0], "worker-internal")
    assert r.outcome.sent > 0 and r.outcome.failed_total == 0, _figures(r)
    assert r.extra["suspect_lines"] > 0, _figures(r)  # it was made suspect


@integration
def test_nothing_outlives_a_killed_serve_or_controller(suite):
    r = _ran(suite[0], "serve-kill")
    assert r.extra["orphans"]["children"] >= 3 and r.extra["orphans"]["survivors"] == [], _figures(r)
    assert r.extra["orphans"]["outlived_s"] <= ORPHAN_GOAL_S and r.extra["ca_keys_left"] == [], _figures(r)
    c = _ran(suite[0], "controller-kill")
    assert c.extra["orphans"]["survivors"] == [] and c.extra["orphans"]["outlived_s"] <= ORPHAN_GOAL_S, _figures(c)


@integration
def test_after_a_lull_the_plan_grows_back_in_time(suite):
    r = _ran(suite[0], "lull")
    assert r.extra["recovered_sent"] > 0, _figures(r)
    assert r.extra["recovered_ok"] >= LULL_GOAL * r.extra["recovered_sent"], _figures(r)


@integration
def test_every_goal_is_met(suite):
    missed = {r.title: [(g.name, g.detail) for g in r.goals if not g.met]
              for r in suite[0].values() if not r.skipped and not r.met}
    assert not missed, missed
