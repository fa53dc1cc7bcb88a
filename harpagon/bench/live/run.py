"""The whole live bench: every config under both dispatch policies, the transports compared, the
capacity search, the capacity per frame kind (size and encoding), then the files it writes (the
report, its CSV and its plots)."""

from __future__ import annotations

import asyncio
import csv
import re
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harpagon.bench.live.capacity import capacity_step, search_async
from harpagon.bench.live.cluster import DISPATCHES, run_cluster, transport_comparison
from harpagon.bench.live.configs import FrameKind
from harpagon.bench.live.load import request_bytes
from harpagon.bench.live.markdown import build_markdown
from harpagon.bench.live.perf_analyzer import PERF_ANALYZER
from harpagon.bench.live.plots import plots
from harpagon.bench.live.results import Capacity, ClusterResult, Report, ScaleOut, Step
from harpagon.bench.report import ROOT, fmt, machine
from harpagon.runtime.promise import floor_pct, goal_text


async def run_bench(configs: Sequence[str], seconds: float, out: Path, command: str, *, seed: int = 0,
                    perf_analyzer: bool = True, quick: bool = False, capacity: bool = True,
                    capacity_limit: float = 8000.0, console=None, rate_scale: float = 1.0,
                    warmup_s: float = 0.0, frame_kinds: Sequence[FrameKind] = (),
                    frontends: Sequence[int] = ()) -> Path:
    from rich.console import Console

    from harpagon.config import load_workload

    console = console or Console()
    started = time.perf_counter()
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop the clusters' workers on the way out
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    pa = perf_analyzer and PERF_ANALYZER.exists()
    notes = []
    if perf_analyzer and not pa:
        notes.append(f"perf_analyzer was not found at {PERF_ANALYZER.relative_to(ROOT)} (scripts/get_perf_analyzer.sh); "
                     "its sections use the Python sender or are skipped.")
    clusters = await _serve_configs(configs, seconds, seed, console, pa, quick, rate_scale, warmup_s, notes)
    transports: list[dict[str, Any]] = []
    demo = next((c for c in configs if Path(c).name == "demo.yaml"), None)
    if demo is not None and not quick:
        transports = await transport_comparison(demo, load_workload([demo]), seconds, seed, console)
    if clusters and all(c.hops is None for c in clusters):
        notes.append("The hop split (section 3) is missing: the runtime had no `FrontendDataPlane.stats()`.")
    cap = cap_streaming = None
    profile_text = ""
    generator = "perf_analyzer 2.51 (C++, `--async --request-intervals`, seeded Poisson gaps)" if pa else \
        "the Python sender"
    if capacity:
        cap, cap_streaming, profile_text = await _capacity_search(seed, console, pa, quick, capacity_limit)
    kinds = await _frame_kind_search(frame_kinds, seed, console, quick, capacity_limit, notes) if frame_kinds else []
    scale_out = await _scale_out_search(frontends, seed, console, quick, capacity_limit, notes) if frontends else []
    rep = Report(command, time.strftime("%Y-%m-%d %H:%M %Z"), seconds, clusters, cap, generator, profile_text,
                 elapsed_s=time.perf_counter() - started, machine=machine(), notes=notes,
                 capacity_streaming=cap_streaming, transports=transports, frame_kinds=kinds, scale_out=scale_out)
    return write_report(rep, out)


async def _serve_configs(configs: Sequence[str], seconds: float, seed: int, console, pa: bool, quick: bool,
                    rate_scale: float, warmup_s: float, notes: list[str]) -> list[ClusterResult]:
    """Every config under each dispatch policy; one that fails is a note in the report, not the end."""
    from harpagon.config import load_workload

    clusters = []
    for cfg in configs:
        workload = load_workload([cfg])
        if rate_scale != 1.0:
            workload = workload.model_copy(update={"apps": tuple(a.model_copy(update={"rate": a.rate * rate_scale})
                                                                 for a in workload.apps)})
            notes.append(f"Every app of {Path(cfg).name} runs at {rate_scale:g}x its configured rate "
                         "(`--rate-scale`), planned for that rate.")
        for d in DISPATCHES:
            try:
                clusters.append(await run_cluster(cfg, workload, d, seconds, seed, console, pa, quick, warmup_s))
            except Exception as exc:
                console.print(f"[red]{cfg} {d}: {exc}[/red]")
                notes.append(f"{cfg} with {d} dispatch did not run: {exc}")
    return clusters


