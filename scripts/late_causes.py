"""Why do plans miss their SLO in simulation at the planned rate? Attribute each late workload's
lateness to the modules whose simulated worst latency exceeds the plan's promise, and classify them.

Run: python scripts/late_causes.py [--workloads N] [--planner NAME]   (Markdown on stdout)

Classes of a module that breaks its promise (the first that applies):
- source: the app's first module (arrivals are perfectly even; only the tuple split can jitter them);
- burst: it receives several requests per frame at once (its scale is above 1, or it is not a whole
  number, so frames bring 1 or 2 requests);
- batched parent: a parent runs batches of more than 1, so a whole batch of frames arrives at once;
- other.
"""

from __future__ import annotations

import argparse
from collections import Counter

from harpagon.bench.workloads import grid
from harpagon.model.latency import Settings
from harpagon.planner.registry import PLANNERS
from harpagon.sim import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=150)
    parser.add_argument("--planner", default="harpagon-fluid")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    causes: Counter[str] = Counter()
    padded: Counter[str] = Counter()
    late = planned = 0
    for case in grid(Settings(), args.workloads, args.seed):
        w = case.workload
        p = PLANNERS[args.planner](w, Settings())
        if not p.apps:
            continue
        planned += 1
        r = simulate(p, w, duration_s=2.0, max_frames=2000, seed=args.seed)
        if r.over_slo <= 0.01:
            continue
        late += 1
        app, plan_app, stats = w.apps[0], p.apps[0], r.apps[0]
        for mp, ms in zip(plan_app.modules, stats.modules, strict=True):
            if ms.max_ms <= mp.predicted_latency_ms * (1 + 1e-6) + 1e-6:
                continue
            m = app.module(mp.name)
            parents_batch = max((t.batch for x in m.after for t in plan_app.module(x).tuples), default=1)
            cls = ("source" if not m.after else "burst" if m.scale != 1.0 else
                   "batched parent" if parents_batch > 1 else "other")
            causes[cls] += 1
            padded["with dummies" if any(t.dummy_rate > 0 for t in mp.tuples) else "without dummies"] += 1
    print(f"{args.planner}: {late} of {planned} planned workloads have more than 1% of frames late "
          f"(constant arrivals, seed {args.seed}).\n")
    print("| module that breaks its promise | count |\n|---|---|")
    for cls, n in causes.most_common():
        print(f"| {cls} | {n} |")
    print("\n| its tuples | count |\n|---|---|")
    for cls, n in padded.most_common():
        print(f"| {cls} | {n} |")


if __name__ == "__main__":
    main()
