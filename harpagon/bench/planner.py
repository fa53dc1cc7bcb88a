"""`harpagon bench planner`: every planner on a grid of workloads, against the optimum and in simulation.

For each workload and planner: the plan's cost, whether it passes MODEL.md's feasibility check, its
planning time, and a replay in the simulator at the planned rate with constant and with Poisson
arrivals (fraction of frames over the SLO). The report gives, per planner, the geo-mean and median
cost relative to Harpagon, the share of workloads at the optimum, the share infeasible or missing
the SLO in simulation, and planning-time percentiles; plus a CSV of every row and two plots.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from harpagon.bench.workloads import Case, grid, many_apps
from harpagon.model.latency import Settings
from harpagon.model.plan import check_plan
from harpagon.planner.harpagon import plan as harpagon_plan
from harpagon.planner.registry import ABLATIONS, BASELINES, OPTIMUM, PLANNERS
from harpagon.sim import simulate

#: A plan "misses the SLO in simulation" when more than this fraction of its frames is late (P99).
MISS_FRACTION = 0.01
SIM_SECONDS = 2.0
SIM_MAX_FRAMES = 2000


@dataclass(frozen=True)
class Row:
    case: str
    app: str
    rate: float
    slo_factor: float
    catalog: str
    planner: str
    cost: float  # nan when refused
    refused: bool
    infeasible: bool  # fails the feasibility check (or refused)
    plan_ms: float
    late_constant: float  # fraction of frames over the SLO in simulation, nan when refused
    late_poisson: float


def evaluate(case: Case, planners: Sequence[str], settings: Settings, seed: int) -> list[Row]:
    """Run every planner (and the optimum) on one workload, check and simulate each plan."""
    rows = []
    for name in (*planners, "optimum"):
        fn = OPTIMUM if name == "optimum" else PLANNERS[name]
        t0 = time.perf_counter()
        p = fn(case.workload, settings)
        ms = (time.perf_counter() - t0) * 1000
        refused = not p.apps
        late = {"constant": math.nan, "poisson": math.nan}
        if not refused:
            for arrivals in late:
                r = simulate(p, case.workload, arrivals, duration_s=SIM_SECONDS, max_frames=SIM_MAX_FRAMES, seed=seed)
                late[arrivals] = r.over_slo
        rows.append(Row(case.id, case.app, case.rate, case.slo_factor, case.catalog, name,
                        math.nan if refused else p.cost_per_hour, refused,
                        refused or bool(check_plan(p, case.workload)), ms, late["constant"], late["poisson"]))
    return rows


def _evaluate_args(args: tuple[Case, Sequence[str], Settings, int]) -> list[Row]:
    return evaluate(*args)


def run(cases: Sequence[Case], planners: Sequence[str], settings: Settings, seed: int, jobs: int,
        progress: Callable[[int], None]) -> list[Row]:
    rows: list[Row] = []
    work = [(c, planners, settings, seed) for c in cases]
    if jobs <= 1:
        for w in work:
            rows.extend(_evaluate_args(w))
            progress(1)
        return rows
    with ProcessPoolExecutor(jobs) as pool:
        for result in pool.map(_evaluate_args, work, chunksize=4):
            rows.extend(result)
            progress(1)
    return rows


def scale(counts: Sequence[int] = (100, 1000), seed: int = 0) -> list[tuple[int, float, float]]:
    """Harpagon's planning time for many apps in one call: (apps, seconds, ms per app)."""
    out = []
    for n in counts:
        w = many_apps(n, seed)
        t0 = time.perf_counter()
        harpagon_plan(w)
        s = time.perf_counter() - t0
        out.append((n, s, 1000 * s / n))
    return out


# --- report -------------------------------------------------------------------------------------


