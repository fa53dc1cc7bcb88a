"""`harpagon bench faults`: the live system under crashes, stalls, a partition, overload and hostile
calls, each process a host of its own.

A cluster of separate processes, 1 controller, 1 frontend and N emulated workers (batches sleep their
profiled latency: no GPU), under mutual TLS with certificates made as `harpagon certs` makes them.
Where this process may (root, `ip netns`), each component runs in its own network namespace, joined by
veth pairs to a bridge in a namespace of its own (10.x addresses, nothing changed in the host's
namespace), so that a partition is a pair of blackhole routes; otherwise everything listens on
127.0.0.1 and the partition scenario is skipped (the report says which mode ran).

A load process streams each app's frames at its planned rate, evenly spaced, for the whole suite
(a second one adds 9x that rate during the overload), and records each frame when it sends it, then its
outcome (OK or the status code) and its client-measured latency. Its timeout is the SLO + VANISH_AFTER_S: a
frame without any answer by then VANISHED, and so does a frame sent with no outcome ever recorded (the
client gave up on it, or died); an OK answer later than the SLO + CLIENT_HOP_MS is a LATE success.
The client's stderr goes to a file in the suite's temporary folder (in error messages and `--logs`).

Scenarios, in order (each: steady load, the fault, observation, heal or restart, then a bounded wait until
the cluster is back: every worker registered, a plan in force since the last join or leave, and the
latest frames answered OK): baseline; worker kill -9 (then a replacement); worker SIGSTOP; frontend
kill -9 (then a restart); frontend SIGSTOP; controller kill -9 (then a restart; its planner process
must die with it); controller SIGSTOP; partition between the controller and one worker; hostile
control-plane calls (and an allowed control call to each server they go to, which must succeed);
health-port abuse (Watch streams and idle connections held open while probes Check); a flood of big
messages (60 MB, 4096x4096 frames) from another client; a routed worker whose device answers INTERNAL
(test-only injection, HARPAGON_EMULATED_FAULT_FILE); kill -9 of a `harpagon serve` beside the cluster
(its processes must die with it, its CA key must not be left); a lull (1/20 of the rate, then back:
the plan follows it down and must grow back); overload (10x the planned rate; last, because the
frontend's rate reports may move the plan to the overload rate for a while).

Per scenario the report gives frames sent / OK / failed with a status (per code) / vanished / late, the
disruption (from the fault to the send time of the last frame that was not answered OK within its SLO),
the re-plan (from the fault to the next `plan N in force` line of the controller), the workers the
controller evicted (`removed` lines), and a verdict against the goals (GOALS below).

The pure parts (records -> figures, verdicts, the report) take plain data; the rest drives processes.
Run `python -m harpagon.bench.faults --help`; the same module is the load generator, the route probe
and the hostile caller (`python -m harpagon.bench.faults _client|_routes|_hostile ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harpagon.runtime.worker.executor import FAULT_FILE_ENV

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "configs" / "faults.yaml"
DEFAULT_OUT = Path("docs/benchmarks/faults.md")
#: Emulated T4 workers started (the plan of configs/faults.yaml uses 3: the rest are spares).
DEFAULT_WORKERS = 6
#: An OK answer later than the SLO plus this (ms) is a late success: the client -> frontend -> client
#: hop, which the frontend cannot see (it answers with 5 ms to spare, ANSWER_MARGIN_S, plus its loop's
#: lag), on a machine whose 2 cores every process of the cluster shares. At 5 ms, about one run in
#: eight saw one answer 1-7 ms over under the 10x flood.
CLIENT_HOP_MS = 10.0
#: The client's timeout is the SLO plus this (s): a frame with no answer by then vanished.
VANISH_AFTER_S = 10.0
#: Goals (see GOALS): a dead or stalled worker routed around within this (s)...
DISRUPTION_GOAL_S = 3.0
#: ...and a restarted controller with a plan in force within this (s) of its start.
CONVERGE_GOAL_S = 5.0
#: The overload is this many times the planned rate (the steady stream plus 9x more).
OVERLOAD_FACTOR = 10.0
#: The cluster is back once nothing changed for this long (s: a heal, a join or leave, a plan)...
SETTLE_S = 2.5
#: ...and this many frames sent after the latest plan were answered OK in a row.
BACK_FRAMES = 10
#: The configuration version of the hostile ApplyConfig (the largest uint64: newer than any real one).
HOSTILE_VERSION = (1 << 64) - 1
#: A lull sends this fraction of every app's rate (1 of 20 frames/s)...
LULL_FACTOR = 0.05
#: ...and from this long after the rate is back (s), at least LULL_GOAL of the frames are OK in their SLO.
LULL_RECOVER_S = 10.0
LULL_GOAL = 0.99
#: The big messages: the 60 MB request that stalled every client, and a 4096x4096 RGB frame.
FLOOD_BYTES = (60_000_000, 4096 * 4096 * 3)
FLOOD_CONCURRENCY = 2
#: A big-message flood may cost the other clients at most this fraction of their frames.
FLOOD_GOAL = 0.01
#: Health-port abuse: Watch streams and idle connections held open while CHECKS Checks must each answer
#: SERVING within CHECK_TIMEOUT_S.
ABUSE_WATCHES, ABUSE_IDLE, ABUSE_CHECKS, CHECK_TIMEOUT_S = 64, 64, 20, 1.0
#: No process of ours outlives its parent by more than this (s).
ORPHAN_GOAL_S = 5.0
#: Status of a frame with no answer within the client's timeout, and of an OK answer.
VANISHED, OK = "VANISHED", "OK"

GOALS = (
    "every scenario: 0 frames vanished and 0 late successes",
    f"a worker killed or stalled is routed around within {DISRUPTION_GOAL_S:g} s (disruption)",
    (f"a restarted controller has a plan in force within {CONVERGE_GOAL_S:g} s of its start and unloads no "
    "routed module"),
    "overload evicts no healthy worker",
    (f"after a lull, at least {LULL_GOAL:.0%} of frames OK within their SLO from {LULL_RECOVER_S:g} s after the rate "
     "returns"),
    f"a flood of big messages costs the other clients at most {FLOOD_GOAL:.0%} of their frames",
    (f"health checks answer SERVING within {CHECK_TIMEOUT_S:g} s while {ABUSE_WATCHES} Watch streams and "
     f"{ABUSE_IDLE} idle connections are held open on the health port"),
    "a worker that answers INTERNAL costs no frame: its batches are retried on its tuple's other worker",
    (f"no process of ours outlives its parent by more than {ORPHAN_GOAL_S:g} s (kill -9 of `harpagon serve`, and of "
     "the controller: its planner process), and a killed `serve` leaves no CA key"),
    ("every hostile control-plane call is refused, each with the status that says why (PERMISSION_DENIED for a "
     "certificate of our CA with the wrong role, UNAVAILABLE without a certificate of our CA), the allowed "
     "control calls to the same servers succeed, and the plan stays as it was"),
)

#: Hostile calls: the status each kind of credentials must get. Without a certificate of our CA the TLS
#: handshake fails (UNAVAILABLE); with one of the wrong role the server refuses the method.
EXPECTED_REFUSAL = {"none": "UNAVAILABLE", "foreign": "UNAVAILABLE", "ours": "PERMISSION_DENIED"}


@dataclass(frozen=True)
class Timing:
    """Seconds of each phase of a scenario."""

    steady_s: float
    observe_s: float  # from the fault to the heal or restart (kills), or to the wait for the cluster
    worker_stop_s: float = 5.0
    frontend_stop_s: float = 3.0
    controller_stop_s: float = 5.0
    partition_s: float = 5.0
    overload_s: float = 6.0
    restart_delay_s: float = 1.0  # a supervisor restarting a dead frontend or controller
    back_timeout_s: float = 45.0  # the most a scenario waits for the cluster to be back
    lull_s: float = 45.0  # at LULL_FACTOR of the rate: long enough for the plan to follow it to the floor
    lull_after_s: float = 20.0  # observed after the rate is back (judged from LULL_RECOVER_S on)
    flood_s: float = 6.0  # big messages back to back


FULL = Timing(steady_s=3.0, observe_s=8.0)
QUICK = Timing(steady_s=1.5, observe_s=6.0, overload_s=5.0, lull_s=12.0, lull_after_s=13.0, flood_s=4.0)


# --------------------------------------------------------------------------------------------------
# Pure parts: frames -> figures, verdicts, the report.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    app: str
    t: float  # when it was sent (wall clock, s)
    code: str  # OK, a status code name, or VANISHED
    ms: float  # client-measured latency (ms)


@dataclass
class Outcome:
    """What the frames of one scenario got."""

    sent: int = 0
    ok: int = 0  # OK within the SLO (+ CLIENT_HOP_MS)
    late: int = 0  # OK, but later
    vanished: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # status code -> frames
    disruption_s: float | None = None  # None: no fault; 0: no frame after the fault went wrong
    offered_per_s: float = math.nan  # frames sent per second over the window

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


def summarize(frames: Iterable[Frame], slo_ms: dict[str, float], start: float, end: float,
              fault_at: float | None) -> Outcome:
    """The frames sent in [start, end): counts per outcome, and the disruption: the send time of the
    last frame not answered OK within its SLO (+ CLIENT_HOP_MS), minus `fault_at` (0 when every frame sent
    after the fault was)."""
    out = Outcome()
    last_bad: float | None = None
    for f in frames:
        if not start <= f.t < end:
            continue
        out.sent += 1
        bad = True
        if f.code == OK:
            if f.ms <= slo_ms.get(f.app, math.inf) + CLIENT_HOP_MS:
                out.ok += 1
                bad = False
            else:
                out.late += 1
        elif f.code == VANISHED:
            out.vanished += 1
        else:
            out.failed[f.code] = out.failed.get(f.code, 0) + 1
        if bad and (last_bad is None or f.t > last_bad):
            last_bad = f.t
    if fault_at is not None:
        out.disruption_s = max(0.0, last_bad - fault_at) if last_bad is not None and last_bad >= fault_at else 0.0
    if end > start:
        out.offered_per_s = out.sent / (end - start)
    return out


def frame_of(record: dict, timeout_s: float) -> Frame:
    """A load-generator record as a Frame: DEADLINE_EXCEEDED at the client's own timeout is VANISHED."""
    code = record["code"]
    if code == "DEADLINE_EXCEEDED" and record["ms"] >= (timeout_s - 0.05) * 1000.0:
        code = VANISHED
    return Frame(record["app"], float(record["t"]), code, float(record["ms"]))


@dataclass
class Goal:
    name: str
    met: bool
    detail: str