async def _capacity_search(seed: int, console, pa: bool, quick: bool,
                    capacity_limit: float) -> tuple[Capacity, Capacity | None, str]:
    """The capacity search (unary; streaming too with perf_analyzer) and, in a full run, a profile of
    the serving process at 3/4 of the capacity found."""
    step_s = 6.0 if quick else 9.0

    def progress(s: Step) -> None:
        console.print(f"  capacity {s.rate:g}/s on {s.workers} workers: {floor_pct(s.attainment)} "
                      f"(promise {goal_text(s.goal)}), offered {fmt(s.offered, '.0f')}/s, server "
                      f"{fmt(s.server_cores, '.2f')} cores, client {fmt(s.client_cores, '.2f')} cores: "
                      + ("kept" if s.ok else s.why))

    cap = await search_async(lambda r: capacity_step(r, step_s, pa, seed, console),
                             start=250.0 if not quick else 500.0,
                             limit=capacity_limit if not quick else 2000.0,
                             bisect_steps=0 if quick else 3, progress=progress)
    cap_streaming = None
    if pa:
        console.print("capacity with perf_analyzer --streaming (ModelStreamInfer)")
        cap_streaming = await search_async(
            lambda r: capacity_step(r, step_s, pa, seed, console, streaming=True),
            start=250.0 if not quick else 1000.0, limit=capacity_limit if not quick else 2000.0,
            bisect_steps=0 if quick else 3, progress=progress)
    profile_text = ""
    if not quick:  # at 3/4 of the best rate: the profiler slows the loop
        rate = 0.75 * (cap.best or 500.0)
        with console.status(f"cProfile of the serving process at {rate:g} frames/s..."), \
                tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "profile.txt"
            s = await capacity_step(rate, step_s, pa, seed, console, profile_to=p)
            profile_text = (f"at {rate:g} frames/s offered (under the profiler: {floor_pct(s.attainment)} "
                            f"within SLO, server {fmt(s.server_cores, '.2f')} cores)\n"
                            + (p.read_text() if p.exists() else ""))
            profile_text = _trim_profile(profile_text)
    return cap, cap_streaming, profile_text


async def _one_search(label: str, step, console, quick: bool, capacity_limit: float,
                      notes: list[str]) -> Capacity | None:
    """The capacity search (doubling, then bisection, with the start, limit and bisections of the
    capacity search) of `step(rate)`, its steps printed under `label`; None, and a note in the report,
    when it fails."""
    def progress(s: Step) -> None:
        console.print(f"  {label} {s.rate:g}/s on {s.workers} workers: {floor_pct(s.attainment)} "
                      f"(promise {goal_text(s.goal)}), offered {fmt(s.offered, '.0f')}/s, serving processes "
                      f"{fmt(s.server_cpu_per_frame_ms, '.3f')} ms/frame, {fmt(s.server_cores, '.2f')} cores, "
                      f"client {fmt(s.client_cores, '.2f')} cores: " + ("kept" if s.ok else s.why))

    try:
        return await search_async(step, start=250.0 if not quick else 500.0,
                                  limit=capacity_limit if not quick else 2000.0,
                                  bisect_steps=0 if quick else 3, progress=progress)
    except Exception as exc:  # noqa: BLE001 - one search's failure is a note, not the end
        console.print(f"[red]{label}: {exc}[/red]")
        notes.append(f"The capacity search with {label} did not run: {type(exc).__name__}: {exc}")
        return None


async def _frame_kind_search(kinds: Sequence[FrameKind], seed: int, console, quick: bool, capacity_limit: float,
                             notes: list[str]) -> list[tuple[str, int, Capacity]]:
    """The capacity search once per frame kind, every kind under the Python sender (its 8x8 baseline
    too)."""
    step_s = 6.0 if quick else 9.0
    out = []
    for kind in kinds:
        console.print(f"capacity with {kind.name} frames (the Python sender)")
        cap = await _one_search(f"{kind.name} frames",
                                lambda r, k=kind: capacity_step(r, step_s, False, seed, console, kind=k),
                                console, quick, capacity_limit, notes)
        if cap is not None:
            out.append((kind.name, request_bytes(kind.shape, kind.encoding), cap))
    return out


