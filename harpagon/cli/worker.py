"""`harpagon worker`: serve one device's batches."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harpagon.cli.common import EXIT_INVALID, add_security_arguments, positive_int, security
from harpagon.config import ConfigError
from harpagon.config.loader import load_profile_rows
from harpagon.data import catalog_path, packaged
from harpagon.runtime.logs import setup as setup_logs


def add_parser(sub) -> None:
    """`harpagon worker`."""
    w = sub.add_parser("worker", help="serve one device's batches (one process per GPU)",
                       description="Run a worker: it loads the modules a configuration names and runs their "
                                   "batches on one device. On a machine without a GPU use cpu, or "
                                   "emulated:HARDWARE (batches sleep their profiled latency).")
    w.add_argument("--device", default="cpu", help="cpu, cuda:N or emulated:HARDWARE (default cpu)")
    w.add_argument("--controller", default=None, help="controller address HOST:PORT to register with")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    w.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    w.add_argument("--hardware", default=None, help="hardware name to report (default: from the device)")
    w.add_argument("--profiles", nargs="*", default=[], type=packaged, metavar="FILE",
                   help="profile files for an emulated device (default: the packaged catalog, "
                        "harpagon:models/profiles/catalog.yaml)")
    w.add_argument("--threads", type=positive_int, default=None, help="torch threads on cpu (default: all cores)")
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
    w.add_argument("--id", default=None, metavar="ID",
                   help="the id to register under (default: worker-PID-RANDOM); unique among live workers")
    w.add_argument("--drain-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="on SIGTERM, wait up to this long for the controller to move this worker's "
                        "modules elsewhere before stopping anyway; batches in flight then get up to 10 s more "
                        "(default 60; a pod's terminationGracePeriodSeconds must exceed both)")
    add_security_arguments(w)
    w.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from harpagon.runtime.lifecycle import die_with_parent

    die_with_parent()  # first: a worker `harpagon serve` started dies with it, even while loading its models
    from harpagon.runtime.wire.errors import RuntimeFault
    from harpagon.runtime.worker.data_plane import WorkerDataPlane
    from harpagon.runtime.worker.server import serve

    tls = security(args, "worker")
    if tls is False:
        return EXIT_INVALID
    if args.weights_dir is not None and not Path(args.weights_dir).is_dir():
        print(f"harpagon worker: --weights-dir {args.weights_dir!r}: no such directory", file=sys.stderr)
        return EXIT_INVALID
    if not 0 <= args.drain_timeout <= 3600:
        print(f"harpagon worker: --drain-timeout {args.drain_timeout:g}: must be in [0, 3600] seconds", file=sys.stderr)
        return EXIT_INVALID
    setup_logs(args.log_format)
    try:
        executor = _executor(args)
    except (RuntimeFault, ConfigError) as exc:
        print(f"harpagon worker: {exc}", file=sys.stderr)
        return EXIT_INVALID
    from harpagon.runtime.metrics import WorkerMetrics

    metrics = WorkerMetrics() if args.metrics_port is not None else None
    if metrics is not None:
        from harpagon.runtime.wire.certmetrics import watch_certificates

        watch_certificates(metrics.registry, "worker", tls)
    serve(WorkerDataPlane(executor, metrics), args.port, args.host, args.controller, metrics_port=args.metrics_port,
          unix_socket=args.unix_socket, tls=tls, advertise=args.advertise, health_port=args.health_port,
          worker_id=args.id, drain_timeout_s=args.drain_timeout)
    return 0


def _executor(args: argparse.Namespace):
    if args.device.startswith("emulated:"):
        from harpagon.runtime.worker.executor import EmulatedExecutor

        hardware = args.hardware or args.device.split(":", 1)[1]
        files = args.profiles or [catalog_path()]
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