@dataclass
class ScenarioResult:
    number: int
    key: str
    title: str
    fault: str = ""  # what was done, to whom
    start: float = 0.0
    fault_at: float | None = None
    end: float = 0.0
    skipped: str | None = None  # why the scenario did not run
    outcome: Outcome = field(default_factory=Outcome)
    replan_s: float | None = None  # fault -> next `plan N in force` (None: none in the window)
    evicted: int = 0
    back_s: float | None = None  # heal/restart -> the cluster is back (None: it was not, in time)
    extra: dict[str, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return all(g.met for g in self.goals)


def judge(r: ScenarioResult) -> list[Goal]:
    """The goals of a scenario, met or not, each with the figures it was judged on.

    A frame the frontend answered in time, whose answer was still in the process when it was stopped
    (SIGSTOP), reaches its client late: nothing in the process can help it once the answer is handed
    to gRPC. So the frontend-stop scenario counts such frames (`late_frozen`: sent before the stop and
    late; a frame the frontend takes after the stop is charged the stop, and dropped) apart from the
    late-success goal, and says how many."""
    if r.skipped:
        return []
    o = r.outcome
    frozen = r.extra.get("late_frozen", 0)
    goals = [Goal("0 vanished", o.vanished == 0, f"{o.vanished} vanished"),
             Goal("0 late successes", o.late - frozen == 0,
                  f"{o.late} late" + (f" ({frozen} answered before the frontend was stopped, delivered after "
                                      "it went on)" if frozen else ""))]
    if r.key in ("worker-kill", "worker-stop"):
        d = o.disruption_s if o.disruption_s is not None else math.inf
        goals.append(Goal(f"routed around within {DISRUPTION_GOAL_S:g} s", d <= DISRUPTION_GOAL_S,
                          f"disruption {d:.2f} s"))
    if r.key == "controller-kill":
        c = r.extra.get("converge_s")
        goals.append(Goal(f"plan in force within {CONVERGE_GOAL_S:g} s of the restart",
                          c is not None and c <= CONVERGE_GOAL_S,
                          f"converged in {c:.2f} s" if c is not None else "no plan in force"))
        unloaded = r.extra.get("unloaded_routed", [])
        moved = r.extra.get("routes_same") is False
        pushes = r.extra.get("pushes") or 0
        # no push parsed at all: nothing was checked (the workers' `configuration N in force` lines missing)
        goals.append(Goal("no routed module unloaded", pushes > 0 and not unloaded and not moved,
                          ("no configuration push parsed from the workers' logs after the restart (no "
                           "`configuration N in force` line): cannot tell" if pushes == 0
                           else f"unloaded {unloaded}" if unloaded else f"none unloaded in {pushes} pushes")
                          + ("; routes moved" if moved else "; same routes" if r.extra.get("routes_same") else "")))
    if r.key == "overload":
        goals.append(Goal("no worker evicted", r.evicted == 0, f"{r.evicted} evicted"))
    if r.key == "controller-kill" and "orphans" in r.extra:
        goals.append(_orphan_goal(r.extra["orphans"]))
    if r.key == "lull":
        ok, sent = r.extra.get("recovered_ok", 0), r.extra.get("recovered_sent", 0)
        goals.append(Goal(f">= {LULL_GOAL:.0%} OK from {LULL_RECOVER_S:g} s after the rate returns",
                          sent > 0 and ok >= LULL_GOAL * sent, f"{ok}/{sent} OK"))
    if r.key == "big-messages":
        lost = o.sent - o.ok
        goals.append(Goal(f"the other clients lose <= {FLOOD_GOAL:.0%} of their frames",
                          o.sent > 0 and lost <= FLOOD_GOAL * o.sent, f"{lost}/{o.sent} not OK"))
        flood = r.extra.get("flood", {})
        unanswered = {c: n for c, n in flood.get("codes", {}).items() if c.startswith("CLIENT") or c == "DEADLINE_EXCEEDED"}
        goals.append(Goal("every big message answered", flood.get("sent", 0) > 0 and not unanswered,
                          f"{flood.get('sent', 0)} sent: {_codes(flood.get('codes', {}))}"))
    if r.key == "health-abuse":
        health = r.extra.get("health", {})
        short = {name: f"{h['ok']}/{h['checks']}" for name, h in health.items() if h["ok"] < h["checks"]}
        goals.append(Goal(f"every Check SERVING within {CHECK_TIMEOUT_S:g} s", bool(health) and not short,
                          "; ".join(f"{name}: {h['ok']}/{h['checks']} (max {h['max_ms']:.0f} ms)"
                                    for name, h in health.items()) or "no target"))
    if r.key == "worker-internal":
        goals.append(Goal("no frame failed", o.sent > 0 and o.failed_total == 0, f"{o.failed_total} failed"))
    if r.key == "serve-kill":
        goals.append(_orphan_goal(r.extra.get("orphans", {})))
        ca = r.extra.get("ca_keys_left", [])
        goals.append(Goal("no CA key left", "keys_left" in r.extra and not ca, f"left: {ca}" if ca else "none left"))
    if r.key == "hostile":
        calls = r.extra.get("calls", [])
        hostile = [c for c in calls if not c.get("control")]
        controls = [c for c in calls if c.get("control")]
        let_in = [f"{c['call']} ({c['credentials']})" for c in hostile if c["code"].startswith(OK)]
        wrong = [f"{c['call']} ({c['credentials']}): {c['code']}, not {c['expected']}" for c in hostile
                 if not c["code"].startswith(OK) and not c["as_expected"]]
        goals.append(Goal("every hostile call refused", bool(hostile) and not let_in and not wrong,
                          f"{sum(c['as_expected'] for c in hostile)}/{len(hostile)} refused as expected"
                          + (f"; let in: {let_in}" if let_in else "") + (f"; wrong status: {wrong}" if wrong else "")))
        # the positive control: the same servers answer an allowed call (else every refusal may be an
        # unreachable address or a dead server)
        failed = [f"{c['call']} ({c['credentials']}): {c['code']}" for c in controls if not c["as_expected"]]
        goals.append(Goal("allowed control calls answered OK", bool(controls) and not failed,
                          (f"{len(controls) - len(failed)}/{len(controls)} OK" if controls else "no control call")
                          + (f"; failed: {failed}" if failed else "")))
        changed = r.extra.get("plan_changed", [])
        goals.append(Goal("plan unchanged", not changed, "; ".join(changed) or "unchanged"))
    return goals


def _orphan_goal(orphans: dict) -> Goal:
    """Every process the killed one had started gone within ORPHAN_GOAL_S."""
    n, last, left = orphans.get("children", 0), orphans.get("outlived_s"), orphans.get("survivors", [])
    return Goal(f"its processes gone within {ORPHAN_GOAL_S:g} s", n > 0 and not left and last is not None
                and last <= ORPHAN_GOAL_S, (f"{n} processes, the last gone after {last:.2f} s" if not left and last is not None
                                            else f"{len(left)} of {n} still running: {left}"))


def _orphans(o: dict) -> str:
    if o.get("survivors"):
        return f"{len(o['survivors'])} of {o.get('children', 0)} processes still running after the kill"
    return f"{o.get('children', 0)} processes, the last gone {_s(o.get('outlived_s'))} s after the kill"


def _s(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _codes(failed: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(failed.items(), key=lambda kv: (-kv[1], kv[0]))) or "0"


def table_rows(results: Sequence[ScenarioResult]) -> list[list[str]]:
    rows = []
    for r in results:
        if r.skipped:
            rows.append([str(r.number), r.title, f"skipped: {r.skipped}", *["-"] * 9])
            continue
        o = r.outcome
        failed = f"{o.failed_total}" + (f" ({_codes(o.failed)})" if o.failed else "")
        verdict = "met" if r.met else "**MISSED**: " + "; ".join(f"{g.name} ({g.detail})" for g in r.goals if not g.met)
        rows.append([str(r.number), r.title, r.fault or "-", str(o.sent), str(o.ok), failed, str(o.vanished),
                     str(o.late), _s(o.disruption_s), _s(r.replan_s), str(r.evicted), verdict])
    return rows


HEADERS = ["#", "scenario", "fault", "sent", "OK", "failed (status)", "vanished", "late", "disruption s",
           "re-plan s", "evicted", "verdict"]


def build_markdown(results: Sequence[ScenarioResult], meta: dict[str, Any]) -> str:
    from harpagon.bench.live import md_table

    L = ["# Fault suite: crashes, stalls, a partition, overload and hostile calls", ""]
    L += [(f"Generated by `{meta['command']}` on {meta['machine']}, in {meta['run_s']:.0f} s; the host's load "
          f"average (1 min) was {meta['load']} (every process of the cluster, and whatever else ran, shares "
          "its cores: figures against the 3 s and 5 s goals move with it)."), ""]
    L += [f"**Mode: {meta['mode']}.** {meta['mode_note']}", ""]
    L += [(f"Cluster: 1 controller, 1 frontend and {meta['workers']} emulated `t4` workers (batches sleep the "
          f"catalog's profile: no GPU), each its own process, the control plane under mutual TLS (certificates "
          f"made like `harpagon certs`). Config `{meta['config']}`: {meta['apps']}. Plan at the start: "
          f"{meta['plan']}."), ""]
    L += [(f"Load: a separate client process streams each app's frames at its planned rate, evenly spaced, "
          f"through the Triton gRPC API for the whole suite (the overload adds a second one at "
          f"{OVERLOAD_FACTOR - 1:g}x). Its timeout is the SLO + {VANISH_AFTER_S:g} s. Timing: "
          f"{meta['timing']}. The scenarios run in the table's order; between two, the suite waits until every "
          "worker is registered, a plan is in force since the last join or leave, nothing has changed for "
          f"{SETTLE_S:g} s and the latest {BACK_FRAMES} frames were answered OK. The overload runs last: the "
          "frontend's rate reports may move the plan to the overload rate for a while."), ""]
    L += ["## Results", ""]
    L += md_table(HEADERS, table_rows(results), right=range(3, 11))
    L += [""]
    met = [r for r in results if not r.skipped and r.met]
    ran = [r for r in results if not r.skipped]
    L += [f"Goals met in {len(met)} of {len(ran)} scenarios that ran"
          + (f" ({len(results) - len(ran)} skipped)" if len(ran) < len(results) else "") + ". The goals:", ""]
    L += [f"- {g}" for g in GOALS]
    L += [""]
    details = _detail_lines(results)
    if details:
        L += ["## Details", ""] + details + [""]
    L += ["## Columns (each can be checked by hand from the per-frame records)", "",
          ("- **sent**: frames the client sent during the scenario (from its start to the next one's), each app at "
          "its planned rate (overload: 10x)."),
          (f"- **OK**: answered OK within the app's SLO + {CLIENT_HOP_MS:g} ms (the client's own hop), measured by "
          "the client from send to answer."),
          ("- **failed (status)**: answered with an error status, per gRPC code: UNAVAILABLE (no frontend, or no "
          "route yet), DEADLINE_EXCEEDED (the frontend dropped the frame at its deadline), RESOURCE_EXHAUSTED "
          "(refused by admission control). A frame the client could not deliver to a dead frontend counts here "
          "as UNAVAILABLE: the client got a status."),
          (f"- **vanished**: no answer at all within the client's timeout (SLO + {VANISH_AFTER_S:g} s), or a frame "
          "recorded as sent with no outcome ever recorded (the client gave up on it or died). Goal: 0."),
          (f"- **late**: answered OK, but later than the SLO + {CLIENT_HOP_MS:g} ms (a success the app cannot use). "
          "Goal: 0."),
          ("- **disruption s**: from the fault to the send time of the last frame of the scenario that was not "
          "answered OK within its SLO (0: every frame sent after the fault was); every frame sent later was "
          f"served in time. Goal for a worker kill or stall: <= {DISRUPTION_GOAL_S:g} s."),
          ("- **re-plan s**: from the fault to the controller's next `plan N in force` log line (- : none during "
          "the scenario)."),
          ("- **evicted**: the controller's `worker ... removed` log lines during the scenario (missed heartbeats, "
          "or no answer to a push). Goal under overload: 0."),
          "- **verdict**: the scenario's goals, or the ones missed with their figures.", ""]
    return "\n".join(L)


def _call_verdict(c: dict) -> str:
    """A hostile call refused as it should be, let in, or refused with a status that proves nothing; a
    control call answered OK or not."""
    if c.get("control"):
        return "OK (control)" if c["as_expected"] else "**CONTROL FAILED**"
    if c["code"].startswith(OK):
        return "**LET IN**"
    return "refused" if c["as_expected"] else "**WRONG STATUS**"


def _detail_lines(results: Sequence[ScenarioResult]) -> list[str]:
    L: list[str] = []
    for r in results:
        x = r.extra
        if r.skipped:
            continue
        if r.key == "controller-kill":
            same = x.get("routes_same")
            L += [(f"- **{r.title}**: the new controller process started {_s(x.get('restart_after_s'))} s after "
                   f"the kill, was listening {_s(x.get('listening_s'))} s after its start, had every worker "
                   f"registered after {_s(x.get('registered_s'))} s and its first plan in force after "
                   f"{_s(x.get('converge_s'))} s ({_s(x.get('converge_from_kill_s'))} s after the kill); routes "
                   f"before and after: {'the same' if same else 'DIFFERENT' if same is False else 'unknown'}; "
                   f"configuration pushes workers took after the kill: {x.get('pushes', '-')}, of which "
                   f"{x.get('noop_pushes', '-')} changed nothing; modules unloaded: {x.get('unloaded') or 'none'}; "
                   f"routed modules loaded again (same name, another spec): {x.get('reloaded_routed') or 'none'}.")]
        if r.key == "hostile":
            L += [f"- **{r.title}** (plans made meanwhile, for reasons of their own: {x.get('new_plans') or 'none'}):",
                  ""]
            from harpagon.bench.live import md_table

            L += ["  " + line for line in md_table(
                ["call", "credentials", "expected", "status", "verdict"],
                [[c["call"] + (" (control)" if c.get("control") else ""), c["credentials"], c["expected"], c["code"],
                  _call_verdict(c)] for c in x.get("calls", [])], right=())]
            L += [""]
        if r.key == "controller-kill" and "orphans" in x:
            L += [f"- **{r.title}**: its planner process (and resource tracker): {_orphans(x['orphans'])}."]
        if r.key == "health-abuse":
            L += [f"- **{r.title}**: " + "; ".join(
                f"{name}: {h['ok']}/{h['checks']} Checks SERVING, the slowest {h['max_ms']:.0f} ms"
                + (f", errors {_codes(h['errors'])}" if h["errors"] else "") + f"; the Watch streams: {_codes(h['watches'])}"
                for name, h in x.get("health", {}).items()) + "."]
        if r.key == "big-messages":
            flood = x.get("flood", {})
            L += [(f"- **{r.title}**: {flood.get('sent', 0)} big requests sent, answered "
                   f"{_codes(flood.get('codes', {}))}, the slowest in {_s(flood.get('max_ms'))} ms; the steady client's "
                   f"frames meanwhile: {r.outcome.ok} of {r.outcome.sent} OK.")]
        if r.key == "worker-internal":
            L += [(f"- **{r.title}**: {r.fault}; the frontend logged {x.get('suspect_lines', 0)} lines making it "
                   f"suspect; back {_s(r.back_s)} s after the heal.")]
        if r.key == "serve-kill":
            L += [(f"- **{r.title}**: {_orphans(x.get('orphans', {}))}; key files left in its temporary folder: "
                   f"{x.get('keys_left') or 'none'} (CA keys: {x.get('ca_keys_left') or 'none'}).")]
        if r.key == "lull":
            L += [(f"- **{r.title}**: {r.fault}; plans made during the lull: {x.get('lull_plans', '-')}; the first "
                   f"plan after the rate returned was in force {_s(x.get('back_plan_s'))} s later; from "
                   f"{LULL_RECOVER_S:g} s after the return, {x.get('recovered_ok', '-')} of "
                   f"{x.get('recovered_sent', '-')} frames OK within the SLO.")]
        if r.key == "overload":
            L += [(f"- **{r.title}**: offered {_s(x.get('offered_per_s'))} frames/s during the burst "
                  f"(target {x.get('target_per_s', '-')}); answered OK {x.get('burst_ok', '-')}, with a status "
                  f"{x.get('burst_failed', '-')}; the overload client sent its frames up to "
                  f"{_s(x.get('send_lag_ms_max'))} ms behind schedule.")]
        if r.outcome.late:
            L += [(f"- **{r.title}**: {r.outcome.late} late successes, the latest {_s(x.get('late_ms_max'))} ms "
                   f"after it was sent" + (f" ({x.get('late_steady')} of the steady client's frames, "
                                           f"{x.get('late_burst')} of the overload client's)"
                                           if r.key == "overload" else "")
                   + f"; sent at {x.get('late_sent_s')} s from the {'fault' if r.fault_at else 'start'}; the steady "
                     f"client's own event loop ran up to {_s(x.get('client_lag_ms_max'))} ms late in this scenario"
                   + (f", the overload client's up to {_s(x.get('burst_client_lag_ms_max'))} ms"
                      if r.key == "overload" else "") + ".")]
        if r.key in ("worker-kill", "worker-stop", "partition", "frontend-kill", "frontend-stop", "controller-stop"):
            back = f"back {_s(r.back_s)} s after the heal" if r.back_s is not None else "NOT back in time"
            L += [f"- **{r.title}**: {r.fault}; {back}."]
    return L


# --------------------------------------------------------------------------------------------------
# Processes and their logs.
# --------------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Proc:
    """A process of the cluster, in its own session (so that its children go with it); every line of its
    output is kept with the wall time it arrived. Ready once it prints a line starting with `ready`."""

    def __init__(self, name: str, argv: list[str], ready: str, timeout_s: float = 60.0,
                 env: dict[str, str] | None = None):
        self.name = name
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.started = time.time()
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                      env=env, start_new_session=True, bufsize=1)
        self.pid = self.popen.pid
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        self.address = ""
        self.ready_at = math.nan
        self._ready = ready
        if timeout_s > 0:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> Proc:
        """Wait for its ready line (its address follows it); kill it and raise if it does not come."""
        found = self.wait_line(lambda s: s.startswith(self._ready), timeout_s, stop_on_exit=True)
        if found is None:
            self.kill()
            tail = "".join(s + "\n" for _, s in self.lines[-15:])
            raise RuntimeError(f"{self.name} did not start within {timeout_s:g} s:\n{tail}")
        self.ready_at = found[0]
        self.address = found[1][len(self._ready):].split()[0].rstrip(",")
        return self

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self.lines.append((time.time(), line.rstrip("\n")))

    def snapshot(self, since: float = 0.0) -> list[tuple[float, str]]:
        with self._lock:
            return [(t, s) for t, s in self.lines if t >= since]

    def wait_line(self, pred: Callable[[str], bool], timeout_s: float, since: float = 0.0,
                  stop_on_exit: bool = False) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout_s
        while True:
            for t, s in self.snapshot(since):
                if pred(s):
                    return t, s
            if time.monotonic() >= deadline or (stop_on_exit and self.popen.poll() is not None
                                               and not self._thread.is_alive()):
                return None
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to its process group (it and what it started, e.g. the controller's planner process)."""
        for sig_target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                sig_target()
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


# --------------------------------------------------------------------------------------------------
# The network: namespaces (separate hosts) or loopback.
# --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Loopback:
    mode = "loopback"
    note = ("Every process listens on 127.0.0.1 (no network namespaces: not root, no `ip`, or `--loopback`); "
            "the partition scenario is skipped.")

    def __init__(self, roles: Sequence[str]):
        self.ports = {r: _free_port() for r in roles}
        self.ports.update({f"{r}-{what}": _free_port() for r in roles for what in ("metrics", "health")})

    def host(self, role: str) -> str:
        return "127.0.0.1"

    def port(self, role: str, default: int) -> int:
        return self.ports[role]

    def prefix(self, role: str) -> list[str]:
        return []

    def partition(self, a: str, b: str) -> None:
        raise RuntimeError("no partition on loopback")

    heal = partition

    def close(self) -> None:
        pass


def _pid_namespace() -> str:
    """This process's PID namespace (its inode number): a PID means something only within it."""
    try:
        return re.sub(r"\D", "", os.readlink("/proc/self/ns/pid")) or "0"
    except OSError:
        return "0"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat(pid: int) -> tuple[int, str, int] | None:
    """A process's parent, state and start time (clock ticks since boot) from /proc; None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def process_tree(pid: int) -> list[tuple[int, int]]:
    """The processes `pid` started, and theirs, as (pid, start time): a pid alone may be reused."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[0], []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        st = _stat(child)
        if st is not None:
            out.append((child, st[2]))
            todo += children.get(child, [])
    return out


def running(proc: tuple[int, int]) -> bool:
    """The very process (same start time), not a zombie."""
    st = _stat(proc[0])
    return st is not None and st[2] == proc[1] and st[1] not in ("Z", "X")


class ExitWatch:
    """Watches processes for when each exits (a thread, polling every 50 ms, until `deadline`)."""

    def __init__(self, procs: list[tuple[int, int]], deadline: float):
        self.procs, self.deadline = procs, deadline
        self.gone: dict[int, float] = {}  # pid -> when (wall clock)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while len(self.gone) < len(self.procs) and time.time() < self.deadline:
            for proc in self.procs:
                if proc[0] not in self.gone and not running(proc):
                    self.gone[proc[0]] = time.time()
            time.sleep(0.05)

    def result(self, since: float) -> dict[str, Any]:
        """How many processes, when the last of them was gone (s after `since`), and those still running."""
        self._thread.join(max(0.0, self.deadline - time.time()) + 1.0)
        left = [pid for pid, _ in self.procs if pid not in self.gone]
        return {"children": len(self.procs), "survivors": left,
                "outlived_s": max(0.0, max(self.gone.values(), default=since) - since) if not left else None}


#: The network namespaces this suite makes: hp-<PID namespace>-<PID of the suite>-<token>-<role>.
NS_NAME_RE = re.compile(r"hp-(\d+)-(\d+)-[0-9a-f]{6}-(?:br|ctl|fe|cli|w\d+)")


def stale_namespaces(names: Iterable[str], pid_ns: str, alive: Callable[[int], bool]) -> list[str]:
    """The namespaces among `names` that a run of this suite made and that no running suite owns: named
    by NS_NAME_RE in this PID namespace, with the suite's PID dead. Anything else (another naming, another
    PID namespace, whose PIDs this process cannot check) is left alone."""
    out = []
    for name in names:
        m = NS_NAME_RE.fullmatch(name)
        if m and m.group(1) == pid_ns and not alive(int(m.group(2))):
            out.append(name)
    return out


def _kill_and_delete_namespace(ns: str) -> None:
    """SIGKILL whatever runs in the namespace `ns` (a run of this suite's processes), then delete it."""
    pids = subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True, text=True,
                          timeout=10).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=15)


