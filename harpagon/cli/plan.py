"""`harpagon plan`: plan the apps of YAML files, replay the plan, print it."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TextIO

from harpagon.cli.common import EXIT_INVALID, EXIT_REFUSED, config_file, load_config, positive_int
from harpagon.config import Workload
from harpagon.model.latency import ARRIVALS, Settings
from harpagon.model.plan import Plan, workers_by_hardware, workers_cost
from harpagon.planner.streams import SPLIT_RATE
from harpagon.sim.replay import PROMISE_FRAMES


def add_parser(sub) -> None:
    """`harpagon plan`."""
    p = sub.add_parser("plan", help="plan the apps of YAML files and print the plan",
                       description="Read hardware, profiles and apps from YAML files (merged) and print "
                                   "the cheapest plan that meets every app's SLO.")
    p.add_argument("files", nargs="+", type=config_file, metavar="FILE",
                   help="YAML input files (sections are merged), or an example's name (`harpagon examples`)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (docs/model.md format)")
    p.add_argument("--safety", type=float, default=1.0, help="multiplier on mean+std latency (>= 1)")
    p.add_argument("--overhead-ms", type=float, default=0.0, help="dispatch overhead per module hop, ms")
    p.add_argument("--max-utilization", type=float, default=1.0,
                   help="fraction of worker throughput a plan may use, in (0, 1]")
    p.add_argument("--planner", default="harpagon", choices=_planner_names(),
                   help="the planner (default harpagon); the others are baselines, ablations and the "
                        "exhaustive optimum, for comparison")
    p.add_argument("--arrivals", choices=ARRIVALS, default="poisson",
                   help="the promise: poisson (default; --attainment of each app's frames within the SLO), "
                        "constant (every frame within the SLO), or fluid (the paper's model only)")
    p.add_argument("--attainment", type=float, default=0.99,
                   help="under --arrivals poisson, the least fraction of frames within the SLO (default 0.99)")
    p.add_argument("--no-replay", action="store_true",
                   help="skip the replay that verifies (and if needed repairs) the plan; only the model part runs")
    p.add_argument("--replay-frames", type=positive_int, default=PROMISE_FRAMES,
                   help=f"frames per app in each replay (default {PROMISE_FRAMES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson replay (default 0)")
    p.add_argument("--fanout", choices=("deterministic", "poisson"), default="deterministic",  # FANOUTS
                   help="requests per frame of the modules below the source in the Poisson replay that judges "
                        "(and repairs) the attainment: deterministic (default; the planned counts) or poisson "
                        "(a Poisson(scale) draw per module and frame); needs --arrivals poisson")
    p.add_argument("--frontends", type=positive_int, default=1, metavar="N",
                   help="plan for N frontends sharing the apps (default 1): apps of at least --split-rate frames/s "
                        "per frontend become one stream per frontend, the others are owned by one frontend "
                        "(docs/model.md, \"Several frontends\")")
    p.add_argument("--split-rate", type=float, default=SPLIT_RATE, metavar="FPS",
                   help=f"with --frontends, the least rate per frontend at which an app is split (default "
                        f"{SPLIT_RATE:g} frames/s)")
    p.set_defaults(func=cmd_plan)


def _planner_names() -> list[str]:
    from harpagon.planner.registry import PLANNERS

    return [*PLANNERS, "optimum"]


@contextlib.contextmanager
def _working(what: str):
    """A spinner on stderr while long work runs, when stderr is a terminal (stdout may be JSON)."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(what + "..."):
        yield


