"""`harpagon bench planner`: every planner on one-app and multi-app workloads, judged by the replay.

Each plan is replayed (docs/model.md, "the replay") for `PROMISE_FRAMES` frames or `PROMISE_SECONDS` of each
app's frames, whichever is more (the steady state), with constant and with Poisson arrivals, on the bench's seed (not the planner's own seed 0, so that Harpagon's promise
is checked on arrivals it has not seen). Per (workload, planner) the row records the cost, fluid
feasibility (`check_plan`), planning time (for Harpagon's default also its model part alone, without
its internal replays), whether the plan keeps the `constant` and the `poisson` promise, and the cost
at equal attainment (:mod:`harpagon.bench.attainment`: the same wrapper for every planner), and the
workload's lower bound on the cost of any plan (:mod:`harpagon.planner.bound`, GPU sharing included).

The report compares planners at equal attainment, because a plan that misses its SLO on real
arrivals is not cheaper, only wrong; it also gives the premium Harpagon's default pays for its promise
over its fluid plan, the share of fluid plans at the exhaustive optimum, how far every planner is from
the lower bound, whether Harpagon is ever dearer than a baseline, and planning times.
"""

from __future__ import annotations

import csv
import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harpagon.bench.attainment import (
    SCREEN_FRAMES,
    SLO_FACTORS,
    UTILIZATIONS,
    at_equal_attainment,
    replay_key,
)
from harpagon.bench.progress import Phases, phases
from harpagon.bench.report import fmt, md_table, nearest_rank
from harpagon.bench.workloads import Case, grid, many_apps, multi_app_grid
from harpagon.config import load_workload
from harpagon.data import configs_dir
from harpagon.model.latency import Settings
from harpagon.model.plan import check_plan
from harpagon.planner.bound import lower_bound
from harpagon.planner.harpagon import PlannerOptions
from harpagon.planner.harpagon import plan as harpagon_plan
from harpagon.planner.registry import ABLATIONS, BASELINES, OPTIMUM, PLANNERS
from harpagon.sim import PROMISE_FRAMES, PROMISE_SECONDS, simulate

REFERENCE = "harpagon"
FLUID = "harpagon-fluid"
DEFAULT_PLANNERS = (REFERENCE, FLUID, *BASELINES, *ABLATIONS)
#: Planners whose plans pass the fluid check, so that the wrapper may skip grid points by `FLOORS` (it
#: saves planning time, which only Harpagon's default spends much of; the cost found is the same).
FLOORED = (REFERENCE,)
#: Harpagon's default shares GPUs, so the whole-worker floors (`whole_worker_floor`, `optimum_floor`)
#: are no bounds for it; the lower bound of :mod:`harpagon.planner.bound` is (GPU sharing included).
FLOORS = (lower_bound,)
#: The example configs `--configs` with no file runs: every config of the repository.
CONFIGS_DIR = configs_dir()
#: Default size of a run: with `--jobs 2` on a 2-core machine about 35 minutes (measured: some 40 s of
#: CPU per one-app workload and 100 s per multi-app one, every planner and its wrapper included).
DEFAULT_ONE_APP = 30
DEFAULT_MULTI_APP = 30
#: Costs within this relative tolerance count as equal.
COST_TOL = 1e-6


@dataclass(frozen=True)
class Row:
    case: str
    kind: str  # "one-app" or "multi-app"
    apps: int
    app: str
    rate: float
    slo_factor: float  # nan for multi-app workloads (each app has its own)
    catalog: str
    planner: str
    cost: float  # of the plan as made; nan when any app is refused
    refused: bool  # any app refused
    feasible: bool  # passes docs/model.md's fluid feasibility check (False when refused)
    plan_ms: float  # the planner's call, everything included
    model_ms: float  # its model part (Harpagon's default: replay=False; the others: the same as plan_ms)
    replay_ms: float  # the bench's replay of the plan (constant, then Poisson)
    over_slo_constant: float  # worst app's fraction of frames over the SLO, constant arrivals (nan: refused)
    min_attainment: float  # worst app's Poisson attainment (nan: refused)
    keeps_constant: bool
    keeps_poisson: bool
    eq_cost: float  # cost at equal attainment (the wrapper); nan when no candidate keeps the promise
    eq_slo_factor: float
    eq_max_utilization: float
    eq_candidates: int
    eq_screens: int
    eq_replays: int
    eq_plan_s: float
    eq_replay_s: float
    # Columns added later have defaults, so that older CSVs read back.
    bound: float = math.nan  # the workload's lower bound on any plan's cost (inf: some app cannot be served)
    distance: float = math.nan  # cost / bound, as planned (nan: refused, or no finite bound)
    eq_distance: float = math.nan  # eq_cost / bound

    @staticmethod
    def from_dict(d: dict[str, str]) -> Row:
        """A row read back from the CSV (columns it lacks take their defaults)."""
        conv = {"int": int, "float": float, "str": str, "bool": lambda s: s == "True"}
        return Row(**{f.name: conv[str(f.type)](d[f.name]) for f in fields(Row) if f.name in d})


