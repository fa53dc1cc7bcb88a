"""The `harpagon` command: parses arguments, calls one function, prints.

Each command's module registers its parser beside its handler (`add_parser(sub)`); this one puts them
together under the top-level parser.

Exit codes: 0 success; 2 invalid input (one line per problem on stderr); 3 some apps refused (the
others are still planned and printed).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from harpagon.cli import bench, certs, controller, demo, frontend, plan, profile, serve, worker
from harpagon.cli.common import EXIT_INVALID, EXIT_REFUSED, Parser
from harpagon.cli.plan import print_plan

__all__ = ["EXIT_INVALID", "EXIT_REFUSED", "main", "print_plan"]

#: The commands, in the order `harpagon --help` lists them.
COMMANDS = (plan, bench, worker, profile, serve, controller, frontend, certs, demo)


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="harpagon", description="Plan and serve DNN applications at minimum cost.")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="logs of the long-running commands: text, or one JSON object per line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    return args.func(args)
