"""`harpagon serve`: controller, frontend and local workers in one command."""

from __future__ import annotations

import argparse
import sys

from harpagon.cli.common import EXIT_INVALID, config_file, load_serve_config, positive_int
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
    sv.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from harpagon.runtime.serve import serve_forever

    workload = load_serve_config(args.files)
    if workload is None:
        return EXIT_INVALID
    setup_logs(args.log_format)
    try:
        asyncio.run(serve_forever(workload, args.port, args.metrics_port, args.frontends))
    except ValueError as exc:
        print(f"harpagon serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return 0