def reap_stale_namespaces() -> list[str]:
    """Delete the namespaces an earlier run left behind (killed with SIGKILL, its `finally` never ran):
    only stale_namespaces() of `ip netns list`; the ones deleted."""
    try:
        listed = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True,
                                timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    stale = stale_namespaces(names, _pid_namespace(), _pid_alive)
    for ns in stale:
        try:
            _kill_and_delete_namespace(ns)
        except (OSError, subprocess.SubprocessError) as exc:
            _log(f"could not delete the stale namespace {ns}: {exc}")
    if stale:
        _log(f"deleted {len(stale)} network namespaces a dead run left: {', '.join(stale)}")
    return stale


class Namespaces:
    """One network namespace per role, each with `eth0` (10.A.B.k/24) on a veth pair whose other end is
    on a bridge in a namespace of its own. Names (NS_NAME_RE) carry this process's PID namespace and PID,
    so that a later run can tell a dead run's leftovers (reap_stale_namespaces), and a random token, so
    runs cannot collide; close() kills what still runs in them and deletes them (which deletes their
    veths)."""

    mode = "netns"
    note = ("Each process runs in its own network namespace (`ip netns`), a host of its own on a 10.x "
            "subnet joined by veth pairs to a bridge in another namespace; the partition is a blackhole route "
            "each way between the controller's namespace and one worker's.")

    def __init__(self, roles: Sequence[str]):
        self.token = f"{_pid_namespace()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.created: list[str] = []
        self.ips: dict[str, str] = {}
        net = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
        bridge = self._ns("br")
        try:
            self._add(bridge)
            self._ip("-n", bridge, "link", "set", "lo", "up")
            self._ip("-n", bridge, "link", "add", "br0", "type", "bridge")
            self._ip("-n", bridge, "link", "set", "br0", "up")
            for k, role in enumerate(roles):
                ns = self._ns(role)
                self._add(ns)
                peer = f"v{k}"
                self._ip("link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", peer,
                         "netns", bridge)
                self._ip("-n", bridge, "link", "set", peer, "master", "br0")
                self._ip("-n", bridge, "link", "set", peer, "up")
                self.ips[role] = f"{net}.{k + 2}"
                self._ip("-n", ns, "addr", "add", f"{self.ips[role]}/24", "dev", "eth0")
                self._ip("-n", ns, "link", "set", "eth0", "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def _ns(self, role: str) -> str:
        return f"hp-{self.token}-{role}"

    def _add(self, ns: str) -> None:
        self._ip("netns", "add", ns)
        self.created.append(ns)

    @staticmethod
    def _ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=15)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")

    def host(self, role: str) -> str:
        return self.ips[role]

    def port(self, role: str, default: int) -> int:
        return default

    def prefix(self, role: str) -> list[str]:
        return ["ip", "netns", "exec", self._ns(role)]

    def partition(self, a: str, b: str) -> None:
        self._ip("-n", self._ns(a), "route", "add", "blackhole", f"{self.ips[b]}/32")
        self._ip("-n", self._ns(b), "route", "add", "blackhole", f"{self.ips[a]}/32")

    def heal(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            try:
                self._ip("-n", self._ns(x), "route", "del", "blackhole", f"{self.ips[y]}/32")
            except RuntimeError:
                pass

    def close(self) -> None:
        for ns in reversed(self.created):
            try:  # only processes this run started live in its namespaces
                _kill_and_delete_namespace(ns)
            except (OSError, subprocess.SubprocessError):
                pass
        self.created = []


def make_network(roles: Sequence[str], loopback: bool) -> tuple[Any, str]:
    """Namespaces where possible, else loopback; and why loopback, if it is."""
    if loopback:
        return Loopback(roles), "asked for (--loopback)"
    if os.geteuid() != 0:
        return Loopback(roles), "not root: cannot make network namespaces"
    if shutil.which("ip") is None:
        return Loopback(roles), "no `ip` command"
    reap_stale_namespaces()
    try:
        return Namespaces(roles), ""
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return Loopback(roles), f"network namespaces failed: {exc}"


# --------------------------------------------------------------------------------------------------
# The log lines this suite reads: the controller's (plans, joins, removals) and, best effort, the workers'.
# --------------------------------------------------------------------------------------------------

PLAN_RE = re.compile(r"plan (\d+) in force")
JOINED_RE = re.compile(r"worker (\S+) joined: .*? at ([^\s,]+)")
REMOVED_RE = re.compile(r"worker (\S+) at ([^\s,]+) removed:")
#: Worker lines (best effort: without them the controller restart's push counts are 0 of 0).
CONFIG_RE = re.compile(r"configuration (\d+) in force: (\[[^\]]*\])")
LOADING_RE = re.compile(r"loading module (\S+) ")


def membership(lines: Iterable[tuple[float, str]]) -> tuple[dict[str, str], float]:
    """Registered workers (address -> id) after these controller lines, and when it last changed."""
    members: dict[str, str] = {}
    changed = 0.0
    for t, s in lines:
        m = JOINED_RE.search(s)
        if m:
            wid, addr = m.groups()
            for a in [a for a, i in members.items() if i == wid]:
                del members[a]
            members[addr] = wid
            changed = t
            continue
        m = REMOVED_RE.search(s)
        if m:
            wid, addr = m.groups()
            if members.get(addr) == wid:
                del members[addr]
            changed = t
    return members, changed


def plan_lines(lines: Iterable[tuple[float, str]]) -> list[tuple[float, int]]:
    return [(t, int(m.group(1))) for t, s in lines if (m := PLAN_RE.search(s))]


@dataclass(frozen=True)
class Push:
    """A configuration a worker put in force (its log), against the one in force before."""

    t: float
    modules: tuple[str, ...]
    loaded: tuple[str, ...]  # modules it did not run before
    reloaded: tuple[str, ...]  # modules it ran, loaded again (another spec under the same name)
    unloaded: tuple[str, ...]

    @property
    def noop(self) -> bool:
        """It changed nothing the worker runs (only the version)."""
        return not (self.loaded or self.reloaded or self.unloaded)


def config_pushes(lines: Iterable[tuple[float, str]]) -> list[Push]:
    """The configurations a worker's log says it put in force (`configuration N in force: [...]`, with
    the `loading module X` lines before each), each compared with the one before. A worker's first
    configuration is compared with nothing running."""
    import ast

    out: list[Push] = []
    current: tuple[str, ...] = ()
    loading: list[str] = []
    for t, s in lines:
        m = LOADING_RE.search(s)
        if m:
            loading.append(m.group(1))
            continue
        m = CONFIG_RE.search(s)
        if m is None:
            continue
        try:
            mods = tuple(ast.literal_eval(m.group(2)))
        except (ValueError, SyntaxError):
            continue
        out.append(Push(t, mods, tuple(x for x in loading if x not in current),
                        tuple(x for x in loading if x in current), tuple(x for x in current if x not in mods)))
        current, loading = mods, []
    return out


# --------------------------------------------------------------------------------------------------
# The cluster.
# --------------------------------------------------------------------------------------------------


@dataclass
class AppInfo:
    name: str
    rate: float
    slo_ms: float


class Cluster:
    def __init__(self, config: Path, workers: int, loopback: bool, tmp: Path):
        from harpagon.config import load_workload
        from harpagon.runtime.wire.tls import make_certs

        self.config = config
        self.workload = load_workload([config])
        if self.workload.serve is None:
            raise ValueError(f"{config}: needs a serve section (input and frame shapes)")
        self.frame_shape = tuple(self.workload.serve.frame_shape)
        self.apps = [AppInfo(a.name, a.rate, a.slo_ms) for a in self.workload.apps]
        self.n_workers = workers
        self.tmp = tmp
        self.pki = make_certs(tmp / "pki", days=1)
        self.foreign = make_certs(tmp / "foreign", days=1)  # a CA the cluster does not trust
        self.worker_roles = [f"w{i}" for i in range(workers)]
        self.roles = ["ctl", "fe", "cli", *self.worker_roles]
        self.net, self.loopback_why = make_network(self.roles, loopback)
        self.controllers: list[Proc] = []
        self.frontends: list[Proc] = []
        self.workers: dict[str, Proc] = {}  # role -> its current process
        self.old: list[Proc] = []  # killed or replaced
        self.others: list[Proc] = []  # processes a scenario started besides the cluster's (a `serve`)
        self.control = tmp / "rate.json"  # the load clients' rate factor (a lull)
        self.clients: list[subprocess.Popen] = []
        self.client_logs: list[Path] = []  # each load client's stderr (a file: a pipe nobody reads would fill)

    # --- addresses ---------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.net.mode

    def _python(self, role: str, *args: str) -> list[str]:
        return [*self.net.prefix(role), sys.executable, *args]

    @property
    def controller_address(self) -> str:
        return f"{self.net.host('ctl')}:{self.net.port('ctl', 50051)}"

    @property
    def frontend_address(self) -> str:
        return f"{self.net.host('fe')}:{self.net.port('fe', 8001)}"

    @property
    def health_addresses(self) -> dict[str, str]:
        """The plaintext health ports the probes of a deployment use."""
        return {"frontend": f"{self.net.host('fe')}:{self.net.port('fe-health', 8003)}",
                "controller": f"{self.net.host('ctl')}:{self.net.port('ctl-health', 50052)}"}

    def role_of(self, address: str) -> str | None:
        return next((r for r, p in self.workers.items() if p.address == address), None)

    # --- processes ---------------------------------------------------------------------------

    def start_controller(self) -> Proc:
        host, port = self.net.host("ctl"), self.net.port("ctl", 50051)
        p = Proc("controller", self._python("ctl", "-m", "harpagon.cli", "controller", "--config", str(self.config),
                                            "--host", host, "--port", str(port),
                                            "--health-port", str(self.net.port("ctl-health", 50052)),
                                            "--tls-dir", str(self.pki / "controller")),
                 "controller listening on ")
        self.controllers.append(p)
        return p

    def start_frontend(self) -> Proc:
        host, port = self.net.host("fe"), self.net.port("fe", 8001)
        p = Proc("frontend", self._python("fe", "-m", "harpagon.cli", "frontend", "--controller",
                                          self.controller_address, "--host", host, "--port", str(port),
                                          "--metrics-port", str(self.net.port("fe-metrics", 8002)),
                                          "--health-port", str(self.net.port("fe-health", 8003)),
                                          "--frame-shape", ",".join(map(str, self.frame_shape)),
                                          "--tls-dir", str(self.pki / "frontend")),
                 "frontend listening on ")
        self.frontends.append(p)
        return p

    def start_worker(self, role: str, wait: bool = True) -> Proc:
        host, port = self.net.host(role), self.net.port(role, 9000)
        old = self.workers.get(role)
        if old is not None:
            self.old.append(old)
        p = Proc(f"worker {role}", self._python(role, "-m", "harpagon.cli", "worker", "--device", "emulated:t4",
                                                "--host", host, "--port", str(port), "--controller",
                                                self.controller_address, "--tls-dir", str(self.pki / "worker")),
                 "worker listening on ", 60.0 if wait else 0.0, env={FAULT_FILE_ENV: str(self.fault_file(role))})
        self.workers[role] = p
        return p

    @property
    def controller(self) -> Proc:
        return self.controllers[-1]

    @property
    def frontend(self) -> Proc:
        return self.frontends[-1]

    def all_controller_lines(self, since: float = 0.0) -> list[tuple[float, str]]:
        return sorted((x for p in self.controllers for x in p.snapshot(since)), key=lambda x: x[0])

    def worker_lines(self, since: float = 0.0) -> list[tuple[str, list[tuple[float, str]]]]:
        """Each worker process's address and output (a replaced worker's old process too)."""
        return [(p.address, p.snapshot(since)) for p in [*self.old, *self.workers.values()]]

    # --- helpers in the client's namespace ---------------------------------------------------

    def helper(self, args: list[str], timeout_s: float = 30.0) -> Any:
        """Run `python -m harpagon.bench.faults ARGS` where clients are; its JSON answer."""
        done = subprocess.run(self._python("cli", "-m", "harpagon.bench.faults", *args), check=False,
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"helper {args[0]} failed: {done.stderr[-1500:]}")
        return json.loads(done.stdout)

    def routes(self) -> dict:
        """The controller's routing table, as a frontend sees it (WatchRoutes under the frontend's
        certificate, first message only)."""
        return self.helper(["_routes", "--controller", self.controller_address, "--tls-dir",
                            str(self.pki / "frontend")])

    def start_client(self, out: Path, rate_factor: float, seconds: float | None, start_at: float) -> subprocess.Popen:
        spec = {"address": self.frontend_address, "frame_shape": list(self.frame_shape), "start_at": start_at,
                "seconds": seconds, "vanish_after_s": VANISH_AFTER_S, "control": str(self.control),
                "apps": [{"name": a.name, "rate": a.rate * rate_factor, "slo_ms": a.slo_ms} for a in self.apps]}
        path = out.with_suffix(".spec.json")
        path.write_text(json.dumps(spec))
        err = out.with_suffix(".stderr.log")
        with err.open("ab") as stderr:
            p = subprocess.Popen(self._python("cli", "-m", "harpagon.bench.faults", "_client", str(path), str(out)),
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        self.clients.append(p)
        self.client_logs.append(err)
        return p

    def fault_file(self, role: str) -> Path:
        """While this file exists, the worker's emulated device fails every batch (test-only injection)."""
        return self.tmp / f"fault-{role}"

    def set_rate(self, factor: float) -> None:
        """Every load client sends at `factor` times its rate from now on (within 0.1 s)."""
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps({"factor": factor}))
        os.replace(tmp, self.control)

    def client_tail(self, lines: int = 15) -> str:
        """The last lines of each load client's stderr (for an error message)."""
        out = []
        for err in dict.fromkeys(self.client_logs):
            try:
                text = err.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if text:
                out.append(f"--- {err.name}:\n" + "\n".join(text))
        return "\n".join(out)

    # --- state -------------------------------------------------------------------------------

    def wait_back(self, since: float, records: RecordTail, timeout_s: float) -> float | None:
        """Wait until every worker is registered with the current controller, a plan is in force since the
        last join or leave, nothing has changed for SETTLE_S (the heal, a join, a leave, a plan), and the
        latest BACK_FRAMES frames, sent after all that, were answered OK; when that was (wall time), or None
        after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.controller.snapshot()
            members, changed = membership(lines)
            plans = [t for t, _ in plan_lines(lines) if t >= changed]
            now = time.time()
            if len(members) >= self.n_workers and plans and now - max(plans[-1], since) >= SETTLE_S:
                after = sorted((f for f in records.read() if f.t >= max(plans[-1], since)), key=lambda f: f.t)
                if len(after) >= BACK_FRAMES and all(f.code == OK for f in after[-BACK_FRAMES:]):
                    return now
            time.sleep(0.2)
        return None

    def save_logs(self, folder: Path) -> None:
        """Every process's output, one file each, lines prefixed with their arrival (wall clock); each load
        client's stderr as it wrote it."""
        folder.mkdir(parents=True, exist_ok=True)
        seen: dict[str, int] = {}
        for p in [*self.controllers, *self.frontends, *self.old, *self.workers.values(), *self.others]:
            stem = p.name.replace(" ", "-")
            seen[stem] = seen.get(stem, 0) + 1
            (folder / f"{stem}.{seen[stem]}.log").write_text(
                "".join(f"{t:.3f} {s}\n" for t, s in p.snapshot()))
        for err in dict.fromkeys(self.client_logs):
            if err.is_file():
                shutil.copyfile(err, folder / f"client-{err.name}")

    def close(self) -> list[str]:
        """Kill every process and delete the network, each step on its own (one that fails or hangs does
        not keep the others from running); never raises: what went wrong, one line per step."""
        errors: list[str] = []

        def step(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - cleanup goes on; said in the log
                errors.append(f"{what}: {type(exc).__name__}: {exc}")

        def kill_client(c: subprocess.Popen) -> None:
            if c.poll() is not None:
                return
            for target in (lambda: os.killpg(c.pid, signal.SIGKILL), lambda: os.kill(c.pid, signal.SIGKILL)):
                try:
                    target()
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                c.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"pid {c.pid} did not exit within 10 s of SIGKILL") from None

        for c in self.clients:
            step(f"load client {c.pid}", lambda c=c: kill_client(c))
        for p in [*self.frontends, *self.workers.values(), *self.old, *self.controllers, *self.others]:
            step(f"{p.name} (pid {p.pid})", lambda p=p: (p.signal(signal.SIGCONT), p.kill()))
        step(f"network ({self.net.mode})", self.net.close)
        for e in errors:
            _log(f"cleanup: {e}")
        return errors


class RecordTail:
    """The per-frame records a client appends to a file (one JSON object per line), read as they come:
    a send record per frame (id, app, send time) and an outcome record (the same, code and latency)."""

    def __init__(self, path: Path, timeout_s: dict[str, float]):
        self.path = path
        self.timeout_s = timeout_s  # per app: the client's timeout
        self._offset = 0
        self._frames: list[Frame] = []
        self._unanswered: dict[int, tuple[str, float]] = {}  # frame id -> app, send time: sent, no outcome yet
        self.sent = 0  # send records read
        self.summary: dict | None = None
        self._told: set[str] = set()

    def read(self) -> list[Frame]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self._frames
        end = data.rfind(b"\n")
        if end < 0:
            return self._frames
        self._offset += end + 1
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if "summary" in rec:
                self.summary = rec["summary"]
                continue
            if "code" not in rec:  # a send record
                self.sent += 1
                self._unanswered[rec["id"]] = (rec["app"], float(rec["t"]))
                continue
            self._unanswered.pop(rec.get("id"), None)
            self._frames.append(frame_of(rec, self.timeout_s.get(rec["app"], math.inf)))
        return self._frames

    def final(self) -> list[Frame]:
        """Every frame once the client is done (or dead): the answered ones, and each frame sent without an
        outcome as VANISHED. A client summary counting more frames than there are send records means
        frames were lost without a trace: said in the log (no send time: no scenario to count them in)."""
        frames = list(self.read())
        frames += [Frame(app, t, VANISHED, self.timeout_s.get(app, math.inf) * 1000.0)
                   for app, t in self._unanswered.values()]
        told = []
        if self._unanswered:
            told.append(f"{self.path.name}: {len(self._unanswered)} frames sent without an outcome: counted VANISHED")
        if self.summary is not None and self.summary.get("sent", 0) != self.sent:
            told.append(f"{self.path.name}: the client says it sent {self.summary.get('sent')} frames, "
                        f"{self.sent} were recorded")
        for msg in told:
            if msg not in self._told:
                self._told.add(msg)
                _log(msg)
        return frames


# --------------------------------------------------------------------------------------------------
# The suite.
# --------------------------------------------------------------------------------------------------

SCENARIOS = (
    ("baseline", "baseline"),
    ("worker-kill", "worker kill -9"),
    ("worker-stop", "worker SIGSTOP"),
    ("frontend-kill", "frontend kill -9"),
    ("frontend-stop", "frontend SIGSTOP"),
    ("controller-kill", "controller kill -9"),
    ("controller-stop", "controller SIGSTOP"),
    ("partition", "partition controller / worker"),
    ("hostile", "hostile control-plane calls"),
    ("health-abuse", "health-port abuse"),
    ("big-messages", "big-message flood"),
    ("worker-internal", "worker answers INTERNAL"),
    ("serve-kill", "kill -9 of harpagon serve"),
    ("lull", "lull, then back to rate"),
    ("overload", f"overload {OVERLOAD_FACTOR:g}x"),
)


def pick_worker(routes: dict, exclude: Iterable[str] = ()) -> tuple[str, str, int] | None:
    """A routed worker whose tuple has another worker to turn to (the largest tuple first): (address,
    module, workers in its tuple); else any routed worker; None if nothing is routed."""
    skip = set(exclude)
    best = None
    for m in routes.get("modules", []):
        for t in m["tuples"]:
            for addr in t["addresses"]:
                if addr in skip:
                    continue
                cand = (addr, f"{m['app']}/{m['module']}", len(t["addresses"]))
                if best is None or cand[2] > best[2]:
                    best = cand
    return best


def route_shape(routes: dict) -> dict[str, list[list[str]]]:
    """Per app/module, the sorted addresses of each tuple (what must not move across a controller restart)."""
    return {f"{m['app']}/{m['module']}": sorted(sorted(t["addresses"]) for t in m["tuples"])
            for m in routes.get("modules", [])}


def describe_plan(routes: dict) -> str:
    parts = []
    for m in routes.get("modules", []):
        tuples = ", ".join(f"batch {t['batch']} x {len(t['addresses'])} workers" for t in m["tuples"])
        parts.append(f"{m['app']}/{m['module']}: {tuples}")
    return "; ".join(parts) or "nothing routed"


class Suite:
    def __init__(self, cluster: Cluster, timing: Timing):
        self.c = cluster
        self.timing = timing
        self.results: list[ScenarioResult] = []
        slo = {a.name: a.slo_ms for a in cluster.apps}
        self.slo = slo
        self.timeouts = {a.name: a.slo_ms / 1000.0 + VANISH_AFTER_S for a in cluster.apps}
        self.records = RecordTail(cluster.tmp / "load.jsonl", self.timeouts)
        self.burst: RecordTail | None = None

    # --- helpers -----------------------------------------------------------------------------

    def _until(self, t: float) -> None:
        delay = t - time.time()
        if delay > 0:
            time.sleep(delay)

    def _back(self, r: ScenarioResult, since: float) -> None:
        back = self.c.wait_back(since, self.records, self.timing.back_timeout_s)
        r.back_s = None if back is None else back - since
        _log(f"  cluster back after {r.back_s:.1f} s" if back is not None
             else f"  cluster NOT back within {self.timing.back_timeout_s:g} s")

    def _target(self, r: ScenarioResult) -> tuple[str, Proc] | None:
        routes = self.c.routes()
        pick = pick_worker(routes)
        if pick is None:
            r.skipped = "nothing routed"
            return None
        addr, module, n = pick
        role = self.c.role_of(addr)
        if role is None:
            r.skipped = f"routed worker {addr} is not one of ours"
            return None
        r.fault = f"worker {addr} ({module}, tuple of {n})"
        r.extra["target"] = addr
        return role, self.c.workers[role]

    # --- scenarios ---------------------------------------------------------------------------

    def baseline(self, r: ScenarioResult) -> None:
        time.sleep(self.timing.steady_s + self.timing.observe_s)

    def _aim(self, r: ScenarioResult) -> tuple[str, Proc] | None:
        """A routed worker to fault (:meth:`_target`), after the steady phase: the fault is now."""
        target = self._target(r)
        if target is not None:
            time.sleep(self.timing.steady_s)
            r.fault_at = time.time()
        return target

    def worker_kill(self, r: ScenarioResult) -> None:
        target = self._aim(r)
        if target is None:
            return
        role, proc = target
        proc.signal(signal.SIGKILL)
        r.fault = "kill -9 " + r.fault + f"; replacement started after {self.timing.observe_s:g} s"
        self._until(r.fault_at + self.timing.observe_s)
        healed = time.time()
        self.c.start_worker(role)
        self._back(r, healed)

    def worker_stop(self, r: ScenarioResult) -> None:
        target = self._target(r)
        if target is None:
            return
        _, proc = target
        self._pause(r, proc, f"SIGSTOP {self.timing.worker_stop_s:g} s " + r.fault, self.timing.worker_stop_s)

    def _kill_and_restart(self, r: ScenarioResult, proc: Any, what: str, start: Callable[[], Any]) -> tuple[float, Any]:
        """kill -9 `proc` after the steady phase, then `start()` its successor after the restart delay;
        returns when it was restarted and the new process."""
        time.sleep(self.timing.steady_s)
        r.fault_at = time.time()
        proc.signal(signal.SIGKILL)
        r.fault = f"kill -9 the {what}, restarted after {self.timing.restart_delay_s:g} s"
        self._until(r.fault_at + self.timing.restart_delay_s)
        restart = time.time()
        return restart, start()

    def frontend_kill(self, r: ScenarioResult) -> None:
        healed, p = self._kill_and_restart(r, self.c.frontend, "frontend", self.c.start_frontend)
        r.extra["restart_ready_s"] = p.ready_at - healed
        self._until(r.fault_at + self.timing.observe_s)
        self._back(r, healed)

    def _pause(self, r: ScenarioResult, proc: Any, fault: str, seconds: float) -> None:
        """SIGSTOP `proc` for `seconds`, then SIGCONT; observe until the cluster is back."""
        time.sleep(self.timing.steady_s)
        r.fault_at = time.time()
        proc.signal(signal.SIGSTOP)
        r.fault = fault
        self._until(r.fault_at + seconds)
        proc.signal(signal.SIGCONT)
        healed = time.time()
        self._until(r.fault_at + self.timing.observe_s)
        self._back(r, healed)

    def frontend_stop(self, r: ScenarioResult) -> None:
        self._pause(r, self.c.frontend, f"SIGSTOP the frontend for {self.timing.frontend_stop_s:g} s",
                    self.timing.frontend_stop_s)

    def controller_kill(self, r: ScenarioResult) -> None:
        before = self.c.routes()
        planner = process_tree(self.c.controller.pid)  # its planner process (and resource tracker)
        watch = ExitWatch(planner, time.time() + self.timing.steady_s + ORPHAN_GOAL_S + 10.0)
        restart, p = self._kill_and_restart(r, self.c.controller, "controller", self.c.start_controller)
        r.extra["restart_after_s"] = restart - r.fault_at
        r.extra["listening_s"] = p.ready_at - restart
        found = p.wait_line(lambda s: PLAN_RE.search(s) is not None, self.timing.back_timeout_s)
        if found is not None:
            r.extra["converge_s"] = found[0] - restart
            r.extra["converge_from_kill_s"] = found[0] - r.fault_at
            _log(f"  new controller: plan in force {found[0] - restart:.2f} s after its start")
        self._until(r.fault_at + self.timing.observe_s)
        self._back(r, restart)
        after = self.c.routes()
        r.extra["routes_same"] = route_shape(before) == route_shape(after)
        routed = {t["name"] for m in before.get("modules", []) for t in m["tuples"]}
        pushes = [(addr, push) for addr, lines in self.c.worker_lines()
                  for push in config_pushes(lines) if push.t >= r.fault_at]
        r.extra["pushes"] = len(pushes)
        r.extra["noop_pushes"] = sum(push.noop for _, push in pushes)
        r.extra["unloaded"] = [f"{addr}: {m}" for addr, push in pushes for m in push.unloaded]
        r.extra["unloaded_routed"] = [f"{addr}: {m}" for addr, push in pushes for m in push.unloaded if m in routed]
        r.extra["reloaded_routed"] = [f"{addr}: {m}" for addr, push in pushes for m in push.reloaded if m in routed]
        registered = [t for t, s in p.snapshot() if JOINED_RE.search(s)]
        r.extra["registered_s"] = (max(registered) - restart) if registered else None
        if planner:
            r.extra["orphans"] = watch.result(r.fault_at)

    def controller_stop(self, r: ScenarioResult) -> None:
        self._pause(r, self.c.controller, f"SIGSTOP the controller for {self.timing.controller_stop_s:g} s",
                    self.timing.controller_stop_s)

    def partition(self, r: ScenarioResult) -> None:
        if self.c.mode != "netns":
            r.skipped = f"loopback mode ({self.c.loopback_why or 'no namespaces'})"
            return
        target = self._aim(r)
        if target is None:
            return
        role, _ = target
        self.c.net.partition("ctl", role)
        r.fault = f"no traffic either way between the controller and {r.fault} for {self.timing.partition_s:g} s"
        try:
            self._until(r.fault_at + self.timing.partition_s)
        finally:
            self.c.net.heal("ctl", role)
        healed = time.time()
        self._until(r.fault_at + self.timing.observe_s)
        self._back(r, healed)

    def hostile(self, r: ScenarioResult) -> None:
        routes = self.c.routes()
        pick = pick_worker(routes)
        worker = pick[0] if pick else next(iter(self.c.workers.values())).address
        time.sleep(self.timing.steady_s)
        lines = self.c.controller.snapshot()
        plans_before = plan_lines(lines)
        r.fault_at = time.time()
        r.fault = (f"Register, ApplyConfig (to {worker}), WatchRoutes, ReportRates x (no certificate, a foreign CA, "
                   "a wrong role); control: Worker/Health and Health/Check with an allowed role")
        r.extra["calls"] = self.c.helper(["_hostile", "--controller", self.c.controller_address, "--worker", worker,
                                          "--pki", str(self.c.pki), "--foreign", str(self.c.foreign),
                                          "--app", self.c.apps[0].name])
        time.sleep(2.0)  # a call let in would show by now
        after_lines = self.c.controller.snapshot()
        plans_after = plan_lines(after_lines)
        # what the calls would change if one were let in (a re-plan of its own, e.g. after calibration,
        # is not one of them: new plan lines are reported, not judged)
        changed = []
        if any(JOINED_RE.search(s) and "intruder" in s for _, s in after_lines):
            changed.append("the intruder joined")
        if any("1e+09" in s or "1000000000" in s for _, s in after_lines if "left the band" in s):
            changed.append("the hostile rate moved the plan")
        if route_shape(self.c.routes()) != route_shape(routes):
            changed.append("routes moved")
        for addr, wl in self.c.worker_lines(r.fault_at):
            if any((m := CONFIG_RE.search(s)) and int(m.group(1)) == HOSTILE_VERSION for _, s in wl):
                changed.append(f"worker {addr} took the hostile configuration")
        r.extra["new_plans"] = [v for _, v in plans_after[len(plans_before):]]
        r.extra["plan_changed"] = changed
        r.extra["plans_before"] = len(plans_before)
        r.extra["plans_after"] = len(plans_after)
        time.sleep(max(0.0, self.timing.observe_s - 2.0 - (time.time() - r.fault_at)))

    def health_abuse(self, r: ScenarioResult) -> None:
        time.sleep(self.timing.steady_s)
        r.fault_at = time.time()
        r.fault = (f"{ABUSE_WATCHES} Watch streams and {ABUSE_IDLE} idle connections held open on each plaintext "
                   f"health port (frontend, controller), then {ABUSE_CHECKS} Checks to each")
        r.extra["health"] = self.c.helper(["_abuse", "--targets", json.dumps(self.c.health_addresses)], 90.0)
        self._until(r.fault_at + self.timing.steady_s)  # frames sent meanwhile count in the scenario

    def big_messages(self, r: ScenarioResult) -> None:
        time.sleep(self.timing.steady_s)
        r.fault_at = time.time()
        sizes = " and ".join(f"{n / 1e6:.1f} MB" for n in FLOOD_BYTES)
        r.fault = (f"{FLOOD_CONCURRENCY} clients sending {sizes} requests back to back for "
                   f"{self.timing.flood_s:g} s")
        r.extra["flood"] = self.c.helper(["_flood", "--address", self.c.frontend_address, "--app",
                                          self.c.apps[0].name, "--seconds", str(self.timing.flood_s)],
                                         self.timing.flood_s + 90.0)
        self._until(r.fault_at + self.timing.observe_s)
        self._back(r, time.time())

    def worker_internal(self, r: ScenarioResult) -> None:
        target = self._aim(r)
        if target is None:
            return
        role, _ = target
        self.c.fault_file(role).write_text("internal")
        r.fault = f"{r.fault} answers INTERNAL to every batch for {self.timing.worker_stop_s:g} s"
        try:
            self._until(r.fault_at + self.timing.worker_stop_s)
        finally:
            self.c.fault_file(role).unlink(missing_ok=True)
        healed = time.time()
        self._until(r.fault_at + self.timing.observe_s)
        self._back(r, healed)
        address = r.extra["target"]
        r.extra["suspect_lines"] = sum(address in line and "suspect" in line
                                       for _, line in self.c.frontend.snapshot(r.fault_at))

    def serve_kill(self, r: ScenarioResult) -> None:
        """`harpagon serve` on 127.0.0.1 beside the cluster, with 2 emulated workers; kill -9 it."""
        config = self._serve_config()
        tmpdir = self.c.tmp / "serve-tmp"
        tmpdir.mkdir(exist_ok=True)
        p = Proc("serve", [sys.executable, "-m", "harpagon.cli", "serve", str(config), "--port", str(_free_port()),
                           "--metrics-port", str(_free_port())], "serving on ", 120.0, env={"TMPDIR": str(tmpdir)})
        self.c.others.append(p)
        time.sleep(1.0)
        tree = process_tree(p.pid)
        r.fault_at = time.time()
        watch = ExitWatch(tree, r.fault_at + ORPHAN_GOAL_S + 10.0)
        p.signal(signal.SIGKILL)
        r.extra["orphans"] = watch.result(r.fault_at)
        r.fault = f"kill -9 `harpagon serve` (2 emulated workers; {len(tree)} processes it started)"
        r.extra["keys_left"] = sorted(str(k.relative_to(tmpdir)) for k in tmpdir.rglob("*.key"))
        r.extra["ca_keys_left"] = [k for k in r.extra["keys_left"] if Path(k).name == "ca.key"]
        p.kill()  # its process group: whatever outlived it
        self._until(r.fault_at + min(self.timing.observe_s, 3.0))

    def _serve_config(self) -> Path:
        """The suite's config with 2 emulated workers (its includes made absolute)."""
        import yaml

        raw = yaml.safe_load(self.c.config.read_text())
        raw["include"] = [str((self.c.config.parent / i).resolve()) for i in raw.get("include", [])]
        raw["serve"] = {**raw["serve"], "workers": [{"device": "emulated:t4", "count": 2}], "max_utilization": 1.0}
        path = self.c.tmp / "serve.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def lull(self, r: ScenarioResult) -> None:
        time.sleep(self.timing.steady_s)
        rate = sum(a.rate for a in self.c.apps)
        r.fault_at = time.time()
        self.c.set_rate(LULL_FACTOR)
        r.fault = (f"{rate * LULL_FACTOR:g} frames/s ({LULL_FACTOR:g}x) for {self.timing.lull_s:g} s, then back at "
                   f"{rate:g} frames/s")
        try:
            self._until(r.fault_at + self.timing.lull_s)
        finally:
            self.c.set_rate(1.0)
        back = time.time()
        r.extra["back_at"] = back
        self._until(back + self.timing.lull_after_s)
        plans = plan_lines(self.c.controller.snapshot())
        r.extra["lull_plans"] = sum(r.fault_at <= t < back for t, _ in plans)
        after = [t for t, _ in plans if t >= back]
        r.extra["back_plan_s"] = after[0] - back if after else None
        self._back(r, back)

    def overload(self, r: ScenarioResult) -> None:
        start_at = time.time() + max(self.timing.steady_s, 1.5)  # the burst client is up by then
        out = self.c.tmp / "burst.jsonl"
        self.burst = RecordTail(out, self.timeouts)
        client = self.c.start_client(out, OVERLOAD_FACTOR - 1.0, self.timing.overload_s, start_at)
        target = sum(a.rate for a in self.c.apps) * OVERLOAD_FACTOR
        r.fault = f"{OVERLOAD_FACTOR:g}x the planned rate ({target:g} frames/s) for {self.timing.overload_s:g} s"
        r.extra["target_per_s"] = f"{target:g}"
        self._until(start_at)
        r.fault_at = start_at
        self._until(start_at + self.timing.overload_s)
        healed = time.time()
        try:
            client.wait(timeout=max(self.timeouts.values()) + 15)
        except subprocess.TimeoutExpired:
            _log(f"  the overload client did not finish in time\n{self.c.client_tail()}")
        if client.returncode:
            _log(f"  the overload client exited with {client.returncode}\n{self.c.client_tail()}")
        self._until(r.fault_at + self.timing.observe_s)
        self._back(r, healed)
        burst = self.burst.final()
        if burst:
            span = max(f.t for f in burst) - min(f.t for f in burst)
            base = [f for f in self.records.read() if start_at <= f.t < start_at + self.timing.overload_s]
            r.extra["offered_per_s"] = (len(burst) + len(base)) / max(span, 1e-9)
            o = summarize([*burst, *base], self.slo, start_at, start_at + self.timing.overload_s + 1.0, start_at)
            r.extra["burst_ok"] = o.ok
            r.extra["burst_failed"] = _codes(o.failed)
        if self.burst.summary:
            r.extra["send_lag_ms_max"] = self.burst.summary.get("lag_ms_max")

    # --- the run -----------------------------------------------------------------------------

    def run(self, only: Sequence[str] | None = None) -> list[ScenarioResult]:
        funcs = {"baseline": self.baseline, "worker-kill": self.worker_kill, "worker-stop": self.worker_stop,
                 "frontend-kill": self.frontend_kill, "frontend-stop": self.frontend_stop,
                 "controller-kill": self.controller_kill, "controller-stop": self.controller_stop,
                 "partition": self.partition, "hostile": self.hostile, "health-abuse": self.health_abuse,
                 "big-messages": self.big_messages, "worker-internal": self.worker_internal,
                 "serve-kill": self.serve_kill, "lull": self.lull, "overload": self.overload}
        for number, (key, title) in enumerate(SCENARIOS, 1):
            if only and key not in only:
                continue
            r = ScenarioResult(number, key, title, start=time.time())
            _log(f"{number}/{len(SCENARIOS)} {title}")
            try:
                funcs[key](r)
            except Exception as exc:  # noqa: BLE001 - the scenario is reported as not run, the suite goes on
                r.skipped = f"error: {type(exc).__name__}: {str(exc)[:300]}"
                _log(f"  {r.skipped}")
                self.c.wait_back(time.time(), self.records, self.timing.back_timeout_s)
            r.end = time.time()
            if r.fault:
                _log(f"  {r.fault}")
            self.results.append(r)
        return self.results

    def finish(self, client: subprocess.Popen) -> None:
        """Stop the steady client, wait for its frames, and fill in every scenario's figures."""
        stopped = time.time()
        client.send_signal(signal.SIGTERM)
        try:
            client.wait(timeout=max(self.timeouts.values()) + 15)
        except subprocess.TimeoutExpired:
            _log(f"the load client did not stop in time\n{self.c.client_tail()}")
        if client.returncode:
            _log(f"the load client exited with {client.returncode}\n{self.c.client_tail()}")
        steady = self.records.final()
        burst = self.burst.final() if self.burst is not None else []
        frames = steady + burst
        lines = self.c.all_controller_lines()
        plans = plan_lines(lines)
        removed = [t for t, s in lines if REMOVED_RE.search(s)]
        for i, r in enumerate(self.results):
            if r.skipped:
                continue
            end = self.results[i + 1].start if i + 1 < len(self.results) else stopped
            r.outcome = summarize(frames, self.slo, r.start, end, r.fault_at)
            if r.fault_at is not None:
                nxt = [t for t, _ in plans if r.fault_at <= t < end]
                r.replan_s = nxt[0] - r.fault_at if nxt else None
            r.evicted = sum(r.start <= t < end for t in removed)
            if r.key == "lull" and "back_at" in r.extra:
                back = r.extra["back_at"] + LULL_RECOVER_S
                o = summarize(frames, self.slo, back, r.extra["back_at"] + self.timing.lull_after_s, None)
                r.extra["recovered_ok"], r.extra["recovered_sent"] = o.ok, o.sent
            if r.outcome.late:
                def late(fs: list[Frame], r: ScenarioResult = r, end: float = end) -> list[Frame]:
                    return [f for f in fs if r.start <= f.t < end and f.code == OK
                            and f.ms > self.slo.get(f.app, math.inf) + CLIENT_HOP_MS]
                if r.key == "frontend-stop" and r.fault_at is not None:
                    r.extra["late_frozen"] = sum(f.t < r.fault_at for f in late(frames))
                r.extra["late_ms_max"] = max(f.ms for f in late(frames))
                zero = r.fault_at if r.fault_at is not None else r.start
                r.extra["late_sent_s"] = sorted(round(f.t - zero, 2) for f in late(frames))[:20]
                r.extra["late_steady"] = len(late(steady))
                r.extra["late_burst"] = len(late(burst))
                for key, tail in (("client_lag_ms_max", self.records), ("burst_client_lag_ms_max", self.burst)):
                    if tail is not None and tail.summary is not None:
                        r.extra[key] = max((ms for t, ms in tail.summary.get("loop_stalls", []) if r.start <= t < end),
                                           default=0.0)
            r.goals = judge(r)


def run_suite(out: Path, quick: bool = False, loopback: bool = False, config: Path = DEFAULT_CONFIG,
              workers: int = DEFAULT_WORKERS, command: str = "harpagon bench faults",
              only: Sequence[str] | None = None, logs: Path | None = None
              ) -> tuple[list[ScenarioResult], dict[str, Any]]:
    """Run the suite and write the report to `out` (and every process's output to `logs`); the results
    and the report's facts."""
    timing = QUICK if quick else FULL
    began = time.time()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return _run(out, timing, loopback, config, workers, command, only, logs, began)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # through every `finally`: processes killed, namespaces deleted


def _run(out: Path, timing: Timing, loopback: bool, config: Path, workers: int, command: str,
         only: Sequence[str] | None, logs: Path | None, began: float) -> tuple[list[ScenarioResult], dict[str, Any]]:
    from harpagon.bench.live import _machine

    load_at_start = os.getloadavg()[0]
    # ignore_cleanup_errors: a process that would not die may still hold a file; the run's result (or its
    # own error) matters more than the temporary folder
    with tempfile.TemporaryDirectory(prefix="harpagon-faults-", ignore_cleanup_errors=True) as tmp:
        cluster = Cluster(config, workers, loopback, Path(tmp))
        failed = True
        try:
            _log(f"mode: {cluster.mode}" + (f" ({cluster.loopback_why})" if cluster.loopback_why else ""))
            cluster.start_controller()
            for p in [cluster.start_worker(role, wait=False) for role in cluster.worker_roles]:
                p.wait_ready()
            cluster.start_frontend()
            _log(f"cluster started: controller {cluster.controller_address}, frontend {cluster.frontend_address}, "
                 f"{workers} workers")
            suite = Suite(cluster, timing)
            client = cluster.start_client(suite.records.path, 1.0, None, time.time() + 1.5)
            if cluster.wait_back(0.0, suite.records, 90.0) is None:
                tail = "\n".join(s for _, s in cluster.controller.snapshot()[-20:])
                raise RuntimeError(f"the cluster did not come up within 90 s; controller log:\n{tail}\n"
                                   f"load client:\n{cluster.client_tail() or '(nothing on stderr)'}")
            routes = cluster.routes()
            _log(f"serving: {describe_plan(routes)}")
            suite.run(only)
            suite.finish(client)
            results = suite.results
            failed = False
        finally:
            # each step on its own, none raising: an error in the cleanup neither skips the rest nor hides
            # the error that brought us here
            cluster.close()
            if failed and cluster.client_logs:
                _log(f"load client stderr:\n{cluster.client_tail() or '(empty)'}")
            if logs is not None:
                try:
                    cluster.save_logs(logs)
                except Exception as exc:  # noqa: BLE001 - the run's own error, if any, goes on up
                    _log(f"could not save the logs to {logs}: {type(exc).__name__}: {exc}")
    meta = {"command": command, "machine": _machine(), "run_s": time.time() - began, "mode": cluster.mode,
            "load": f"{load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
            "mode_note": cluster.net.note + (f" Loopback because: {cluster.loopback_why}." if cluster.loopback_why
                                             else ""),
            "workers": workers, "config": _shown(config),
            "apps": "; ".join(f"app `{a.name}` at {a.rate:g} frames/s, SLO {a.slo_ms:g} ms" for a in cluster.apps),
            "plan": describe_plan(routes),
            "timing": (f"{timing.steady_s:g} s steady before each fault, {timing.observe_s:g} s from the fault to "
                       f"the heal or restart of a kill (stops and the partition last "
                       f"{timing.worker_stop_s:g} s for a worker, {timing.frontend_stop_s:g} s for the frontend, "
                       f"{timing.controller_stop_s:g} s for the controller, the partition {timing.partition_s:g} s), then at most "
                       f"{timing.back_timeout_s:g} s of waiting for the cluster to be back")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_markdown(results, meta) + "\n")
    return results, meta


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------------
# Helpers run as processes of their own (in the client's namespace).
# --------------------------------------------------------------------------------------------------


async def _client(spec: dict, out: Path) -> None:
    """Stream each app's frames, evenly spaced at its rate, from `start_at` for `seconds` (None: until
    SIGTERM); append one JSON line per frame as it is sent (id, app, send time) and one per outcome (the
    same, the status code name and the latency). A frame still unanswered when the client gives up on it
    (its timeout + 5 s after the last send, or any other way out) is written VANISHED; one this process
    never got to write (it was killed) has a send line and no outcome, which RecordTail.final() counts as
    VANISHED."""
    import grpc
    import numpy as np
    from tritonclient.grpc import service_pb2 as tpb
    from tritonclient.grpc import service_pb2_grpc as trpc

    options = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20),
               # a frontend restarted at the same address is reached within half a second
               ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
               ("grpc.max_reconnect_backoff_ms", 500)]
    channel = grpc.aio.insecure_channel(spec["address"], options=options)
    stub = trpc.GRPCInferenceServiceStub(channel)
    shape = list(spec["frame_shape"])
    frame = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8).tobytes()
    apps = spec["apps"]
    requests = {a["name"]: tpb.ModelInferRequest(
        model_name=a["name"], inputs=[tpb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8",
                                                                              shape=shape)],
        raw_input_contents=[frame]) for a in apps}
    timeouts = {a["name"]: a["slo_ms"] / 1000.0 + spec["vanish_after_s"] for a in apps}
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    f = out.open("a", buffering=1)
    pending: set[asyncio.Task] = set()
    inflight: dict[int, tuple[str, float, float]] = {}  # frame id -> app, send time, perf_counter at send
    lags: list[float] = []
    stalls: list[tuple[float, float]] = []  # (wall time, ms) when this client's own loop ran late

    async def watch_loop() -> None:
        """This client's own event-loop lag: a late answer is only the server's if the client was on time."""
        while True:
            t0 = loop.time()
            await asyncio.sleep(0.01)
            lag = (loop.time() - t0 - 0.01) * 1000.0
            if lag > 20.0:
                stalls.append((time.time(), lag))

    watcher = asyncio.ensure_future(watch_loop())

    def outcome(fid: int, code: str) -> None:
        """Write a frame's outcome, once (a frame already written, e.g. as VANISHED, is not written again)."""
        sent = inflight.pop(fid, None)
        if sent is not None:
            app, t, t0 = sent
            f.write(json.dumps({"id": fid, "app": app, "t": t, "code": code,
                                "ms": (time.perf_counter() - t0) * 1000.0}) + "\n")

    async def one(fid: int, app: str) -> None:
        if fid in inflight:  # latency from the call's start, as before send records existed
            inflight[fid] = (app, inflight[fid][1], time.perf_counter())
        try:
            await stub.ModelInfer(requests[app], timeout=timeouts[app])
            code = OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        except Exception as exc:  # noqa: BLE001 - recorded, never lost
            code = f"CLIENT_{type(exc).__name__}"
        outcome(fid, code)

    start = loop.time() + max(0.0, spec["start_at"] - time.time())
    seconds = spec.get("seconds")
    control = Path(spec["control"]) if spec.get("control") else None
    factor = 1.0  # the suite's multiple of every app's rate (a lull), read from `control` as it changes
    checked = -math.inf

    def rate_factor() -> float:
        nonlocal factor, checked
        if control is not None and loop.time() - checked >= 0.1:
            checked = loop.time()
            with contextlib.suppress(OSError, ValueError):
                factor = max(1e-3, float(json.loads(control.read_text())["factor"]))
        return factor

    # every app's send times, merged: the n-th frame since the factor last changed is due at
    # anchor + n / (rate x factor) (computed, not summed: no drift, and exactly rate x seconds frames)
    counts = {a["name"]: 0 for a in apps}
    rates = {a["name"]: float(a["rate"]) for a in apps}
    anchors = {a["name"]: (start, 0, 1.0) for a in apps}  # app -> (time, count, factor) since the last change

    def due_of(app: str) -> float:
        t0, n0, f0 = anchors[app]
        return t0 + (counts[app] - n0) / (rates[app] * f0)

    try:
        while not stop.is_set():
            app = min(counts, key=lambda a: (due_of(a), a))
            due = due_of(app)
            if seconds is not None and due - start >= seconds:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                if stop.is_set():
                    break
            sent = time.time()
            lags.append((loop.time() - due) * 1000.0)
            fid = sum(counts.values())
            counts[app] += 1
            if (factor_now := rate_factor()) != anchors[app][2]:  # from this frame on, at the new rate
                anchors[app] = (due, counts[app] - 1, factor_now)
            inflight[fid] = (app, sent, time.perf_counter())
            f.write(json.dumps({"id": fid, "app": app, "t": sent}) + "\n")  # sent: recorded before anything else
            task = asyncio.ensure_future(one(fid, app))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(list(pending), timeout=max(timeouts.values()) + spec.get("grace_s", 5.0))
    finally:
        # whatever is still unanswered now is lost: written VANISHED before its task is cancelled (a
        # cancelled task's CancelledError passes `except Exception` and would write nothing)
        for fid in sorted(inflight):
            outcome(fid, VANISHED)
        for task in list(pending):
            task.cancel()
        watcher.cancel()
        await channel.close()
        lag = sorted(lags)
        f.write(json.dumps({"summary": {"sent": sum(counts.values()), "lag_ms_max": lag[-1] if lag else None,
                                        "lag_ms_p99": lag[int(0.99 * (len(lag) - 1))] if lag else None,
                                        "loop_stalls": stalls}}) + "\n")
        f.close()