def _geo(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def summarise(rows: list[Row]) -> list[dict[str, float | str]]:
    by: dict[tuple[str, str], Row] = {(r.case, r.planner): r for r in rows}
    cases = sorted({r.case for r in rows})
    planners = list(dict.fromkeys(r.planner for r in rows))
    out = []
    for name in planners:
        mine = [by[(c, name)] for c in cases]
        both = [(by[(c, name)], by[(c, "harpagon")]) for c in cases
                if not by[(c, name)].refused and not by[(c, "harpagon")].refused]
        ratios = [a.cost / b.cost for a, b in both]
        at_opt = [r for c in cases if not (r := by[(c, name)]).refused and not by[(c, "optimum")].refused]
        planned = [r for r in mine if not r.refused]
        out.append({
            "planner": name,
            "workloads": len(mine),
            "refused": sum(r.refused for r in mine) / len(mine),
            "cost_vs_harpagon_geomean": _geo(ratios),
            "cost_vs_harpagon_median": statistics.median(ratios) if ratios else math.nan,
            "at_optimum": (sum(r.cost <= by[(r.case, "optimum")].cost * (1 + 1e-6) for r in at_opt) / len(at_opt)
                           if at_opt else math.nan),
            "infeasible": sum(r.infeasible for r in mine) / len(mine),
            "late_constant": sum(r.late_constant > MISS_FRACTION for r in planned) / max(1, len(planned)),
            "late_poisson": sum(r.late_poisson > MISS_FRACTION for r in planned) / max(1, len(planned)),
            "plan_ms_p50": _pct([r.plan_ms for r in mine], 0.5),
            "plan_ms_p99": _pct([r.plan_ms for r in mine], 0.99),
        })
    return out


def write_report(rows: list[Row], out: Path, command: str, scale_rows: list[tuple[int, float, float]]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "planner.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    summary = summarise(rows)
    _plots(rows, out)
    lines = [
        "# Planner benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"{len({r.case for r in rows})} workloads (one app each: apps x rates x SLO factors x price lists, see "
        "`harpagon/bench/workloads.py`); every planner on each, then its plan replayed in the simulator at "
        f"the planned rate for {SIM_SECONDS:g} s (at most {SIM_MAX_FRAMES} frames) with constant and with "
        "Poisson arrivals.",
        "",
        "- *cost vs Harpagon*: geo-mean and median of cost / Harpagon's cost, on workloads both planned.",
        "- *at optimum*: share of planned workloads whose cost equals the exhaustive optimum (MODEL.md).",
        "- *infeasible*: refused, or the plan fails MODEL.md's feasibility check.",
        f"- *late*: share of planned workloads with more than {MISS_FRACTION:.0%} of frames over the SLO in "
        "simulation (constant / Poisson arrivals).",
        "- Plans that share GPUs between modules (Nexus, Scrooge) pay each shared GPU once.",
        "",
        "| planner | refused | cost vs Harpagon (geo-mean) | (median) | at optimum | infeasible | late, constant "
        "| late, Poisson | plan P50 ms | plan P99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['planner']} | {s['refused']:.1%} | {s['cost_vs_harpagon_geomean']:.3f} | "
            f"{s['cost_vs_harpagon_median']:.3f} | {s['at_optimum']:.1%} | {s['infeasible']:.1%} | "
            f"{s['late_constant']:.1%} | {s['late_poisson']:.1%} | {s['plan_ms_p50']:.2f} | {s['plan_ms_p99']:.2f} |"
        )
    lines += ["", "## Planning time at scale (Harpagon, one call)", "", "| apps | seconds | ms per app |",
              "|---|---|---|"]
    lines += [f"| {n} | {sec:.2f} | {per:.2f} |" for n, sec, per in scale_rows]
    lines += ["", "![cost CDF](planner_cost_cdf.png)", "", "![planning time](planner_time.png)", ""]
    path = out / "planner.md"
    path.write_text("\n".join(lines))
    return path


def _plots(rows: list[Row], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opt = {r.case: r.cost for r in rows if r.planner == "optimum" and not r.refused}
    planners = [p for p in dict.fromkeys(r.planner for r in rows) if p != "optimum"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in planners:
        ratios = sorted(r.cost / opt[r.case] for r in rows if r.planner == name and not r.refused and r.case in opt)
        if ratios:
            ax.step(ratios, [(i + 1) / len(ratios) for i in range(len(ratios))], where="post", label=name,
                    linewidth=2 if name == "harpagon" else 1)
    ax.set_xscale("log")
    ax.set_xlabel("cost / optimum")
    ax.set_ylabel("share of workloads")
    ax.set_title("Cost normalised to the exhaustive optimum")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "planner_cost_cdf.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    names = [*planners, "optimum"]
    ax.boxplot([[max(r.plan_ms, 1e-3) for r in rows if r.planner == n] for n in names], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("planning time, ms (one app)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "planner_time.png", dpi=120)
    plt.close(fig)


def main(workloads: int | None, seed: int, out: Path, jobs: int, command: str,
         planners: Sequence[str] = ("harpagon", *BASELINES, *ABLATIONS), settings: Settings | None = None) -> Path:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    settings = settings or Settings()
    cases = grid(settings, workloads, seed)
    with Progress(TextColumn("planner bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("workloads", total=len(cases))
        rows = run(cases, planners, settings, seed, jobs, lambda n: bar.advance(task, n))
    return write_report(rows, out, command, scale())
