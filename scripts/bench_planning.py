"""Planning time and distance from the exhaustive optimum on the example configs.

Run: python scripts/bench_planning.py [--repeat N]   (prints a Markdown report on stdout)

Planning time is the median of N calls of the pure planner (inputs already loaded) in this process:
the fluid planner (docs/model.md v1), and the model part of the promise planner (`--no-replay`); the
promise planner with its replay is timed once.
The optimum is the exhaustive yardstick of harpagon.planner.optimum (apps independent, counts ignored),
so the gap compares it with the planner on the same workload with every hardware count lifted.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from harpagon.config import load_workload
from harpagon.config.schema import Workload
from harpagon.model.latency import Settings
from harpagon.model.plan import check_plan
from harpagon.planner.harpagon import PlannerOptions, plan
from harpagon.planner.optimum import optimum

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["traffic", "face", "pose", "multi", "city"]


def median_ms(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    fluid, model = Settings(arrivals="fluid"), Settings()
    print(f"Python {platform.python_version()} on {platform.machine()}, {args.repeat} runs each.\n")
    print("| config | apps | modules | fluid: plan median ms | ms per app | cost $/h | optimum gap (no counts) "
          "| promise: model part median ms | ms per app | with replay s | cost $/h | premium | min attainment |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in CONFIGS:
        w: Workload = load_workload([ROOT / "configs" / f"{name}.yaml"])
        p = plan(w, fluid)
        assert check_plan(p, w) == [], name
        med, _ = median_ms(lambda w=w: plan(w, fluid), args.repeat)
        # The optimum ignores hardware counts, so the gap is taken on the same workload without them.
        free = w.model_copy(update={"hardware": tuple(h.model_copy(update={"count": None}) for h in w.hardware)})
        unbounded = plan(free, fluid)
        o = optimum(free, fluid)
        assert {a.name for a in unbounded.apps} == {a.name for a in o.apps}, name
        gap = 100 * (unbounded.cost_per_hour / o.cost_per_hour - 1)
        part, _ = median_ms(lambda w=w: plan(w, model, PlannerOptions(replay=False)), max(1, args.repeat // 5))
        t0 = time.perf_counter()
        kept = plan(w, model)
        with_replay = time.perf_counter() - t0
        assert check_plan(kept, w) == [] and kept.promise is not None and kept.promise.replayed is not None, name
        modules = sum(len(a.modules) for a in w.apps)
        n = len(w.apps)
        print(f"| {name} | {n} | {modules} | {med:.2f} | {med / n:.2f} | {p.cost_per_hour:.3f} | {gap:+.1f}% | "
              f"{part:.2f} | {part / n:.2f} | {with_replay:.1f} | {kept.cost_per_hour:.3f} | "
              f"{100 * (kept.cost_per_hour / p.cost_per_hour - 1):+.1f}% | "
              f"{kept.promise.replayed.min_app_attainment:.2%} |")


if __name__ == "__main__":
    main()
