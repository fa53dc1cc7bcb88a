"""What Poisson fan-out does to the promise, on the example configs.

Run: python scripts/bench_fanout.py [--frames N] [--seed S]   (prints a Markdown report on stdout)

For every config in configs/*.yaml that the planner can plan (one that fails to load, or that has no
apps, is skipped and listed), the default plan (Settings(): Poisson arrivals, attainment 0.99,
deterministic fan-out, the planner replaying and repairing with N frames per app) is

(a) replayed with Poisson arrivals under both fan-outs (seed S, N frames per app): the attainment per
    app against the promise;
(b) compared with the plan made for Poisson fan-out (Settings(fanout="poisson"): the planner replays
    and repairs under it), by cost per app and in all, and that plan's own attainment under Poisson
    fan-out.

The per-app cost is what the app's workers cost (apps share no worker in a Harpagon plan).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harpagon.config.loader import ConfigError, load_workload
from harpagon.model.latency import Settings
from harpagon.model.plan import workers_cost
from harpagon.planner.harpagon import PlannerOptions, plan
from harpagon.sim.replay import judge

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5_000,
                    help="frames per app of every replay, the planner's included (default 5,000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the planner and of the replays (default 0)")
    args = ap.parse_args()
    options = PlannerOptions(replay_frames=args.frames, seed=args.seed)
    started = time.perf_counter()
    rows, totals, skipped = [], [], []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        try:
            w = load_workload([path])
        except ConfigError as exc:
            skipped.append((path.name, str(exc).splitlines()[0]))
            continue
        if not w.apps:
            skipped.append((path.name, "no apps (a serve-only file)"))
            continue
        det = plan(w, Settings(), options)
        pois = plan(w, Settings(fanout="poisson"), options)
        same_det = judge(det, w, "poisson", frames=args.frames, seed=args.seed, fanout="deterministic")
        same_pois = judge(det, w, "poisson", frames=args.frames, seed=args.seed, fanout="poisson")
        own_pois = judge(pois, w, "poisson", frames=args.frames, seed=args.seed, fanout="poisson")
        target = det.settings.attainment
        for a in det.apps:
            if a.name not in {b.name for b in pois.apps}:
                continue
            c_det, c_pois = workers_cost([a], w), workers_cost([pois.app(a.name)], w)
            rows.append((path.stem, a.name, same_det.poisson.app(a.name).attainment,
                         same_pois.poisson.app(a.name).attainment, c_det, c_pois,
                         own_pois.poisson.app(a.name).attainment, own_pois.constant.app(a.name).over_slo == 0))
        totals.append((path.stem, det.cost_per_hour, pois.cost_per_hour, bool(det.promise and det.promise.kept),
                       bool(pois.promise and pois.promise.kept)))
    elapsed = time.perf_counter() - started

    def mark(x: float) -> str:
        return f"{x:.2%}" + ("" if x >= target else " **<**")

    print(f"Promise: at least {target:.0%} of each app's frames within the SLO (Poisson arrivals); "
          f"{args.frames} frames per app in every replay, seed {args.seed}. **<**: below the promise.\n")
    print("| config | app | attainment, deterministic fan-out | same plan, Poisson fan-out | cost $/h (planned "
          "deterministic) | cost $/h (planned for Poisson fan-out) | ratio | attainment of the plan for Poisson "
          "fan-out |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for cfg, app, a_det, a_same, c_det, c_pois, a_own, const_ok in rows:
        print(f"| {cfg} | {app} | {mark(a_det)} | {mark(a_same)} | {c_det:.3f} | {c_pois:.3f} | "
              f"{c_pois / c_det:.3f} | {mark(a_own)}{'' if const_ok else ' (constant: late frames)'} |")
    print("\n| config | cost deterministic | cost Poisson fan-out | ratio | kept (det. / Poisson fan-out) |")
    print("|---|---:|---:|---:|---|")
    for cfg, c_det, c_pois, k_det, k_pois in totals:
        print(f"| {cfg} | {c_det:.3f} | {c_pois:.3f} | {c_pois / c_det:.3f} | {'yes' if k_det else 'NO'} / "
              f"{'yes' if k_pois else 'NO'} |")
    for name, why in skipped:
        print(f"\nskipped {name}: {why}")
    print(f"\n{len(totals)} configs in {elapsed:.0f} s.")


if __name__ == "__main__":
    main()
