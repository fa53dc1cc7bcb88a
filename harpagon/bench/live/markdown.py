"""The live bench's report: how it was measured, then one section per figure (attainment, modules, the
hop split, frontend CPU, the dispatch policies, capacity and its frame sizes and encodings,
perf_analyzer), each a table of rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from harpagon.bench.live.capacity import CAPACITY_GOAL, OFFERED_SHARE
from harpagon.bench.live.cluster import ARRIVALS, DISPATCHES
from harpagon.bench.live.configs import BASE_FRAME_KIND, CAPACITY_FRAME, CAPACITY_SLO_MS
from harpagon.bench.live.measure import HOP_OVERHEAD_GOAL_MS, HOPS, LATE_SEND_MS
from harpagon.bench.live.results import AppResult, Capacity, ClusterResult, Report, Step
from harpagon.bench.report import fmt, md_table
from harpagon.runtime.promise import floor_pct, goal_text


def build_markdown(rep: Report, plots: Sequence[str] = ()) -> str:
    L = _method_section(rep)
    L += _attainment_section(rep, plots)
    L += _modules_section(rep)
    L += _hops_section(rep, plots)
    L += _transports_section(rep)
    L += _cpu_section(rep)
    L += _dispatch_section(rep)
    L += _capacity_section(rep, plots)
    L += _profile_section(rep)
    L += _frame_kinds_section(rep)
    L += _scale_out_section(rep)
    L += _perf_analyzer_section(rep)
    return "\n".join(L) + "\n"


def _plot_links(plots: Sequence[str], kind: str, alt: str) -> list[str]:
    return [line for p in plots if kind in p for line in (f"![{alt}]({p})", "")]


def _method_section(rep: Report) -> list[str]:
    L = ["# Live benchmark on EMULATED workers", "",
         ("**Every worker here is emulated**: it \"runs\" a batch by sleeping the batch's profiled latency "
          "(`EmulatedExecutor`), so no GPU is involved. The figures measure this runtime's frontend, "
          "controller, dispatch and RPCs on this machine, and the planner's promise against live traffic; "
          "they say nothing about model execution speed."), "",
         f"Command: `{rep.command}`", "",
         f"Date: {rep.date}" + (f"; {rep.elapsed_s / 60:.1f} min" if not math.isnan(rep.elapsed_s) else "")
         + (f"; machine: {rep.machine}" if rep.machine else ""), "",
         ("Method: each config is served by `LocalCluster` (frontend and controller, each on an event loop of its "
          "own) **in the bench process**, with one process per emulated worker; the load generator is **another "
          "process** (a Python gRPC sender with requests built once; perf_analyzer where named), so its CPU is not "
          f"the frontend's. Each run sends every app's frames at its planned rate for {rep.seconds:g} s, evenly "
          "spaced (*constant*) or as a seeded Poisson process (*Poisson*; `harpagon.runtime.demo.send_times`, "
          "the same arrivals for both dispatch policies). *Attainment* = frames answered within the SLO / "
          "frames sent, client-measured; dropped and failed frames are late. *Promise*: `promise.target` "
          "(every frame under constant arrivals; the promised share under Poisson); *replay*: what the "
          "planner's replay predicted (`promise.predicted`). A config without a `serve` section gets the "
          "demo's serve settings with one emulated worker per GPU its hardware section declares. The "
          "controller's rate-driven re-planning is switched off during the bench (the idle gaps between runs "
          "would read as a rate drop); any other re-plan still happens and is counted. Every run of sections "
          "1-5 is driven by the Python sender: perf_analyzer aborts its whole run at the first dropped frame "
          "(`Thread [n] had error: ... deadline`), so it cannot measure attainment where frames are dropped. "
          "A config without a `serve` section gets 8x8x3 frames."), ""]
    for n in rep.notes:
        L += [f"> {n}", ""]
    return L


def _attainment_section(rep: Report, plots: Sequence[str]) -> list[str]:
    L = ["## 1. Attainment against the promise, per app", ""]
    warm = [c for c in rep.clusters if c.warmup_replans is not None]
    if warm:
        L += [("Before its measured runs each cluster served its apps at their planned rates (Poisson) for a "
               "warm-up, so that the controller could calibrate its plan with the batch latencies and hop overheads "
               "it measured (README, \"Self-calibration\"); per-module figures start after it. Re-plans during the "
               "warm-up: " + ", ".join(f"{Path(c.config).name} {c.dispatch} {c.warmup_replans}" for c in warm)
               + "."), ""]
    L += md_table(["config", "dispatch", "arrivals", "app", "rate/s", "SLO ms", "sent", "answered", "dropped",
                   "failed", "P50 ms", "P99 ms", "attainment", "promise", "replay", "verdict"], _run_rows(rep.clusters),
                  right=range(4, 15))
    L += [""]
    errs = [(Path(c.config).name, c.dispatch, r.arrivals, a.app, m, k) for c in rep.clusters for r in c.runs
            for a in r.apps for m, k in a.errors.items()]
    if errs:
        L += ["Failures:", ""] + [f"- {cfg} {d} {arr} {app}: {k} x `{m}`" for cfg, d, arr, app, m, k in errs] + [""]
    return L + _plot_links(plots, "attainment", "attainment per app")


def _run_rows(clusters: Sequence[ClusterResult]) -> list[list[str]]:
    rows = []
    for c in clusters:
        for r in c.runs:
            for a in r.apps:
                rows.append([Path(c.config).name, c.dispatch, r.arrivals, a.app, f"{a.rate:g}", f"{a.slo_ms:g}",
                             str(a.sent), str(a.answered), str(a.dropped), str(a.failed), fmt(a.p50_ms), fmt(a.p99_ms),
                             floor_pct(a.attainment), goal_text(a.goal), floor_pct(a.replay), _verdict_cell(a)])
    return rows


def _verdict_cell(a: AppResult) -> str:
    if a.kept is None:
        return "no promise"
    return "kept" if a.kept else "**missed**"


def _modules_section(rep: Report) -> list[str]:
    L = ["## 2. Per module: measured latency against the plan's prediction", "",
         ("Measured from the module's dispatcher to its result (collection, transport, worker queue and "
          "execution), over both runs of the cluster; *predicted* is `predicted_latency_ms` of the plan in "
          "force at the end, *budget* its share of the SLO, *+ overhead* adds the plan's per-hop allowance "
          "`serve.overhead_ms`, which the planner keeps outside a module's prediction."), ""]
    rows = []
    for c in rep.clusters:
        for m in c.modules:
            allowed = m.predicted_ms + m.overhead_ms
            rows.append([Path(c.config).name, c.dispatch, m.app, m.module, str(m.requests), fmt(m.p50_ms),
                         fmt(m.p99_ms), fmt(m.max_ms), fmt(m.predicted_ms), fmt(m.budget_ms), fmt(allowed),
                         "-" if math.isnan(m.p99_ms) else "yes" if m.p99_ms <= m.predicted_ms else
                         "within +overhead" if m.p99_ms <= allowed else "no"])
    L += md_table(["config", "dispatch", "app", "module", "requests", "P50 ms", "P99 ms", "max ms", "predicted ms",
                   "budget ms", "predicted + overhead ms", "P99 ≤ predicted"], rows, right=range(4, 11))
    if "window" in {m.source for c in rep.clusters for m in c.modules}:
        L += ["", ("(Latencies from the live modules' windows of the routes in force at the end: the runtime had "
                   "no `FrontendDataPlane.stats()`.)")]
    return L + [""]


def _hops_section(rep: Report, plots: Sequence[str]) -> list[str]:
    L = ["## 3. Where a hop's time goes", ""]
    if all(c.hops is None for c in rep.clusters):
        return L + [("**Missing**: the runtime this ran against had no `FrontendDataPlane.stats()`, so the split "
                     "into frontend queue, batch collection, serialisation + transport, worker queue and execution "
                     "could not be measured. Section 2 has each module's total."), ""]
    L += [("P50 / P99 in ms from `FrontendDataPlane.stats()` (cumulative over the cluster's runs). Frontend "
           "queue is per request (module runnable → submitted, resize included); the others per batch "
           "(collection: first request in → shipped; transport: the RPC round trip less the worker's queue "
           "and execution, as the worker reported them). *Overhead P99* = P99(frontend queue) + "
           f"P99(transport), against the goal of ≤ {HOP_OVERHEAD_GOAL_MS:g} ms."), ""]
    rows = [[Path(c.config).name, c.dispatch, h["app"], h["module"], str(h["requests"]), str(h["batches"]),
             str(h["dummies"]), *[f"{fmt(h[k][0], '.2f')} / {fmt(h[k][1], '.2f')}" for k, _, _ in HOPS],
             fmt(h["overhead_p99_ms"], ".2f")]
            for c in rep.clusters for h in c.hops or []]
    L += md_table(["config", "dispatch", "app", "module", "requests", "batches", "dummies",
                   *[label for _, label, _ in HOPS], "overhead P99"], rows, right=range(4, 13))
    return L + [""] + _plot_links(plots, "hops", "hop split")


def _transports_section(rep: Report) -> list[str]:
    if not rep.transports:
        return []
    base = next((x for x in rep.transports if x["transport"] == "tcp"), None)
    rows = [[x["transport"], str(x["hops"]), fmt(x["p50_ms"], ".2f"), fmt(x["p99_ms"], ".2f"),
             "-" if base is None or x is base else f"{x['p50_ms'] / base['p50_ms']:.2f} / "
                                                  f"{x['p99_ms'] / base['p99_ms']:.2f}"]
            for x in rep.transports]
    return ["### Workers on loopback TCP against Unix sockets", "",
            ("The demo (batch-aware, Poisson arrivals at the planned rates), its workers listening on loopback "
             "TCP or on Unix sockets (`harpagon worker --unix-socket`, what `harpagon serve` does), alternating "
             "in one run; serialisation + transport of every batch of every module, pooled."), "",
            *md_table(["workers on", "hops", "P50 ms", "P99 ms", "P50 / P99 against TCP"], rows, right=range(1, 5)),
            ""]


def _cpu_section(rep: Report) -> list[str]:
    rows = [[Path(c.config).name, c.dispatch, r.arrivals, f"{sum(a.rate for a in r.apps):g}", str(r.frames),
             fmt(r.cpu_per_frame_ms, ".2f"), fmt(r.server_cores, ".2f"), fmt(r.client_cores, ".2f"),
             floor_pct(r.offered_share), f"{fmt(r.lag['p50'])} / {fmt(r.lag['p99'])}", floor_pct(r.lag["late_share"]),
             str(r.plans_during), r.generator]
            for c in rep.clusters for r in c.runs]
    return ["## 4. Frontend CPU", "",
            ("CPU seconds of the serving process (frontend + controller; the workers and the load generator are "
             "other processes) over each run's window, per frame sent, and as cores (CPU s per wall s). *Client* "
             "is the load generator's process; *client lag* how late it sent frames against their schedule "
             f"(*late* = more than {LATE_SEND_MS:g} ms)."), "",
            *md_table(["config", "dispatch", "arrivals", "frames/s", "frames", "server CPU ms/frame", "server cores",
                       "client cores", "offered", "client lag P50 / P99 ms", "sent late", "re-plans",
                       "load generator"], rows, right=range(3, 12)),
            ""]


def _dispatch_section(rep: Report) -> list[str]:
    """Per config and arrivals, the two policies side by side: worst app, apps kept, cost."""
    rows = []
    by = {(c.config, c.dispatch): c for c in rep.clusters}
    for cfg in dict.fromkeys(c.config for c in rep.clusters):
        for arrivals in ARRIVALS:
            cells = [Path(cfg).name, arrivals]
            for d in DISPATCHES:
                c = by.get((cfg, d))
                r = next((r for r in c.runs if r.arrivals == arrivals), None) if c else None
                if r is None:
                    cells += ["-", "-", "-"]
                    continue
                worst = min(r.apps, key=lambda a: a.attainment if not math.isnan(a.attainment) else -1)
                n_kept = sum(bool(a.kept) for a in r.apps)
                cells += [f"{floor_pct(worst.attainment)} ({worst.app})", f"{n_kept}/{len(r.apps)}",
                          f"${r.cost_per_hour:.3f}/h"]
            rows.append(cells)
    return ["## 5. Batch-aware against request-level dispatch", "",
            ("Same config, same seeded arrivals; each policy planned with its own latency formula "
             "(`serve.dispatch`). Worst app's attainment per run, and the plan's cost."), "",
            *md_table(["config", "arrivals", "batch-aware: worst app", "apps kept", "cost", "request-level: worst app",
                       "apps kept", "cost"], rows, right=range(2, 8)),
            ""]


def _capacity_section(rep: Report, plots: Sequence[str]) -> list[str]:
    L = ["## 6. Capacity of one frontend process", ""]
    if rep.capacity is None:
        return L + ["Not measured in this run" + (" (the frame kinds below were)." if rep.frame_kinds else "."), ""]
    L += [(f"One-module app (ResNet-50 on emulated V100s, SLO {CAPACITY_SLO_MS:g} ms, "
           f"{'x'.join(map(str, CAPACITY_FRAME))} frames so that the per-frame dispatch cost is measured, not "
           "the bytes), planned for each rate by the planner (workers started = what the plan uses), Poisson "
           f"arrivals, load from {rep.capacity_generator} in its own process. A step keeps the promise when "
           f"its attainment ≥ the plan's Poisson promise and the client got out ≥ {OFFERED_SHARE:.0%} of the "
           "rate. Doubling, then bisection."), ""]
    for label, c in (("unary `ModelInfer` (perf_analyzer `--async`)", rep.capacity),
                     ("`ModelStreamInfer` (perf_analyzer `--async --streaming`)", rep.capacity_streaming)):
        if c is not None:
            L += _capacity_lines(label, c)
    return L + _plot_links(plots, "capacity", "capacity search")


def _capacity_lines(label: str, cap: Capacity) -> list[str]:
    best = "none (not even the first step)" if cap.best is None else f"**{cap.best:.0f} frames/s**"
    lines = [f"**{label}**: highest rate keeping the promise: {best}"
             + (f"; lowest that did not: {cap.first_failure:.0f} frames/s" if cap.first_failure else "")
             + f" (goal ≥ {CAPACITY_GOAL:,.0f} frames/s: "
             + ("met" if cap.best is not None and cap.best >= CAPACITY_GOAL else "**not met**") + ").", ""]
    rows = [[f"{s.rate:g}", str(s.workers), fmt(s.offered, ".0f"), fmt(s.answered, ".0f"), floor_pct(s.attainment),
             goal_text(s.goal), fmt(s.p50_ms), fmt(s.p99_ms), fmt(s.server_cpu_per_frame_ms, ".3f"),
             fmt(s.server_cores, ".2f"), fmt(s.client_cores, ".2f"), str(s.plans), "kept" if s.ok else s.why or "missed"]
            for s in cap.steps]
    lines += md_table(["rate/s", "workers", "offered/s", "answered/s", "attainment", "promise", "P50 ms", "P99 ms",
                       "server CPU ms/frame", "server cores", "client cores", "re-plans", "verdict"], rows,
                      right=range(12))
    return lines + [""]


def _profile_section(rep: Report) -> list[str]:
    if not rep.profile_text:
        return []
    return ["### Where the serving process's event loop spends its time", "",
            ("cProfile of the event loop thread (the frontend and controller; gRPC's C threads are not in it) "
             "over one capacity-sized run; top functions by own time. cProfile slows Python, so the shares "
             "matter, not the absolute times."), "", "```", rep.profile_text.strip(), "```", ""]


#: The frame-size goals against the 8x8 raw capacity of the same run: (kind, least capacity ratio, most
#: server CPU per frame ratio or None).
FRAME_GOALS = (("1280x720 JPEG", 0.8, 1.3), ("640x480 raw", 0.6, None))


def _best_step(cap: Capacity) -> Step | None:
    return next((s for s in cap.steps if cap.best is not None and s.rate == cap.best), None)


def _ratio(x: float, base: float) -> float:
    return x / base if base and not math.isnan(base) and not math.isnan(x) else math.nan


def _frame_kinds_section(rep: Report) -> list[str]:
    """Per frame kind, its capacity and server CPU per frame as ratios to the 8x8 raw kind's, and the
    frame-size goals met or missed."""
    if not rep.frame_kinds:
        return []
    base_name = BASE_FRAME_KIND.name
    by = {name: (size, cap) for name, size, cap in rep.frame_kinds}
    base = by.get(base_name, (0, None))[1]
    base_cpu = _first_cpu(base)
    rows = []
    for name, size, cap in rep.frame_kinds:
        step = _best_step(cap)
        cpu = step.server_cpu_per_frame_ms if step else math.nan
        cap_ratio, cpu_ratio = _cap_ratio(cap, base), _ratio(_first_cpu(cap), base_cpu)
        rows.append([name, f"{size:,}", _kept_cell(cap), "-" if cap.first_failure is None else f"{cap.first_failure:.0f}",
                     str(step.workers) if step else "-", "-" if cap_ratio is None else cap_ratio[1],
                     fmt(cpu, ".3f"), _first_cell(cap), "-" if math.isnan(cpu_ratio) else f"{cpu_ratio:.2f}x"])
    L = ["### Frame sizes and encodings", "",
         ("The capacity search once per frame kind: the one-module app (ResNet-50 on emulated V100s, SLO "
          f"{CAPACITY_SLO_MS:g} ms, planned for each rate) declaring that kind as its `frame` (height, width, "
          "encoding), so that the plan charges each request its decode at the V100's `decode_ms_per_mpixel` "
          "(models/profiles/hardware.yaml) and sizes the workers with it. **Emulated workers charge the planned "
          "decode per frame** (they sleep it; they never decode). The frontend forwards frames as sent, never "
          "decoding or resizing them: it copies each frame's bytes once, into the worker's request. Every kind, "
          "the 8x8 baseline too, is sent by the Python sender in its own processes (requests built once: raw "
          "kinds UINT8 [H, W, 3] random pixels; JPEG kinds one BYTES element in Triton's raw form, a quality-85 "
          "JPEG of a structured synthetic frame, `harpagon.runtime.wire.frames.synthetic_frame`), Poisson arrivals; a step "
          f"keeps the promise when its attainment ≥ the plan's Poisson promise and the client got out ≥ "
          f"{OFFERED_SHARE:.0%} of the rate; doubling, then bisection. The sender, the serving process and the "
          "workers share this machine, so a big frame's bytes cost CPU on every side of the hop. *Request "
          "bytes*: one serialised `ModelInferRequest`. *Server CPU ms/frame*: the serving process's CPU "
          "(frontend + controller) per frame sent, at the kind's highest kept rate and at the search's first "
          "rate, the same for every kind; it falls as the rate rises (fixed costs spread over more frames), so "
          "kinds are compared (*CPU /*, and the goal) at the first rate. Ratios are to the "
          f"{base_name} row of this run; a search that reached its limit without a failure gives a lower bound (≥)."), "",
         *md_table(["frames", "request bytes", "highest kept/s", "lowest failed/s", "workers", f"capacity / {base_name}",
                    "server CPU ms/frame at the highest kept", "at the first rate", f"CPU / {base_name}"], rows,
                   right=range(1, 9)),
         ""]
    bound = [(name, s) for name, _, cap in rep.frame_kinds for s in cap.steps
             if s.rate == cap.first_failure and s.why.startswith("client-bound")]
    if bound:
        L += ["Where the sender, not the server, set the limit (its failing step did not offer the rate):", ""]
        L += [f"- {name} at {s.rate:g}/s: {s.why} (server {fmt(s.server_cpu_per_frame_ms, '.3f')} ms/frame, "
              f"client {fmt(s.client_cores, '.2f')} cores)" for name, s in bound] + [""]
    L += ["Goals against the 8x8 raw figures of this run:", ""]
    for name, least, most_cpu in FRAME_GOALS:
        text = f"{name}: capacity ≥ {least:g}x the {base_name} capacity" + (
            f" at ≤ {most_cpu:g}x its server CPU per frame" if most_cpu is not None else "")
        L.append(f"- {text}: {_goal_verdict(by.get(name, (0, None))[1], base, base_cpu, least, most_cpu)}")
    return L + [""]


def _scale_out_section(rep: Report) -> list[str]:
    """Per number of frontends: the frames/s kept, the serving processes' cores and CPU per frame at that
    rate, frames/s kept per core against one frontend's, and the plan's cost against one frontend's."""
    if not rep.scale_out:
        return []
    rows = []
    per_core: dict[int, float] = {}
    for so in rep.scale_out:
        step = _best_step(so.capacity)
        cores = step.server_cores if step else math.nan
        per_core[so.frontends] = (so.capacity.best or math.nan) / cores if cores else math.nan
    base = per_core.get(1, math.nan)
    for so in rep.scale_out:
        step = _best_step(so.capacity)
        ratio = _ratio(per_core[so.frontends], base)
        rows.append([str(so.frontends), _kept_cell(so.capacity),
                     "-" if so.capacity.first_failure is None else f"{so.capacity.first_failure:.0f}",
                     str(step.workers) if step else "-", fmt(step.server_cores if step else math.nan, ".2f"),
                     fmt(step.server_cpu_per_frame_ms if step else math.nan, ".3f"), fmt(per_core[so.frontends], ".0f"),
                     "-" if math.isnan(ratio) else f"{ratio:.2f}x",
                     f"${so.cost_per_hour:.3f} / ${so.one_frontend_cost_per_hour:.3f}"
                     if not math.isnan(so.cost_per_hour) else "-"])
    return ["### Frontend scale-out", "",
            ("The capacity search of the one-module app (ResNet-50 on emulated V100s, 8x8 frames, Poisson "
             "arrivals, the Python sender) through N frontends: `harpagon serve --frontends N` (the first in this "
             "process with the controller, the others processes of their own), the sender's processes spreading "
             "the frames over them. The plan shares the app as docs/model.md, \"Several frontends\" says: one "
             "stream per frontend where the rate per frontend is at least `split_rate` (500 frames/s), else one "
             "owner that the others forward to. *Cores*: CPU seconds per second of the serving processes (this "
             "process, frontend and controller, and the other frontends), at the highest kept rate. *Per core*: "
             "the highest kept rate over those cores. *Plan cost*: the plan at that rate for N frontends against "
             "one frontend's at the same rate (planner only). Every process, the sender's too, shares this "
             "machine's cores, so the aggregate cannot grow past them: compare the per-core figures."), "",
            *md_table(["frontends", "highest kept/s", "lowest failed/s", "workers", "cores", "CPU ms/frame",
                       "frames/s per core", "per core / 1 frontend", "plan cost (N / 1 frontend)"], rows,
                      right=range(1, 9)), ""]


