"""`harpagon frontend`: a Triton-protocol frontend fed by a controller."""

from __future__ import annotations

import argparse
import sys

from harpagon.cli.common import (
    EXIT_INVALID,
    add_security_arguments,
    add_tracing_argument,
    config_file,
    int_list,
    load_config,
    security,
    tracing_from,
)
from harpagon.runtime.logs import setup as setup_logs


def add_parser(sub) -> None:
    """`harpagon frontend`."""
    fe = sub.add_parser("frontend", help="run a Triton-protocol frontend fed by a controller",
                        description="Serve the KServe v2 / Triton gRPC API; routes come from the controller.")
    fe.add_argument("--controller", required=True, help="controller address HOST:PORT")
    fe.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fe.add_argument("--port", type=int, default=8001, help="Triton gRPC port (default 8001)")
    fe.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    fe.add_argument("--frame-shape", type=int_list, default=None,
                    help="H,W,3 of the frames clients send (default: --config's serve.frame_shape, else 480,640,3)")
    fe.add_argument("--config", nargs="+", type=config_file, default=None, metavar="FILE",
                    help="the controller's config files, read for serve.frame_shape only, so that the frame shape "
                         "is set in one place (in Kubernetes, the same ConfigMap)")
    fe.add_argument("--client-tls-dir", default=None, metavar="DIR",
                    help="serve clients over TLS with DIR/tls.crt and DIR/tls.key (default: plaintext)")
    fe.add_argument("--advertise", default=None, metavar="HOST:PORT",
                    help="where the other frontends reach this one's Triton port to forward frames of the apps it "
                         "owns (default: --host:--port; with a wildcard --host, this machine's name); in "
                         "Kubernetes, the pod's IP")
    fe.add_argument("--id", default=None, help="this frontend's id at the controller (default: a random one)")
    add_tracing_argument(fe)
    add_security_arguments(fe)
    fe.set_defaults(func=cmd_frontend)


def cmd_frontend(args: argparse.Namespace) -> int:
    import asyncio

    from harpagon.runtime.lifecycle import die_with_parent

    die_with_parent()  # first: a frontend `harpagon serve --frontends N` started dies with it
    from harpagon.runtime.frontend.main import run_frontend

    if args.config is not None:
        workload = load_config(args.config)
        if workload is None:
            return EXIT_INVALID
        configured = list(workload.serve.frame_shape) if workload.serve is not None else None
        if args.frame_shape is not None and configured is not None and args.frame_shape != configured:
            print(f"harpagon frontend: --frame-shape {','.join(map(str, args.frame_shape))} differs from "
                  f"serve.frame_shape {configured} of --config; give one of them", file=sys.stderr)
            return EXIT_INVALID
        args.frame_shape = args.frame_shape or configured
    args.frame_shape = args.frame_shape or [480, 640, 3]
    if len(args.frame_shape) != 3 or args.frame_shape[2] != 3:
        print(f"harpagon frontend: --frame-shape must be H,W,3, got {args.frame_shape}", file=sys.stderr)
        return EXIT_INVALID
    tls = security(args, "frontend")
    if tls is False:
        return EXIT_INVALID
    from harpagon.runtime.wire.tls import TlsFiles

    try:
        client_tls = TlsFiles.load(args.client_tls_dir, need_ca=False) if args.client_tls_dir else None
    except ValueError as exc:
        print(f"harpagon frontend: {str(exc).replace('--tls-dir', '--client-tls-dir')}", file=sys.stderr)
        return EXIT_INVALID
    setup_logs(args.log_format)
    tracing = tracing_from(args, "harpagon-frontend")
    if tracing is False:
        return EXIT_INVALID
    asyncio.run(run_frontend(args.controller, args.host, args.port, args.metrics_port, tuple(args.frame_shape),
                             tls, client_tls, args.health_port, args.advertise, args.id, tracing))
    return 0
