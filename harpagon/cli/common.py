"""What the commands share: the parser class, exit codes, argument types, config loading, and the
control-plane components' security options."""

from __future__ import annotations

import argparse
import sys

from harpagon.config import ConfigError, Workload, load_workload
from harpagon.data import resolve_config

EXIT_INVALID = 2
EXIT_REFUSED = 3


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other input error
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, got {text!r}")
    return values


def config_file(text: str) -> str:
    """A config argument: a file, or the name of a packaged example (`harpagon examples`)."""
    return str(resolve_config(text))


def load_config(files: list) -> Workload | None:
    """The workload, or None after printing one line per input error."""
    try:
        return load_workload(files)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return None


def load_serve_config(files: list) -> Workload | None:
    workload = load_config(files)
    if workload is None:
        return None
    if workload.serve is None:
        print(f"{', '.join(map(str, files))}: serve: missing (which workers should run?)", file=sys.stderr)
        return None
    return workload


def add_security_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-dir", default=None, metavar="DIR",
                   help="mutual TLS on the control plane with DIR/ca.crt, DIR/tls.crt, DIR/tls.key "
                        "(see `harpagon certs`); peers are authorised by their certificate's role")
    p.add_argument("--insecure", action="store_true",
                   help="allow listening beyond loopback without --tls-dir (anyone who reaches the port can "
                        "steer the system)")
    p.add_argument("--health-port", type=int, default=None, metavar="PORT",
                   help="also serve the standard gRPC health service, alone and in plaintext, on this port "
                        "(for Kubernetes probes, which do not speak TLS)")



def security(args: argparse.Namespace, command: str):
    """The component's TLS files, or None; exits the command (returns False) on a bad setting."""
    from harpagon.runtime.wire.tls import TlsFiles, require_tls_off_loopback

    try:
        tls = TlsFiles.load(args.tls_dir) if args.tls_dir else None
        require_tls_off_loopback(args.host, tls, args.insecure)
    except ValueError as exc:
        print(f"harpagon {command}: {exc}", file=sys.stderr)
        return False
    return tls


def add_tracing_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--otlp-endpoint", default=None, metavar="URL",
                   help="export a trace per frame (a span per hop, with its planned latency) over OTLP/gRPC to URL, "
                        "e.g. http://otel-collector:4317 (default: no traces, at no cost; needs the [traces] extra)")


def tracing_checked(args: argparse.Namespace) -> bool:
    """Whether `--otlp-endpoint` (if given) is an endpoint; False after one line saying why not."""
    if args.otlp_endpoint is None:
        return True
    from harpagon.runtime.traces import check_endpoint

    try:
        check_endpoint(args.otlp_endpoint)
    except ValueError as exc:
        print(f"harpagon {args.command}: {exc}", file=sys.stderr)
        return False
    return True


def tracing_from(args: argparse.Namespace, service: str):
    """The frontend's tracing (None: off), or False after one line on a bad endpoint."""
    if args.otlp_endpoint is None:
        return None
    if not tracing_checked(args):
        return False
    from harpagon.runtime.traces import otlp_tracing

    return otlp_tracing(args.otlp_endpoint, service)