def evaluate(case: Case, planner: str, settings: Settings, seed: int, *, frames: int = PROMISE_FRAMES,
             wrapper: bool = True, bound: float | None = None) -> Row:
    """One planner on one workload: plan, check, replay, and (with `wrapper`) the cost at equal attainment.
    `planner` may be "optimum" (the exhaustive fluid yardstick: planned and checked only). `bound`: the
    workload's lower bound, when the caller computed it once for all planners."""
    w = case.workload
    if bound is None:
        bound = lower_bound(w, settings)
    fn = OPTIMUM if planner == "optimum" else PLANNERS[planner]
    t0 = time.perf_counter()
    p = fn(w, settings)
    plan_ms = (time.perf_counter() - t0) * 1000
    model_ms = plan_ms
    if planner == REFERENCE:
        t0 = time.perf_counter()
        harpagon_plan(w, settings, PlannerOptions(replay=False))
        model_ms = (time.perf_counter() - t0) * 1000
    refused = bool(p.refused) or not p.apps
    feasible = not refused and not check_plan(p, w)
    nan = math.nan
    over, attained, replay_ms = nan, nan, 0.0
    keeps_constant = keeps_poisson = False
    verdicts: dict = {}
    if not refused and planner != "optimum":
        t0 = time.perf_counter()
        const = simulate(p, w, "constant", frames=frames, seed=seed, seconds=PROMISE_SECONDS)
        pois = simulate(p, w, "poisson", frames=frames, seed=seed, seconds=PROMISE_SECONDS)
        replay_ms = (time.perf_counter() - t0) * 1000
        over = max(a.over_slo for a in const.apps)
        attained = min(a.attainment for a in pois.apps)
        keeps_constant = over == 0.0
        keeps_poisson = keeps_constant and attained >= settings.attainment
        verdicts[replay_key(p)] = keeps_poisson
    eq = None
    if wrapper and planner != "optimum":
        eq = at_equal_attainment(fn, w, settings, seed=seed, frames=frames,
                                 given={(1.0, 1.0): p}, verdicts=verdicts,
                                 floors=FLOORS if planner in FLOORED else ())
    return Row(
        case.id, "multi-app" if len(w.apps) > 1 else "one-app", len(w.apps), case.app, case.rate, case.slo_factor,
        case.catalog, planner, nan if refused else p.cost_per_hour, refused, feasible, plan_ms, model_ms, replay_ms,
        over, attained, keeps_constant, keeps_poisson,
        eq.cost if eq else nan, eq.point[0] if eq and eq.point else nan, eq.point[1] if eq and eq.point else nan,
        eq.candidates if eq else 0, eq.screens if eq else 0, eq.replays if eq else 0,
        eq.plan_s if eq else 0.0, eq.replay_s if eq else 0.0,
        bound, _ratio(nan if refused else p.cost_per_hour, bound), _ratio(eq.cost if eq else nan, bound),
    )


def _ratio(cost: float, bound: float) -> float:
    """cost / bound; nan unless both are finite and the bound positive."""
    return cost / bound if math.isfinite(cost) and math.isfinite(bound) and bound > 0 else math.nan


def _evaluate_args(args: tuple[Case, str, Settings, int, float]) -> Row:
    case, planner, settings, seed, bound = args
    return evaluate(case, planner, settings, seed, bound=bound)


def _weight(case: Case, planner: str) -> float:
    """Rough relative cost of a unit of work, to start the long ones first."""
    per_app = 20.0 if planner == REFERENCE else 1.0 if planner == "optimum" else 3.0
    return per_app * len(case.workload.apps)


def run(cases: Sequence[Case], planners: Sequence[str], settings: Settings, seed: int, jobs: int,
        progress: Phases | None = None) -> list[Row]:
    """Every planner and the optimum on every case, `jobs` processes; rows in (case, planner) order.
    `progress`: phases "bounds" (a lower bound per workload) and "plans" (per workload and planner)."""
    names = (*planners, "optimum")
    bounds = {}
    if progress:
        progress.phase("bounds", len(cases))
    for c in cases:  # once per workload
        bounds[c.id] = lower_bound(c.workload, settings)
        if progress:
            progress.done("bounds", c.id)
    work = sorted(((c, n, settings, seed, bounds[c.id]) for c in cases for n in names),
                  key=lambda a: -_weight(a[0], a[1]))
    rows: list[Row] = []
    if progress:
        progress.phase("plans", len(work))

    def finished(row: Row) -> None:
        rows.append(row)
        if progress:
            progress.done("plans", f"{row.case} {row.planner}: "
                                   + ("refused" if row.refused else f"${row.cost:.3f}/h") + f" in {row.plan_ms / 1000:.1f} s")

    if jobs <= 1:
        for w in work:
            finished(_evaluate_args(w))
    else:
        with ProcessPoolExecutor(jobs) as pool:
            for future in as_completed([pool.submit(_evaluate_args, w) for w in work]):
                finished(future.result())
    order = {(c.id, n): i for i, (c, n) in enumerate((c, n) for c in cases for n in names)}
    return sorted(rows, key=lambda r: order[(r.case, r.planner)])