def _first_cpu(cap: Capacity | None) -> float:
    """Server CPU ms per frame at the search's first rate (every kind's search starts at the same one)."""
    return cap.steps[0].server_cpu_per_frame_ms if cap is not None and cap.steps else math.nan


def _first_cell(cap: Capacity) -> str:
    return f"{fmt(_first_cpu(cap), '.3f')} ({cap.steps[0].rate:g}/s)" if cap.steps else "-"


def _kept_cell(cap: Capacity) -> str:
    if cap.best is None:
        return "none"
    return f"{'≥ ' if cap.first_failure is None else ''}{cap.best:.0f}"


def _cap_ratio(cap: Capacity, base: Capacity | None) -> tuple[float, str] | None:
    """The capacity ratio to the baseline's and its text (≥ or ≤ where a search found only a bound), or
    None where the baseline has no capacity."""
    if base is None or base.best is None:
        return None
    r = (cap.best or 0.0) / base.best
    if cap.best is not None and cap.first_failure is None and base.first_failure is not None:
        return r, f"≥ {r:.2f}x"
    if base.first_failure is None and cap.first_failure is not None:
        return r, f"≤ {r:.2f}x"
    return r, f"{r:.2f}x"


def _goal_verdict(cap: Capacity | None, base: Capacity | None, base_cpu: float, least: float,
                  most_cpu: float | None) -> str:
    if base is None or base.best is None:
        return f"not measured (no {BASE_FRAME_KIND.name} capacity in this run)"
    if cap is None:
        return "not measured (this kind was not searched)"
    r, r_text = _cap_ratio(cap, base)  # type: ignore[misc]
    cpu_r = _ratio(_first_cpu(cap), base_cpu)
    figures = f"{r_text}" + (f", CPU {fmt(cpu_r, '.2f')}x" if most_cpu is not None else "")
    if r < least or (most_cpu is not None and not cpu_r <= most_cpu):
        return f"**missed** ({figures})"
    if base.first_failure is None and cap.first_failure is not None:
        return f"not determined ({figures}: the {BASE_FRAME_KIND.name} search reached its limit)"
    return f"met ({figures})"


def _perf_analyzer_section(rep: Report) -> list[str]:
    L = ["## 7. perf_analyzer on the demo's traffic app", ""]
    pa = [row for c in rep.clusters for row in c.perf_analyzer]
    if not pa:
        return L + ["Not run (no perf_analyzer, `--skip-perf-analyzer`, or no demo config).", ""]
    rows = [[r["mode"], "-", "-", "-", "-", r["error"]] if "error" in r else
            [r["mode"], f"{r['level']:g}", fmt(r["throughput"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]), ""]
            for r in pa]
    return L + [("perf_analyzer 2.51 against the demo's batch-aware cluster (after its runs), closed loop at each "
                 "concurrency: *sync* (`--sync`), *streaming* (`--streaming --async`), *async* (`--async`). A "
                 "closed loop offers more than the planned 40 frames/s, so these are the cluster's limits under "
                 "its plan, not its promise."), "",
                *md_table(["mode", "concurrency", "frames/s", "P50 ms", "P99 ms", "error"], rows, right=range(1, 5)),
                ""]
