"""`harpagon serve`: controller, frontend and local workers in one command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harpagon.cli.common import (
    EXIT_INVALID,
    add_tracing_argument,
    config_file,
    load_serve_config,
    positive_int,
    tracing_checked,
)
from harpagon.runtime.logs import setup as setup_logs


def add_parser(sub) -> None:
    """`harpagon serve`."""
    sv = sub.add_parser("serve", help="serve a config: controller, frontend and local workers in one command",
                        description="Start the controller, the Triton-protocol frontend and the local workers the "
                                    "config's `serve` section names; serve until Ctrl-C, then drain.")
    sv.add_argument("files", nargs="+", type=config_file, metavar="FILE",
                    help="YAML config files (with a `serve` section), or an example's name (`harpagon examples`)")
    sv.add_argument("--port", type=int, default=None, help="frontend gRPC port (default: the config's, 8001)")
    sv.add_argument("--metrics-port", type=int, default=None, help="metrics port (default: the config's, 8002)")
    sv.add_argument("--frontends", type=positive_int, default=None, metavar="N",
                    help="frontends to run, on ports PORT, PORT+1, ... (default: the config's serve.frontends, 1); "
                         "the plan shares the apps among them")
    sv.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                    help="keep each worker's and frontend's log in DIR/NAME.log (default: a temporary folder, "
                         "removed at a clean stop and named when a child fails)")
    add_tracing_argument(sv)
    sv.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from harpagon.runtime.serve import StartError, serve_forever

    workload = load_serve_config(args.files)
    if workload is None:
        return EXIT_INVALID
    setup_logs(args.log_format)
    if not tracing_checked(args):  # checked here; the frontends make their own exporters
        return EXIT_INVALID
    try:
        asyncio.run(serve_forever(workload, args.port, args.metrics_port, args.frontends, args.log_dir,
                                  args.otlp_endpoint))
    except (ValueError, StartError) as exc:
        print(f"harpagon serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return 0
