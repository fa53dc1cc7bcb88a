"""`harpagon bench`: the planner and live benchmarks, and the fault suite (harpagon.bench.faults)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harpagon.cli.common import EXIT_INVALID, Parser, load_config, positive_int
from harpagon.config import ConfigError
from harpagon.model.latency import Settings
from harpagon.runtime.logs import setup as setup_logs


def add_parser(sub) -> None:
    """`harpagon bench` and its subcommands: planner, live, faults."""
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True,
                                                                       parser_class=Parser)
    b = bench.add_parser("planner", help="every planner at equal attainment: plans replayed for their promise, "
                                         "one-app and multi-app workloads")
    b.add_argument("--workloads", type=int, default=None,
                   help="a seeded sample of this many one-app workloads (default 30; 0: none; 525 or more: the whole "
                        "grid)")
    b.add_argument("--multi-apps", type=int, default=None,
                   help="seeded multi-app workloads of 2 to 5 apps (default 30)")
    b.add_argument("--seed", type=int, default=1,
                   help="sample and replay seed (default 1; Harpagon's own replays use 0)")
    b.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="report folder (default docs/benchmarks)")
    b.add_argument("--jobs", type=positive_int, default=None, help="worker processes (default 1; 2 with --quick)")
    b.add_argument("--quick", action="store_true",
                   help="a small grid (6 one-app workloads of at most 1,000 frames/s, no multi-app, the scale test at "
                        "100 apps only, 2 jobs unless flags say otherwise; under 10 minutes on 2 cores)")
    b.add_argument("--max-utilization", type=float, default=1.0, help="planner setting for every planner (default 1)")
    b.add_argument("--configs", nargs="*", default=None, metavar="FILE",
                   help="also run these config files as written, one workload each (apps, hardware and counts); "
                        "the flag alone: every example config, configs/*.yaml")
    b.add_argument("--planners", nargs="+", default=None, metavar="NAME",
                   help="planners to run (default: harpagon, harpagon-fluid, the baselines and the ablations; the "
                        "optimum always runs)")
    b.set_defaults(func=cmd_bench_planner)
    bl = bench.add_parser("live", help="the live system on EMULATED workers: attainment against the promise, "
                                       "per-module latency and hop split, frontend CPU, dispatch policies, the "
                                       "capacity of one frontend process, perf_analyzer figures")
    bl.add_argument("--configs", nargs="+", default=None, metavar="FILE",
                    help="configs to serve, one file each (default configs/demo.yaml configs/multi.yaml; "
                         "--quick: configs/demo.yaml)")
    bl.add_argument("--seconds", type=float, default=None,
                    help="seconds of traffic per run (default 20; --quick: 6)")
    bl.add_argument("--out", type=Path, default=Path("docs/benchmarks/live.md"),
                    help="report (default docs/benchmarks/live.md; CSV and plots beside it)")
    bl.add_argument("--skip-perf-analyzer", action="store_true",
                    help="no perf_analyzer: the Python sender drives the capacity search, section 7 is skipped")
    bl.add_argument("--skip-capacity", action="store_true",
                    help="skip the capacity search of one frontend process (not the frame kinds': see --frames)")
    bl.add_argument("--capacity-limit", type=float, default=8000.0,
                    help="highest rate the capacity search tries, frames/s (default 8000)")
    bl.add_argument("--frames", default=None, metavar="KINDS",
                    help="frame kinds whose capacity is searched too, each against the 8x8 raw kind's: "
                         "comma-separated WIDTHxHEIGHT with an optional :jpeg or :raw (default raw), e.g. "
                         "8x8,640x480:jpeg (default 8x8,640x480,640x480:jpeg,1280x720,1280x720:jpeg; --quick: "
                         "none; 'none': skip)")
    bl.add_argument("--frontends", default=None, metavar="COUNTS",
                    help="frontend counts whose capacity is searched too (the scale-out figures), comma-separated "
                         "(default 1,2,4; --quick: none; 'none': skip)")
    bl.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run: the demo, short runs, a short search")
    bl.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals (default 0)")
    bl.add_argument("--warmup", type=float, default=None,
                    help="seconds each cluster serves at its planned rates before the measured runs, so that the "
                         "controller calibrates its plan (default 30; --quick: 0)")
    bl.add_argument("--rate-scale", type=float, default=1.0,
                    help="multiply every app's configured rate by this before planning (default 1: the planned "
                         "rates); to see a config at a load the machine can carry")
    bl.set_defaults(func=cmd_bench_live)

    from harpagon.bench.faults.cli import add_parser as _add_bench_faults

    _add_bench_faults(bench)

    be = bench.add_parser("elastic", help="cost follows load: a compressed diurnal day through `harpagon serve` with "
                                          "a fleet and its local scaler, on EMULATED workers",
                          description="Serve a config with a serve.fleet section while each app's rate runs from "
                                      "--low x its configured rate to 1x and back over a compressed day (Poisson); "
                                      "report allocated GPU-hours against the plans' and a fleet fixed at the peak, "
                                      "attainment per minute, every frame's fate and the scale events, with a plot.")
    be.add_argument("--config", type=Path, default=None,
                    help="app config with a serve.fleet section (default configs/elastic.yaml)")
    be.add_argument("--minutes", type=float, default=10.0, help="length of the compressed day (default 10)")
    be.add_argument("--low", type=float, default=0.25, help="the night's rate as a fraction of the configured one "
                                                            "(default 0.25)")
    be.add_argument("--warmup", type=float, default=60.0,
                    help="seconds at the night's rate before the day, not counted (default 60)")
    be.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals (default 0)")
    be.add_argument("--out", type=Path, default=Path("docs/benchmarks/elastic.md"),
                    help="report (default docs/benchmarks/elastic.md; its plot beside it)")
    be.set_defaults(func=cmd_bench_elastic)


def cmd_bench_planner(args: argparse.Namespace) -> int:
    from harpagon.bench.planner import (
        DEFAULT_MULTI_APP,
        DEFAULT_ONE_APP,
        DEFAULT_PLANNERS,
        QUICK_MAX_RATE,
        QUICK_MULTI_APP,
        QUICK_ONE_APP,
        QUICK_SCALE,
        example_configs,
    )
    from harpagon.bench.planner import main as bench_main
    from harpagon.planner.registry import PLANNERS

    try:
        settings = Settings(max_utilization=args.max_utilization)
    except ValueError as exc:
        print(f"harpagon bench planner: --{exc}".replace("max_utilization", "max-utilization", 1), file=sys.stderr)
        return EXIT_INVALID
    for flag, value in (("workloads", args.workloads), ("multi-apps", args.multi_apps)):
        if value is not None and value < 0:
            print(f"harpagon bench planner: --{flag} must be >= 0, got {value}", file=sys.stderr)
            return EXIT_INVALID
    configs = [] if args.configs is None else [Path(c) for c in args.configs] or example_configs()
    for c in configs:
        if not c.is_file():
            print(f"harpagon bench planner: --configs {str(c)!r}: no such file", file=sys.stderr)
            return EXIT_INVALID
    planners = tuple(args.planners or DEFAULT_PLANNERS)
    unknown = [n for n in planners if n not in PLANNERS]
    if unknown:
        print(f"harpagon bench planner: --planners: unknown {', '.join(unknown)} (known: {', '.join(PLANNERS)})",
              file=sys.stderr)
        return EXIT_INVALID
    one, many = (QUICK_ONE_APP, QUICK_MULTI_APP) if args.quick else (DEFAULT_ONE_APP, DEFAULT_MULTI_APP)
    args.jobs = args.jobs or (2 if args.quick else 1)
    workloads = one if args.workloads is None else args.workloads
    multi = many if args.multi_apps is None else args.multi_apps
    command = "harpagon bench planner" + "".join(
        f" --{k} {v}" for k, v in (("workloads", workloads), ("multi-apps", multi), ("seed", args.seed),
                                   ("out", args.out), ("jobs", args.jobs),
                                   ("max-utilization", args.max_utilization)))
    if args.configs is not None:
        command += " --configs" + "".join(f" {c}" for c in args.configs)
    if args.planners:
        command += " --planners " + " ".join(planners)
    if args.quick:
        command += " --quick"
    scale = {"scale_counts": QUICK_SCALE, "max_rate": QUICK_MAX_RATE} if args.quick else {}
    try:
        path = bench_main(workloads, args.seed, args.out, args.jobs, command, multi_apps=multi, settings=settings,
                          planners=planners, configs=configs, **scale)
    except ConfigError as exc:
        print(f"harpagon bench planner: --configs: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"report: {path}")
    return 0


def cmd_bench_live(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from harpagon.bench.live.configs import DEFAULT_CONFIGS, DEFAULT_FRAME_KINDS, parse_frame_kinds
    from harpagon.bench.live.run import run_bench
    from harpagon.bench.report import ROOT

    configs = args.configs or ([DEFAULT_CONFIGS[0]] if args.quick else list(DEFAULT_CONFIGS))
    seconds = args.seconds if args.seconds is not None else 6.0 if args.quick else 20.0
    warmup = args.warmup if args.warmup is not None else 0.0 if args.quick else 30.0
    if not 0 <= warmup < float("inf"):
        print(f"harpagon bench live: --warmup must be >= 0, got {warmup:g}", file=sys.stderr)
        return EXIT_INVALID
    if not seconds > 0:
        print(f"harpagon bench live: --seconds must be > 0, got {seconds:g}", file=sys.stderr)
        return EXIT_INVALID
    if not 0 < args.rate_scale < float("inf"):
        print(f"harpagon bench live: --rate-scale must be a number > 0, got {args.rate_scale:g}", file=sys.stderr)
        return EXIT_INVALID
    if not args.capacity_limit >= 250:
        print(f"harpagon bench live: --capacity-limit must be >= 250, got {args.capacity_limit:g}", file=sys.stderr)
        return EXIT_INVALID
    try:
        frame_kinds = (parse_frame_kinds(args.frames) if args.frames is not None
                       else () if args.quick else DEFAULT_FRAME_KINDS)
    except ValueError as exc:
        print(f"harpagon bench live: --frames: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        frontends = (_counts(args.frontends) if args.frontends is not None else () if args.quick else (1, 2, 4))
    except ValueError as exc:
        print(f"harpagon bench live: --frontends: {exc}", file=sys.stderr)
        return EXIT_INVALID
    paths = [Path(c) if Path(c).exists() else ROOT / c for c in configs]
    for c, p in zip(configs, paths, strict=True):
        if not p.is_file():
            print(f"harpagon bench live: --configs {c!r}: no such file", file=sys.stderr)
            return EXIT_INVALID
        if load_config([p]) is None:
            return EXIT_INVALID
    command = ("harpagon bench live --configs " + " ".join(configs) + f" --seconds {seconds:g} --out {args.out}"
               + (" --skip-perf-analyzer" if args.skip_perf_analyzer else "")
               + (" --skip-capacity" if args.skip_capacity else "")
               + (f" --capacity-limit {args.capacity_limit:g}" if args.capacity_limit != 8000.0 else "")
               + (" --quick" if args.quick else "") + (f" --seed {args.seed}" if args.seed else "")
               + (f" --rate-scale {args.rate_scale:g}" if args.rate_scale != 1.0 else "")
               + (f" --warmup {warmup:g}" if args.warmup is not None else "")
               + ((" --frames " + (",".join(k.spec for k in frame_kinds) or "none")) if args.frames is not None else "")
               + ((" --frontends " + (",".join(map(str, frontends)) or "none")) if args.frontends is not None else ""))
    setup_logs(args.log_format, logging.WARNING)
    path = asyncio.run(run_bench([str(p) for p in paths], seconds, args.out, command, seed=args.seed,
                                 perf_analyzer=not args.skip_perf_analyzer, quick=args.quick,
                                 capacity=not args.skip_capacity, capacity_limit=args.capacity_limit,
                                 rate_scale=args.rate_scale, warmup_s=warmup, frame_kinds=frame_kinds,
                                 frontends=frontends))
    print(f"report: {path}")
    return 0


def _counts(text: str) -> tuple[int, ...]:
    """`1,2,4` as counts of frontends (each 1 to 16, repeats kept once); `none`: none."""
    if text.strip().lower() in ("", "none"):
        return ()
    out: list[int] = []
    for item in text.split(","):
        try:
            n = int(item)
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not a whole number") from None
        if not 1 <= n <= 16:
            raise ValueError(f"{n} frontends: each count must be from 1 to 16")
        if n not in out:
            out.append(n)
    return tuple(out)


def cmd_bench_elastic(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console

    from harpagon.bench.elastic import DEFAULT_CONFIG, run_elastic, summary, write_report

    config = args.config or DEFAULT_CONFIG
    for flag, ok, rule in (("config", config.is_file(), "no such file"),
                           ("minutes", 0 < args.minutes <= 24 * 60, "must be in (0, 1440]"),
                           ("low", 0 < args.low <= 1, "must be in (0, 1]"),
                           ("warmup", 0 <= args.warmup <= 3600, "must be in [0, 3600] seconds")):
        if not ok:
            print(f"harpagon bench elastic: --{flag} {getattr(args, flag, config)!s}: {rule}", file=sys.stderr)
            return EXIT_INVALID
    command = "harpagon bench elastic" + "".join(
        f" --{k} {v}" for k, v, default in (("config", args.config, None), ("minutes", args.minutes, 10.0),
                                            ("low", args.low, 0.25), ("warmup", args.warmup, 60.0),
                                            ("seed", args.seed, 0), ("out", args.out, Path("docs/benchmarks/elastic.md")))
        if v != default)
    try:
        result = asyncio.run(run_elastic(config, args.minutes, args.low, args.warmup, args.seed, command, Console()))
    except (ConfigError, ValueError) as exc:
        print(f"harpagon bench elastic: {exc}", file=sys.stderr)
        return EXIT_INVALID
    path = write_report(result, args.out)
    s = summary(result)
    print(f"allocated {s['vs_plan']:.3f} x the plans', {s['vs_peak']:.3f} x a fleet fixed at the peak; "
          f"{s['lost']} frames lost; report: {path}")
    return 0
