"""`harpagon controller`: plans, assigns workers, pushes routes."""

from __future__ import annotations

import argparse

from harpagon.cli.common import EXIT_INVALID, add_security_arguments, config_file, load_config, security
from harpagon.runtime.logs import setup as setup_logs


def add_parser(sub) -> None:
    """`harpagon controller`."""
    co = sub.add_parser("controller", help="run the controller: plans, assigns workers, pushes routes",
                        description="Plan the config's apps against the workers that register, push their "
                                    "configurations and the frontends' routes, and re-plan when workers come and "
                                    "go or when measured rates leave the planned band.")
    co.add_argument("--config", nargs="+", required=True, type=config_file, metavar="FILE",
                    help="YAML config files, or an example's name (`harpagon examples`)")
    co.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    co.add_argument("--port", type=int, default=50051, help="port for workers and frontends (default 50051)")
    co.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    add_security_arguments(co)
    co.set_defaults(func=cmd_controller)


def cmd_controller(args: argparse.Namespace) -> int:
    import asyncio

    from harpagon.runtime.controller.main import run_controller

    workload = load_config(args.config)
    if workload is None:
        return EXIT_INVALID
    tls = security(args, "controller")
    if tls is False:
        return EXIT_INVALID
    setup_logs(args.log_format)
    asyncio.run(run_controller(workload, args.host, args.port, args.metrics_port, tls, args.health_port))
    return 0
