"""Each scenario's figures once the run is over, from every frame the clients recorded and the
controller's log: counts and disruption in the scenario's window, the re-plan, the evictions, the
lull's recovery, the frames from a SIGTERM on and what was late; then its goals."""

from __future__ import annotations

from collections.abc import Sequence

from harpagon.bench.faults.frames import Frame, is_late, summarize
from harpagon.bench.faults.goals import LEAVE_SCENARIOS, LULL_RECOVER_S, ScenarioResult, goals_of
from harpagon.bench.faults.logs import REMOVED_RE, plan_lines


def fill_figures(results: Sequence[ScenarioResult], steady: list[Frame], burst: list[Frame],
                 stalls: dict[str, list[tuple[float, float]]], controller_lines: list[tuple[float, str]],
                 slo: dict[str, float], stopped: float, lull_after_s: float) -> None:
    """Fill in the figures and goals of every scenario that ran: each one's window lasts until the next
    one starts (the last until `stopped`). `stalls`: per client whose summary came back, its event loop's
    stalls as (wall time, ms), keyed by the figure they give."""
    frames = steady + burst
    plans = [t for t, _ in plan_lines(controller_lines)]
    removed = [t for t, s in controller_lines if REMOVED_RE.search(s)]
    for i, r in enumerate(results):
        if r.skipped:
            continue
        end = results[i + 1].start if i + 1 < len(results) else stopped
        r.outcome = summarize(frames, slo, r.start, end, r.fault_at)
        if r.fault_at is not None:
            nxt = [t for t in plans if r.fault_at <= t < end]
            r.replan_s = nxt[0] - r.fault_at if nxt else None
        r.evicted = sum(r.start <= t < end for t in removed)
        if r.key == "lull" and "back_at" in r.extra:
            back = r.extra["back_at"] + LULL_RECOVER_S
            o = summarize(frames, slo, back, r.extra["back_at"] + lull_after_s, None)
            r.extra["recovered_ok"], r.extra["recovered_sent"] = o.ok, o.sent
        if r.key in LEAVE_SCENARIOS and r.fault_at is not None:
            o = summarize(frames, slo, r.fault_at, end, r.fault_at)
            r.extra["since_fault"] = {"sent": o.sent, "ok": o.ok, "failed": o.failed, "vanished": o.vanished,
                                      "late": o.late}
        if r.outcome.late:
            _late_figures(r, end, steady, burst, stalls, slo)
        r.goals = goals_of(r)


def _late_figures(r: ScenarioResult, end: float, steady: list[Frame], burst: list[Frame],
                  stalls: dict[str, list[tuple[float, float]]], slo: dict[str, float]) -> None:
    """What the report says of a scenario's late successes: when they were sent, how late, from which
    client, and how late each client's own loop ran meanwhile."""
    def late(fs: list[Frame]) -> list[Frame]:
        return [f for f in fs if r.start <= f.t < end and is_late(f, slo)]

    frames = steady + burst
    if r.key == "frontend-stop" and r.fault_at is not None:
        r.extra["late_frozen"] = sum(f.t < r.fault_at for f in late(frames))
    r.extra["late_ms_max"] = max(f.ms for f in late(frames))
    zero = r.fault_at if r.fault_at is not None else r.start
    r.extra["late_sent_s"] = sorted(round(f.t - zero, 2) for f in late(frames))[:20]
    r.extra["late_steady"] = len(late(steady))
    r.extra["late_burst"] = len(late(burst))
    for key, loop_stalls in stalls.items():
        r.extra[key] = max((ms for t, ms in loop_stalls if r.start <= t < end), default=0.0)