def scale(counts: Sequence[int] = (100, 1000), replay_upto: int = 100, seed: int = 0,
          frames: int = PROMISE_FRAMES, progress: Phases | None = None) -> list[tuple[int, float, float, float]]:
    """Harpagon's model part (replay=False) on many apps in one call, and one replay of that plan
    (constant and Poisson, `frames` per app) for counts up to `replay_upto`:
    (apps, model seconds, model ms per app, replay seconds or nan)."""
    out = []
    if progress:
        progress.phase("scale", len(counts))
    for n in counts:
        w = many_apps(n, seed)
        t0 = time.perf_counter()
        p = harpagon_plan(w, Settings(), PlannerOptions(replay=False))
        s = time.perf_counter() - t0
        r = math.nan
        if n <= replay_upto and p.apps:
            t0 = time.perf_counter()
            simulate(p, w, "constant", frames=frames, seed=seed + 1)
            simulate(p, w, "poisson", frames=frames, seed=seed + 1)
            r = time.perf_counter() - t0
        out.append((n, s, 1000 * s / n, r))
        if progress:
            progress.done("scale", f"{n} apps")
    return out


# --- summary ------------------------------------------------------------------------------------


def geomean(values: Iterable[float]) -> float:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def _finite(x: float) -> bool:
    return not math.isnan(x)


def summarise(rows: Sequence[Row], reference: str = REFERENCE) -> list[dict[str, float | str | int]]:
    """Per planner (the optimum excluded):

    - `refused`, `feasible`: shares of all workloads; `keeps_constant`, `keeps_poisson`: shares of all
      workloads (a refused workload keeps nothing) and `keeps_poisson_planned` of those planned;
    - `planned_ratio` (`planned_n`): geo-mean of cost / the reference's cost, as planned, on workloads
      where both plans keep the Poisson promise;
    - `eq_ratio` (`eq_n`): geo-mean of the cost at equal attainment / the reference's, through the
      wrapper, where both found a plan; `ref_cheaper`, `ref_equal`, `ref_dearer`: shares of those
      workloads where the reference costs less, the same, more; `eq_none`: share of all workloads where
      no candidate of the planner keeps the promise;
    - `eq_vs_planned_ratio`: the cost at equal attainment / the reference's cost as planned, where the
      reference's own plan keeps the promise and the wrapper found one;
    - `at_optimum`: share of planned workloads at the exhaustive (fluid) optimum's cost;
    - `model_ms_p50/p99`, `plan_ms_p50/p99`, `replay_ms_p50/p99`: per app, over planned workloads;
    - `eq_candidates`, `eq_screens`, `eq_replays`, `eq_s`: the wrapper's effort per workload (means).
    """
    by = {(r.case, r.planner): r for r in rows}
    cases = list(dict.fromkeys(r.case for r in rows))
    planners = [p for p in dict.fromkeys(r.planner for r in rows) if p != "optimum"]
    out: list[dict[str, float | str | int]] = []
    for name in planners:
        mine = [by[(c, name)] for c in cases if (c, name) in by]
        refs = [by.get((r.case, reference)) for r in mine]
        planned = [r for r in mine if not r.refused]
        both_kept = [(r, h) for r, h in zip(mine, refs, strict=True) if h and r.keeps_poisson and h.keeps_poisson]
        both_eq = [(r, h) for r, h in zip(mine, refs, strict=True) if h and _finite(r.eq_cost) and _finite(h.eq_cost)]
        vs_planned = [(r, h) for r, h in zip(mine, refs, strict=True) if h and _finite(r.eq_cost) and h.keeps_poisson]
        opt = [(r, by[(r.case, "optimum")]) for r in planned
               if (r.case, "optimum") in by and not by[(r.case, "optimum")].refused]

        def cmp(sign: int, pairs: list = both_eq) -> float:
            return _share([_compare(h.eq_cost, r.eq_cost) == sign for r, h in pairs])

        out.append({
            "planner": name,
            "workloads": len(mine),
            "refused": _share([r.refused for r in mine]),
            "feasible": _share([r.feasible for r in mine]),
            "keeps_constant": _share([r.keeps_constant for r in mine]),
            "keeps_poisson": _share([r.keeps_poisson for r in mine]),
            "keeps_poisson_planned": _share([r.keeps_poisson for r in planned]),
            "planned_ratio": geomean(r.cost / h.cost for r, h in both_kept),
            "planned_n": len(both_kept),
            "eq_ratio": geomean(r.eq_cost / h.eq_cost for r, h in both_eq),
            "eq_n": len(both_eq),
            "ref_cheaper": cmp(-1),
            "ref_equal": cmp(0),
            "ref_dearer": cmp(1),
            "eq_none": _share([not _finite(r.eq_cost) for r in mine]),
            "eq_vs_planned_ratio": geomean(r.eq_cost / h.cost for r, h in vs_planned),
            "eq_vs_planned_n": len(vs_planned),
            "at_optimum": _share([r.cost <= o.cost * (1 + COST_TOL) for r, o in opt]),
            "model_ms_p50": nearest_rank((r.model_ms / r.apps for r in planned), 0.5),
            "model_ms_p99": nearest_rank((r.model_ms / r.apps for r in planned), 0.99),
            "plan_ms_p50": nearest_rank((r.plan_ms / r.apps for r in planned), 0.5),
            "plan_ms_p99": nearest_rank((r.plan_ms / r.apps for r in planned), 0.99),
            "replay_ms_p50": nearest_rank((r.replay_ms / r.apps for r in planned), 0.5),
            "replay_ms_p99": nearest_rank((r.replay_ms / r.apps for r in planned), 0.99),
            "eq_candidates": statistics.fmean(r.eq_candidates for r in mine) if mine else math.nan,
            "eq_screens": statistics.fmean(r.eq_screens for r in mine) if mine else math.nan,
            "eq_replays": statistics.fmean(r.eq_replays for r in mine) if mine else math.nan,
            "eq_s": statistics.fmean(r.eq_plan_s + r.eq_replay_s for r in mine) if mine else math.nan,
        })
    return out


