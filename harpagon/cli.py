"""The `harpagon` command: parses arguments, calls one function, prints.

Exit codes: 0 success; 2 invalid input (one line per problem on stderr); 3 some apps refused (the
others are still planned and printed).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from harpagon.config import ConfigError, Workload, load_workload
from harpagon.config.loader import load_profile_rows
from harpagon.model.latency import ARRIVALS, Settings
from harpagon.model.plan import Plan, workers_by_hardware, workers_cost
from harpagon.runtime.logs import setup as setup_logs
from harpagon.sim.replay import PROMISE_FRAMES

EXIT_INVALID = 2
EXIT_REFUSED = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other input error
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harpagon", description="Plan and serve DNN applications at minimum cost.")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="logs of the long-running commands: text, or one JSON object per line")
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
    p.add_argument("--arrivals", choices=ARRIVALS, default="poisson",
                   help="the promise: poisson (default; --attainment of each app's frames within the SLO), "
                        "constant (every frame within the SLO), or fluid (the paper's model only)")
    p.add_argument("--attainment", type=float, default=0.99,
                   help="under --arrivals poisson, the least fraction of frames within the SLO (default 0.99)")
    p.add_argument("--no-replay", action="store_true",
                   help="skip the replay that verifies (and if needed repairs) the plan; only the model part runs")
    p.add_argument("--replay-frames", type=_positive_int, default=PROMISE_FRAMES,
                   help=f"frames per app in each replay (default {PROMISE_FRAMES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson replay (default 0)")
    p.add_argument("--fanout", choices=("deterministic", "poisson"), default="deterministic",  # FANOUTS
                   help="requests per frame of the modules below the source in the Poisson replay that judges "
                        "(and repairs) the attainment: deterministic (default; the planned counts) or poisson "
                        "(a Poisson(scale) draw per module and frame); needs --arrivals poisson")
    p.set_defaults(func=_cmd_plan)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True,
                                                                       parser_class=_Parser)
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
    b.add_argument("--jobs", type=_positive_int, default=None, help="worker processes (default 1; 2 with --quick)")
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
    b.set_defaults(func=_cmd_bench_planner)
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
    bl.add_argument("--skip-capacity", action="store_true", help="skip the capacity search of one frontend process")
    bl.add_argument("--capacity-limit", type=float, default=8000.0,
                    help="highest rate the capacity search tries, frames/s (default 8000)")
    bl.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run: the demo, short runs, a short search")
    bl.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals (default 0)")
    bl.add_argument("--warmup", type=float, default=None,
                    help="seconds each cluster serves at its planned rates before the measured runs, so that the "
                         "controller calibrates its plan (default 30; --quick: 0)")
    bl.add_argument("--rate-scale", type=float, default=1.0,
                    help="multiply every app's configured rate by this before planning (default 1: the planned "
                         "rates); to see a config at a load the machine can carry")
    bl.set_defaults(func=_cmd_bench_live)

    from harpagon.bench.faults import add_parser as _add_bench_faults

    _add_bench_faults(bench)

    w = sub.add_parser("worker", help="serve one device's batches (one process per GPU)",
                       description="Run a worker: it loads the modules a configuration names and runs their "
                                   "batches on one device. On a machine without a GPU use cpu, or "
                                   "emulated:HARDWARE (batches sleep their profiled latency).")
    w.add_argument("--device", default="cpu", help="cpu, cuda:N or emulated:HARDWARE (default cpu)")
    w.add_argument("--controller", default=None, help="controller address HOST:PORT to register with")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    w.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    w.add_argument("--hardware", default=None, help="hardware name to report (default: from the device)")
    w.add_argument("--profiles", nargs="*", default=[], metavar="FILE",
                   help="profile files for an emulated device (default models/profiles/catalog.yaml)")
    w.add_argument("--threads", type=_positive_int, default=None, help="torch threads on cpu (default: all cores)")
    w.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port (0: any)")
    w.add_argument("--unix-socket", default=None, metavar="PATH",
                   help="listen on this Unix socket instead of TCP (a worker on its frontend's host: faster hops)")
    w.add_argument("--slowdown", type=float, default=1.0,
                   help="emulated device only: run batches this many times slower than profiled (a slow GPU or "
                        "a noisy neighbour, to exercise self-calibration; default 1)")
    w.add_argument("--advertise", default=None, metavar="HOST:PORT",
                   help="the address to register with the controller, where frontends reach this worker "
                        "(default: where it listens; in Kubernetes, the pod IP)")
    w.add_argument("--weights-dir", default=None, metavar="DIR",
                   help="the only directory weight files are read from (default: none; a configuration that "
                        "names weights is refused)")
    _security_arguments(w)
    w.set_defaults(func=_cmd_worker)

    pr = sub.add_parser("profile", help="measure a model's latency per batch size on a device",
                        description="Measure mean and std latency per batch size and write them as a "
                                    "`profiles` entry the planner reads.")
    pr.add_argument("--model", required=True, help="model registry name (models/registry.yaml)")
    pr.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    pr.add_argument("--batches", required=True, type=_int_list, help="batch sizes, e.g. 1,2,4,8")
    pr.add_argument("--input-size", type=_int_list, default=None, help="one item's shape C,H,W (default: registry)")
    pr.add_argument("--repeats", type=_positive_int, default=20, help="timed runs per batch size (default 20)")
    pr.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    pr.add_argument("--hardware", default=None, help="hardware name to record (default: from the device)")
    pr.add_argument("--threads", type=_positive_int, default=None, help="torch threads on cpu (default: all cores)")
    pr.add_argument("--out", required=True, type=Path, help="profiles YAML to write or update")
    pr.set_defaults(func=_cmd_profile)

    sv = sub.add_parser("serve", help="serve a config: controller, frontend and local workers in one command",
                        description="Start the controller, the Triton-protocol frontend and the local workers the "
                                    "config's `serve` section names; serve until Ctrl-C, then drain.")
    sv.add_argument("files", nargs="+", metavar="FILE", help="YAML config files (with a `serve` section)")
    sv.add_argument("--port", type=int, default=None, help="frontend gRPC port (default: the config's, 8001)")
    sv.add_argument("--metrics-port", type=int, default=None, help="metrics port (default: the config's, 8002)")
    sv.set_defaults(func=_cmd_serve)

    co = sub.add_parser("controller", help="run the controller: plans, assigns workers, pushes routes",
                        description="Plan the config's apps against the workers that register, push their "
                                    "configurations and the frontends' routes, and re-plan when workers come and "
                                    "go or when measured rates leave the planned band.")
    co.add_argument("--config", nargs="+", required=True, metavar="FILE", help="YAML config files")
    co.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    co.add_argument("--port", type=int, default=50051, help="port for workers and frontends (default 50051)")
    co.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    _security_arguments(co)
    co.set_defaults(func=_cmd_controller)

    fe = sub.add_parser("frontend", help="run a Triton-protocol frontend fed by a controller",
                        description="Serve the KServe v2 / Triton gRPC API; routes come from the controller.")
    fe.add_argument("--controller", required=True, help="controller address HOST:PORT")
    fe.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fe.add_argument("--port", type=int, default=8001, help="Triton gRPC port (default 8001)")
    fe.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    fe.add_argument("--frame-shape", type=_int_list, default=[480, 640, 3], help="H,W,3 (default 480,640,3)")
    fe.add_argument("--client-tls-dir", default=None, metavar="DIR",
                    help="serve clients over TLS with DIR/tls.crt and DIR/tls.key (default: plaintext)")
    _security_arguments(fe)
    fe.set_defaults(func=_cmd_frontend)

    ce = sub.add_parser("certs", help="make a CA and mutual-TLS certificates for the control plane",
                        description="Write DIR/ca.crt and DIR/ca.key, and for each role (controller, frontend, "
                                    "worker) DIR/ROLE/{ca.crt,tls.crt,tls.key}: give each component "
                                    "--tls-dir DIR/ROLE (in Kubernetes, one Secret per role). A certificate's "
                                    "identity is its role, so peers' addresses need not be known in advance.")
    ce.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="folder to write (created if missing); it must be yours and not a symbolic link")
    ce.add_argument("--hosts", nargs="*", default=[], metavar="NAME",
                    help="extra DNS names or IP addresses for every certificate (e.g. a client-facing name)")
    ce.add_argument("--days", type=_positive_int, default=365, help="validity in days (default 365)")
    ce.add_argument("--force", action="store_true",
                    help="replace files DIR already holds (default: refuse); each is written anew and renamed "
                         "over the old one, so a symbolic link there is replaced, never followed")
    ce.set_defaults(func=_cmd_certs)

    de = sub.add_parser("demo", help="serve the demo config and stream synthetic frames through it",
                        description="Serve a config locally (default configs/demo.yaml) and stream synthetic "
                                    "frames at each app's rate for a bounded time, with live statistics and a "
                                    "summary.")
    de.add_argument("files", nargs="*", metavar="FILE", help="config files (default configs/demo.yaml)")
    de.add_argument("--seconds", type=float, default=20.0, help="how long to stream (default 20)")
    de.add_argument("--video", default=None, help="stream this video file's frames (PyAV) instead of synthetic ones")
    de.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson",
                    help="how frames are sent at each app's rate: a seeded Poisson process (default) or evenly "
                         "spaced; the summary judges attainment against the plan's promise for these arrivals")
    de.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals (default 0)")
    de.set_defaults(func=_cmd_demo)
    return parser


def _security_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-dir", default=None, metavar="DIR",
                   help="mutual TLS on the control plane with DIR/ca.crt, DIR/tls.crt, DIR/tls.key "
                        "(see `harpagon certs`); peers are authorised by their certificate's role")
    p.add_argument("--insecure", action="store_true",
                   help="allow listening beyond loopback without --tls-dir (anyone who reaches the port can "
                        "steer the system)")
    p.add_argument("--health-port", type=int, default=None, metavar="PORT",
                   help="also serve the standard gRPC health service, alone and in plaintext, on this port "
                        "(for Kubernetes probes, which do not speak TLS)")


def _security(args: argparse.Namespace, command: str):
    """The component's TLS files, or None; exits the command (returns False) on a bad setting."""
    from harpagon.runtime.wire.tls import TlsFiles, require_tls_off_loopback

    try:
        tls = TlsFiles.load(args.tls_dir) if args.tls_dir else None
        require_tls_off_loopback(args.host, tls, args.insecure)
    except ValueError as exc:
        print(f"harpagon {command}: {exc}", file=sys.stderr)
        return False
    return tls