def cmd_plan(args: argparse.Namespace) -> int:
    from harpagon.planner.registry import plan_with

    try:
        settings = Settings(args.safety, args.overhead_ms, args.max_utilization, args.arrivals, args.attainment,
                            args.fanout)
    except ValueError as exc:
        flag = str(exc).split(" ", 1)
        print(f"harpagon plan: --{flag[0].replace('_', '-')} {flag[1]}", file=sys.stderr)
        return EXIT_INVALID
    if settings.fanout != "deterministic" and settings.arrivals != "poisson":
        # Only the Poisson replay (attainment) draws the fan-out; the constant one keeps the planned counts.
        print(f"harpagon plan: --fanout {settings.fanout} needs --arrivals poisson (the fan-out is drawn in the "
              "replay that measures attainment)", file=sys.stderr)
        return EXIT_INVALID
    workload = load_config(args.files)
    if workload is None:
        return EXIT_INVALID
    if not 0 < args.split_rate < float("inf"):
        print(f"harpagon plan: --split-rate must be a number > 0, got {args.split_rate:g}", file=sys.stderr)
        return EXIT_INVALID
    if args.frontends > 1:
        from harpagon.planner.streams import frontend_ids, split_streams

        try:  # the forward costs one hop
            streams = split_streams(workload, frontend_ids(args.frontends), args.split_rate, settings.overhead_ms)
        except ValueError as exc:
            print(f"harpagon plan: {exc}", file=sys.stderr)
            return EXIT_INVALID
        workload = streams.workload
        for f in streams.frontends:
            print(f"{f}: {streams.load(f):g} frames/s, streams "
                  f"{[s.name for s in streams.streams if s.frontend == f]}", file=sys.stderr)
    replaying = not args.no_replay and not settings.fluid
    with _working(f"planning {len(workload.apps)} app(s)" + (", replaying each for 60 s or 10,000 frames"
                                                              if replaying else "")):
        result = plan_with(args.planner, workload, settings, replay=not args.no_replay, frames=args.replay_frames,
                           seed=args.seed)
    if args.json:
        print(result.to_json())
    else:
        print_plan(result, workload)
        if settings.fanout == "poisson":
            print("fan-out: Poisson (in the Poisson replay each module below the source gets a Poisson(scale) "
                  "number of requests per frame)")
    for r in result.refused:
        print(f"refused: app {r.app!r}: {r.reason}", file=sys.stderr)
    if result.promise is not None and result.promise.kept is False:
        fanout = ", Poisson fan-out" if result.promise.fanout == "poisson" else ""
        print(f"warning: the replay does not bear out the {result.promise.arrivals} promise{fanout} "
              f"({_replayed_line(result)})", file=sys.stderr)
    return EXIT_REFUSED if result.refused else 0


def _replayed_line(plan: Plan) -> str:
    p = plan.promise
    if p is None or p.replayed is None:
        return "not replayed"
    r = p.replayed
    apps = ", ".join(f"{name} {a:.2%}" for name, a in r.apps)
    horizon = f" (or {r.seconds:g} s of each app, whichever is more)" if r.seconds else " per app"
    return (f"{r.frames} frames{horizon}, seed {r.seed}: constant arrivals "
            f"{'every frame within the SLO' if r.constant_all_within else 'SOME FRAMES LATE'}; "
            f"{'Poisson' if p.arrivals != 'constant' else 'constant'} attainment {apps}")


def print_plan(plan: Plan, workload: Workload, file: TextIO | None = None) -> None:
    """A readable table of a plan: one row per tuple, a total per app and for the plan."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{plan.planner} plan ({plan.dispatch} dispatch)", title_justify="left")
    queue = any(t.queue_ms for a in plan.apps for m in a.modules for t in m.tuples)
    cols = [("app", "left"), ("module", "left"), ("hardware", "left"), ("batch", "right"), ("workers", "right"),
            ("rate/s", "right"), ("dummy/s", "right"), *([("queue ms", "right")] if queue else []),
            ("latency / budget ms", "right"), ("$/h", "right")]
    for col, justify in cols:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for a in plan.apps:
        for m in a.modules:
            for i, t in enumerate(m.tuples):
                table.add_row(
                    a.name if m is a.modules[0] and i == 0 else "",
                    m.name if i == 0 else "",
                    t.hardware if t.gpu is None else f"{t.hardware} (shared {t.gpu}, cycle {t.cycle_ms:.1f} ms)",
                    str(t.batch), str(t.workers), f"{t.rate:.1f}", f"{t.dummy_rate:.1f}",
                    *([f"{t.queue_ms:.2f}"] if queue else []),
                    f"{t.latency_ms:.2f} / {m.budget_ms:.2f}", "",
                )
        app_cost = workers_cost([a], workload)
        table.add_row("", "[b]end to end[/b]", "", "", str(sum(workers_by_hardware([a]).values())),
                      f"{a.rate:g}", "", *([""] if queue else []), f"{a.predicted_latency_ms:.2f} / {a.slo_ms:g}",
                      f"{app_cost:.3f}", end_section=True)
    workers = plan.workers_by_hardware()
    table.add_row("[b]total[/b]", "", ", ".join(f"{h}×{n}" for h, n in sorted(workers.items())), "",
                  str(sum(workers.values())), "", "", *([""] if queue else []), "", f"[b]{plan.cost_per_hour:.3f}[/b]")
    s = plan.settings
    out = file or sys.stdout
    Console(file=out, width=120).print(table)
    print(f"settings: safety={s.safety:g} overhead_ms={s.overhead_ms:g} max_utilization={s.max_utilization:g}",
          file=out)
    p = plan.promise
    if p is not None:
        target = {"fluid": "the fluid model (no promise about real arrivals)",
                  "constant": "every frame within the SLO (constant arrivals)",
                  "poisson": f"≥ {p.attainment:.2%} of frames within the SLO (Poisson arrivals), and every frame "
                             "with constant arrivals"}[p.arrivals]
        verdict = {True: "kept", False: "NOT KEPT", None: ""}[p.kept]
        print(f"promise: {target}; replay: {_replayed_line(plan)} {verdict}".rstrip(), file=out)