def distances(rows: Sequence[Row]) -> list[dict[str, float | str | int]]:
    """Per planner (the optimum included), how far its cost is from the workload's lower bound:

    - `n`, `geo`, `max`, `worst`: over the workloads it planned whose plan passes the fluid check (the
      bound holds for those only), geo-mean and largest of cost / bound, and the workload of the largest;
    - `eq_n`, `eq_geo`, `eq_max`, `eq_worst`: the same for the cost at equal attainment;
    - `infeasible`: planned workloads left out because the plan fails the fluid check;
    - `below`: distances below 1 (by more than `COST_TOL`): a plan cheaper than the bound, i.e. a bug.
    """
    out: list[dict[str, float | str | int]] = []
    for name in dict.fromkeys(r.planner for r in rows):
        mine = [r for r in rows if r.planner == name]
        planned = [r for r in mine if _finite(r.distance) and r.feasible]
        eq = [r for r in mine if _finite(r.eq_distance)]
        worst = max(planned, key=lambda r: r.distance, default=None)
        eq_worst = max(eq, key=lambda r: r.eq_distance, default=None)
        out.append({
            "planner": name,
            "n": len(planned),
            "geo": geomean(r.distance for r in planned),
            "max": worst.distance if worst else math.nan,
            "worst": worst.case if worst else "",
            "eq_n": len(eq),
            "eq_geo": geomean(r.eq_distance for r in eq),
            "eq_max": eq_worst.eq_distance if eq_worst else math.nan,
            "eq_worst": eq_worst.case if eq_worst else "",
            "infeasible": sum(not r.refused and not r.feasible for r in mine),
            "below": sum(d < 1 - COST_TOL for d in [*(r.distance for r in planned), *(r.eq_distance for r in eq)]),
        })
    return out


@dataclass(frozen=True)
class VsBaseline:
    """Harpagon's cost at equal attainment against one baseline's, on the workloads both served."""

    baseline: str
    compared: int
    dearer: list[tuple[str, float, float]]  # (workload, Harpagon's cost, the baseline's)
    equal: int
    cheaper: int
    only_baseline: list[str]  # workloads the baseline's wrapper served and Harpagon's did not


def never_dearer(rows: Sequence[Row], reference: str = REFERENCE,
                 baselines: Sequence[str] = BASELINES) -> tuple[list[VsBaseline], dict[str, tuple[float, int]]]:
    """Per baseline present in `rows`, where `reference` costs more at equal attainment (`COST_TOL` apart);
    and, per group of workloads (`GROUPS`), the geo-mean over the workloads where the reference
    and some baseline found a plan of (the cheapest baseline's cost at equal attainment / the
    reference's), with the number of those workloads."""
    by = {(r.case, r.planner): r for r in rows}
    cases = list(dict.fromkeys(r.case for r in rows))
    present = [b for b in baselines if any(r.planner == b for r in rows)]
    per: list[VsBaseline] = []
    for b in present:
        dearer, equal, cheaper, only = [], 0, 0, []
        for c in cases:
            h, x = by.get((c, reference)), by.get((c, b))
            if h is None or x is None or not _finite(x.eq_cost):
                continue
            if not _finite(h.eq_cost):
                only.append(c)
                continue
            sign = _compare(h.eq_cost, x.eq_cost)
            if sign > 0:
                dearer.append((c, h.eq_cost, x.eq_cost))
            equal += sign == 0
            cheaper += sign < 0
        per.append(VsBaseline(b, len(dearer) + equal + cheaper, dearer, equal, cheaper, only))
    best: dict[str, list[float]] = {g: [] for g in GROUPS}
    for c in cases:
        h = by.get((c, reference))
        costs = [x.eq_cost for b in present if (x := by.get((c, b))) is not None and _finite(x.eq_cost)]
        if h is None or not _finite(h.eq_cost) or not costs:
            continue
        best[_group(h)].append(min(costs) / h.eq_cost)
        best["all"].append(min(costs) / h.eq_cost)
    return per, {k: (geomean(v), len(v)) for k, v in best.items()}


