"""Planning time and distance from the exhaustive optimum on the example configs.

Run: python scripts/bench_planning.py [--repeat N]   (prints a Markdown report on stdout)

Planning time is the median of N calls of the pure planner (inputs already loaded) in this process.
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
from harpagon.model.plan import check_plan
from harpagon.planner.harpagon import plan
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

    print(f"Python {platform.python_version()} on {platform.machine()}, {args.repeat} runs each.\n")
    print("| config | apps | modules | plan median ms | max ms | ms per app | cost $/h | "
          "cost without counts $/h | optimum $/h | gap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in CONFIGS:
        w: Workload = load_workload([ROOT / "configs" / f"{name}.yaml"])
        p = plan(w)
        assert check_plan(p, w) == [], name
        med, worst = median_ms(lambda w=w: plan(w), args.repeat)
        # The optimum ignores hardware counts, so the gap is taken on the same workload without them.
        free = w.model_copy(update={"hardware": tuple(h.model_copy(update={"count": None}) for h in w.hardware)})
        unbounded = plan(free)
        o = optimum(free)
        assert {a.name for a in unbounded.apps} == {a.name for a in o.apps}, name
        modules = sum(len(a.modules) for a in w.apps)
        print(f"| {name} | {len(w.apps)} | {modules} | {med:.2f} | {worst:.2f} | {med / len(w.apps):.2f} | "
              f"{p.cost_per_hour:.3f} | {unbounded.cost_per_hour:.3f} | {o.cost_per_hour:.3f} | "
              f"{100 * (unbounded.cost_per_hour / o.cost_per_hour - 1):+.1f}% |")


if __name__ == "__main__":
    main()
