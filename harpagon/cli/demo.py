"""`harpagon demo`: serve a config and stream synthetic frames through it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harpagon.cli.common import EXIT_INVALID, config_file, load_serve_config, positive_int
from harpagon.data import example
from harpagon.runtime.logs import setup as setup_logs


def add_parser(sub) -> None:
    """`harpagon demo`."""
    de = sub.add_parser("demo", help="serve the demo config and stream synthetic frames through it",
                        description="Serve a config locally (default configs/demo.yaml) and stream synthetic "
                                    "frames at each app's rate for a bounded time, with live statistics and a "
                                    "summary.")
    de.add_argument("files", nargs="*", type=config_file, metavar="FILE",
                    help="config files, or an example's name (`harpagon examples`; default: the example demo)")
    de.add_argument("--seconds", type=float, default=20.0, help="how long to stream (default 20)")
    de.add_argument("--video", default=None, help="stream this video file's frames (PyAV) instead of synthetic ones")
    de.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson",
                    help="how frames are sent at each app's rate: a seeded Poisson process (default) or evenly "
                         "spaced; the summary judges attainment against the plan's promise for these arrivals")
    de.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals (default 0)")
    de.add_argument("--frontends", type=positive_int, default=None, metavar="N",
                    help="serve through N frontends (default: the config's serve.frontends, 1), each app's frames "
                         "spread over them")
    de.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                    help="keep each worker's and frontend's log in DIR/NAME.log (default: a temporary folder, "
                         "removed at a clean stop and named when a child fails)")
    de.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from harpagon.runtime.demo import run_demo
    from harpagon.runtime.serve import StartError

    files = args.files or [example("demo")]
    workload = load_serve_config(files)
    if workload is None:
        return EXIT_INVALID
    if not args.seconds > 0:
        print(f"harpagon demo: --seconds must be > 0, got {args.seconds:g}", file=sys.stderr)
        return EXIT_INVALID
    setup_logs(args.log_format, logging.WARNING)
    if args.video and not Path(args.video).is_file():
        print(f"harpagon demo: --video {args.video!r}: no such file", file=sys.stderr)
        return EXIT_INVALID
    try:
        loads = asyncio.run(run_demo(workload, args.seconds, video=args.video, arrivals=args.arrivals,
                                     seed=args.seed, frontends=args.frontends, log_dir=args.log_dir))
    except StartError as exc:
        print(f"harpagon demo: {exc}", file=sys.stderr)
        return EXIT_INVALID
    # a promise missed is a failure of the demo (its exit status says so, as its summary does)
    return 0 if all(ld.answered and ld.kept is not False for ld in loads) else 1