def _cmd_certs(args: argparse.Namespace) -> int:
    from harpagon.runtime.wire.tls import ROLES, make_certs

    try:
        root = make_certs(args.out, args.hosts, args.days, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"harpagon certs: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"CA: {root / 'ca.crt'} (keep {root / 'ca.key'} private)")
    for role in ROLES:
        print(f"{role}: --tls-dir {root / role}")
    return 0


def _load(files: list) -> Workload | None:
    """The workload, or None after printing one line per input error."""
    try:
        return load_workload(files)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return None


def _load_or_exit(files: list) -> Workload | None:
    workload = _load(files)
    if workload is None:
        return None
    if workload.serve is None:
        print(f"{', '.join(map(str, files))}: serve: missing (which workers should run?)", file=sys.stderr)
        return None
    return workload


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from harpagon.runtime.serve import serve_forever

    workload = _load_or_exit(args.files)
    if workload is None:
        return EXIT_INVALID
    setup_logs(args.log_format)
    try:
        asyncio.run(serve_forever(workload, args.port, args.metrics_port))
    except ValueError as exc:
        print(f"harpagon serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return 0


def _cmd_controller(args: argparse.Namespace) -> int:
    import asyncio

    from harpagon.runtime.controller.main import run_controller

    workload = _load(args.config)
    if workload is None:
        return EXIT_INVALID
    tls = _security(args, "controller")
    if tls is False:
        return EXIT_INVALID
    setup_logs(args.log_format)
    asyncio.run(run_controller(workload, args.host, args.port, args.metrics_port, tls, args.health_port))
    return 0


def _cmd_frontend(args: argparse.Namespace) -> int:
    import asyncio

    from harpagon.runtime.frontend.main import run_frontend

    if len(args.frame_shape) != 3 or args.frame_shape[2] != 3:
        print(f"harpagon frontend: --frame-shape must be H,W,3, got {args.frame_shape}", file=sys.stderr)
        return EXIT_INVALID
    tls = _security(args, "frontend")
    if tls is False:
        return EXIT_INVALID
    from harpagon.runtime.wire.tls import TlsFiles

    try:
        client_tls = TlsFiles.load(args.client_tls_dir, need_ca=False) if args.client_tls_dir else None
    except ValueError as exc:
        print(f"harpagon frontend: {str(exc).replace('--tls-dir', '--client-tls-dir')}", file=sys.stderr)
        return EXIT_INVALID
    setup_logs(args.log_format)
    asyncio.run(run_frontend(args.controller, args.host, args.port, args.metrics_port, tuple(args.frame_shape),
                             tls, client_tls, args.health_port))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from harpagon.runtime.demo import run_demo

    files = args.files or [Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"]
    workload = _load_or_exit(files)
    if workload is None:
        return EXIT_INVALID
    if not args.seconds > 0:
        print(f"harpagon demo: --seconds must be > 0, got {args.seconds:g}", file=sys.stderr)
        return EXIT_INVALID
    setup_logs(args.log_format, logging.WARNING)
    if args.video and not Path(args.video).is_file():
        print(f"harpagon demo: --video {args.video!r}: no such file", file=sys.stderr)
        return EXIT_INVALID
    loads = asyncio.run(run_demo(workload, args.seconds, video=args.video, arrivals=args.arrivals, seed=args.seed))
    return 0 if all(ld.answered for ld in loads) else 1


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, got {text!r}")
    return values


def _cmd_worker(args: argparse.Namespace) -> int:
    from harpagon.runtime.lifecycle import die_with_parent

    die_with_parent()  # first: a worker `harpagon serve` started dies with it, even while loading its models
    from harpagon.runtime.wire.errors import RuntimeFault
    from harpagon.runtime.worker.data_plane import WorkerDataPlane
    from harpagon.runtime.worker.server import serve

    tls = _security(args, "worker")
    if tls is False:
        return EXIT_INVALID
    if args.weights_dir is not None and not Path(args.weights_dir).is_dir():
        print(f"harpagon worker: --weights-dir {args.weights_dir!r}: no such directory", file=sys.stderr)
        return EXIT_INVALID
    setup_logs(args.log_format)
    try:
        executor = _executor(args)
    except (RuntimeFault, ConfigError) as exc:
        print(f"harpagon worker: {exc}", file=sys.stderr)
        return EXIT_INVALID
    from harpagon.runtime.metrics import WorkerMetrics

    metrics = WorkerMetrics() if args.metrics_port is not None else None
    serve(WorkerDataPlane(executor, metrics), args.port, args.host, args.controller, metrics_port=args.metrics_port,
          unix_socket=args.unix_socket, tls=tls, advertise=args.advertise, health_port=args.health_port)
    return 0


def _executor(args: argparse.Namespace):
    if args.device.startswith("emulated:"):
        from harpagon.runtime.worker.executor import EmulatedExecutor

        hardware = args.hardware or args.device.split(":", 1)[1]
        files = args.profiles or [Path(__file__).resolve().parents[1] / "models" / "profiles" / "catalog.yaml"]
        profiles = load_profile_rows(files)
        if not any(hw == hardware for _, hw in profiles):
            from harpagon.runtime.wire.errors import FailedPrecondition

            raise FailedPrecondition(f"no profile in {', '.join(map(str, files))} is for hardware {hardware!r}")
        return EmulatedExecutor(hardware, profiles, args.slowdown)
    if args.slowdown != 1.0:
        from harpagon.runtime.wire.errors import InvalidArgument

        raise InvalidArgument(f"--slowdown is for emulated devices only, got {args.slowdown:g} on {args.device!r}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        from harpagon.runtime.wire.errors import InvalidArgument

        raise InvalidArgument(f"--device must be cpu, cuda:N or emulated:HARDWARE, got {args.device!r}")
    from harpagon.runtime.worker.executor import TorchExecutor

    return TorchExecutor(args.device, args.hardware, args.threads, args.weights_dir)


def _cmd_profile(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harpagon.profiler import memory_label, profile, write_profiles
    from harpagon.runtime.wire.errors import RuntimeFault
    from harpagon.runtime.worker.registry import entries

    runnable = sorted(name for name, e in entries().items() if e.arch is not None)
    if args.model not in runnable:
        print(f"harpagon profile: --model {args.model!r} is not a runnable model of the registry "
              f"({', '.join(runnable)})", file=sys.stderr)
        return EXIT_INVALID
    if args.input_size is not None and len(args.input_size) != 3:
        print(f"harpagon profile: --input-size must be C,H,W, got {args.input_size}", file=sys.stderr)
        return EXIT_INVALID
    command = (f"harpagon profile --model {args.model} --device {args.device} "
               f"--batches {','.join(map(str, args.batches))} --repeats {args.repeats} --warmup {args.warmup}"
               + (f" --input-size {','.join(map(str, args.input_size))}" if args.input_size else "")
               + (f" --threads {args.threads}" if args.threads else "") + f" --out {args.out}")
    with Progress(TextColumn(f"profile {args.model} on {args.device}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as bar:
        task = bar.add_task("runs", total=len(args.batches) * args.repeats)
        try:
            hardware, rows = profile(args.model, args.device, args.batches, args.input_size, args.repeats,
                                     args.warmup, args.threads, args.hardware, lambda n: bar.advance(task, n),
                                     memory=True)
        except RuntimeFault as exc:
            print(f"harpagon profile: {exc}", file=sys.stderr)
            return EXIT_INVALID
    label = memory_label(args.device)
    write_profiles(args.out, args.model, hardware, rows, command, label)
    for b, mean, std, *mb in rows:
        memory = f", {mb[0]:.1f} MiB" if mb else ", memory not measured"
        print(f"{args.model} on {hardware}: batch {b}: {mean:.3f} ± {std:.3f} ms{memory}")
    print(f"memory: {label}")
    print(f"written: {args.out}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _cmd_bench_planner(args: argparse.Namespace) -> int:
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


def _cmd_bench_live(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from harpagon.bench.live import DEFAULT_CONFIGS, ROOT, run_bench

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
    paths = [Path(c) if Path(c).exists() else ROOT / c for c in configs]
    for c, p in zip(configs, paths, strict=True):
        if not p.is_file():
            print(f"harpagon bench live: --configs {c!r}: no such file", file=sys.stderr)
            return EXIT_INVALID
        if _load([p]) is None:
            return EXIT_INVALID
    command = ("harpagon bench live --configs " + " ".join(configs) + f" --seconds {seconds:g} --out {args.out}"
               + (" --skip-perf-analyzer" if args.skip_perf_analyzer else "")
               + (" --skip-capacity" if args.skip_capacity else "")
               + (f" --capacity-limit {args.capacity_limit:g}" if args.capacity_limit != 8000.0 else "")
               + (" --quick" if args.quick else "") + (f" --seed {args.seed}" if args.seed else "")
               + (f" --rate-scale {args.rate_scale:g}" if args.rate_scale != 1.0 else "")
               + (f" --warmup {warmup:g}" if args.warmup is not None else ""))
    setup_logs(args.log_format, logging.WARNING)
    path = asyncio.run(run_bench([str(p) for p in paths], seconds, args.out, command, seed=args.seed,
                                 perf_analyzer=not args.skip_perf_analyzer, quick=args.quick,
                                 capacity=not args.skip_capacity, capacity_limit=args.capacity_limit,
                                 rate_scale=args.rate_scale, warmup_s=warmup))
    print(f"report: {path}")
    return 0


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


def _cmd_plan(args: argparse.Namespace) -> int:
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
    workload = _load(args.files)
    if workload is None:
        return EXIT_INVALID
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
