"""`harpagon bench faults` on the command line, and the entry of the processes the suite starts in
the clients' namespace (`python -m harpagon.bench.faults _client|_routes|_hostile|_flood|_abuse ...`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from harpagon.bench.faults.run import DEFAULT_CONFIG, DEFAULT_OUT, DEFAULT_WORKERS, run_suite
from harpagon.bench.faults.scenarios import SCENARIOS


def add_parser(bench) -> argparse.ArgumentParser:
    """`harpagon bench faults`, added to the `bench` subparsers of harpagon.cli."""
    p = bench.add_parser("faults", help="the live system under faults: worker, frontend and controller crashes "
                                        "and stalls, a partition, overload, hostile calls",
                         description="Run a cluster of separate processes (1 controller, 1 frontend, emulated "
                                     "workers, mutual TLS; each in its own network namespace when run as root) "
                                     "under a stream of frames, inject one fault per scenario, and write a "
                                     "report of what the frames got against the goals.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="shorter phases (about 2 minutes instead of 3)")
    p.add_argument("--loopback", action="store_true",
                   help="every process on 127.0.0.1, no network namespaces (the partition is skipped)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="app config (default configs/faults.yaml; needs a serve section)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"emulated t4 workers (default {DEFAULT_WORKERS}: the plan's 3 and spares)")
    p.add_argument("--logs", type=Path, default=None, metavar="DIR",
                   help="also write every process's output (controller, frontend, workers) to DIR")
    p.add_argument("--only", default=None, metavar="NAME[,NAME]",
                   help="run only these scenarios (in the suite's order; the report has just them): "
                        + ", ".join(key for key, _ in SCENARIOS))
    p.set_defaults(func=cmd_bench_faults)
    return p


def cmd_bench_faults(args: argparse.Namespace) -> int:
    if args.workers < 2:
        print(f"harpagon bench faults: --workers must be >= 2, got {args.workers}", file=sys.stderr)
        return 2
    if not args.config.is_file():
        print(f"harpagon bench faults: --config {str(args.config)!r}: no such file", file=sys.stderr)
        return 2
    only = _only(args.only)
    if only is None:
        return 2
    command = ("harpagon bench faults" + (f" --out {args.out}" if args.out != DEFAULT_OUT else "")
               + (" --quick" if args.quick else "") + (" --loopback" if args.loopback else "")
               + (f" --config {args.config}" if args.config != DEFAULT_CONFIG else "")
               + (f" --workers {args.workers}" if args.workers != DEFAULT_WORKERS else "")
               + (f" --only {','.join(only)}" if only else ""))
    results, _ = run_suite(args.out, args.quick, args.loopback, args.config, args.workers, command,
                           only=only or None, logs=args.logs)
    missed = [r for r in results if not r.skipped and not r.met]
    for r in results:
        state = f"skipped ({r.skipped})" if r.skipped else "met" if r.met else "MISSED: " + "; ".join(
            f"{g.name} ({g.detail})" for g in r.goals if not g.met)
        print(f"{r.number:2d} {r.title}: {state}")
    print(f"report: {args.out}")
    return 1 if missed else 0


def _only(names: str | None) -> list[str] | None:
    """The scenarios `--only` names ([]: all of them), or None (said on stderr) if one is not a scenario."""
    if names is None:
        return []
    only = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in only if n not in dict(SCENARIOS)]
    if unknown or not only:
        print(f"harpagon bench faults: --only {names!r}: "
              + (f"no scenario {', '.join(unknown)}" if unknown else "names no scenario")
              + f" (the scenarios: {', '.join(key for key, _ in SCENARIOS)})", file=sys.stderr)
        return None
    return only


def main(argv: Sequence[str] | None = None) -> int:
    """The suite (`faults` and its flags), or one of its helper processes (`_client SPEC OUT`, `_flood`,
    `_abuse`, `_routes`, `_hostile`: each prints its answer as JSON)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_client":
        from harpagon.bench.faults.load import stream_frames

        asyncio.run(stream_frames(json.loads(Path(argv[1]).read_text()), Path(argv[2])))
        return 0
    if argv and argv[0] in ("_flood", "_abuse", "_routes", "_hostile"):
        print(json.dumps(_helper(argv[0], argv[1:])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m harpagon.bench.faults")
    sub = parser.add_subparsers(dest="bench", required=True)
    add_parser(sub)
    args = parser.parse_args(["faults", *argv] if not argv or argv[0] != "faults" else argv)
    return args.func(args)


def _helper(name: str, argv: list[str]) -> object:
    """The answer of the helper `name` to its flags."""
    from harpagon.bench.faults import callers

    h = argparse.ArgumentParser(prog=f"harpagon.bench.faults {name}")
    if name in ("_flood", "_abuse"):
        h.add_argument("--address")
        h.add_argument("--app")
        h.add_argument("--seconds", type=float)
        h.add_argument("--targets", type=json.loads)
        a = h.parse_args(argv)
        return asyncio.run(callers.flood(a.address, a.app, a.seconds)) if name == "_flood" else callers.abuse(a.targets)
    h.add_argument("--controller", required=True)
    h.add_argument("--tls-dir")
    h.add_argument("--worker")
    h.add_argument("--pki", type=Path)
    h.add_argument("--foreign", type=Path)
    h.add_argument("--app", default="")
    a = h.parse_args(argv)
    return (callers.routes(a.controller, a.tls_dir) if name == "_routes"
            else callers.hostile_calls(a.controller, a.worker, a.pki, a.foreign, a.app))
