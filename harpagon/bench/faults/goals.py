"""The suite's goals, and how a scenario's result is scored against them: each scenario has the goals
of every scenario (no frame vanished, no late success) and those of its fault."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harpagon.bench.faults.frames import OK, Outcome, codes

#: A dead or stalled worker routed around within this (s)...
DISRUPTION_GOAL_S = 3.0
#: ...and a restarted controller with a plan in force within this (s) of its start.
CONVERGE_GOAL_S = 5.0
#: From this long after a lull's rate is back (s), at least LULL_GOAL of the frames are OK in their SLO.
LULL_RECOVER_S = 10.0
LULL_GOAL = 0.99
#: A big-message flood may cost the other clients at most this fraction of their frames.
FLOOD_GOAL = 0.01
#: Health-port abuse: Watch streams and idle connections held open while CHECKS Checks must each answer
#: SERVING within CHECK_TIMEOUT_S.
ABUSE_WATCHES, ABUSE_IDLE, ABUSE_CHECKS, CHECK_TIMEOUT_S = 64, 64, 20, 1.0
#: One of two frontends killed: the controller re-plans for the other within this (s).
FRONTEND_LEFT_GOAL_S = 5.0
#: No process of ours outlives its parent by more than this (s).
ORPHAN_GOAL_S = 5.0
#: The suite's workers' `--drain-timeout` (the default): a worker sent SIGTERM waits up to this long (s)
#: for the controller to move its modules elsewhere, then its batches in flight get up to 10 s more...
WORKER_DRAIN_TIMEOUT_S = 60.0
#: ...so it must have exited (code 0) within this (s) of the SIGTERM...
LEAVE_EXIT_GOAL_S = WORKER_DRAIN_TIMEOUT_S + 10.0
#: ...and the controller have a plan without it in force within this (s).
LEAVE_REPLAN_GOAL_S = 5.0
#: The scenarios that send workers SIGTERM (judged on the frames from the SIGTERM on).
LEAVE_SCENARIOS = ("worker-sigterm", "scale-down")
#: Hostile calls: the status each kind of credentials must get. Without a certificate of our CA the TLS
#: handshake fails (UNAVAILABLE); with one of the wrong role the server refuses the method.
EXPECTED_REFUSAL = {"none": "UNAVAILABLE", "foreign": "UNAVAILABLE", "ours": "PERMISSION_DENIED"}

GOALS = (
    "every scenario: 0 frames vanished and 0 late successes",
    f"a worker killed or stalled is routed around within {DISRUPTION_GOAL_S:g} s (disruption)",
    (f"a restarted controller has a plan in force within {CONVERGE_GOAL_S:g} s of its start and unloads no "
    "routed module"),
    "overload evicts no healthy worker",
    (f"one of two frontends killed: its clients get a status for every frame (none vanished, none late), the "
     f"other's clients lose no frame, and the controller re-plans for one frontend within {FRONTEND_LEFT_GOAL_S:g} s"),
    (f"after a lull, at least {LULL_GOAL:.0%} of frames OK within their SLO from {LULL_RECOVER_S:g} s after the rate "
     "returns"),
    f"a flood of big messages costs the other clients at most {FLOOD_GOAL:.0%} of their frames",
    (f"health checks answer SERVING within {CHECK_TIMEOUT_S:g} s while {ABUSE_WATCHES} Watch streams and "
     f"{ABUSE_IDLE} idle connections are held open on the health port"),
    "a worker that answers INTERNAL costs no frame: its batches are retried on its tuple's other worker",
    (f"workers sent SIGTERM (one busy worker; half the workers at once, as a scale-down picks them) leave "
     f"gracefully: every frame sent from the SIGTERM on is answered OK within its SLO, each exits with code 0 "
     f"within its drain timeout + 10 s ({LEAVE_EXIT_GOAL_S:g} s), the controller lets each go (`left`, not "
     f"evicted) with a plan without them in force within {LEAVE_REPLAN_GOAL_S:g} s that routes every module of "
     "every app to the remaining workers"),
    (f"no process of ours outlives its parent by more than {ORPHAN_GOAL_S:g} s (kill -9 of `harpagon serve`, and of "
     "the controller: its planner process), and a killed `serve` leaves no CA key"),
    ("every hostile control-plane call is refused, each with the status that says why (PERMISSION_DENIED for a "
     "certificate of our CA with the wrong role, UNAVAILABLE without a certificate of our CA), the allowed "
     "control calls to the same servers succeed, and the plan stays as it was"),
)


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


def goals_of(r: ScenarioResult) -> list[Goal]:
    """The goals of a scenario, met or not, each with the figures it was scored on (none if skipped)."""
    if r.skipped:
        return []
    return [*_frame_goals(r), *_FAULT_GOALS.get(r.key, lambda r: [])(r)]


def _frame_goals(r: ScenarioResult) -> list[Goal]:
    """Every scenario's: no frame vanished, no late success.

    A frame the frontend answered in time, whose answer was still in the process when it was stopped
    (SIGSTOP), reaches its client late: nothing in the process can help it once the answer is handed
    to gRPC. So the frontend-stop scenario counts such frames (`late_frozen`: sent before the stop and
    late; a frame the frontend takes after the stop is charged the stop, and dropped) apart from the
    late-success goal, and says how many."""
    o = r.outcome
    frozen = r.extra.get("late_frozen", 0)
    return [Goal("0 vanished", o.vanished == 0, f"{o.vanished} vanished"),
            Goal("0 late successes", o.late - frozen == 0,
                 f"{o.late} late" + (f" ({frozen} answered before the frontend was stopped, delivered after "
                                     "it went on)" if frozen else ""))]


def _routed_around(r: ScenarioResult) -> list[Goal]:
    d = r.outcome.disruption_s if r.outcome.disruption_s is not None else math.inf
    return [Goal(f"routed around within {DISRUPTION_GOAL_S:g} s", d <= DISRUPTION_GOAL_S, f"disruption {d:.2f} s")]


def _restart_goals(r: ScenarioResult) -> list[Goal]:
    c = r.extra.get("converge_s")
    goals = [Goal(f"plan in force within {CONVERGE_GOAL_S:g} s of the restart", c is not None and c <= CONVERGE_GOAL_S,
                  f"converged in {c:.2f} s" if c is not None else "no plan in force")]
    unloaded = r.extra.get("unloaded_routed", [])
    moved = r.extra.get("routes_same") is False
    pushes = r.extra.get("pushes") or 0
    # no push parsed at all: nothing was checked (the workers' `configuration N in force` lines missing)
    detail = ("no configuration push parsed from the workers' logs after the restart (no `configuration N in "
              "force` line): cannot tell" if pushes == 0
              else f"unloaded {unloaded}" if unloaded else f"none unloaded in {pushes} pushes")
    detail += "; routes moved" if moved else "; same routes" if r.extra.get("routes_same") else ""
    goals.append(Goal("no routed module unloaded", pushes > 0 and not unloaded and not moved, detail))
    if "orphans" in r.extra:
        goals.append(_orphan_goal(r.extra["orphans"]))
    return goals


def _no_eviction(r: ScenarioResult) -> list[Goal]:
    return [Goal("no worker evicted", r.evicted == 0, f"{r.evicted} evicted")]


def _lull_goal(r: ScenarioResult) -> list[Goal]:
    ok, sent = r.extra.get("recovered_ok", 0), r.extra.get("recovered_sent", 0)
    return [Goal(f">= {LULL_GOAL:.0%} OK from {LULL_RECOVER_S:g} s after the rate returns",
                 sent > 0 and ok >= LULL_GOAL * sent, f"{ok}/{sent} OK")]


def _flood_goals(r: ScenarioResult) -> list[Goal]:
    o = r.outcome
    lost = o.sent - o.ok
    flood = r.extra.get("flood", {})
    unanswered = {c: n for c, n in flood.get("codes", {}).items() if c.startswith("CLIENT") or c == "DEADLINE_EXCEEDED"}
    return [Goal(f"the other clients lose <= {FLOOD_GOAL:.0%} of their frames", o.sent > 0 and lost <= FLOOD_GOAL * o.sent,
                 f"{lost}/{o.sent} not OK"),
            Goal("every big message answered", flood.get("sent", 0) > 0 and not unanswered,
                 f"{flood.get('sent', 0)} sent: {codes(flood.get('codes', {}))}")]


def _health_goal(r: ScenarioResult) -> list[Goal]:
    health = r.extra.get("health", {})
    short = {name: f"{h['ok']}/{h['checks']}" for name, h in health.items() if h["ok"] < h["checks"]}
    return [Goal(f"every Check SERVING within {CHECK_TIMEOUT_S:g} s", bool(health) and not short,
                 "; ".join(f"{name}: {h['ok']}/{h['checks']} (max {h['max_ms']:.0f} ms)"
                           for name, h in health.items()) or "no target")]


def _no_frame_failed(r: ScenarioResult) -> list[Goal]:
    o = r.outcome
    return [Goal("no frame failed", o.sent > 0 and o.failed_total == 0, f"{o.failed_total} failed")]


def _leave_goals(r: ScenarioResult) -> list[Goal]:
    """Workers sent SIGTERM (`stopped`: each one's exit code and time, when the controller let it go, and
    whether it gave up waiting) left gracefully, and the plan without them serves everything. What the
    leave cost is judged on the frames sent from the SIGTERM on (`since_fault`: to the end of the
    scenario, the workers started again and the cluster back included), each of which must be OK
    within its SLO as in the baseline; the frames of the steady phase before it (in the table's
    columns) only to the goals of every scenario."""
    stopped = r.extra.get("stopped", [])
    late = [f"{w['address']}: " + ("still running" if w.get("exit_s") is None else
                                   f"code {w['code']} after {w['exit_s']:.2f} s")
            for w in stopped if w.get("code") != 0 or w.get("exit_s") is None or w["exit_s"] > LEAVE_EXIT_GOAL_S]
    exits = ", ".join(f"{w['exit_s']:.2f} s" for w in stopped if w.get("exit_s") is not None)
    not_left = [w["address"] for w in stopped if w.get("left_s") is None]
    gave_up = [w["address"] for w in stopped if w.get("gave_up")]
    left_detail = (f"{len(stopped) - len(not_left)}/{len(stopped)} left, {r.evicted} evicted"
                   + (f"; no `left` line for {not_left}" if not_left else "")
                   + (f"; gave up waiting for the controller: {gave_up}" if gave_up else ""))
    plan = r.extra.get("left_plan_s")
    after = r.extra.get("plan_after") or {}
    wrong = ([f"not routed: {after['unrouted']}"] if after.get("unrouted") else []) + \
            ([f"still routed to: {after['stopped_routed']}"] if after.get("stopped_routed") else []) + \
            ([f"refused: {after['refused']}"] if after.get("refused") else [])
    since = r.extra.get("since_fault", {})
    sent, ok, failed = since.get("sent", 0), since.get("ok", 0), since.get("failed", {})
    bad = [f"failed {codes(failed)}"] if failed else []
    bad += [f"{since[k]} {k}" for k in ("vanished", "late") if since.get(k)]
    return [Goal("every frame from the SIGTERM on OK within its SLO", sent > 0 and ok == sent,
                 f"{ok}/{sent} OK" + "".join(f", {b}" for b in bad)),
            Goal(f"each exited 0 within {LEAVE_EXIT_GOAL_S:g} s", bool(stopped) and not late,
                 "; ".join(late) if late else f"{len(stopped)} exited 0 after {exits}" if stopped else "none stopped"),
            Goal("each let go, not evicted", bool(stopped) and not not_left and not gave_up and r.evicted == 0,
                 left_detail),
            Goal(f"a plan without them in force within {LEAVE_REPLAN_GOAL_S:g} s",
                 plan is not None and plan <= LEAVE_REPLAN_GOAL_S,
                 f"in {plan:.2f} s" if plan is not None else "no plan after they left"),
            Goal("that plan serves every app with the remaining workers", bool(after) and not wrong,
                 "; ".join(wrong) if wrong else (f"{after.get('modules', 0)} modules routed to "
                                                 f"{after.get('workers', 0)} workers" if after else "no routes read"))]


def _frontend_of_two_goals(r: ScenarioResult) -> list[Goal]:
    second = r.extra.get("second_client", {})
    alone = r.extra.get("alone_plan_s")
    return [*_no_frame_failed(r),
            Goal("the killed frontend's clients: every frame answered or failed",
                 second.get("sent", 0) > 0 and second.get("vanished", 1) == 0 and second.get("late", 1) == 0,
                 f"{second.get('sent', 0)} sent: {second.get('ok', 0)} OK, failed {second.get('failed', '?')}, "
                 f"{second.get('vanished', '?')} vanished, {second.get('late', '?')} late"),
            Goal(f"re-planned for one frontend within {FRONTEND_LEFT_GOAL_S:g} s",
                 alone is not None and alone <= FRONTEND_LEFT_GOAL_S,
                 f"in {alone:.2f} s" if alone is not None else "no plan after it left")]


def _serve_kill_goals(r: ScenarioResult) -> list[Goal]:
    ca = r.extra.get("ca_keys_left", [])
    return [_orphan_goal(r.extra.get("orphans", {})),
            Goal("no CA key left", "keys_left" in r.extra and not ca, f"left: {ca}" if ca else "none left")]


def _hostile_goals(r: ScenarioResult) -> list[Goal]:
    calls = r.extra.get("calls", [])
    hostile = [c for c in calls if not c.get("control")]
    controls = [c for c in calls if c.get("control")]
    let_in = [f"{c['call']} ({c['credentials']})" for c in hostile if c["code"].startswith(OK)]
    wrong = [f"{c['call']} ({c['credentials']}): {c['code']}, not {c['expected']}" for c in hostile
             if not c["code"].startswith(OK) and not c["as_expected"]]
    refused = Goal("every hostile call refused", bool(hostile) and not let_in and not wrong,
                   f"{sum(c['as_expected'] for c in hostile)}/{len(hostile)} refused as expected"
                   + (f"; let in: {let_in}" if let_in else "") + (f"; wrong status: {wrong}" if wrong else ""))
    # the positive control: the same servers answer an allowed call (else every refusal may be an
    # unreachable address or a dead server)
    failed = [f"{c['call']} ({c['credentials']}): {c['code']}" for c in controls if not c["as_expected"]]
    answered = Goal("allowed control calls answered OK", bool(controls) and not failed,
                    (f"{len(controls) - len(failed)}/{len(controls)} OK" if controls else "no control call")
                    + (f"; failed: {failed}" if failed else ""))
    changed = r.extra.get("plan_changed", [])
    return [refused, answered, Goal("plan unchanged", not changed, "; ".join(changed) or "unchanged")]


def _orphan_goal(orphans: dict) -> Goal:
    """Every process the killed one had started gone within ORPHAN_GOAL_S."""
    n, last, left = orphans.get("children", 0), orphans.get("outlived_s"), orphans.get("survivors", [])
    return Goal(f"its processes gone within {ORPHAN_GOAL_S:g} s", n > 0 and not left and last is not None
                and last <= ORPHAN_GOAL_S, (f"{n} processes, the last gone after {last:.2f} s" if not left and last is not None
                                            else f"{len(left)} of {n} still running: {left}"))


#: The goals of each fault, beside every scenario's.
_FAULT_GOALS: dict[str, Callable[[ScenarioResult], list[Goal]]] = {
    "worker-kill": _routed_around, "worker-stop": _routed_around, "controller-kill": _restart_goals,
    "overload": _no_eviction, "lull": _lull_goal, "big-messages": _flood_goals, "health-abuse": _health_goal,
    "worker-internal": _no_frame_failed, "serve-kill": _serve_kill_goals, "hostile": _hostile_goals,
    "frontend-of-two-kill": _frontend_of_two_goals, **dict.fromkeys(LEAVE_SCENARIOS, _leave_goals),
}
