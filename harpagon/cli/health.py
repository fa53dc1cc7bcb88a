"""`harpagon health`: ask a component's standard gRPC health service whether it is serving.

The image's HEALTHCHECK and an operator's shell use it; Kubernetes asks the same service with its own
gRPC probes. Every component serves it in plaintext on its `--health-port` (and on its main port, under
the main port's TLS)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

#: HOST:PORT, the host a name, an IPv4 address or a bracketed IPv6 one.
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.%\w]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def address(text: str) -> str:
    """HOST:PORT, as gRPC dials it."""
    m = _ADDRESS.fullmatch(text)
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT with a port in 1..65535 ([::1]:8090 for IPv6), "
                                         f"got {text!r}")
    return text


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_parser(sub) -> None:
    """`harpagon health`."""
    he = sub.add_parser("health", help="check a component's gRPC health service (exit 0 when SERVING)",
                        description="Call the standard gRPC health service (grpc.health.v1.Health/Check) at "
                                    "ADDRESS in plaintext, as a Kubernetes gRPC probe does, and print one line: "
                                    "the service's status, or why there is none. Exit 0 when SERVING, 1 "
                                    "otherwise (not serving, unknown service, unreachable, no answer in time), "
                                    "2 on a bad argument.")
    he.add_argument("address", type=address, metavar="HOST:PORT",
                    help="a component's --health-port (e.g. 127.0.0.1:8090)")
    he.add_argument("--service", default="", metavar="NAME",
                    help="the health service to ask (default: \"\", the component as a whole; a frontend's "
                         "\"liveness\" is SERVING while it runs, its \"\" only once every app is routed)")
    he.add_argument("--timeout", type=seconds, default=2.0, metavar="SECONDS",
                    help="deadline for the answer, connecting included (default 2)")
    he.set_defaults(func=cmd_health)


def cmd_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    # A probe of 127.0.0.1 inside a container must not be sent to the build's or the host's $https_proxy.
    with grpc.insecure_channel(args.address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"harpagon health: {args.address}: {_reason(exc, args)}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def _reason(exc: grpc.RpcError, args: argparse.Namespace) -> str:
    """One line saying why there is no status."""
    import grpc

    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"DEADLINE_EXCEEDED: no answer within {args.timeout:g} s"
    if code == grpc.StatusCode.NOT_FOUND:
        return f"NOT_FOUND: no health service {args.service!r} is registered there"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "UNIMPLEMENTED: the server has no gRPC health service"
    details = " ".join((exc.details() or "").split())
    return f"{code.name}: {details}" if details else code.name