def _routes(controller: str, tls_dir: str) -> dict:
    from harpagon.runtime.wire.rpc import sync_channel
    from harpagon.runtime.wire.tls import TlsFiles
    from harpagon.v1 import worker_pb2 as pb
    from harpagon.v1 import worker_pb2_grpc as rpc

    with sync_channel(controller, TlsFiles.load(tls_dir), "controller") as ch:
        stream = rpc.ControllerStub(ch).WatchRoutes(pb.WatchRoutesRequest(frontend_id="faults-probe"), timeout=10)
        try:
            routes = next(stream)
        finally:
            stream.cancel()
    return {"version": routes.version, "refused": dict(routes.refused),
            "modules": [{"app": m.app, "module": m.module,
                         "tuples": [{"batch": t.batch, "name": t.worker_module, "addresses": list(t.addresses)}
                                    for t in m.tuples]} for m in routes.modules]}


def _hostile(controller: str, worker: str, pki: Path, foreign: Path, app: str) -> list[dict]:
    """Each control-plane call a stranger might try, with no certificate, with a certificate of a CA the
    cluster does not trust (for the right role, and verifying the server with the cluster's public CA),
    and with the cluster's certificate of a role that may not make it; then, as the positive control, an
    allowed call that changes nothing to each of the same two servers. The status each got, the status
    it should get (EXPECTED_REFUSAL; OK for a control) and whether it did."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from harpagon.runtime.wire.rpc import MESSAGE_OPTIONS
    from harpagon.runtime.wire.tls import channel_options
    from harpagon.v1 import worker_pb2 as pb
    from harpagon.v1 import worker_pb2_grpc as rpc

    ca = (pki / "ca.crt").read_bytes()

    def channel(address: str, creds: str, role: str, peer: str) -> grpc.Channel:
        if creds == "none":
            return grpc.insecure_channel(address, options=MESSAGE_OPTIONS)
        d = (foreign if creds == "foreign" else pki) / role
        c = grpc.ssl_channel_credentials(root_certificates=ca, private_key=(d / "tls.key").read_bytes(),
                                         certificate_chain=(d / "tls.crt").read_bytes())
        return grpc.secure_channel(address, c, options=[*MESSAGE_OPTIONS, *channel_options(peer)])  # type: ignore[arg-type]

    register = pb.RegisterRequest(worker_id="intruder", address="10.255.255.1:1", hardware="t4",
                                  device="emulated:t4", emulated=True)
    # the newest version there can be, with no modules: taken, it would unload everything for good
    apply = pb.ApplyConfigRequest(config=pb.WorkerConfig(version=HOSTILE_VERSION))
    calls = [  # name, address, the server's role, the role allowed, a role not allowed, the call
        ("Register as a worker", controller, "controller", "worker", "frontend",
         lambda ch: rpc.ControllerStub(ch).Register(register, timeout=5)),
        ("ApplyConfig (empty) to a worker", worker, "worker", "controller", "frontend",
         lambda ch: rpc.WorkerStub(ch).ApplyConfig(apply, timeout=5)),
        ("WatchRoutes", controller, "controller", "frontend", "worker",
         lambda ch: next(rpc.ControllerStub(ch).WatchRoutes(pb.WatchRoutesRequest(frontend_id="intruder"),
                                                             timeout=5))),
        ("ReportRates (1e9 frames/s)", controller, "controller", "frontend", "worker",
         lambda ch: rpc.ControllerStub(ch).ReportRates(pb.RatesReport(frontend_id="intruder", app_rates={app: 1e9},
                                                                      window_s=1.0), timeout=5)),
    ]
    out = []
    for name, address, peer, allowed, wrong, call in calls:
        for creds, role, label in (("none", "", "no certificate (plaintext)"),
                                   ("foreign", allowed, f"foreign CA, role {allowed}"),
                                   ("ours", wrong, f"our CA, wrong role ({wrong})")):
            ch = channel(address, creds, role, peer)
            try:
                call(ch)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name  # type: ignore[attr-defined]
            except StopIteration:
                code = "OK (empty stream)"
            finally:
                ch.close()
            expected = EXPECTED_REFUSAL[creds]
            out.append({"call": name, "credentials": label, "code": code, "expected": expected,
                        "as_expected": code == expected, "control": False})
    controls = [  # name, address, the server's role, an allowed role, the call: read-only, changes nothing
        ("Worker/Health to the worker", worker, "worker", "controller",
         lambda ch: rpc.WorkerStub(ch).Health(pb.HealthRequest(), timeout=5)),
        ("grpc.health.v1.Health/Check to the controller", controller, "controller", "frontend",
         lambda ch: health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)),
    ]
    for name, address, peer, allowed, call in controls:
        ch = channel(address, "ours", allowed, peer)
        try:
            call(ch)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name  # type: ignore[attr-defined]
        finally:
            ch.close()
        out.append({"call": name, "credentials": f"our CA, allowed role ({allowed})", "code": code, "expected": OK,
                    "as_expected": code == OK, "control": True})
    return out


async def _flood(address: str, app: str, seconds: float) -> dict:
    """FLOOD_CONCURRENCY callers sending FLOOD_BYTES-sized frames (each a legal [H, W, 3] tensor) back to
    back for `seconds`: how many, the status each got, and the slowest answer."""
    import grpc
    from tritonclient.grpc import service_pb2 as tpb
    from tritonclient.grpc import service_pb2_grpc as trpc

    shapes = {60_000_000: [5000, 4000, 3]}
    limit = max(FLOOD_BYTES) + (1 << 20)
    channel = grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", limit),
                                                          ("grpc.max_receive_message_length", limit)])
    stub = trpc.GRPCInferenceServiceStub(channel)
    requests = []
    for n in FLOOD_BYTES:
        shape = shapes.get(n) or [math.isqrt(n // 3)] * 2 + [3]
        assert math.prod(shape) == n, (n, shape)
        requests.append(tpb.ModelInferRequest(
            model_name=app, inputs=[tpb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8",
                                                                           shape=shape)],
            raw_input_contents=[bytes(n)]))
    codes: dict[str, int] = {}
    slowest = 0.0
    end = time.monotonic() + seconds

    async def caller(k: int) -> None:
        nonlocal slowest
        i = k
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                await stub.ModelInfer(requests[i % len(requests)], timeout=30.0)
                code = OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            except Exception as exc:  # noqa: BLE001 - counted, never lost
                code = f"CLIENT_{type(exc).__name__}"
            slowest = max(slowest, (time.perf_counter() - t0) * 1000.0)
            codes[code] = codes.get(code, 0) + 1
            i += 1

    try:
        await asyncio.gather(*(caller(k) for k in range(FLOOD_CONCURRENCY)))
    finally:
        await channel.close()
    return {"sent": sum(codes.values()), "codes": codes, "max_ms": slowest}


def _abuse(targets: dict[str, str]) -> dict:
    """On each plaintext health port: ABUSE_WATCHES Watch streams (each on a connection of its own) and
    ABUSE_IDLE idle TCP connections held open while ABUSE_CHECKS Checks are made, each on a connection
    of its own as a probe makes them; per target, how many answered SERVING within CHECK_TIMEOUT_S."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    out = {}
    for name, address in targets.items():
        host, port = address.rsplit(":", 1)
        idle, watch_channels, watches = [], [], []
        try:
            for _ in range(ABUSE_IDLE):
                idle.append(socket.create_connection((host, int(port)), timeout=5))
            for _ in range(ABUSE_WATCHES):
                ch = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                watch_channels.append(ch)
                watches.append(health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service="")))
            time.sleep(0.5)
            ok, slowest, errors = 0, 0.0, {}
            for _ in range(ABUSE_CHECKS):
                t0 = time.perf_counter()
                with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                    try:
                        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""),
                                                                     timeout=CHECK_TIMEOUT_S)
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            ok += 1
                        else:
                            errors["NOT_SERVING"] = errors.get("NOT_SERVING", 0) + 1
                    except grpc.RpcError as exc:
                        code = exc.code().name  # type: ignore[attr-defined]
                        errors[code] = errors.get(code, 0) + 1
                slowest = max(slowest, (time.perf_counter() - t0) * 1000.0)
            watch_codes: dict[str, int] = {}
            for w in watches:
                code = w.code().name if w.done() else "OPEN"
                watch_codes[code] = watch_codes.get(code, 0) + 1
            out[name] = {"checks": ABUSE_CHECKS, "ok": ok, "max_ms": slowest, "errors": errors, "watches": watch_codes}
        finally:
            for w in watches:
                w.cancel()
            for ch in watch_channels:
                ch.close()
            for sock in idle:
                sock.close()
    return out


