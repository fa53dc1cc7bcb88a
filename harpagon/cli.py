"""The `harpagon` command: parses arguments, calls one function, prints.

Exit codes: 0 success; 2 invalid input (one line per problem on stderr); 3 some apps refused (the
others are still planned and printed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from harpagon.config import ConfigError, Workload, load_workload
from harpagon.model.latency import Settings
from harpagon.model.plan import Plan, workers_by_hardware, workers_cost

EXIT_INVALID = 2
EXIT_REFUSED = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other input error
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harpagon", description="Plan and serve DNN applications at minimum cost.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("plan", help="plan the apps of YAML files and print the plan",
                       description="Read hardware, profiles and apps from YAML files (merged) and print "
                                   "the cheapest plan that meets every app's SLO.")
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML input files (sections are merged)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (MODEL.md format)")
    p.add_argument("--safety", type=float, default=1.0, help="multiplier on mean+std latency (>= 1)")
    p.add_argument("--overhead-ms", type=float, default=0.0, help="dispatch overhead per module hop, ms")
    p.add_argument("--max-utilization", type=float, default=1.0,
                   help="fraction of worker throughput a plan may use, in (0, 1]")
    p.add_argument("--planner", default="harpagon", choices=_planner_names(),
                   help="the planner (default harpagon); the others are baselines, ablations and the "
                        "exhaustive optimum, for comparison")
    p.set_defaults(func=_cmd_plan)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True,
                                                                       parser_class=_Parser)
    b = bench.add_parser("planner", help="every planner on a workload grid, against the optimum and in simulation")
    b.add_argument("--workloads", type=_positive_int, default=None,
                   help="a seeded sample of this many workloads (default: the whole grid)")
    b.add_argument("--seed", type=int, default=0, help="sample and simulation seed (default 0)")
    b.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="report folder (default docs/benchmarks)")
    b.add_argument("--jobs", type=_positive_int, default=1, help="worker processes (default 1)")
    b.set_defaults(func=_cmd_bench_planner)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _cmd_bench_planner(args: argparse.Namespace) -> int:
    from harpagon.bench.planner import main as bench_main

    command = "harpagon bench planner" + "".join(
        f" --{k} {v}" for k, v in (("workloads", args.workloads), ("seed", args.seed), ("out", args.out),
                                   ("jobs", args.jobs)) if v is not None)
    path = bench_main(args.workloads, args.seed, args.out, args.jobs, command)
    print(f"report: {path}")
    return 0


def _planner_names() -> list[str]:
    from harpagon.planner.registry import PLANNERS

    return [*PLANNERS, "optimum"]


def _cmd_plan(args: argparse.Namespace) -> int:
    from harpagon.planner.registry import OPTIMUM, PLANNERS

    try:
        settings = Settings(args.safety, args.overhead_ms, args.max_utilization)
    except ValueError as exc:
        flag = str(exc).split(" ", 1)
        print(f"harpagon plan: --{flag[0].replace('_', '-')} {flag[1]}", file=sys.stderr)
        return EXIT_INVALID
    try:
        workload = load_workload(args.files)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_INVALID
    result = (OPTIMUM if args.planner == "optimum" else PLANNERS[args.planner])(workload, settings)
    if args.json:
        print(result.to_json())
    else:
        print_plan(result, workload)
    for r in result.refused:
        print(f"refused: app {r.app!r}: {r.reason}", file=sys.stderr)
    return EXIT_REFUSED if result.refused else 0


def print_plan(plan: Plan, workload: Workload, file: TextIO | None = None) -> None:
    """A readable table of a plan: one row per tuple, a total per app and for the plan."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{plan.planner} plan ({plan.dispatch} dispatch)", title_justify="left")
    for col, justify in (("app", "left"), ("module", "left"), ("hardware", "left"), ("batch", "right"),
                         ("workers", "right"), ("rate/s", "right"), ("dummy/s", "right"),
                         ("latency / budget ms", "right"), ("$/h", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for a in plan.apps:
        for m in a.modules:
            for i, t in enumerate(m.tuples):
                table.add_row(
                    a.name if m is a.modules[0] and i == 0 else "",
                    m.name if i == 0 else "",
                    t.hardware if t.gpu is None else f"{t.hardware} (shared {t.gpu}, cycle {t.cycle_ms:.1f} ms)",
                    str(t.batch), str(t.workers), f"{t.rate:.1f}", f"{t.dummy_rate:.1f}",
                    f"{t.latency_ms:.2f} / {m.budget_ms:.2f}", "",
                )
        app_cost = workers_cost([a], workload)
        table.add_row("", "[b]end to end[/b]", "", "", str(sum(workers_by_hardware([a]).values())),
                      f"{a.rate:g}", "", f"{a.predicted_latency_ms:.2f} / {a.slo_ms:g}", f"{app_cost:.3f}",
                      end_section=True)
    workers = plan.workers_by_hardware()
    table.add_row("[b]total[/b]", "", ", ".join(f"{h}×{n}" for h, n in sorted(workers.items())), "",
                  str(sum(workers.values())), "", "", "", f"[b]{plan.cost_per_hour:.3f}[/b]")
    s = plan.settings
    out = file or sys.stdout
    Console(file=out, width=120).print(table)
    print(f"settings: safety={s.safety:g} overhead_ms={s.overhead_ms:g} max_utilization={s.max_utilization:g}",
          file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