#: How the report groups workloads: the multi-app grid, the one-app grid, the example configs, all.
GROUPS = ("multi-app", "one-app", "example configs", "all")


def _group(r: Row) -> str:
    return "example configs" if r.catalog == "config" else r.kind


def _compare(a: float, b: float) -> int:
    """-1, 0, 1 as `a` is below, equal to (within `COST_TOL`), above `b`."""
    if math.isclose(a, b, rel_tol=COST_TOL):
        return 0
    return -1 if a < b else 1


def premium(rows: Sequence[Row], planner: str = REFERENCE, fluid: str = FLUID) -> list[tuple[str, float]]:
    """Cost of `planner`'s plan / `fluid`'s plan, per workload both planned (as planned)."""
    by = {(r.case, r.planner): r for r in rows}
    return [(r.case, r.cost / f.cost) for r in rows if r.planner == planner and not r.refused
            and (f := by.get((r.case, fluid))) is not None and not f.refused]


def broken_promises(rows: Sequence[Row], planner: str = REFERENCE) -> list[Row]:
    """Workloads `planner` planned whose plan misses the Poisson promise in the bench's replay."""
    return [r for r in rows if r.planner == planner and not r.refused and not r.keeps_poisson]


# --- report -------------------------------------------------------------------------------------

#: What the report's tables show where there is no figure.
NA = "–"


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(Row)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def read_csv(path: Path) -> list[Row]:
    with path.open() as f:
        return [Row.from_dict(d) for d in csv.DictReader(f)]


def write_report(rows: Sequence[Row], out: Path, command: str, scale_rows: Sequence[tuple[int, float, float, float]],
                 seed: int, elapsed_s: float | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "planner.csv")
    _plots(rows, out)
    summary = summarise(rows)
    lines = _method_section(rows, command, seed, elapsed_s)
    lines += _summary_section(summary)
    lines += _kind_table(rows)
    lines += _bound_section(rows)
    lines += _never_dearer_section(rows)
    lines += _premium_section(rows)
    lines += _broken_section(rows)
    lines += _time_section(summary, scale_rows)
    path = out / "planner.md"
    path.write_text("\n".join(lines))
    return path


def _method_section(rows: Sequence[Row], command: str, seed: int, elapsed_s: float | None) -> list[str]:
    """The command, the workloads, how plans are replayed, and what each column means."""
    cases = list(dict.fromkeys(r.case for r in rows))
    kinds = {r.case: r.kind for r in rows}
    configs = [c for c in cases if _group(next(r for r in rows if r.case == c)) == "example configs"]
    n_multi = sum(kinds[c] == "multi-app" for c in cases if c not in configs)
    apps_multi = [r.apps for r in rows if r.planner == REFERENCE and r.kind == "multi-app" and r.catalog != "config"]
    return [
        "# Planner benchmark: cost at equal attainment",
        "",
        f"Command: `{command}`" + (f" ({elapsed_s / 60:.0f} min)" if elapsed_s else ""),
        "",
        f"{len(cases)} workloads: {len(cases) - n_multi - len(configs)} one-app (a seeded sample of the grid of "
        f"apps x rates x SLO factors x price lists) and {n_multi} multi-app ({min(apps_multi, default=0)} to "
        f"{max(apps_multi, default=0)} apps each, every app at its own rate and SLO factor), see "
        "`harpagon/bench/workloads.py`"
        + (f"; and {len(configs)} example configs as written ({', '.join(configs)}; hardware counts included)"
           if configs else "")
        + ". Every plan is replayed (docs/model.md, \"the replay\") for "
        f"{PROMISE_FRAMES:,} frames or {PROMISE_SECONDS:g} s of each app's frames, whichever is more, with constant "
        f"and with Poisson arrivals, seed {seed}"
        + (" (Harpagon's own replays use seed 0)." if seed != 0 else " (the seed Harpagon's own replays use)."),
        "",
        ("- *keeps constant*: every frame within the SLO with constant arrivals. *keeps Poisson*: that, and "
         "each app's Poisson attainment >= 0.99. Shares of all workloads (a refused workload keeps nothing); "
         "*(of planned)*: of the workloads the planner planned."),
        ("- *at equal attainment*: each planner through the same wrapper (`harpagon/bench/attainment.py`): "
         f"planned at every app's SLO x {', '.join(f'{f:g}' for f in SLO_FACTORS)} and max_utilization x "
         f"{', '.join(f'{u:g}' for u in UTILIZATIONS)}, candidates replayed against the real SLO in order of "
         f"cost (a {SCREEN_FRAMES:,}-frame screen, then the full replay), the cheapest that keeps the Poisson "
         "promise kept. For Harpagon's default, grid points that the lower bound on cost "
         "(`harpagon/planner/bound.py`, GPU sharing included) shows cannot beat a candidate already found are not "
         "planned; the cost found is the same."),
        ("- *vs Harpagon, as planned*: geo-mean of cost / Harpagon's default cost, where both plans keep the "
         "Poisson promise as made (n workloads). *at equal attainment*: both through the wrapper. "
         "*vs Harpagon as planned*: the planner through the wrapper against Harpagon's default plan as made "
         "(where that keeps the promise)."),
        ("- *Harpagon cheaper / equal / dearer*: per workload where both wrappers found a plan. *none*: share "
         "of workloads where no candidate of the planner keeps the promise."),
        ("- *at optimum*: share of planned workloads whose cost equals the exhaustive optimum of the fluid "
         "model (docs/model.md); only meaningful for fluid plans."),
        "",
    ]


