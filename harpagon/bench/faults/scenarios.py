"""The scenarios, in the order they run, and the faults each injects into the running cluster: a kill
-9 or SIGSTOP of a worker, the frontend or the controller, a SIGTERM of a busy worker and of half the
workers at once (a scale-down: each must leave gracefully), a partition (blackhole routes between two
namespaces), hostile control-plane calls, health-port abuse, a big-message flood, a worker whose device
answers INTERNAL, a kill -9 of `harpagon serve`, a lull and an overload; and a second frontend that joins
(the apps are then shared between the two) and is killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harpagon.bench.faults.callers import FLOOD_BYTES, FLOOD_CONCURRENCY, HOSTILE_VERSION
from harpagon.bench.faults.cluster import Cluster
from harpagon.bench.faults.figures import fill_figures
from harpagon.bench.faults.frames import VANISH_AFTER_S, RecordTail, codes, summarize
from harpagon.bench.faults.goals import (
    ABUSE_CHECKS,
    ABUSE_IDLE,
    ABUSE_WATCHES,
    LEAVE_EXIT_GOAL_S,
    ORPHAN_GOAL_S,
    ScenarioResult,
)
from harpagon.bench.faults.logs import (
    CONFIG_RE,
    GAVE_UP_RE,
    JOINED_RE,
    LEFT_RE,
    PLAN_RE,
    REGISTERED_RE,
    config_pushes,
    plan_lines,
)
from harpagon.bench.faults.processes import ExitWatch, Proc, log, process_tree
from harpagon.planner.streams import app_of
from harpagon.runtime.lifecycle import free_port

#: The overload is this many times the planned rate (the steady stream plus 9x more).
OVERLOAD_FACTOR = 10.0
#: The second frontend's id: it sorts first, so it owns the suite's one app and the first frontend forwards
#: its frames to it (docs/model.md, "Several frontends") until it is killed.
SECOND_FRONTEND_ID = "frontend-0"
#: A lull sends this fraction of every app's rate (1 of 20 frames/s).
LULL_FACTOR = 0.05


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
    left_observe_s: float = 2.0  # workers sent SIGTERM: the plan without them observed, then they start again


FULL = Timing(steady_s=3.0, observe_s=8.0)
QUICK = Timing(steady_s=1.5, observe_s=6.0, overload_s=5.0, lull_s=12.0, lull_after_s=13.0, flood_s=4.0)

SCENARIOS = (
    ("baseline", "baseline"),
    ("worker-kill", "worker kill -9"),
    ("worker-stop", "worker SIGSTOP"),
    ("worker-sigterm", "SIGTERM a busy worker"),
    ("scale-down", "scale down under load"),
    ("frontend-kill", "frontend kill -9"),
    ("frontend-stop", "frontend SIGSTOP"),
    ("frontend-of-two-kill", "kill -9 of one of two frontends"),
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


def pick_scale_down(routes: dict, ours: Iterable[str], n: int) -> list[tuple[str, str | None]]:
    """`n` of our workers (addresses) to stop at once, as a scale-down picks pods, busy or not: a routed
    worker of each module first (each a different one), all but one of the `n` (at least one) where an
    idle worker remains for the last; then idle ones, then other routed ones. Each with the first module
    routed to it (None: idle)."""
    ours = list(ours)
    routed: dict[str, str] = {}
    per_module: list[str] = []
    for m in routes.get("modules", []):
        addrs = [a for t in m["tuples"] for a in t["addresses"] if a in ours]
        for a in addrs:
            routed.setdefault(a, f"{m['app']}/{m['module']}")
        pick = next((a for a in addrs if a not in per_module), None)
        if pick is not None:
            per_module.append(pick)
    idle = [a for a in ours if a not in routed]
    busy = max(1, n - 1) if idle else n
    order = [*per_module[:busy], *idle, *per_module[busy:], *(a for a in routed if a not in per_module)]
    return [(a, routed.get(a)) for a in order[:n]]


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


def _registered_id(p: Proc) -> str | None:
    """The id a worker process last registered under (its log)."""
    ids = [m.group(1) for _, s in p.snapshot() if (m := REGISTERED_RE.search(s))]
    return ids[-1] if ids else None


def _wait_exits(procs: dict[str, Proc], deadline: float) -> dict[str, float]:
    """When (wall clock) each of `procs` exited, waiting for them until `deadline`."""
    gone: dict[str, float] = {}
    while len(gone) < len(procs) and time.time() < deadline:
        for role, p in procs.items():
            if role not in gone and not p.alive():
                gone[role] = time.time()
        time.sleep(0.05)
    return gone


class Suite:
    """The scenarios against one cluster, one after another, with the steady load client running."""

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
        log(f"  cluster back after {r.back_s:.1f} s" if back is not None
             else f"  cluster NOT back within {self.timing.back_timeout_s:g} s")

    def _wait_client(self, client: subprocess.Popen, name: str, verb: str) -> None:
        """Wait until a load client is done with its frames (answered or given up on); the log says if it
        was not in time, or failed."""
        try:
            client.wait(timeout=max(self.timeouts.values()) + 15)
        except subprocess.TimeoutExpired:
            log(f"{name} did not {verb} in time\n{self.c.client_tail()}")
        if client.returncode:
            log(f"{name} exited with {client.returncode}\n{self.c.client_tail()}")

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
        r.extra["target"], r.extra["target_module"] = addr, module
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

    def worker_sigterm(self, r: ScenarioResult) -> None:
        """SIGTERM to a routed worker: it must leave (the controller re-plans without it, routes around
        it, then empties it) and exit 0 without costing a frame; then a replacement starts."""
        target = self._aim(r)
        if target is None:
            return
        role, _ = target
        r.fault = "SIGTERM " + r.fault
        self._leave(r, {role: r.extra["target_module"]})

    def scale_down(self, r: ScenarioResult) -> None:
        """SIGTERM to half the workers at once, busy or not, as a Deployment's scale-down picks its pods:
        each must leave as one alone does, and the plan after must serve every app with the workers left;
        then they start again (a scale-up)."""
        routes = self.c.routes()
        n = len(self.c.workers) // 2
        picked = pick_scale_down(routes, [p.address for p in self.c.workers.values()], n)
        if not any(module for _, module in picked):
            r.skipped = "nothing routed to our workers"
            return
        roles = {role: module for addr, module in picked if (role := self.c.role_of(addr)) is not None}
        busy = [f"{addr} ({module})" for addr, module in picked if module]
        idle = [addr for addr, module in picked if not module]
        r.fault = (f"SIGTERM {len(roles)} of {len(self.c.workers)} workers at once: busy {', '.join(busy)}"
                   + (f"; idle {', '.join(idle)}" if idle else ""))
        time.sleep(self.timing.steady_s)
        r.fault_at = time.time()
        self._leave(r, roles)

    def _leave(self, r: ScenarioResult, roles: dict[str, str | None]) -> None:
        """SIGTERM the workers of `roles` (each with the module routed to it, None: idle) now (`r.fault_at`);
        wait for each to exit and for the controller to let it go and have a plan without them in force;
        read the routes of that plan; observe it for a while, then start each again and wait until the
        cluster is back."""
        procs = {role: self.c.workers[role] for role in roles}
        ids = {role: _registered_id(p) for role, p in procs.items()}
        try:
            for p in procs.values():
                p.signal(signal.SIGTERM)
            self._left(r, procs, ids, roles)
        finally:  # whatever happened, the suite goes on with every worker
            for p in procs.values():
                if p.alive():  # it did not go in time: no port for its successor else
                    p.kill()
            restarted = time.time()
            for p in [self.c.start_worker(role, wait=False) for role in roles]:
                p.wait_ready()
        r.extra["restart_ready_s"] = time.time() - restarted
        self._back(r, restarted)

    def _left(self, r: ScenarioResult, procs: dict[str, Proc], ids: dict[str, str | None],
              roles: dict[str, str | None]) -> None:
        """The figures of the workers sent SIGTERM (`procs`, registered as `ids`): when each exited and
        with what code, when the controller let it go, when its plan without them was in force, and
        what the routes serve once that plan has served a while."""
        exits = _wait_exits(procs, r.fault_at + LEAVE_EXIT_GOAL_S)
        controller = self.c.controller
        left: dict[str, float] = {}
        for role, wid in ids.items():  # the controller's line may come just after the worker is gone
            found = None if wid is None else controller.wait_line(
                lambda s, wid=wid: (m := LEFT_RE.search(s)) is not None and m.group(1) == wid, 5.0, r.fault_at)
            if found is not None:
                left[role] = found[0]
        plan = None
        if len(left) == len(roles):
            plan = controller.wait_line(lambda s: PLAN_RE.search(s) is not None, 10.0, max(left.values()))
        r.extra["left_plan_s"] = None if plan is None else plan[0] - r.fault_at
        r.extra["stopped"] = [{"role": role, "address": p.address, "id": ids[role], "module": roles[role],
                               "code": p.popen.returncode if role in exits else None,
                               "exit_s": exits[role] - r.fault_at if role in exits else None,
                               "left_s": left[role] - r.fault_at if role in left else None,
                               "gave_up": any(GAVE_UP_RE.search(s) for _, s in p.snapshot(r.fault_at))}
                              for role, p in procs.items()]
        # the routes probe (a process of its own) once the new routes have served a while: its start
        # costs CPU that the workers taking over need more (the cluster shares the machine's cores)
        self._until((plan[0] if plan is not None else time.time()) + self.timing.left_observe_s)
        r.extra["plan_after"] = self._served(self.c.routes(), {p.address for p in procs.values()})
        log(f"  {len(exits)}/{len(roles)} exited, {len(left)} let go; plan without them after "
            + (f"{r.extra['left_plan_s']:.2f} s" if plan is not None else "- (none)")
            + f": {r.extra['plan_after']['plan']}")

    def _served(self, routes: dict, stopped: set[str]) -> dict[str, Any]:
        """What the routes serve: the modules of our apps no tuple serves, the stopped workers still
        routed to, the apps refused, how many modules and workers are routed, and the plan in words."""
        want = {f"{a.name}/{m.name}" for a in self.c.workload.apps for m in a.modules}
        have = {f"{app_of(m['app'])}/{m['module']}" for m in routes.get("modules", [])
                if any(t["addresses"] for t in m["tuples"])}
        addrs = {a for m in routes.get("modules", []) for t in m["tuples"] for a in t["addresses"]}
        return {"unrouted": sorted(want - have), "stopped_routed": sorted(addrs & stopped),
                "refused": dict(routes.get("refused", {})), "modules": len(have), "workers": len(addrs),
                "plan": describe_plan(routes)}

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

    def frontend_of_two_kill(self, r: ScenarioResult) -> None:
        """A second frontend joins and owns the app; clients are spread over both (each at half the rate);
        then the second is killed: its clients see their frames fail, the first frontend's clients see
        nothing (their frames forwarded to the dead owner are served by the first), and the controller
        re-plans for one frontend."""
        joined = time.time()
        second = self.c.start_second_frontend(SECOND_FRONTEND_ID)
        shared = self._plan_after(f"frontend {SECOND_FRONTEND_ID} joined", joined)
        if shared is None:
            r.skipped = "the controller made no plan for two frontends within 30 s"
            second.kill()
            return
        r.extra["shared_plan_s"] = shared - joined
        self.c.set_rate(0.5)  # the planned rate in all: half through each frontend
        out = self.c.tmp / "second.jsonl"
        tail = RecordTail(out, self.timeouts)
        start_at = time.time() + 1.5  # the client is up by then
        client = self.c.start_client(out, 1.0, self.timing.steady_s + self.timing.observe_s, start_at,
                                     address=self.c.address_of("fe2"))
        self._until(start_at + self.timing.steady_s)
        r.fault_at = time.time()
        second.signal(signal.SIGKILL)
        r.fault = (f"kill -9 the second frontend ({SECOND_FRONTEND_ID}, the app's owner), each frontend's clients "
                   "at half the rate")
        self._until(r.fault_at + self.timing.observe_s)
        left = self._plan_after(f"frontend {SECOND_FRONTEND_ID} left", r.fault_at, wait_s=0.0)
        r.extra["alone_plan_s"] = None if left is None else left - r.fault_at
        self._wait_client(client, "  the second frontend's client", "finish")
        self.c.set_rate(1.0)
        o = summarize(tail.final(), self.slo, 0.0, float("inf"), None)
        r.extra["second_client"] = {"sent": o.sent, "ok": o.ok, "late": o.late, "vanished": o.vanished,
                                    "failed": codes(o.failed)}
        self._back(r, time.time())

    def _plan_after(self, text: str, since: float, wait_s: float = 30.0) -> float | None:
        """When the first plan was in force after the controller logged `text` (from `since` on); waits up
        to `wait_s` for both (0: only what it has logged already)."""
        controller, end = self.c.controller, time.monotonic() + wait_s
        said = controller.wait_line(lambda s: text in s, wait_s, since)
        if said is None:
            return None
        plan = controller.wait_line(lambda s: PLAN_RE.search(s) is not None, max(0.0, end - time.monotonic()),
                                    said[0])
        return None if plan is None else plan[0]

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
            log(f"  new controller: plan in force {found[0] - restart:.2f} s after its start")
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
        p = Proc("serve", [sys.executable, "-m", "harpagon.cli", "serve", str(config), "--port", str(free_port()),
                           "--metrics-port", str(free_port())], "serving on ", 120.0, env={"TMPDIR": str(tmpdir)})
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
        self._wait_client(client, "  the overload client", "finish")
        self._until(r.fault_at + self.timing.observe_s)
        self._back(r, healed)
        burst = self.burst.final()
        if burst:
            span = max(f.t for f in burst) - min(f.t for f in burst)
            base = [f for f in self.records.read() if start_at <= f.t < start_at + self.timing.overload_s]
            r.extra["offered_per_s"] = (len(burst) + len(base)) / max(span, 1e-9)
            o = summarize([*burst, *base], self.slo, start_at, start_at + self.timing.overload_s + 1.0, start_at)
            r.extra["burst_ok"] = o.ok
            r.extra["burst_failed"] = codes(o.failed)
        if self.burst.summary:
            r.extra["send_lag_ms_max"] = self.burst.summary.get("lag_ms_max")

    # --- the run -----------------------------------------------------------------------------

    def run(self, only: Sequence[str] | None = None) -> list[ScenarioResult]:
        funcs = {"baseline": self.baseline, "worker-kill": self.worker_kill, "worker-stop": self.worker_stop,
                 "worker-sigterm": self.worker_sigterm, "scale-down": self.scale_down,
                 "frontend-kill": self.frontend_kill, "frontend-stop": self.frontend_stop,
                 "frontend-of-two-kill": self.frontend_of_two_kill,
                 "controller-kill": self.controller_kill, "controller-stop": self.controller_stop,
                 "partition": self.partition, "hostile": self.hostile, "health-abuse": self.health_abuse,
                 "big-messages": self.big_messages, "worker-internal": self.worker_internal,
                 "serve-kill": self.serve_kill, "lull": self.lull, "overload": self.overload}
        for number, (key, title) in enumerate(SCENARIOS, 1):
            if only and key not in only:
                continue
            r = ScenarioResult(number, key, title, start=time.time())
            log(f"{number}/{len(SCENARIOS)} {title}")
            try:
                funcs[key](r)
            except Exception as exc:  # noqa: BLE001 - the scenario is reported as not run, the suite goes on
                r.skipped = f"error: {type(exc).__name__}: {str(exc)[:300]}"
                log(f"  {r.skipped}")
                self.c.wait_back(time.time(), self.records, self.timing.back_timeout_s)
            r.end = time.time()
            if r.fault:
                log(f"  {r.fault}")
            self.results.append(r)
        return self.results

    def finish(self, client: subprocess.Popen) -> None:
        """Stop the steady client, wait for its frames, and fill in every scenario's figures and goals."""
        stopped = time.time()
        client.send_signal(signal.SIGTERM)
        self._wait_client(client, "the load client", "stop")
        steady = self.records.final()
        burst = self.burst.final() if self.burst is not None else []
        # each client's own event-loop stalls, from its summary (read with its last records)
        stalls = {key: tail.summary.get("loop_stalls", [])
                  for key, tail in (("client_lag_ms_max", self.records), ("burst_client_lag_ms_max", self.burst))
                  if tail is not None and tail.summary is not None}
        fill_figures(self.results, steady, burst, stalls, self.c.all_controller_lines(), self.slo, stopped,
                     self.timing.lull_after_s)
