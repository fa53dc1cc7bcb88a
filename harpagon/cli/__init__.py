"""The `harpagon` command: parses arguments, calls one function, prints.

Each command's module registers its parser beside its handler (`add_parser(sub)`); this one puts them
together under the top-level parser.

Exit codes: 0 success; 2 invalid input (one line per problem on stderr), or a port or file the command
cannot use (one line naming it; `--log-level debug` shows the traceback); 3 some apps refused (the
others are still planned and printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from harpagon import __version__
from harpagon.cli import (
    bench,
    certs,
    controller,
    demo,
    examples,
    frontend,
    health,
    plan,
    profile,
    serve,
    worker,
)
from harpagon.cli.common import EXIT_INVALID, EXIT_REFUSED, Parser
from harpagon.cli.plan import print_plan
from harpagon.runtime import logs, wire
from harpagon.runtime.logs import LEVELS

__all__ = ["EXIT_INVALID", "EXIT_REFUSED", "main", "print_plan"]

#: The optional dependencies, by the extra that installs them (pyproject.toml).
EXTRAS = {"torch": "worker", "torchvision": "worker", "av": "video", "scipy": "bench", "matplotlib": "bench",
          "opentelemetry": "traces"}

#: The commands, in the order `harpagon --help` lists them.
COMMANDS = (plan, bench, worker, profile, serve, controller, frontend, certs, health, demo, examples)


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="harpagon", description="Plan and serve DNN applications at minimum cost.")
    parser.add_argument("--version", action="version", version=f"harpagon {__version__}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="logs of the long-running commands: text, or one JSON object per line")
    parser.add_argument("--log-level", choices=LEVELS, default=None,
                        help="the least level logged (default: info; the demo's and benchmarks' own output "
                             "is their tables, so they log warnings and errors only)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    _log_flags_after(parser)
    return parser


def _log_flags_after(parser: argparse.ArgumentParser) -> None:
    """`--log-format` and `--log-level` after the subcommand too (`harpagon worker ... --log-level debug`,
    as container args are written); given there, they override the ones before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                child.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                                   help="as `harpagon --log-format` (default text)")
                child.add_argument("--log-level", choices=LEVELS, default=argparse.SUPPRESS,
                                   help="as `harpagon --log-level`")
                _log_flags_after(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logs.LEVEL = args.log_level
    if args.log_level == "debug" and wire.QUIETED:  # gRPC core's errors too (quiet_grpc_core hid them)
        os.environ["GRPC_VERBOSITY"] = "ERROR"
    try:
        return args.func(args)
    except ModuleNotFoundError as exc:  # a part of an optional extra (pyproject.toml) that is not installed
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None or args.log_level == "debug":
            raise
        print(f"harpagon {args.command}: needs {exc.name}, which is not installed: "
              f"pip install 'harpagon[{extra}]'", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:  # a port in use, a folder that cannot be written: one line, not a traceback
        if args.log_level == "debug":
            raise
        print(f"harpagon {args.command}: {exc}", file=sys.stderr)
        return EXIT_INVALID