def _vs_reference(s: dict) -> str:
    return f"{fmt(s['ref_cheaper'], '.0%', NA)} / {fmt(s['ref_equal'], '.0%', NA)} / {fmt(s['ref_dearer'], '.0%', NA)}"


def _summary_section(summary: Sequence[dict]) -> list[str]:
    rows = [[s["planner"], f"{s['refused']:.1%}", f"{s['feasible']:.1%}", f"{s['keeps_constant']:.1%}",
             f"{s['keeps_poisson']:.1%}", fmt(s["keeps_poisson_planned"], ".1%", NA),
             f"{fmt(s['planned_ratio'], '.3f', NA)} ({s['planned_n']})", f"{fmt(s['eq_ratio'], '.3f', NA)} ({s['eq_n']})",
             _vs_reference(s), f"{s['eq_none']:.1%}",
             f"{fmt(s['eq_vs_planned_ratio'], '.3f', NA)} ({s['eq_vs_planned_n']})", fmt(s["at_optimum"], ".1%", NA)]
            for s in summary]
    return ["## Promises as planned, and cost at equal attainment", "",
            *md_table(["planner", "refused", "fluid-feasible", "keeps constant", "keeps Poisson", "(of planned)",
                       "vs Harpagon, as planned (n)", "at equal attainment (n)", "Harpagon cheaper / equal / dearer",
                       "none", "vs Harpagon as planned (n)", "at optimum"], rows)]


def _kind_table(rows: Sequence[Row]) -> list[str]:
    """The headline columns again, one-app and multi-app workloads apart."""
    table = [[s["planner"], kind, f"{s['keeps_poisson']:.1%}", f"{fmt(s['eq_ratio'], '.3f', NA)} ({s['eq_n']})",
              _vs_reference(s), f"{s['eq_none']:.1%}"]
             for kind in ("one-app", "multi-app") for s in summarise([r for r in rows if r.kind == kind])]
    return ["", "### One-app and multi-app workloads apart", "",
            *md_table(["planner", "workloads", "keeps Poisson", "at equal attainment vs Harpagon (n)",
                       "Harpagon cheaper / equal / dearer", "none"], table)]


def _bound_section(rows: Sequence[Row]) -> list[str]:
    lines = ["", "## Distance from the lower bound", "",
             ("cost / the workload's lower bound on the cost of any plan, GPU sharing included "
              "(`harpagon/planner/bound.py`: every request served at the cheapest price per request of an option "
              "whose batch latency fits its share of the SLO, along every path; hardware counts and whole "
              "workers ignored). At least 1 for any plan that passes the fluid check; the bound is not "
              "reachable in general (it charges fractions of workers), so it measures the room left, not a "
              "target. *As planned*: over fluid-feasible plans; *at equal attainment*: the wrapper's plan. "
              "The optimum is the exhaustive fluid optimum without sharing; it ignores hardware counts, so on "
              "configs with counts its plan may fail the check (*not fluid-feasible*)."), ""]
    found = distances(rows)
    table = [[d["planner"], str(d["n"]), fmt(d["geo"], ".3f", NA),
              fmt(d["max"], ".3f", NA) + (f" ({d['worst']})" if d["worst"] else ""), str(d["eq_n"]),
              fmt(d["eq_geo"], ".3f", NA), fmt(d["eq_max"], ".3f", NA) + (f" ({d['eq_worst']})" if d["eq_worst"] else ""),
              str(d["infeasible"])] for d in found]
    lines += md_table(["planner", "as planned: n", "geo-mean", "max (workload)", "at equal attainment: n", "geo-mean",
                       "max (workload)", "not fluid-feasible"], table)
    below = sum(int(d["below"]) for d in found)
    if below:
        lines += ["", f"**{below} distances below 1**: plans cheaper than the bound (a bug in the bound or the plans)."]
    return lines