# --------------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------------


def add_parser(bench) -> argparse.ArgumentParser:
    """`harpagon bench faults`, added to the `bench` subparsers of harpagon.cli."""
    p = bench.add_parser("faults", help="the live system under faults: worker, frontend and controller crashes "
                                        "and stalls, a partition, overload, hostile calls",
                         description="Run a cluster of separate processes (1 controller, 1 frontend, emulated "
                                     "workers, mutual TLS; each in its own network namespace when run as root) "
                                     "under a stream of frames, inject one fault per scenario, and write a "
                                     "report of what the frames got against the goals.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="shorter phases (about 2 minutes instead of 3)")
    p.add_argument("--loopback", action="store_true",
                   help="every process on 127.0.0.1, no network namespaces (the partition is skipped)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="app config (default configs/faults.yaml; needs a serve section)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"emulated t4 workers (default {DEFAULT_WORKERS}: the plan's 3 and spares)")
    p.add_argument("--logs", type=Path, default=None, metavar="DIR",
                   help="also write every process's output (controller, frontend, workers) to DIR")
    p.set_defaults(func=cmd_bench_faults)
    return p


def cmd_bench_faults(args: argparse.Namespace) -> int:
    if args.workers < 2:
        print(f"harpagon bench faults: --workers must be >= 2, got {args.workers}", file=sys.stderr)
        return 2
    if not args.config.is_file():
        print(f"harpagon bench faults: --config {str(args.config)!r}: no such file", file=sys.stderr)
        return 2
    command = ("harpagon bench faults" + (f" --out {args.out}" if args.out != DEFAULT_OUT else "")
               + (" --quick" if args.quick else "") + (" --loopback" if args.loopback else "")
               + (f" --config {args.config}" if args.config != DEFAULT_CONFIG else "")
               + (f" --workers {args.workers}" if args.workers != DEFAULT_WORKERS else ""))
    results, _ = run_suite(args.out, args.quick, args.loopback, args.config, args.workers, command,
                           logs=args.logs)
    missed = [r for r in results if not r.skipped and not r.met]
    for r in results:
        state = f"skipped ({r.skipped})" if r.skipped else "met" if r.met else "MISSED: " + "; ".join(
            f"{g.name} ({g.detail})" for g in r.goals if not g.met)
        print(f"{r.number:2d} {r.title}: {state}")
    print(f"report: {args.out}")
    return 1 if missed else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_client":
        asyncio.run(_client(json.loads(Path(argv[1]).read_text()), Path(argv[2])))
        return 0
    if argv and argv[0] in ("_flood", "_abuse"):
        h = argparse.ArgumentParser(prog=f"harpagon.bench.faults {argv[0]}")
        h.add_argument("--address")
        h.add_argument("--app")
        h.add_argument("--seconds", type=float)
        h.add_argument("--targets", type=json.loads)
        a = h.parse_args(argv[1:])
        print(json.dumps(asyncio.run(_flood(a.address, a.app, a.seconds)) if argv[0] == "_flood" else _abuse(a.targets)))
        return 0
    if argv and argv[0] in ("_routes", "_hostile"):
        h = argparse.ArgumentParser(prog=f"harpagon.bench.faults {argv[0]}")
        h.add_argument("--controller", required=True)
        h.add_argument("--tls-dir")
        h.add_argument("--worker")
        h.add_argument("--pki", type=Path)
        h.add_argument("--foreign", type=Path)
        h.add_argument("--app", default="")
        a = h.parse_args(argv[1:])
        answer = (_routes(a.controller, a.tls_dir) if argv[0] == "_routes"
                  else _hostile(a.controller, a.worker, a.pki, a.foreign, a.app))
        print(json.dumps(answer))
        return 0
    parser = argparse.ArgumentParser(prog="python -m harpagon.bench.faults")
    sub = parser.add_subparsers(dest="bench", required=True)
    add_parser(sub)
    args = parser.parse_args(["faults", *argv] if not argv or argv[0] != "faults" else argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
