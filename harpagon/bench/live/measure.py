"""From what the sender recorded and the frontend counted to the live bench's figures: each app's
attainment against the plan's promise, how late the client sent, each module's latency against its
prediction, the split of a hop, and the CPU the serving process spent."""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harpagon.bench.live.load import DROPPED, OK
from harpagon.bench.live.results import AppResult, ModuleResult
from harpagon.bench.report import percentiles
from harpagon.runtime.demo import AppLoad
from harpagon.runtime.promise import predicted, target

#: The hop split, in the order a request meets it; (stats field, label, per request or per batch).
HOPS = (("prepare_ms", "frontend queue", "request"), ("collect_ms", "batch collection", "batch"),
        ("transport_ms", "serialisation + transport", "batch"), ("worker_queue_ms", "worker queue", "batch"),
        ("exec_ms", "execution (emulated)", "batch"))
#: The per-hop overhead goal (P99 of the frontend queue plus serialisation + transport, ms).
HOP_OVERHEAD_GOAL_MS = 2.0
#: A frame sent later than this after its scheduled time counts as sent late by the client.
LATE_SEND_MS = 5.0


def app_load(name: str, rate: float, slo_ms: float, latency_ms: Iterable[float], status: Iterable[int],
             errors: dict[str, int] | None = None) -> AppLoad:
    """The demo's `AppLoad` of one app from per-frame records: `latency_ms` (client-measured, from the
    frame's send to its reply; ignored unless answered) and `status` (OK, DROPPED past its deadline,
    FAILED, NO_REPLY before the sender gave up). A dropped, failed or unanswered frame is late."""
    ld = AppLoad(name, rate, slo_ms)
    for lat, st in zip(latency_ms, status, strict=True):
        ld.sent += 1
        if st == OK:
            ld.answered += 1
            ld.latencies.append(float(lat))
            ld.within_slo += float(lat) <= slo_ms
        elif st == DROPPED:
            ld.dropped += 1
        else:
            ld.failed += 1
    ld.errors = dict(errors or {})
    return ld


def kept(ld: AppLoad, goal: float | None) -> bool | None:
    """Whether the measured attainment keeps the promise `goal` (None: no promise for these arrivals)."""
    if goal is None:
        return None
    return ld.done > 0 and ld.attainment >= goal


def lateness(scheduled_s: Sequence[float], sent_s: Sequence[float]) -> dict[str, float]:
    """How far behind its schedule the client sent frames: P50/P99/max of (sent - scheduled) in ms, and
    the share sent more than LATE_SEND_MS late."""
    lag = (np.asarray(sent_s, float) - np.asarray(scheduled_s, float)) * 1000.0
    lag = lag[np.isfinite(lag)]
    if not lag.size:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "late_share": math.nan}
    return {"p50": float(np.percentile(lag, 50)), "p99": float(np.percentile(lag, 99)), "max": float(lag.max()),
            "late_share": float(np.mean(lag > LATE_SEND_MS))}


def hop_rows(stats: dict[tuple[str, str], Any] | None) -> list[dict[str, Any]]:
    """Per (app, module) of `FrontendDataPlane.stats()`: counters, and (P50, P99, max, n) of each hop
    and of the module's latency; the overhead bound is P99(frontend queue) + P99(serialisation +
    transport), the two hops this runtime adds on top of collection, queueing and execution."""
    rows = []
    for (app, module), s in sorted((stats or {}).items()):
        row: dict[str, Any] = {"app": app, "module": module, "requests": int(getattr(s, "requests", 0)),
                               "batches": int(getattr(s, "batches", 0)), "dummies": int(getattr(s, "dummies", 0)),
                               "latency_ms": percentiles(getattr(s, "latency_ms", ()))}
        for name, _, _ in HOPS:
            row[name] = percentiles(getattr(s, name, ()))
        row["overhead_p99_ms"] = row["prepare_ms"][1] + row["transport_ms"][1]
        rows.append(row)
    return rows


def cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def cpu_of(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) the live processes `pids` used so far (Linux /proc; 0 for one gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
    return total


def cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def plane_stats(plane) -> dict | None:
    stats = getattr(plane, "stats", None)
    if not callable(stats):
        return None
    try:
        return dict(stats())
    except Exception:  # the runtime under refactor: report the split as missing rather than fail the bench
        return None


def module_results(plane, plan) -> list[ModuleResult]:
    """Each planned module's measured latency (dispatch to result) against the plan's prediction: from
    `stats()` (cumulative) where the runtime has it, else from the live module's latency window."""
    stats = plane_stats(plane)
    out = []
    for ap in plan.apps:
        for mp in ap.modules:
            key = (ap.name, mp.name)
            if stats is not None:
                s = stats.get(key)
                samples, source = (list(getattr(s, "latency_ms", ())) if s is not None else []), "stats"
            else:
                live = getattr(plane, "modules", {}).get(key)
                samples, source = list(getattr(live, "latencies_ms", ()) or ()), "window"
            p50, p99, mx, n = percentiles(samples)
            out.append(ModuleResult(ap.name, mp.name, mp.predicted_latency_ms, mp.budget_ms, plan.settings.overhead_ms,
                                    n, p50, p99, mx, source))
    return out


def app_results(data: dict, plan, arrivals: str, rates: dict[str, float]) -> list[AppResult]:
    """Each app of a run: its attainment from the sender's records against the plan's promise for these
    arrivals, and its latencies."""
    out = []
    for a in data["apps"]:
        ap = plan.app(a["name"])
        ld = app_load(a["name"], rates.get(a["name"], ap.rate), ap.slo_ms, a["latency_ms"], a["status"], a.get("errors"))
        goal = target(plan.promise, arrivals)
        p50, p99, mx, _ = percentiles(ld.latencies)
        out.append(AppResult(ld.name, ld.rate, ld.slo_ms, ld.sent, ld.answered, ld.within_slo, ld.dropped, ld.failed,
                             ld.attainment, goal, predicted(plan.promise, arrivals, ld.name), kept(ld, goal),
                             p50, p99, mx, ld.errors))
    return out