def _never_dearer_section(rows: Sequence[Row]) -> list[str]:
    per, best = never_dearer(rows)
    lines = ["", "## Is Harpagon ever dearer than a baseline?", ""]
    if not per:
        return [*lines, "No baseline in this run."]
    lines += [("Harpagon's default against each baseline at equal attainment (both through the wrapper, costs "
               f"within {COST_TOL:g} relative count as equal), on the workloads both served. *baseline only*: "
               "workloads the baseline's wrapper served and Harpagon's did not."), ""]
    lines += md_table(["baseline", "compared", "Harpagon dearer", "equal", "Harpagon cheaper", "baseline only"],
                      [[v.baseline, v.compared, len(v.dearer), v.equal, v.cheaper, len(v.only_baseline)] for v in per])
    dearer = [(v.baseline, *d) for v in per for d in v.dearer]
    if dearer:
        lines += ["", "Where Harpagon is dearer:", ""]
        lines += md_table(["baseline", "workload", "Harpagon $/h", "baseline $/h", "ratio"],
                          [[b, c, f"{h:.3f}", f"{x:.3f}", f"{h / x:.3f}"]
                           for b, c, h, x in sorted(dearer, key=lambda t: t[1])], right=range(2, 5))
    else:
        lines += ["", "Nowhere: Harpagon's cost at equal attainment is never above a baseline's."]
    only = sorted({c for v in per for c in v.only_baseline})
    if only:
        lines += ["", f"Served by some baseline's wrapper but not Harpagon's: {', '.join(only)}."]
    lines += ["", ("*vs the best baseline*: geo-mean over workloads of (the cheapest baseline's cost at equal "
                   "attainment / Harpagon's); above 1: Harpagon is cheaper than the best baseline of each workload."),
              ""]
    lines += md_table(["workloads", "vs the best baseline", "n"],
                      [[group, f"{best[group][0]:.3f}", best[group][1]] for group in GROUPS if best[group][1]])
    return lines


def _premium_section(rows: Sequence[Row]) -> list[str]:
    ratios = [x for _, x in premium(rows)]
    lines = ["", "## The premium of the promise: Harpagon's default plan / its fluid plan", ""]
    if not ratios:
        return [*lines, "No workload planned by both."]
    lines += [(f"On {len(ratios)} workloads both planned: geo-mean {geomean(ratios):.3f}, median "
               f"{statistics.median(ratios):.3f}, P90 {nearest_rank(ratios, 0.9):.3f}, max {max(ratios):.3f}."), ""]
    edges = [(0.0, 1.0 + COST_TOL, "none (<= 1.00)"), (1.0 + COST_TOL, 1.1, "up to 10%"), (1.1, 1.5, "10% to 50%"),
             (1.5, 2.0, "50% to 2x"), (2.0, math.inf, "over 2x")]
    lines += md_table(["premium", "share of workloads"],
                      [[label, f"{sum(lo < x <= hi or (lo == 0.0 and x <= hi) for x in ratios) / len(ratios):.1%}"]
                       for lo, hi, label in edges])
    mirror = [r for r in rows if r.planner == FLUID and not r.refused]
    if mirror:
        kept = sum(r.keeps_poisson for r in mirror)
        lines += ["", f"The fluid plan itself keeps the Poisson promise on {kept} of those {len(mirror)} workloads."]
    return lines


def _broken_section(rows: Sequence[Row]) -> list[str]:
    broken = broken_promises(rows)
    refused = [r for r in rows if r.planner == REFERENCE and r.refused]
    lines = ["", "## Where Harpagon's default plan does not keep its promise on the bench's seed", ""]
    if not broken:
        lines.append("Nowhere: every plan it made keeps the Poisson promise.")
    else:
        lines += md_table(["workload", "over SLO, constant", "Poisson attainment (worst app)", "cost"],
                          [[f"{r.case} ({r.app})", f"{r.over_slo_constant:.4%}", f"{r.min_attainment:.4f}", f"{r.cost:.2f}"]
                           for r in broken])
    if refused:
        lines += ["", f"Refused (some app not planned) on {len(refused)} workloads: "
                  + ", ".join(f"{r.case} ({r.app})" for r in refused) + "."]
    return lines


def _time_section(summary: Sequence[dict], scale_rows: Sequence[tuple[int, float, float, float]]) -> list[str]:
    """Planning time per app, the wrapper's work, and Harpagon's model part at scale."""
    lines = ["", "## Planning time", "",
             ("Per app (a workload's time / its apps), over planned workloads. *model*: the planner without any "
              "replay (Harpagon's default: `PlannerOptions(replay=False)`); *planner call*: everything the planner "
              f"does (Harpagon's default replays and repairs its own plans); *bench replay*: the bench's replay of "
              f"the plan ({PROMISE_FRAMES:,} frames or {PROMISE_SECONDS:g} s per app, constant and Poisson)."), ""]
    lines += md_table(["planner", "model P50 ms", "model P99 ms", "planner call P50 ms", "P99 ms", "bench replay P50 ms",
                       "P99 ms", "wrapper: candidates / screens / full replays (mean)", "wrapper s (mean)"],
                      [[s["planner"], fmt(s["model_ms_p50"], ".2f", NA), fmt(s["model_ms_p99"], ".2f", NA),
                        fmt(s["plan_ms_p50"], ".1f", NA), fmt(s["plan_ms_p99"], ".1f", NA),
                        fmt(s["replay_ms_p50"], ".0f", NA), fmt(s["replay_ms_p99"], ".0f", NA),
                        f"{s['eq_candidates']:.1f} / {s['eq_screens']:.1f} / {s['eq_replays']:.1f}", f"{s['eq_s']:.1f}"]
                       for s in summary])
    lines += ["", "### At scale (Harpagon's model part in one call, `many_apps` on the AWS catalog)", ""]
    lines += md_table(["apps", "model seconds", "ms per app", "replay seconds (constant + Poisson)"],
                      [[n, f"{sec:.2f}", f"{per:.2f}", fmt(r, ".1f", NA) if _finite(r) else "not run"]
                       for n, sec, per, r in scale_rows])
    lines += ["", "![cost at equal attainment](planner_cost_cdf.png)", "", "![planning time](planner_time.png)", ""]
    return lines