async def _scale_out_search(frontends: Sequence[int], seed: int, console, quick: bool, capacity_limit: float,
                            notes: list[str]) -> list[ScaleOut]:
    """The capacity search through each number of frontends (the Python sender spreading the frames over
    them), and each one's plan cost at its highest kept rate against one frontend's at that rate."""
    from harpagon.bench.live.configs import capacity_workload, planned_for
    from harpagon.planner.harpagon import plan as harpagon_plan
    from harpagon.runtime.controller.controller import settings_of

    step_s = 6.0 if quick else 9.0
    out = []
    for n in frontends:
        console.print(f"capacity through {n} frontend(s) (the Python sender)")
        cap = await _one_search(f"{n} frontends", lambda r, n=n: capacity_step(r, step_s, False, seed, console,
                                                                                frontends=n),
                                console, quick, capacity_limit, notes)
        if cap is None:
            continue
        row = ScaleOut(n, cap)
        if cap.best is not None:
            w = capacity_workload(cap.best)
            settings = settings_of(w.serve)
            row.cost_per_hour = harpagon_plan(planned_for(w, w.serve, n), settings).cost_per_hour
            row.one_frontend_cost_per_hour = harpagon_plan(w, settings).cost_per_hour
        out.append(row)
    return out


def _trim_profile(text: str) -> str:
    """cProfile's table without its preamble lines about ordering, paths shortened to the package."""
    out = []
    for line in text.splitlines():
        if line.strip().startswith(("Ordered by", "List reduced")):
            continue
        line = re.sub(r"\S*/site-packages/", "", line)
        line = re.sub(r"\S*/(harpagon/)", r"\1", line)
        line = re.sub(r"\S*/lib/python3\.\d+/", "", line)
        out.append(line.rstrip())
    return "\n".join(out)


def write_report(rep: Report, out: Path) -> Path:
    """The report at `out`, its CSV and plots beside it; a hand-written `<stem>.reading.md` there is
    appended, so that a reading of the figures survives a re-run."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.stem
    names = plots(rep, out.parent, stem)
    write_csv(rep, out.with_suffix(".csv"))
    if rep.frame_kinds:
        write_frames_csv(rep, out.with_name(f"{stem}_frames.csv"))
    text = build_markdown(rep, names)
    reading = out.with_name(f"{stem}.reading.md")
    if reading.exists():
        text += "\n" + reading.read_text()
    out.write_text(text)
    return out


def write_frames_csv(rep: Report, path: Path) -> None:
    """One row per step of each frame kind's capacity search (the report's "Frame sizes and encodings")."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frames", "request_bytes", "rate", "kept", "attainment", "offered_per_s", "workers",
                    "server_cpu_ms_per_frame", "server_cores", "client_cores", "why"])
        for name, size, cap in rep.frame_kinds:
            for s in cap.steps:
                w.writerow([name, size, f"{s.rate:g}", s.ok, f"{s.attainment:.5f}", f"{s.offered:.1f}", s.workers,
                            f"{s.server_cpu_per_frame_ms:.4f}", f"{s.server_cores:.3f}", f"{s.client_cores:.3f}",
                            s.why])


def write_csv(rep: Report, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "dispatch", "arrivals", "app", "rate", "slo_ms", "sent", "answered", "dropped", "failed",
                    "p50_ms", "p99_ms", "attainment", "promise", "replay", "kept", "cost_per_hour",
                    "server_cpu_ms_per_frame", "server_cores", "client_lag_p99_ms"])
        for c in rep.clusters:
            for r in c.runs:
                for a in r.apps:
                    w.writerow([Path(c.config).name, c.dispatch, r.arrivals, a.app, a.rate, a.slo_ms, a.sent,
                                a.answered, a.dropped, a.failed, f"{a.p50_ms:.3f}", f"{a.p99_ms:.3f}",
                                f"{a.attainment:.5f}", "" if a.goal is None else a.goal,
                                "" if a.replay is None else a.replay, a.kept, r.cost_per_hour,
                                f"{r.cpu_per_frame_ms:.4f}", f"{r.server_cores:.3f}", f"{r.lag['p99']:.2f}"])