def _plots(rows: Sequence[Row], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = {r.case: r.eq_cost for r in rows if r.planner == REFERENCE and _finite(r.eq_cost)}
    planners = [p for p in dict.fromkeys(r.planner for r in rows) if p not in ("optimum", REFERENCE)]
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in planners:
        ratios = sorted(r.eq_cost / ref[r.case] for r in rows
                        if r.planner == name and _finite(r.eq_cost) and r.case in ref)
        if ratios:  # out of every workload Harpagon's wrapper served: a curve ends below 1 where none kept it
            ax.step(ratios, [(i + 1) / len(ref) for i in range(len(ratios))], where="post", label=name,
                    linewidth=2 if name in BASELINES else 1, linestyle="-" if name in BASELINES else "--")
    ax.axvline(1.0, color="k", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("cost at equal attainment / Harpagon's (both through the wrapper)")
    ax.set_ylabel(f"share of the {len(ref)} workloads Harpagon's wrapper served")
    ax.set_title("Cost at equal attainment (Poisson, 99%), normalised to Harpagon")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "planner_cost_cdf.png", dpi=120)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    names = [*dict.fromkeys(r.planner for r in rows)]
    left.boxplot([[max(r.model_ms / r.apps, 1e-3) for r in rows if r.planner == n and not r.refused] or [math.nan]
                  for n in names], showfliers=False)
    left.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=7)
    left.set_yscale("log")
    left.set_ylabel("model part, ms per app")
    left.grid(True, alpha=0.3)
    h = [r for r in rows if r.planner == REFERENCE and not r.refused]
    right.boxplot([[r.model_ms / r.apps for r in h] or [math.nan], [r.plan_ms / r.apps for r in h] or [math.nan],
                   [r.replay_ms / r.apps for r in h] or [math.nan]], showfliers=False)
    right.set_xticks([1, 2, 3], ["model", "planner\ncall", "bench\nreplay"], fontsize=7)
    right.set_yscale("log")
    right.set_title("Harpagon's default, ms per app", fontsize=9)
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "planner_time.png", dpi=120)
    plt.close(fig)


def example_configs() -> list[Path]:
    """Every example config of the repository (`configs/*.yaml`)."""
    return sorted(CONFIGS_DIR.glob("*.yaml"))


def config_cases(paths: Sequence[Path | str]) -> list[Case]:
    """One case per config file, as written (its apps, rates, SLOs, hardware and counts): the
    workloads people run, beside the synthetic grid. Its id is `config/<file stem>`, its `app` the app
    names joined with "+", its `rate` their sum, its `slo_factor` nan and its catalog "config"."""
    cases = []
    for path in paths:
        w = load_workload([path])
        w = w.model_copy(update={"serve": None})  # planners ignore it; keeps pickling to workers light
        cases.append(Case(f"config/{Path(path).stem}", "+".join(a.name for a in w.apps), sum(a.rate for a in w.apps),
                          math.nan, "config", w))
    return cases


def cases_for(workloads: int | None, multi_apps: int, seed: int, settings: Settings,
              configs: Sequence[Path | str] = (), max_rate: float | None = None) -> list[Case]:
    """The run's workloads: a seeded sample of `workloads` one-app cases (None: all of them; only
    those of at most `max_rate` frames/s when given), `multi_apps` seeded multi-app cases, and one
    case per file of `configs`."""
    if max_rate is None:
        one = grid(settings, workloads, seed)
    else:
        low = [c for c in grid(settings) if c.rate <= max_rate]
        one = low if workloads is None or workloads >= len(low) else random.Random(seed).sample(low, workloads)
    return [*one, *multi_app_grid(multi_apps, settings, seed), *config_cases(configs)]


#: `harpagon bench planner --quick`: a small grid that runs in minutes on a 2-core machine: one-app
#: workloads of at most 1,000 frames/s (60 s of 10,000 frames/s is 600,000 frames per replay).
QUICK_ONE_APP, QUICK_MULTI_APP, QUICK_MAX_RATE, QUICK_SCALE = 6, 0, 1000.0, (100,)


def main(workloads: int | None, seed: int, out: Path, jobs: int, command: str, *, multi_apps: int = DEFAULT_MULTI_APP,
         planners: Sequence[str] = DEFAULT_PLANNERS, settings: Settings | None = None,
         scale_counts: Sequence[int] = (100, 1000), configs: Sequence[Path | str] = (),
         max_rate: float | None = None) -> Path:
    settings = settings or Settings()
    cases = cases_for(workloads, multi_apps, seed, settings, configs, max_rate)
    t0 = time.perf_counter()
    with phases("harpagon bench planner") as progress:
        rows = run(cases, planners, settings, seed, jobs, progress)
        scale_rows = scale(scale_counts, progress=progress)
    return write_report(rows, out, command, scale_rows, seed, time.perf_counter() - t0)
